"""HAProxy in front of the two slots: render its config, install it, keep it running.

`up` is idempotent: an unchanged server is left alone; a changed config is checked by
HAProxy itself, then applied by a reload of the master process (no connection dropped),
with the runtime state (which slot is live) carried over through a server-state file.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import math
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jinja2

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.scaffold import template_folders
from slotswap.https import install as tls
from slotswap.https.files import CertificateBundle
from slotswap.https.install import cert_path_in_haproxy
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import RemoteCommandError
from slotswap.server import carry_over, maintenance, platforms, registry_login
from slotswap.server.registry_login import LoginError, RegistryLogin, log_in, pull_hint

CONFIG_NAME = "haproxy.cfg"
STATE_NAME = "server-state"
# The config kept while a new one is tried: put back when HAProxy does not start with it.
PREVIOUS_NAME = f"{CONFIG_NAME}.prev"
# SHA-256 of the config HAProxy runs, written only once HAProxy was seen running with it:
# "unchanged" means the same as this, not merely the same as the file.
RUNNING_NAME = f"{CONFIG_NAME}.running-sha256"
RELOAD_TIMEOUT = 20.0
# Headers that tell an app who the client is or how it came (the scheme, the name, the
# port): frameworks believe them (Rack, Django, Spring, Express), so a client's own are
# removed (the example app's /headers shows each).
FORWARDING_HEADERS = (
    "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
    "X-Forwarded-Proto", "X-Real-IP", "X-Forwarded-Ssl", "X-Forwarded-Scheme",
    "X-Forwarded-Prefix", "Client-IP", "X-Client-IP", "True-Client-IP", "X-Cluster-Client-IP",
)
LABEL_SPEC = "slotswap.haproxy-spec"
Progress = Callable[[str], None]


class ProxyError(RuntimeError):
    pass


def config_dir(inventory: Inventory) -> str:
    return f"{inventory.config_dir}/haproxy"


def admin_dir(inventory: Inventory) -> str:
    """The admin socket's folder on the server: the deploy login's, mode 0700."""
    return f"{config_dir(inventory)}/admin"


# A unix socket's path must fit in sockaddr_un's sun_path (108 bytes with its NUL on Linux).
MAX_SOCKET_PATH_BYTES = 107


def admin_socket_path(inventory: Inventory) -> str:
    path = f"{admin_dir(inventory)}/{docker.HAPROXY_ADMIN_SOCKET_NAME}"
    if len(path.encode()) > MAX_SOCKET_PATH_BYTES:
        raise ProxyError(f"the admin socket's path {path} is longer than the "
                         f"{MAX_SOCKET_PATH_BYTES} bytes a unix socket's path may have")
    return path


@dataclass(frozen=True)
class Login:
    """The deploy login's numeric ids on a server: the admin socket belongs to them."""

    uid: int
    gid: int


def login_ids(server: ServerLike) -> Login:
    """Read once per server (with its home: Server.login_facts); a read-only query, also in
    dry runs."""
    facts = server.login_facts()
    return Login(facts.uid, facts.gid)


