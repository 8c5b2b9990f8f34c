"""HAProxy's config: rendered from the project's template and the inventory, and what can be
told of a config without HAProxy (the addresses it binds, whether it is the one that runs).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    CONFIG_NAME,
    ProxyError,
    admin_socket_in_haproxy,
    cert_path_in_haproxy,
    map_path_in_haproxy,
    service_path_in_haproxy,
    state_file_in_haproxy,
)
from slotswap.config.scaffold import template_folders
from slotswap.remote.protocol import ServerLike
from slotswap.server import maintenance

# Headers that tell an app who the client is or how it came (the scheme, the name, the
# port): frameworks believe them (Rack, Django, Spring, Express), so a client's own are
# removed (the example app's /headers shows each).
FORWARDING_HEADERS = (
    "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Port",
    "X-Forwarded-Proto", "X-Real-IP", "X-Forwarded-Ssl", "X-Forwarded-Scheme",
    "X-Forwarded-Prefix", "Client-IP", "X-Client-IP", "True-Client-IP", "X-Cluster-Client-IP",
)


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


def backend_values(inventory: Inventory) -> dict[str, object]:
    """The template values of the app's backend (its slots, their checks): the same in the
    app's own HAProxy and in its fragment of the server's shared one."""
    return {
        "backend": inventory.app,
        "slots": SLOTS,
        "app_port": inventory.app_port,
        "healthcheck_path": inventory.healthcheck.path,
        "healthcheck_host": inventory.healthcheck.host,
        "healthcheck_expect": expect_rule(inventory.healthcheck.status),
        "check_interval": f"{round(inventory.healthcheck.interval * 1000)}ms",
        "check_rise": inventory.healthcheck.rise,
        "check_fall": inventory.healthcheck.fall,
        "check_port": inventory.healthcheck.port,
        "slot_addresses": {slot: f"{docker.LOOPBACK}:{inventory.slot_port(slot)}"
                           for slot in SLOTS},
        "check_ports": {slot: inventory.slot_check_port(slot) for slot in SLOTS},
        "fallback_names": {slot: haproxy.fallback_name(slot) for slot in SLOTS},
    }


def config_environment(folders: Sequence[Path]) -> jinja2.Environment:
    """Jinja for HAProxy's config files, looked up in `folders` (first match wins)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # a config file, not HTML; every value is validated on load
    )


def render_config(inventory: Inventory, login: Login) -> str:
    environment = config_environment(template_folders(inventory))
    admin_socket = admin_socket_in_haproxy()
    try:
        text = environment.get_template(f"{CONFIG_NAME}.j2").render(
            inventory_name=inventory.path.name,
            app=inventory.app,
            **backend_values(inventory),
            http_port=inventory.haproxy.http_port,
            admin_socket=admin_socket,
            admin_uid=login.uid,
            admin_gid=login.gid,
            worker_uid=docker.HAPROXY_WORKER_UID,
            worker_gid=docker.HAPROXY_WORKER_GID,
            state_file=state_file_in_haproxy(),
            forwarding_headers=FORWARDING_HEADERS,
            trusted_proxies=inventory.haproxy.trusted_proxies,
            maintenance_map=map_path_in_haproxy(),
            maintenance_service=service_path_in_haproxy(),
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
