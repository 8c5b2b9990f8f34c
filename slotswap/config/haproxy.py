"""The `haproxy` section: the HAProxy container, its public port and the slots' ports."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import ClassVar

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, Setting, parse_fields, setting
from slotswap.core.validation import validate_image_reference

# With healthcheck.port, a slot's check port is published on its slot port plus this.
CHECK_PORT_OFFSET = 100


_NETWORK = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]+)?")


def networks(value: object, key: str) -> tuple[str, ...]:
    """A list of networks in CIDR form (an address alone is its /32 or /128), normalised;
    also the check of trusted_proxies read back from a server."""
    if not isinstance(value, list):
        raise values.Invalid(key, "expected a list of networks such as 10.0.0.0/8, got "
                                  f"{values.describe(value)}")
    networks = []
    for index, item in enumerate(value):
        text = values.string(item, f"{key}[{index}]", "a network such as 10.0.0.0/8")
        try:
            # Digits, dots, colons and a slash only: ipaddress would also take a zone
            # ("fe80::1%eth0"), which no config line may carry.
            if not _NETWORK.fullmatch(text):
                raise ValueError(text)
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise values.Invalid(f"{key}[{index}]", "expected a network in CIDR form such as "
                                 f"10.0.0.0/8 or 192.0.2.7/32, got {values.describe(text)}"
                                 ) from None
        address = ipaddress.ip_interface(text).ip
        if address != network.network_address:
            raise values.Invalid(f"{key}[{index}]", f"{text} has bits set after its first "
                                 f"{network.prefixlen}: write {network} for that network, or "
                                 f"{address}/{network.max_prefixlen} for that address alone")
        networks.append(str(network))
    return tuple(networks)


def _image(value: object, key: str, _: Context) -> str:
    return values.checked(validate_image_reference, value, key,
                          "an image reference such as haproxy:2.8")


def _slot_ports(value: object, key: str, context: Context) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise values.Invalid(key, f"must be a list of two ports (web1's, web2's), got {value!r}")
    # Room above each for its check port (healthcheck.port).
    first, second = (values.integer(port, f"{key}[{index}]", 1, 65535 - CHECK_PORT_OFFSET)
                     for index, port in enumerate(value))
    if first == second or context.parsed["http_port"] in (first, second):
        raise values.Invalid(key, "must be two ports that differ from each other and from "
                                  f"haproxy.http_port, got {value!r}")
    return first, second


def _default(value: object, key: str, context: Context) -> bool:
    default = values.boolean(value, key)
    if default and not context.parsed.get("shared"):
        raise values.Invalid(key, "only with haproxy.shared: true (the default app of the "
                                  "server's shared HAProxy)")
    return default


@dataclass(frozen=True)
class HaproxySettings:
    # stats_port: no longer used (the runtime API is a unix socket, see
    # slotswap.remote.admin_channel).
    FORMER_KEYS: ClassVar[dict[str, Setting]] = {
        "stats_port": Setting(kinds.PORT, "No longer used (accepted, and ignored).")}

    image: str = setting(Kind(_image, {"type": "string"}), "haproxy:2.8")
    http_port: int = setting(kinds.PORT, 80)
    # HAProxy runs on the server's own network (so that a new HAProxy container can take
    # over the public port before the old one lets go of it); it reaches each slot's
    # container on one of these ports of the server's loopback (127.0.0.1), web1's first.
    slot_ports: tuple[int, int] = setting(
        Kind(_slot_ports, {"type": "array", "minItems": 2, "maxItems": 2, "items": {
            "type": "integer", "minimum": 1, "maximum": 65535 - CHECK_PORT_OFFSET}}),
        (18081, 18082), file_default=[18081, 18082],
        description="Ports of the server's loopback on which HAProxy reaches web1 and web2 "
        "(their containers are published there only).")
    # Networks (CIDR) of proxies in front of HAProxy (a cloud load balancer) whose
    # Forwarded, X-Forwarded-* and X-Real-IP headers reach the app; anyone else's are removed.
    trusted_proxies: tuple[str, ...] = setting(
        Kind(lambda value, key, _: networks(value, key), {"type": "array", "items": {
            "type": "string", "pattern": kinds.pattern(_NETWORK)}}),
        (), description="Networks (CIDR, e.g. 10.0.0.0/8; an address alone is its /32) of "
        "proxies in front of HAProxy, such as a cloud load balancer, whose Forwarded, "
        "X-Forwarded-* and X-Real-IP headers reach the app. Anyone else's are removed, and "
        "HAProxy sets them.")
    # Several apps on one server (docs/apps-design.md): one HAProxy per server, shared by
    # the apps that say so, routing each request to its app by host name.
    shared: bool = setting(
        kinds.BOOLEAN, False, description="Use the server's shared HAProxy, which routes "
        "each request to its app by host name (names, or https.names), so that several apps "
        "share ports 80 and 443 (README: Several apps on one server).")
    default: bool = setting(
        Kind(_default, {"type": "boolean"}), False, description="With shared: requests for a "
        "name no app on the server claims come to this app (one app per server); else they "
        "get a plain 404.")


def parse_haproxy(section: dict[str, object], key: str, context: Context) -> HaproxySettings:
    return HaproxySettings(**parse_fields(HaproxySettings, section, key, context))
