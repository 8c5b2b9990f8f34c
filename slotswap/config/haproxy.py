"""The `haproxy` section: the HAProxy container, its public port and the slots' ports."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from slotswap.config import values
from slotswap.core.validation import validate_image_reference

# With healthcheck.port, a slot's check port is published on its slot port plus this.
CHECK_PORT_OFFSET = 100


@dataclass(frozen=True)
class HaproxySettings:
    image: str = "haproxy:2.8"
    http_port: int = 80
    # HAProxy runs on the server's own network (so that a new HAProxy container can take
    # over the public port before the old one lets go of it); it reaches each slot's
    # container on one of these ports of the server's loopback (127.0.0.1), web1's first.
    slot_ports: tuple[int, int] = (18081, 18082)
    # Networks (CIDR) of proxies in front of HAProxy (a cloud load balancer) whose
    # Forwarded, X-Forwarded-* and X-Real-IP headers reach the app; anyone else's are removed.
    trusted_proxies: tuple[str, ...] = ()


# stats_port: no longer used (the runtime API is a unix socket, see slotswap.remote.admin_channel);
# still accepted, and ignored, so that inventories written for earlier versions load.
HAPROXY_KEYS = ("image", "http_port", "slot_ports", "trusted_proxies", "stats_port")


def parse_haproxy(section: dict[str, object]) -> HaproxySettings:
    defaults = HaproxySettings()
    image = values.checked(
        validate_image_reference,
        section.get("image", defaults.image),
        "haproxy.image",
        "an image reference such as haproxy:2.8",
    )
    http_port = values.port(section.get("http_port", defaults.http_port), "haproxy.http_port")
    ports = section.get("slot_ports", list(defaults.slot_ports))
    if not isinstance(ports, list) or len(ports) != 2:
        raise values.Invalid("haproxy.slot_ports", f"must be a list of two ports (web1's, web2's), "
                                             f"got {ports!r}")
    # Room above each for its check port (healthcheck.port).
    first, second = (values.integer(port, f"haproxy.slot_ports[{index}]", 1,
                                    65535 - CHECK_PORT_OFFSET)
                     for index, port in enumerate(ports))
    if first == second or http_port in (first, second):
        raise values.Invalid("haproxy.slot_ports", f"must be two ports that differ from each other "
                                             f"and from haproxy.http_port, got {ports!r}")
    return HaproxySettings(image=image, http_port=http_port, slot_ports=(first, second),
                           trusted_proxies=_networks(section.get("trusted_proxies", []),
                                                     "haproxy.trusted_proxies"))


def _networks(value: object, key: str) -> tuple[str, ...]:
    """A list of networks in CIDR form (an address alone is its /32 or /128), normalised."""
    if not isinstance(value, list):
        raise values.Invalid(key, f"expected a list of networks such as 10.0.0.0/8, got "
                            f"{values.describe(value)}")
    networks = []
    for index, item in enumerate(value):
        text = values.string(item, f"{key}[{index}]", "a network such as 10.0.0.0/8")
        try:
            # Digits, dots, colons and a slash only: ipaddress would also take a zone
            # ("fe80::1%eth0"), which no config line may carry.
            if not re.fullmatch(r"[0-9A-Fa-f:.]+(/[0-9]+)?", text):
                raise ValueError(text)
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise values.Invalid(f"{key}[{index}]", f"expected a network in CIDR form such as "
                           f"10.0.0.0/8 or 192.0.2.7/32, got {values.describe(text)}") from None
        address = ipaddress.ip_interface(text).ip
        if address != network.network_address:
            raise values.Invalid(f"{key}[{index}]", f"{text} has bits set after its first "
                           f"{network.prefixlen}: write {network} for that network, or "
                           f"{address}/{network.max_prefixlen} for that address alone")
        networks.append(str(network))
    return tuple(networks)
