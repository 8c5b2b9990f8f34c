"""`status`: per server, the live slot, the version it serves, both slots as HAProxy and
Docker see them, maintenance mode, HAProxy's own version and each role container (read-only).
A worker-only host (`web: false`) has no slots and no HAProxy: only its role containers are
read there.
With haproxy.shared, each server's shared HAProxy too: its apps and routes (status_proxy)."""

from __future__ import annotations

from dataclasses import dataclass, field

from slotswap.commands.runtime_api import RuntimeApiError
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.fleet.errors import describe_error
from slotswap.fleet.runner import in_turn, servers_of
from slotswap.fleet.status_proxy import ProxyStatus, read_proxy_status
from slotswap.remote.protocol import ServerLike
from slotswap.server import maintenance
from slotswap.server.haproxy import running_haproxy
from slotswap.server.role_status import RoleContainer, read_role_containers
from slotswap.server.slots import read_slots, serving_views


@dataclass
class ServerStatus:
    name: str
    address: str
    live: str
    version: str
    slots: list[str]
    error: str = ""
    maintenance: bool | None = None  # None: could not be read (a HAProxy older than the kit's)
    haproxy: str = ""  # HAProxy's image and version, e.g. `haproxy:2.8 (HAProxy 2.8.5)`
    web: bool = True  # False: a worker-only host (no slots, no HAProxy)
    roles: list[RoleContainer] = field(default_factory=list)  # its role containers
    proxy: ProxyStatus | None = None  # the shared HAProxy (haproxy.shared) and its apps


def status(inventory: Inventory) -> list[ServerStatus]:
    """Every server's status in turn; one that cannot be read says why in its `error`."""
    reports = []
    for done in in_turn(servers_of(inventory), lambda server: read_status(server, inventory),
                        contain=(Exception,)):
        server = done.server
        reports.append(done.value if done.value is not None else ServerStatus(
            server.name, server.host.address, "?", "?", [], error=describe_error(done.error),
            web=server.host.web))
    return reports


def read_status(server: ServerLike, inventory: Inventory) -> ServerStatus:
    roles = read_role_containers(server, inventory)
    if not server.host.web:
        running = sorted({c.version for c in roles if c.running})
        return ServerStatus(server.name, server.host.address, live="-",
                            version=",".join(running) or "-", slots=[], web=False,
                            roles=roles)
    views = read_slots(server, inventory)
    live = serving_views(views)
    return ServerStatus(
        server.name, server.host.address,
        live=",".join(v.slot for v in live) or "none",
        version=",".join(v.version or "?" for v in live) or "-",
        slots=[views[slot].describe() for slot in SLOTS],
        maintenance=maintenance_state(server),
        haproxy=running_haproxy(server, inventory),
        roles=roles,
        proxy=read_proxy_status(server, inventory) if inventory.haproxy.shared else None,
    )


def maintenance_state(server: ServerLike) -> bool | None:
    """On or off; None when the running config has no maintenance map (`up` adds it)."""
    try:
        return maintenance.is_on(server)
    except RuntimeApiError:
        return None
