"""HAProxy in front of the two slots: render its config, install it, keep it running.

`up` is idempotent: an unchanged server is left alone; a changed config is checked by
HAProxy itself, then applied by a reload of the master process (no connection dropped),
with the runtime state (which slot is live) carried over through a server-state file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable

import jinja2

from tasks import docker_commands as docker
from tasks import haproxy
from tasks.inventory import SLOTS, Inventory
from tasks.remote import RemoteCommandError, Server
from tasks.scaffold import template_folders

CONFIG_NAME = "haproxy.cfg"
STATE_NAME = "server-state"
# The config kept while a new one is tried: put back when HAProxy does not start with it.
PREVIOUS_NAME = f"{CONFIG_NAME}.prev"
# SHA-256 of the config HAProxy runs, written only once HAProxy was seen running with it:
# "unchanged" means the same as this, not merely the same as the file.
RUNNING_NAME = f"{CONFIG_NAME}.running-sha256"
RELOAD_TIMEOUT = 20.0
LABEL_SPEC = "slotswap.haproxy-spec"
Progress = Callable[[str], None]


class ProxyError(RuntimeError):
    pass


def config_dir(inventory: Inventory) -> str:
    return f"/etc/slotswap/{inventory.app}/haproxy"


def render_config(inventory: Inventory) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_folders(inventory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # a config file, not HTML; every value is validated on load
    )
    return environment.get_template(f"{CONFIG_NAME}.j2").render(
        inventory_name=inventory.path.name,
        app=inventory.app,
        backend=inventory.app,
        slots=SLOTS,
        app_port=inventory.app_port,
        healthcheck_path=inventory.healthcheck.path,
        http_port_inside=docker.HAPROXY_HTTP_PORT_INSIDE,
        stats_port_inside=docker.HAPROXY_STATS_PORT_INSIDE,
        state_file=f"{docker.HAPROXY_CONFIG_DIR_INSIDE}/{STATE_NAME}",
    )


def container_spec(inventory: Inventory) -> str:
    """What the HAProxy container was created with; a change needs a new container."""
    spec = f"{inventory.haproxy.image}|{inventory.haproxy.http_port}|{inventory.haproxy.stats_port}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def haproxy_run_command(inventory: Inventory) -> list[str]:
    return docker.run_haproxy(
        container=inventory.haproxy_container, image_ref=inventory.haproxy.image,
        network=inventory.network, app=inventory.app, config_dir=config_dir(inventory),
        http_port=inventory.haproxy.http_port, stats_port=inventory.haproxy.stats_port,
        labels={LABEL_SPEC: container_spec(inventory)},
    )


def ensure_image(server: Server, image_ref: str, progress: Progress, *,
                 refresh: bool = False) -> None:
    """Make sure image_ref is on the server. With refresh, pull even when a copy is there
    (a tag pushed again must not leave servers on its old content); a copy already there
    is still used when the registry cannot be reached, with a warning."""
    present = server.run(docker.image_id(image_ref), check=False).ok
    if present and not refresh:
        return
    progress(f"pulling {image_ref}")
    result = server.run(docker.pull(image_ref), check=False, timeout=900)
    if result.ok:
        return
    reason = (result.stderr.strip().splitlines() or ["no error output"])[-1]
    if present:
        progress(f"WARNING: cannot pull {image_ref} ({reason}); using the copy on the server")
        return
    raise ProxyError(f"{server.name}: cannot pull {image_ref}: {reason}")


def ensure_network(server: Server, inventory: Inventory, progress: Progress) -> bool:
    if server.run(docker.network_inspect(inventory.network), check=False).ok:
        return False
    server.run(docker.network_create(inventory.network, inventory.app))
    progress(f"created network {inventory.network}")
    return True


def validate_config_on_server(server: Server, inventory: Inventory, filename: str) -> None:
    result = server.run(docker.check_haproxy_config(
        image_ref=inventory.haproxy.image, config_dir=config_dir(inventory), filename=filename,
    ), check=False, timeout=60)
    if not result.ok:
        output = (result.stdout + result.stderr).strip()
        raise ProxyError(f"{server.name}: HAProxy rejects the new config, the running one "
                         f"stays:\n{output}")


def refuse_unbindable(server: Server, config: str, container_addresses: set[str]) -> None:
    unbindable = unbindable_addresses(config, container_addresses)
    if unbindable:
        raise ProxyError(f"{server.name}: the new config binds {', '.join(unbindable)}, which "
                         "the HAProxy container does not have (it has "
                         f"{', '.join(sorted(container_addresses)) or 'no network address'} "
                         "and 0.0.0.0); the running config stays")


def wait_for_runtime_api(server: Server, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return haproxy.parse_info(server.runtime_api("show info"))
        except haproxy.RuntimeApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# Addresses any container can bind: every local address, and its loopback.
WILDCARD_ADDRESSES = {"", "*", "0.0.0.0", "::", "127.0.0.1", "::1"}


def bind_addresses(config: str) -> list[str]:
    """Pure: the IP literals the config's `bind` lines listen on, in order (`bind ADDR:PORT
    [options]`, an `ipv4@`/`ipv6@` prefix allowed). Unix sockets and named fds are not IPs."""
    found = []
    for line in config.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "bind":
            continue
        for endpoint in words[1].split(","):
            family, _, rest = endpoint.rpartition("@")
            if family not in ("", "ipv4", "ipv6"):
                continue
            host = rest.rpartition(":")[0].strip("[]")
            if rest.startswith("/") or ":" not in rest:
                continue
            found.append(host)
    return found


def unbindable_addresses(config: str, container_addresses: set[str]) -> list[str]:
    """Pure: addresses of `bind` lines the HAProxy container does not have. `haproxy -c` does
    not bind, so it passes such a config; HAProxy's reload then fails, and while it retries
    (about a second) the running workers pause their listeners: connections are refused."""
    unbindable = []
    for host in bind_addresses(config):
        if host in WILDCARD_ADDRESSES or host in container_addresses:
            continue
        try:
            ipaddress.ip_address(host)
        except ValueError:
            continue  # a name: HAProxy resolves it at start; not checked here
        unbindable.append(host)
    return unbindable


def config_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def runs_config(on_disk: str | None, running_hash: str | None, wanted: str) -> bool:
    """Pure: HAProxy runs `wanted` and will start with it again (the file on disk)."""
    return on_disk == wanted and (running_hash or "").strip() == config_hash(wanted)


def up_server(server: Server, inventory: Inventory, progress: Progress) -> str:
    """Make the server ready for deploys; return what was done."""
    directory = config_dir(inventory)
    config_path = f"{directory}/{CONFIG_NAME}"
    wanted = render_config(inventory)
    changes = []
    if ensure_network(server, inventory, progress):
        changes.append("network created")
    ensure_image(server, inventory.haproxy.image, progress)
    name = inventory.haproxy_container
    container = docker.parse_inspect(
        server.run(docker.inspect_containers(name), check=False).stdout).get(name)
    if container is not None and container.labels.get(LABEL_SPEC) != container_spec(inventory):
        # Image or published ports changed: only a new container can have them.
        progress(f"HAProxy image or ports changed: recreating {name} (a short interruption)")
        server.run(docker.remove(name))
        container = None
        changes.append("HAProxy recreated")
    current = server.read_file(config_path)
    installed = False
    if not runs_config(current, server.read_file(f"{directory}/{RUNNING_NAME}"), wanted):
        server.write_file(f"{config_path}.new", wanted)
        try:
            validate_config_on_server(server, inventory, f"{CONFIG_NAME}.new")
            if container is not None and container.running:
                refuse_unbindable(server, wanted, set(container.addresses.values()))
        except ProxyError:
            server.run(["rm", "-f", f"{config_path}.new"], check=False)
            raise
        if container is not None and container.running:
            reload_with_new_config(server, inventory, progress, wanted)
            changes.append("config reloaded")
        else:
            keep_previous = [["cp", "-f", config_path, f"{directory}/{PREVIOUS_NAME}"]
                             if current is not None else ["true"]]
            server.run_chain(*keep_previous,
                             ["mv", "-f", f"{config_path}.new", config_path])
            installed = True
            changes.append("config written")
    if container is None:
        server.run(haproxy_run_command(inventory))
        changes.append("HAProxy started")
    elif not container.running:
        server.run(docker.start(name))
        changes.append("HAProxy restarted")
    if installed or container is None or not container.running:
        try:
            wait_for_runtime_api(server)
        except haproxy.RuntimeApiError as error:
            restored = installed and current is not None and restore_previous(server, inventory)
            raise ProxyError(
                f"{server.name}: HAProxy does not answer after starting with the config"
                + ("; the previous config is back in place" if restored else "")
                + f" ({error}); see `docker logs {name}` on the server") from error
        # Started from the file on disk: that is what runs now.
        server.write_file(f"{directory}/{RUNNING_NAME}", config_hash(wanted) + "\n")
    info = wait_for_runtime_api(server)
    progress(f"HAProxy {info.get('Version', '?')} answers on 127.0.0.1:"
             f"{inventory.haproxy.stats_port}")
    return ", ".join(changes) if changes else "unchanged"


def reload_with_new_config(server: Server, inventory: Inventory, progress: Progress,
                           wanted: str) -> None:
    """Swap the config file in and reload HAProxy's master: workers hand over, no connection
    is dropped, and the slots keep their runtime state through the server-state file. A
    config that passes `haproxy -c` can still fail to start (a port it cannot bind): then
    the old workers keep running, and the previous file goes back in place, so that the file
    on disk is always the one that runs."""
    directory = config_dir(inventory)
    config_path = f"{directory}/{CONFIG_NAME}"
    before = haproxy.parse_info(server.runtime_api("show info")).get("Pid")
    state = server.runtime_api("show servers state")
    try:
        server.write_file(f"{directory}/{STATE_NAME}", state)
        server.run_chain(["cp", "-f", config_path, f"{directory}/{PREVIOUS_NAME}"],
                         ["mv", "-f", f"{config_path}.new", config_path])
        server.run(docker.signal_container(inventory.haproxy_container, "HUP"))
        if not wait_for_new_worker(server, before):
            restored = restore_previous(server, inventory)
            raise ProxyError(
                f"{server.name}: HAProxy accepted the new config but did not start with it "
                f"within {RELOAD_TIMEOUT:g}s (a port or address it cannot bind?); the old "
                "workers keep running"
                + (" and the previous config is back in place" if restored else "")
                + f"; see `docker logs {inventory.haproxy_container}` on the server")
        server.write_file(f"{directory}/{RUNNING_NAME}", config_hash(wanted) + "\n")
    finally:
        # A stale state file would be applied at the next restart (after a reboot, say) and
        # could put the live slot in maint: it has done its job, or failed to, by now.
        server.run(["rm", "-f", f"{directory}/{STATE_NAME}", f"{config_path}.new"],
                   check=False)
    progress("HAProxy reloaded with the new config")


def wait_for_new_worker(server: Server, pid_before: str | None) -> bool:
    """True once a new worker answers; False at the deadline. While the master tries the new
    config the old worker pauses its listeners, the runtime API's too: no answer then is no
    failure yet."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        try:
            pid = haproxy.parse_info(server.runtime_api("show info")).get("Pid")
        except haproxy.RuntimeApiError:
            pid = pid_before
        if pid != pid_before:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def restore_previous(server: Server, inventory: Inventory) -> bool:
    """The kept config back in place; False when that failed too (the error says so)."""
    directory = config_dir(inventory)
    result = server.run(["mv", "-f", f"{directory}/{PREVIOUS_NAME}",
                         f"{directory}/{CONFIG_NAME}"], check=False)
    return result.ok


def down_server(server: Server, inventory: Inventory, progress: Progress) -> str:
    # By name (also what was started by hand under the kit's names), then by label.
    names = [inventory.haproxy_container, *(inventory.container_name(s) for s in SLOTS)]
    existing = sorted(docker.parse_inspect(
        server.run(docker.inspect_containers(*names), check=False).stdout))
    if existing:
        server.run(docker.remove(*existing), timeout=120)
    labelled = server.run(docker.list_app_containers(inventory.app)).stdout.split()
    if labelled:
        server.run(docker.remove(*labelled), timeout=120)
    targets = [*existing, *labelled]
    if targets:
        progress(f"removed {len(targets)} containers")
    removed_network = False
    if server.run(docker.network_inspect(inventory.network), check=False).ok:
        try:
            server.run(docker.network_remove(inventory.network))
            removed_network = True
        except RemoteCommandError as error:
            raise ProxyError(f"{server.name}: network {inventory.network} is still in use by "
                             f"containers the kit did not start: {error.stderr.strip()}") from error
    server.run(["rm", "-rf", f"/etc/slotswap/{inventory.app}"])
    parts = [f"{len(targets)} containers removed"]
    if removed_network:
        parts.append("network removed")
    return ", ".join(parts)