def render_config(inventory: Inventory, login: Login) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_folders(inventory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # a config file, not HTML; every value is validated on load
    )
    admin_socket = f"{docker.HAPROXY_ADMIN_DIR_INSIDE}/{docker.HAPROXY_ADMIN_SOCKET_NAME}"
    try:
        text = environment.get_template(f"{CONFIG_NAME}.j2").render(
            inventory_name=inventory.path.name,
            app=inventory.app,
            backend=inventory.app,
            slots=SLOTS,
            app_port=inventory.app_port,
            healthcheck_path=inventory.healthcheck.path,
            healthcheck_host=inventory.healthcheck.host,
            healthcheck_expect=expect_rule(inventory.healthcheck.status),
            check_interval=f"{round(inventory.healthcheck.interval * 1000)}ms",
            check_rise=inventory.healthcheck.rise,
            check_fall=inventory.healthcheck.fall,
            check_port=inventory.healthcheck.port,
            slot_addresses={slot: f"{docker.LOOPBACK}:{inventory.slot_port(slot)}"
                            for slot in SLOTS},
            check_ports={slot: inventory.slot_check_port(slot) for slot in SLOTS},
            fallback_names={slot: haproxy.fallback_name(slot) for slot in SLOTS},
            http_port=inventory.haproxy.http_port,
            admin_socket=admin_socket,
            admin_uid=login.uid,
            admin_gid=login.gid,
            worker_uid=docker.HAPROXY_WORKER_UID,
            worker_gid=docker.HAPROXY_WORKER_GID,
            state_file=f"{docker.HAPROXY_CONFIG_DIR_INSIDE}/{STATE_NAME}",
            forwarding_headers=FORWARDING_HEADERS,
            trusted_proxies=inventory.haproxy.trusted_proxies,
            maintenance_map=maintenance.map_path_in_haproxy(),
            maintenance_service=maintenance.service_path_in_haproxy(),
            maintenance_service_version=config_hash(maintenance.service_script())[:16],
            **https_values(inventory),
        )
    except jinja2.UndefinedError as error:
        hint = _OLD_TEMPLATE_HINT if "stats_port_inside" in str(error) else ""
        if "http_port_inside" in str(error) or "https_port_inside" in str(error):
            hint = _BRIDGED_TEMPLATE_HINT
        raise ProxyError(f"{CONFIG_NAME}.j2: {error}{hint}") from error
    if "127.0.0.11" in text:
        raise ProxyError(f"{CONFIG_NAME}.j2 resolves the slots through Docker's DNS "
                         f"(127.0.0.11){_BRIDGED_TEMPLATE_HINT}")
    if f"stats socket {admin_socket} " not in text:
        raise ProxyError(f"{CONFIG_NAME}.j2 has no `stats socket {{{{ admin_socket }}}} ...` "
                         f"line, which the kit needs{_OLD_TEMPLATE_HINT}")
    return text


_OLD_TEMPLATE_HINT = (
    "; a template copied from an older slotswap publishes the runtime API on a TCP port: "
    "take the global section of the kit's templates/haproxy.cfg.j2 (its admin socket lines)"
)


# Part of the container spec: the way the runtime API is reached and the network HAProxy
# runs on. Containers made when the API was a TCP port, or on the app's bridge network, get a
# new spec, so `fab up` replaces them.
ADMIN_TRANSPORT = "unix-socket"
NETWORK_LAYOUT = "host-network"
# The new HAProxy's name while both run, during a hand-over.
NEXT_SUFFIX = "-next"


_BRIDGED_TEMPLATE_HINT = (
    "; a template copied from an older slotswap runs HAProxy on the app's Docker network: "
    "take the kit's templates/haproxy.cfg.j2 `bind` lines ({{ http_port }}, {{ https_port }}) "
    "and `server` lines ({{ slot_addresses[slot] }}), without the `resolvers` section"
)


def expect_rule(codes: tuple[int, ...]) -> str:
    """`http-check expect` for the healthy answers: one status, or a pattern of several."""
    if len(codes) == 1:
        return f"status {codes[0]}"
    return "rstatus ^(" + "|".join(str(code) for code in sorted(set(codes))) + ")$"


