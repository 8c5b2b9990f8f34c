"""`status`: per server, the live slot, the version it serves, both slots as HAProxy and
Docker see them, maintenance mode and HAProxy's own version (read-only)."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.commands.runtime_api import RuntimeApiError
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.fleet.errors import describe_error
from slotswap.fleet.runner import in_turn, servers_of
from slotswap.remote.protocol import ServerLike
from slotswap.server import maintenance
from slotswap.server.haproxy import running_haproxy
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


def status(inventory: Inventory) -> list[ServerStatus]:
    """Every server's status in turn; one that cannot be read says why in its `error`."""
    reports = []
    for done in in_turn(servers_of(inventory), lambda server: read_status(server, inventory),
                        contain=(Exception,)):
        server = done.server
        reports.append(done.value if done.value is not None else ServerStatus(
            server.name, server.host.address, "?", "?", [], error=describe_error(done.error)))
    return reports


def read_status(server: ServerLike, inventory: Inventory) -> ServerStatus:
    views = read_slots(server, inventory)
    live = serving_views(views)
    return ServerStatus(
        server.name, server.host.address,
        live=",".join(v.slot for v in live) or "none",
        version=",".join(v.version or "?" for v in live) or "-",
        slots=[views[slot].describe() for slot in SLOTS],
        maintenance=maintenance_state(server),
        haproxy=running_haproxy(server, inventory),
    )


def maintenance_state(server: ServerLike) -> bool | None:
    """On or off; None when the running config has no maintenance map (`up` adds it)."""
    try:
        return maintenance.is_on(server)
    except RuntimeApiError:
        return None
