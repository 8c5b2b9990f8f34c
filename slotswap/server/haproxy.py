"""HAProxy in front of the two slots: its config installed and HAProxy kept running with it
(`up`; on a worker-only host, `web: false`, the app's network alone), what runs read for
`status`, and all of it taken down (`down`).

`up` is idempotent: an unchanged server is left alone; a changed config is checked by
HAProxy itself, then applied by a reload of the master process (no connection dropped),
with the runtime state (which slot is live) carried over through the server-state file,
which the kit keeps current (slotswap.server.haproxy_state) for any restart of HAProxy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from slotswap.commands import docker, docker_engine
from slotswap.commands import runtime_api as haproxy
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    CONFIG_NAME,
    NEW_CONFIG_NAME,
    PREVIOUS_NAME,
    PROXY_CONTAINER,
    RUNNING_NAME,
    ProxyError,
    admin_dir,
    admin_socket_path,
    cert_path_in_haproxy,
    haproxy_dir,
    map_path_on_server,
    require_own_haproxy,
    service_path_on_server,
    serving_haproxy,
)
from slotswap.https import install as tls
from slotswap.https.files import CertificateBundle
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import RemoteCommandError
from slotswap.server import carry_over, maintenance, platforms, web_removal
from slotswap.server.half_moved import refuse_moved_back
from slotswap.server.haproxy_config import (
    config_hash,
    login_ids,
    render_config,
    unbindable_addresses,
)
from slotswap.server.haproxy_handover import (
    finish_interrupted_handover,
    hand_over_to_new_haproxy,
    haproxy_run_command,
    keep_config_that_ran_command,
    migrate_to_host_network,
    on_host_network,
    reload_with_new_config,
    restore_previous,
)
from slotswap.server.haproxy_plan import plan_haproxy
from slotswap.server.haproxy_state import save_slot_state
from slotswap.server.images import ensure_image, log_in_to_registry
from slotswap.server.role_status import read_role_containers, role_stops

Progress = Callable[[str], None]


def ensure_network(server: ServerLike, inventory: Inventory, progress: Progress) -> bool:
    if server.run(docker.network_inspect(inventory.network), check=False).ok:
        return False
    server.run(docker.network_create(inventory.network, inventory.app))
    progress(f"created network {inventory.network}")
    return True


def validate_config_on_server(server: ServerLike, inventory: Inventory, filename: str) -> None:
    inventory = server.with_folders(inventory)
    result = server.run(docker.check_haproxy_config(
        image_ref=inventory.haproxy.image, config_dir=haproxy_dir(inventory), filename=filename,
    ), check=False, timeout=60)
    if not result.ok:
        output = (result.stdout + result.stderr).strip()
        raise ProxyError(f"{server.name}: HAProxy rejects the new config, the running one "
                         f"stays:\n{output}")


def wait_for_runtime_api(server: ServerLike, timeout: float = 30.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return haproxy.parse_info(server.runtime_api("show info"))
        except haproxy.RuntimeApiError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def refuse_unbindable(server: ServerLike, config: str, addresses: set[str]) -> None:
    """HAProxy runs on the server's network: it can bind the server's addresses (none known:
    nothing is refused here, the reload's own failure is handled)."""
    unbindable = unbindable_addresses(config, addresses) if addresses else []
    if unbindable:
        raise ProxyError(f"{server.name}: the new config binds {', '.join(unbindable)}, which "
                         f"the server does not have (it has {', '.join(sorted(addresses))} "
                         "and 0.0.0.0); the running config stays")



def up_server(server: ServerLike, inventory: Inventory, progress: Progress,
              certificate: CertificateBundle | None = None) -> str:
    """Make the server ready for deploys; return what was done. With HTTPS, `certificate` is
    put in place first (the config's `crt` must load): the operator's files, or with ACME a
    stand-in where the server has none yet (`up` then has the real one issued). Today's
    layout's (the app's own HAProxy): with haproxy.shared, the shared up's job."""
    require_own_haproxy(inventory, "up_server")
    inventory = server.with_folders(inventory)
    directory = haproxy_dir(inventory)
    wanted = render_config(inventory, login_ids(server))
    changes = []
    if ensure_network(server, inventory, progress):
        changes.append("network created")
    log_in_to_registry(server, inventory, progress)
    ensure_image(server, inventory.haproxy.image, progress)
    name = inventory.haproxy_container
    if finish_interrupted_handover(server, inventory, progress):
        changes.append("interrupted hand-over finished")
    found = docker.parse_inspect(
        server.run(docker.inspect_containers(name, PROXY_CONTAINER), check=False).stdout)
    refuse_moved_back(server, inventory, found)
    container = found.get(name)
    with carry_over.carried_over(server, inventory, container, progress,
                                 haproxy_dir=directory, admin_dir=admin_dir(inventory)
                                 ) as previous:
        return set_up_haproxy(server, inventory, progress, certificate, container, wanted,
                              changes, carried=previous is not None)


def set_up_haproxy(server: ServerLike, inventory: Inventory, progress: Progress,
                   certificate: CertificateBundle | None,
                   container: docker.ContainerInfo | None, wanted: str, changes: list[str], *,
                   carried: bool) -> str:
    """up_server once the network and the image are there: HAProxy's config installed and
    HAProxy running with it, replaced if need be (`carried`: it runs from another login's
    folders, see slotswap.server.carry_over)."""
    directory = haproxy_dir(inventory)
    config_path = f"{directory}/{CONFIG_NAME}"
    name = inventory.haproxy_container
    make_admin_dir(server, inventory)
    # The maintenance map must exist for HAProxy to start; its content (on or off) stays.
    server.run_chain(["mkdir", "-p", directory],
                     ["touch", map_path_on_server(directory)])
    # Before the config is checked, which loads it; a new one changes the config (its
    # version is in it), so HAProxy loads it by the reload below.
    service = service_path_on_server(directory)
    if server.read_file(service) != maintenance.service_script():
        server.write_file(service, maintenance.service_script())
    current = server.read_file(config_path)
    # Image, admin socket, network or config folder changed: only a new container can have
    # them. From a running HAProxy on the server's network, a new one takes over with no gap.
    plan = plan_haproxy(container, inventory, carried=carried, current=current,
                        running=server.read_file(f"{directory}/{RUNNING_NAME}"), wanted=wanted)
    replace, hand_over, reload = plan.replace, plan.hand_over, plan.reload
    config_changed = plan.config_changed
    if inventory.https is not None and certificate is not None:
        serving_tls = reload and current is not None and cert_path_in_haproxy() in current
        replace_cert = inventory.https.files is not None or tls.installed_fingerprint(
            server, directory) is None
        if replace_cert and tls.install(server, inventory, directory, certificate, progress,
                                        running=serving_tls):
            changes.append("certificate installed")
    installed = False
    if plan.new_config:
        server.write_file(f"{directory}/{NEW_CONFIG_NAME}", wanted)
        # Before the old container goes: a config HAProxy rejects leaves it serving. Checked
        # by the image that will run it.
        try:
            validate_config_on_server(server, inventory, NEW_CONFIG_NAME)
            if reload or hand_over:
                refuse_unbindable(server, wanted, server_addresses(server))
        except ProxyError:
            server.run(["rm", "-f", f"{directory}/{NEW_CONFIG_NAME}"], check=False)
            raise
        if reload or hand_over:
            # Before HAProxy changes: the running one reaches such slots already, and the
            # server-state file carries their addresses over.
            reach_unpublished_slots(server, inventory, progress)
        if reload:
            reload_with_new_config(server, inventory, progress, wanted)
            changes.append("config reloaded")
        else:
            server.run_chain(keep_config_that_ran_command(server, directory),
                             ["mv", "-f", f"{directory}/{NEW_CONFIG_NAME}", config_path])
            installed = True
            if config_changed:
                changes.append("config written")
    if hand_over:
        assert container is not None
        hand_over_to_new_haproxy(server, inventory, progress, container,
                                 restore=current is not None and installed)
        server.write_file(f"{directory}/{RUNNING_NAME}", config_hash(wanted) + "\n")
        changes.insert(0, f"HAProxy replaced ({container.image} -> {inventory.haproxy.image})"
                       if container.image != inventory.haproxy.image else "HAProxy replaced")
        container = docker.parse_inspect(
            server.run(docker.inspect_containers(name), check=False).stdout).get(name)
    elif replace:
        assert container is not None
        migrate_to_host_network(server, inventory, progress, container)
        changes.insert(0, "HAProxy recreated" if on_host_network(container)
                       else "HAProxy recreated on the server's network")
        container = None
        installed = True
    elif plan.start == "run":
        server.run(haproxy_run_command(inventory))
        changes.append("HAProxy started")
    elif plan.start == "start":
        server.run(docker.start(name))
        changes.append("HAProxy restarted")
    if not hand_over and (installed or container is None or not container.running):
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
    if config_changed or replace or installed:
        # HAProxy runs the new config: the copy kept to put back has done its job.
        server.run(["rm", "-f", f"{directory}/{PREVIOUS_NAME}"], check=False)
    # First thing once HAProxy answers: after a move or a restart, such slots get no traffic
    # until then.
    if reach_unpublished_slots(server, inventory, progress):
        changes.append("slots reached on the app's network until the next deploy")
    # Where a restarted HAProxy starts from (a server set up by an older slotswap has none).
    save_slot_state(server, inventory)
    version = observe_engine(server)
    risk = docker_engine.direct_access_risk(version or "")
    if risk:
        progress(f"WARNING: Docker {version}: {risk}; upgrade to Docker 28.3.3 or newer (see "
                 "the README's server checklist)")
    progress(f"HAProxy {info.get('Version', '?')} answers on {admin_socket_path(inventory)}")
    return ", ".join(changes) if changes else "unchanged"


def observe_engine(server: ServerLike) -> str | None:
    """The server's Docker Engine version; its platform noted for `build`
    (slotswap.server.platforms)."""
    platform, version = docker_engine.parse_engine(
        server.run(docker_engine.server_engine(), check=False).stdout)
    if platform:
        platforms.observed[server.name] = platform
    return version


def up_worker_only(server: ServerLike, inventory: Inventory, progress: Progress) -> str:
    """`up` on a worker-only host (`web: false`): the app's network, which its role
    containers join, and nothing of the web's: no HAProxy, no config, no certificate. A
    host that ran the web before has its HAProxy and slots taken off (web_removal; today's
    layout's: with haproxy.shared, the shared up's job)."""
    require_own_haproxy(inventory, "up on a worker-only host")
    inventory = server.with_folders(inventory)
    created = ensure_network(server, inventory, progress)
    observe_engine(server)  # the image runs here too: its platform counts for `build`
    found = web_removal.web_containers_on(server, inventory)
    if found:
        progress(f"web: false, and the web's containers are here "
                 f"({web_removal.describe_removal(found)}): HAProxy soft-stops (its open "
                 "connections finish), the slots get their stop timeout, then they go")
        for step in web_removal.removal_steps(inventory, found):
            server.run(step.argv, check=step.check, timeout=step.deadline)
    done = [*(["HAProxy and web slots removed"] if found else []),
            *(["network created"] if created else [])]
    return (", ".join(done) or "unchanged") + " (worker-only: no HAProxy)"


def server_addresses(server: ServerLike) -> set[str]:
    """The server's own addresses, which HAProxy on its network can bind; empty when the
    server cannot say (then no address is refused here)."""
    result = server.run(["hostname", "-I"], check=False, timeout=30)
    return set(result.stdout.split()) if result.ok else set()



def reach_unpublished_slots(server: ServerLike, inventory: Inventory,
                            progress: Progress) -> list[str]:
    """Running slots whose container is not published on the loopback ports today's
    inventory gives them (made by an earlier slotswap, or before `haproxy.slot_ports` or
    `healthcheck.port` changed): HAProxy is pointed at them on the app's network, through
    the runtime API, until a deploy replaces them (a restart of HAProxy forgets such an
    address; the next `up` sets it again). Returns the slots it pointed anew."""
    names = [inventory.container_name(slot) for slot in SLOTS]
    found = docker.parse_inspect(
        server.run(docker.inspect_containers(*names), check=False).stdout)
    states = haproxy.parse_servers_state(
        server.runtime_api(haproxy.command_show_servers_state(inventory.app)))
    pointed = []
    for slot in SLOTS:
        container = found.get(inventory.container_name(slot))
        if container is None or not container.running:
            continue
        if set(inventory.slot_published_ports(slot)) <= set(container.loopback_ports):
            continue  # HAProxy reaches it where the config says
        address = container.addresses.get(inventory.network)
        if not address or (slot in states and states[slot].resolved_address == address):
            continue
        server.runtime_api(haproxy.command_set_address(
            inventory.app, slot, address, inventory.app_port,
            inventory.healthcheck.port or inventory.app_port))
        progress(f"{slot} ({container.version}) reached at {address}:{inventory.app_port} "
                 "on the app's network until the next deploy")
        pointed.append(slot)
    return pointed


def running_haproxy(server: ServerLike, inventory: Inventory) -> str:
    """HAProxy's image on the server and the version that answers, for `status`: what an
    upgrade changes. "?" for what cannot be read."""
    name = serving_haproxy(inventory)
    found = docker.parse_inspect(
        server.run(docker.inspect_containers(name), check=False).stdout).get(name)
    image = found.image if found is not None else "?"
    try:
        version = haproxy.parse_info(server.runtime_api("show info")).get("Version", "?")
    except haproxy.RuntimeApiError:
        version = "?"
    return f"{image} (HAProxy {version})"


def make_admin_dir(server: ServerLike, inventory: Inventory) -> None:
    """The admin socket's folder, the login's own and closed to everyone else (0700). HAProxy
    creates the socket in it (mode 0600, owned by the login: see the template)."""
    inventory = server.with_folders(inventory)
    directory = admin_dir(inventory)
    server.run_chain(["mkdir", "-p", "-m", "700", directory], ["chmod", "700", directory])


def remove_app_containers(server: ServerLike, inventory: Inventory,
                          names: list[str]) -> list[str]:
    """The containers of `names` (also what was started by hand under the kit's names), then
    every container labelled as the app's, removed; what was removed."""
    existing = sorted(docker.parse_inspect(
        server.run(docker.inspect_containers(*names), check=False).stdout))
    if existing:
        server.run(docker.remove(*existing), timeout=120)
    labelled = server.run(docker.list_app_containers(inventory.app)).stdout.split()
    if labelled:
        server.run(docker.remove(*labelled), timeout=120)
    return [*existing, *labelled]


def down_server(server: ServerLike, inventory: Inventory, progress: Progress) -> str:
    """Everything of the app on the server but its state folder (the history): HAProxy, the
    slots, the role containers (the running ones first stopped with their role's stop
    signal and stop timeout, so that a job in progress finishes), the network and the
    config folder with every env file (the slots' and the roles'). Today's layout's: with
    haproxy.shared, the shared down's job (the shared HAProxy is not this app's to remove)."""
    require_own_haproxy(inventory, "down_server")
    inventory = server.with_folders(inventory)
    for stop in role_stops(inventory, read_role_containers(server, inventory)):
        progress(f"stopping the {stop.role} containers: {stop.time_to_finish}")
        server.run(stop.argv, timeout=stop.deadline)
    targets = remove_app_containers(
        server, inventory, [inventory.haproxy_container,
                            *(inventory.container_name(s) for s in SLOTS)])
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
    server.run(["rm", "-rf", inventory.config_dir])
    parts = [f"{len(targets)} containers removed"]
    if removed_network:
        parts.append("network removed")
    return ", ".join(parts)