def redirect_names(names: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """Pure: the `-m <match> <patterns>` that recognise https.names in a lowercased Host
    (its port cut off): the names themselves, and a regular expression per wildcard (one
    label of letters, digits and hyphens: nothing that could end a URL's authority)."""
    exact = [name for name in names if not name.startswith("*.")]
    # A validated name has only letters, digits, hyphens and dots: each dot made literal.
    wildcards = ["^[a-z0-9-]+" + name[1:].replace(".", "[.]") + "$"
                 for name in names if name.startswith("*.")]
    return [(match, patterns) for match, patterns in (("str", exact), ("reg", wildcards))
            if patterns]


def https_values(inventory: Inventory) -> dict[str, object]:
    """The template's HTTPS settings; all off without an https section."""
    https = inventory.https
    if https is None:
        return {"https": False, "https_port": None, "cert_path": None,
                "redirect": False, "redirect_names": [], "redirect_fallback": None,
                "hsts": 0, "acme_thumbprint": None}
    thumbprint = None
    if https.acme is not None:
        from slotswap.https.acme import load_account_key
        from slotswap.https.acme import thumbprint as key_thumbprint

        thumbprint = key_thumbprint(load_account_key(https.acme))
    return {"https": True, "https_port": https.port,
            "cert_path": cert_path_in_haproxy(), "redirect": https.redirect,
            "redirect_names": redirect_names(https.names),
            "redirect_fallback": next(
                (name for name in https.names if not name.startswith("*.")), None),
            "hsts": https.hsts, "acme_thumbprint": thumbprint}


def container_spec(inventory: Inventory) -> str:
    """What the HAProxy container was created with; a change needs a new container. The
    config folder it mounts counts too when it is not root's (remote_dir, a login's home;
    left out for root's, so that containers made before remote_dir existed are kept)."""
    # The ports are the config's (`bind` lines, applied by a reload), not the container's.
    spec = f"{inventory.haproxy.image}|{NETWORK_LAYOUT}|{ADMIN_TRANSPORT}"
    if inventory.kit_dir is not None:
        spec += f"|{config_dir(inventory)}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def haproxy_run_command(inventory: Inventory, name: str | None = None,
                        instance: str | None = None, *, create_only: bool = False) -> list[str]:
    """`docker run` of HAProxy's container (under `name`, with `instance` in its environment),
    or with create_only its `docker create`."""
    build = docker.create_haproxy if create_only else docker.run_haproxy
    return build(
        container=name or inventory.haproxy_container, image_ref=inventory.haproxy.image,
        app=inventory.app, config_dir=config_dir(inventory), admin_dir=admin_dir(inventory),
        labels={LABEL_SPEC: container_spec(inventory)}, instance=instance,
    )


def next_container(inventory: Inventory) -> str:
    return f"{inventory.haproxy_container}{NEXT_SUFFIX}"


def on_host_network(container: docker.ContainerInfo) -> bool:
    """Pure: the container shares the server's network (`docker run --network host`)."""
    return set(container.addresses) == {"host"}


def ensure_image(server: ServerLike, image_ref: str, progress: Progress, *,
                 refresh: bool = False, login: RegistryLogin | None = None,
                 allow_stale: bool = False) -> str | None:
    """Make sure image_ref is on the server; return its image ID when it was pulled (what
    the registry names image_ref now), else None. With refresh, pull even when a copy is
    there (a tag pushed again must not leave servers on its old content). A copy already
    there that cannot be refreshed (the registry unreachable, the login refused) may be an
    older push of the tag: that is this server's failure, unless `allow_stale` (then a
    warning). With `login`, the server logs in to that registry before it pulls from it."""
    if not refresh and server.run(docker.image_id(image_ref), check=False).ok:
        return None

    def has_copy() -> bool:  # asked only when the pull failed: the question is then stale
        return refresh and server.run(docker.image_id(image_ref), check=False).ok

    try:
        if login is not None and login.covers(image_ref):
            log_in(server, login, progress)
    except LoginError as error:
        return refuse_stale(server, str(error), has_copy(), allow_stale, progress)
    progress(f"pulling {image_ref}")
    result = server.run(docker.pull_and_id(image_ref), check=False, timeout=900)
    if result.ok:
        return result.stdout.strip() or None
    reason = (result.stderr.strip().splitlines() or ["no error output"])[-1]
    return refuse_stale(server, f"cannot pull {image_ref}: {reason}"
                        f"{pull_hint(result.stderr, image_ref)}", has_copy(), allow_stale,
                        progress)


def refuse_stale(server: ServerLike, why: str, present: bool, allow_stale: bool,
                 progress: Progress) -> None:
    """The server has a copy of image_ref that could not be refreshed (`why`): deployed only
    with --allow-stale; else the server's failure, before anything moves anywhere."""
    why = why.removeprefix(f"{server.name}: ")
    if not present:
        raise ProxyError(f"{server.name}: {why}")
    if allow_stale:
        progress(f"WARNING: {why}; deploying the copy on the server, which may be an older "
                 "push of that tag (--allow-stale)")
        return None
    raise StaleImageError(f"{server.name}: {why}; its copy of that tag may be an older push, "
                          "so it is not deployed (--allow-stale deploys it anyway)")


