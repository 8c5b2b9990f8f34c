"""The naive blue/green flow that slotswap improves on, as the classic blog article does it.

Per server, in order: ask HAProxy which slot has an address and call it live, start the new
tag in the other slot, put that slot in rotation at once, stop the old container at once.
No health wait, no drain, no check that the new version serves: it "succeeds" whenever
the commands exit 0. Built on the kit's own Server and command builders, so the only
difference measured is the flow itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.runtime_api import AdminState, ServerState
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.remote.server import Server
from slotswap.server.slots import slot_published_ports

# The article's `docker stop` uses Docker's default grace period.
STOP_SECONDS = 10


@dataclass(frozen=True)
class NaiveOutcome:
    name: str
    live: str | None  # the slot the flow took for live (right or wrong; None: none)
    slot: str  # the slot the new tag went into
    seconds: float


def pick_live(states: dict[str, ServerState]) -> str | None:
    """Pure: the first slot HAProxy has an address for. A stopped container keeps its
    address for HAProxy's hold time, which is exactly the mistake under test."""
    return next((slot for slot in SLOTS if states[slot].resolved_address), None)


def other_slot(slot: str) -> str:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def read_live(server: Server, inventory: Inventory) -> str | None:
    answer = server.runtime_api(haproxy.command_show_servers_state(inventory.app))
    states = haproxy.parse_servers_state(answer)
    haproxy.require_servers(states, inventory.app, SLOTS)
    return pick_live(states)


def start_slot(server: Server, inventory: Inventory, slot: str, tag: str) -> None:
    name = inventory.container_name(slot)
    # Whatever is left in the slot goes; a missing container is not an error here.
    server.run(docker.remove(name), check=False)
    server.run(docker.run_app_slot(
        container=name, image_ref=inventory.image_ref(tag), network=inventory.network,
        app=inventory.app, slot=slot, version=tag, app_port=inventory.app_port,
        stop_timeout=inventory.timeouts.stop, published=slot_published_ports(inventory, slot),
    ))


def swap(server: Server, inventory: Inventory, tag: str) -> NaiveOutcome:
    started = time.monotonic()
    live = read_live(server, inventory)
    idle = other_slot(live) if live else SLOTS[0]
    start_slot(server, inventory, idle, tag)
    server.runtime_api(haproxy.command_set_state(inventory.app, idle, AdminState.READY))
    # The article stops "the other one" whatever it is, and does not look at the answer.
    server.run(docker.stop(inventory.container_name(other_slot(idle)), STOP_SECONDS),
               check=False, timeout=STOP_SECONDS + 30)
    return NaiveOutcome(server.name, live, idle, time.monotonic() - started)


def deploy(inventory: Inventory, tag: str) -> list[NaiveOutcome]:
    """Swap every server in inventory order; a failing command raises, as under `set -e`
    (but for the final stop, see swap)."""
    servers = [Server(host, inventory) for host in inventory.hosts]
    try:
        # Connected first, as the kit's prepare step does: per-server seconds time the flow,
        # not the SSH handshake.
        for server in servers:
            server.connect()
        return [swap(server, inventory, tag) for server in servers]
    finally:
        for server in servers:
            server.close()