class StaleImageError(ProxyError):
    """The server has the tag, but could not make sure it is the registry's (the registry could
    not be reached, or refused the login), and --allow-stale was not given."""


def log_in_to_registry(server: ServerLike, inventory: Inventory, progress: Progress) -> None:
    """With `registry` in the inventory, `up` logs the server in whatever it pulls itself, so
    that the first deploy's pull of the app's image finds the login there."""
    login = registry_login.resolve(inventory, os.environ)
    if login is None:
        return
    try:
        log_in(server, login, progress)
    except LoginError as error:
        raise ProxyError(str(error)) from error


def ensure_network(server: ServerLike, inventory: Inventory, progress: Progress) -> bool:
    if server.run(docker.network_inspect(inventory.network), check=False).ok:
        return False
    server.run(docker.network_create(inventory.network, inventory.app))
    progress(f"created network {inventory.network}")
    return True


def validate_config_on_server(server: ServerLike, inventory: Inventory, filename: str) -> None:
    inventory = server.with_folders(inventory)
    result = server.run(docker.check_haproxy_config(
        image_ref=inventory.haproxy.image, config_dir=config_dir(inventory), filename=filename,
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


def up_server(server: ServerLike, inventory: Inventory, progress: Progress,
              certificate: CertificateBundle | None = None) -> str:
    """Make the server ready for deploys; return what was done. With HTTPS, `certificate` is
    put in place first (the config's `crt` must load): the operator's files, or with ACME a
    stand-in where the server has none yet (`up` then has the real one issued)."""
    inventory = server.with_folders(inventory)
    directory = config_dir(inventory)
    wanted = render_config(inventory, login_ids(server))
    changes = []
    if ensure_network(server, inventory, progress):
        changes.append("network created")
    log_in_to_registry(server, inventory, progress)
    ensure_image(server, inventory.haproxy.image, progress)
    name = inventory.haproxy_container
    if finish_interrupted_handover(server, inventory, progress):
        changes.append("interrupted hand-over finished")
    container = docker.parse_inspect(
        server.run(docker.inspect_containers(name), check=False).stdout).get(name)
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
    directory = config_dir(inventory)
    config_path = f"{directory}/{CONFIG_NAME}"
    name = inventory.haproxy_container
    # Image, admin socket, network or config folder changed: only a new container can have
    # them. From a running HAProxy on the server's network, a new one takes over with no gap.
    replace = (container is not None
               and (carried or container.labels.get(LABEL_SPEC) != container_spec(inventory)))
    hand_over = replace and container is not None and container.running and on_host_network(
        container)
    make_admin_dir(server, inventory)
    # The maintenance map must exist for HAProxy to start; its content (on or off) stays.
    server.run_chain(["mkdir", "-p", directory],
                     ["touch", maintenance.map_path_on_server(directory)])
    # Before the config is checked, which loads it; a new one changes the config (its
    # version is in it), so HAProxy loads it by the reload below.
    service = maintenance.service_path_on_server(directory)
    if server.read_file(service) != maintenance.service_script():
        server.write_file(service, maintenance.service_script())
    current = server.read_file(config_path)
    if inventory.https is not None and certificate is not None:
        serving_tls = (container is not None and container.running and not replace
                       and current is not None
                       and cert_path_in_haproxy() in current)
        replace_cert = inventory.https.files is not None or tls.installed_fingerprint(
            server, directory) is None
        if replace_cert and tls.install(server, inventory, directory, certificate, progress,
                                        running=serving_tls):
            changes.append("certificate installed")
    reload = container is not None and container.running and not replace
    config_changed = not runs_config(current, server.read_file(f"{directory}/{RUNNING_NAME}"),
                                     wanted)
    installed = False
    if config_changed or replace:
        server.write_file(f"{config_path}.new", wanted)
        # Before the old container goes: a config HAProxy rejects leaves it serving. Checked
        # by the image that will run it.
        try:
            validate_config_on_server(server, inventory, f"{CONFIG_NAME}.new")
            if reload or hand_over:
                refuse_unbindable(server, wanted, server_addresses(server))
        except ProxyError:
            server.run(["rm", "-f", f"{config_path}.new"], check=False)
            raise
        if reload or hand_over:
            # Before HAProxy changes: the running one reaches such slots already, and the
            # server-state file carries their addresses over.
            reach_unpublished_slots(server, inventory, progress)
        if reload:
            reload_with_new_config(server, inventory, progress, wanted)
            changes.append("config reloaded")
        else:
            keep_previous = [["cp", "-f", config_path, f"{directory}/{PREVIOUS_NAME}"]
                             if current is not None else ["true"]]
            server.run_chain(*keep_previous,
                             ["mv", "-f", f"{config_path}.new", config_path])
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
    elif container is None:
        server.run(haproxy_run_command(inventory))
        changes.append("HAProxy started")
    elif not container.running:
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
    platform, version = docker.parse_engine(
        server.run(docker.server_engine(), check=False).stdout)
    if platform:
        platforms.observed[server.name] = platform
    risk = docker.direct_access_risk(version or "")
    if risk:
        progress(f"WARNING: Docker {version}: {risk}; upgrade to Docker 28.3.3 or newer (see "
                 "the README's server checklist)")
    progress(f"HAProxy {info.get('Version', '?')} answers on {admin_socket_path(inventory)}")
    return ", ".join(changes) if changes else "unchanged"


def server_addresses(server: ServerLike) -> set[str]:
    """The server's own addresses, which HAProxy on its network can bind; empty when the
    server cannot say (then no address is refused here)."""
    result = server.run(["hostname", "-I"], check=False, timeout=30)
    return set(result.stdout.split()) if result.ok else set()


def hand_over_to_new_haproxy(server: ServerLike, inventory: Inventory, progress: Progress,
                             old: docker.ContainerInfo, *, restore: bool) -> None:
    """Replace a running HAProxy on the server's network by one of the new image with no
    connection refused: the new one listens on the same ports (SO_REUSEPORT) before the old
    one stops listening; the old one then finishes its open connections (soft stop); the
    slots' runtime state goes over through the server-state file.

    Until the old HAProxy is told to stop, any failure (or an interrupt) removes the new
    container and leaves the old one serving, with its config file put back (`restore`) and
    its admin socket made anew by a reload. After that, the hand-over is finished."""
    inventory = server.with_folders(inventory)
    directory = config_dir(inventory)
    name, temporary = inventory.haproxy_container, next_container(inventory)
    progress(f"HAProxy's container changes ({old.image} -> {inventory.haproxy.image}): "
             f"starting {temporary} beside {name}")
    warn_without_request_migration(server, progress)
    instance = secrets.token_hex(8)
    state = server.runtime_api("show servers state")
    try:
        server.write_file(f"{directory}/{STATE_NAME}", state)
        server.run(docker.remove(temporary), check=False, timeout=60)
        server.run(haproxy_run_command(inventory, temporary, instance), timeout=60)
        # The new master makes the login's admin socket anew: the open session (or the
        # relayed socket, in a carry-over) is the old one's.
        server.use_admin_socket(None)
        wait_for_new_haproxy(server, temporary, instance)
    except BaseException as error:
        server.close_runtime_api()
        try:
            back_to_old_haproxy(server, inventory, temporary, restore=restore)
        except Exception as cleanup:
            progress(f"could not undo the hand-over: {cleanup}")
        if isinstance(error, ProxyError | haproxy.RuntimeApiError | RemoteCommandError):
            raise ProxyError(f"{server.name}: the new HAProxy ({inventory.haproxy.image}) "
                             f"did not take over ({one_line(error)}); {name} keeps serving "
                             f"with its image {old.image}; see `docker logs {temporary}` "
                             "on the server") from error
        raise
    finally:
        server.run(["rm", "-f", f"{directory}/{STATE_NAME}"], check=False)
    progress(f"{temporary} accepts connections; soft stop of {name} (it finishes its open "
             f"connections, up to {soft_stop_seconds(inventory)}s)")
    # Docker must not start the old one again when it exits.
    server.run_chain(docker.no_restart(name), docker.signal_container(name, "USR1"))
    seconds = soft_stop_seconds(inventory)
    waited = server.run(docker.wait_exit(name, seconds), check=False, timeout=seconds + 30)
    if not waited.ok:
        progress(f"{name} still had connections after {seconds}s: removed anyway")
    server.run_chain(docker.remove(name), docker.rename(temporary, name), timeout=60)
    progress(f"{name} now runs {inventory.haproxy.image}")


MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def warn_without_request_migration(server: ServerLike, progress: Progress) -> None:
    """When the old HAProxy closes its listeners, connections still waiting in their accept
    queue are reset unless the kernel moves them to the new HAProxy's (Linux 5.14+,
    net.ipv4.tcp_migrate_req=1). The kit uses no sudo: it says so, the operator sets it."""
    setting = server.run(["cat", MIGRATE_REQ], check=False, timeout=30)
    if setting.ok and setting.stdout.strip() == "1":
        return
    why = ("the kernel is older than 5.14" if not setting.ok
           else "net.ipv4.tcp_migrate_req is 0")
    progress(f"WARNING: {why}: a connection that arrives in the instant the old HAProxy "
             "stops listening may be reset; set net.ipv4.tcp_migrate_req=1 on the server "
             "(see the README's server checklist)")


def soft_stop_seconds(inventory: Inventory) -> int:
    """How long the old HAProxy may take to finish its open connections after its soft stop:
    as long as an old slot may take to drain (timeouts.drain), whole seconds."""
    return max(1, math.ceil(inventory.timeouts.drain))


def one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def wait_for_new_haproxy(server: ServerLike, container: str, instance: str,
                         timeout: float = RELOAD_TIMEOUT) -> None:
    """Until the admin socket answers from the new container's HAProxy (its `instance` in
    its environment), with its frontends open (its listeners bound); ProxyError at the
    deadline or when the container exits."""
    deadline = time.monotonic() + timeout
    while True:
        server.close_runtime_api()
        try:
            answer = server.runtime_api(f"show env {docker.HAPROXY_INSTANCE_VARIABLE}")
            if (answer.strip() == f"{docker.HAPROXY_INSTANCE_VARIABLE}={instance}"
                    and frontend_open(server.runtime_api("show stat"))):
                return
        except haproxy.RuntimeApiError:
            pass
        found = docker.parse_inspect(
            server.run(docker.inspect_containers(container), check=False).stdout).get(container)
        if found is None or not found.running:
            raise ProxyError(f"{container} stopped while starting")
        if time.monotonic() > deadline:
            raise ProxyError(f"{container} did not answer on the admin socket with its "
                             f"listeners open within {timeout:g}s")
        time.sleep(0.2)


def frontend_open(show_stat: str) -> bool:
    """Pure: every frontend in `show stat` is OPEN (its listeners accept connections)."""
    statuses = [row.get("status", "") for row in haproxy.parse_stat_rows(show_stat)
                if row.get("svname") == "FRONTEND"]
    return bool(statuses) and all(status == "OPEN" for status in statuses)


def back_to_old_haproxy(server: ServerLike, inventory: Inventory, temporary: str, *,
                        restore: bool) -> None:
    """Undo a hand-over that did not finish: the new container goes; the old HAProxy, which
    served all along, gets its config file back and a reload, which makes its admin socket
    again (the new master had replaced it)."""
    inventory = server.with_folders(inventory)
    server.run(docker.remove(temporary), check=False, timeout=60)
    if restore:
        restore_previous(server, inventory)
    server.run(docker.signal_container(inventory.haproxy_container, "USR2"), check=False)
    server.close_runtime_api()


def finish_interrupted_handover(server: ServerLike, inventory: Inventory,
                                progress: Progress) -> bool:
    """A hand-over cut short (a lost connection) may leave the new container under its
    temporary name: alone, it is the HAProxy (renamed); beside the old one, it goes, and the
    old one gets its admin socket back (a reload)."""
    name, temporary = inventory.haproxy_container, next_container(inventory)
    found = docker.parse_inspect(
        server.run(docker.inspect_containers(name, temporary), check=False).stdout)
    if temporary not in found:
        return False
    if name in found and found[name].running:
        progress(f"removing {temporary}, left by an interrupted hand-over; {name} serves")
        back_to_old_haproxy(server, inventory, temporary, restore=False)
    else:
        progress(f"{temporary}, left by an interrupted hand-over, becomes {name}")
        server.run_chain(docker.remove(name), docker.rename(temporary, name), timeout=60)
    return True


def migrate_to_host_network(server: ServerLike, inventory: Inventory, progress: Progress,
                            old: docker.ContainerInfo) -> None:
    """From an HAProxy made by an older slotswap (the app's network, ports published by
    Docker): Docker's proxy holds the public port without SO_REUSEPORT, so the new HAProxy
    can only listen once the old container is gone. One command on the server removes it
    and starts the new one; the slots' state goes over through the server-state file."""
    inventory = server.with_folders(inventory)
    directory = config_dir(inventory)
    if on_host_network(old):  # stopped: nothing to hand over
        progress(f"HAProxy's container changed: recreating {old.name}, which was {old.status}")
    else:
        progress(f"moving HAProxy to the server's network: recreating {old.name} "
                 "(a short interruption, this once)")
    if old.running:
        with contextlib.suppress(haproxy.RuntimeApiError):
            server.write_file(f"{directory}/{STATE_NAME}",
                              server.runtime_api("show servers state"))
    server.use_admin_socket(None)  # the new HAProxy's is the login's own
    # Created beforehand, so that the interruption is only the old one's removal and the
    # new one's start, in one round trip. Left under its temporary name if that fails: the
    # next `up` makes it the HAProxy.
    temporary = next_container(inventory)
    server.run(docker.remove(temporary), check=False, timeout=60)
    server.run(haproxy_run_command(inventory, temporary, create_only=True), timeout=60)
    try:
        server.run_chain(docker.remove(old.name), docker.start(temporary),
                         docker.rename(temporary, inventory.haproxy_container), timeout=120)
    finally:
        server.run(["rm", "-f", f"{directory}/{STATE_NAME}"], check=False)


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
    name = inventory.haproxy_container
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


def reload_with_new_config(server: ServerLike, inventory: Inventory, progress: Progress,
                           wanted: str) -> None:
    """Swap the config file in and reload HAProxy's master: workers hand over, no connection
    is dropped, and the slots keep their runtime state through the server-state file. A
    config that passes `haproxy -c` can still fail to start (a port it cannot bind): then
    the old workers keep running, and the previous file goes back in place, so that the file
    on disk is always the one that runs."""
    inventory = server.with_folders(inventory)
    directory = config_dir(inventory)
    config_path = f"{directory}/{CONFIG_NAME}"
    warn_without_request_migration(server, progress)
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


def wait_for_new_worker(server: ServerLike, pid_before: str | None) -> bool:
    """True once a new worker answers; False at the deadline. While the master tries the new
    config the old worker pauses its listeners, the runtime API's too: no answer then is no
    failure yet. An open admin session keeps talking to the old worker (and keeps it
    alive), so each try asks over a new one."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        server.close_runtime_api()
        try:
            pid = haproxy.parse_info(server.runtime_api("show info")).get("Pid")
        except haproxy.RuntimeApiError:
            pid = pid_before
        if pid != pid_before:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def restore_previous(server: ServerLike, inventory: Inventory) -> bool:
    """The kept config back in place; False when that failed too (the error says so)."""
    inventory = server.with_folders(inventory)
    directory = config_dir(inventory)
    result = server.run(["mv", "-f", f"{directory}/{PREVIOUS_NAME}",
                         f"{directory}/{CONFIG_NAME}"], check=False)
    return result.ok


def down_server(server: ServerLike, inventory: Inventory, progress: Progress) -> str:
    inventory = server.with_folders(inventory)
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
    server.run(["rm", "-rf", inventory.config_dir])
    parts = [f"{len(targets)} containers removed"]
    if removed_network:
        parts.append("network removed")
    return ", ".join(parts)
