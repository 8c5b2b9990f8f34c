"""The two slots of one server as they are: HAProxy's view of each (one runtime-API line) and
its container (one `docker inspect`), and what serves.

Which slot is live is a fact read from HAProxy's runtime API *and* Docker: a slot serves when
HAProxy routes new traffic to it and its container runs. HAProxy keeps a stopped
container's address for a while, so "has an address" never counts as "is running".
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.role_containers import describe_inspect_with_roles, inspect_with_roles
from slotswap.commands.runtime_api import ServerStat, ServerState
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import PROXY_CONTAINER, next_container
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandResult, RemoteCommandError
from slotswap.server.half_moved import cut_hand_over_line, half_moved, half_moved_line


@dataclass(frozen=True)
class SlotView:
    slot: str
    stat: ServerStat
    state: ServerState
    container: docker.ContainerInfo | None
    fallback: ServerStat | None = None  # its fallback line (haproxy.fallback_name), if any

    @property
    def running(self) -> bool:
        return self.container is not None and self.container.running

    @property
    def serving(self) -> bool:
        return self.running and self.stat.takes_new_traffic

    @property
    def version(self) -> str | None:
        return self.container.version if self.container else None

    def describe(self) -> str:
        container = "no container"
        if self.container is not None:
            container = f"{self.version or '?'} {self.container.status}"
        checks = "checks off" if self.stat.is_maint else self.stat.check_summary
        return f"{self.slot}: {container}, HAProxy {self.stat.status} ({checks})"


def other_slot(slot: str) -> str:
    return SLOTS[1] if slot == SLOTS[0] else SLOTS[0]


def read_slots(server: ServerLike, inventory: Inventory) -> dict[str, SlotView]:
    """HAProxy's view of both slots (one runtime-API line), then their containers."""
    return read_slots_with(server, inventory,
                           lambda: inspect_slots(server, containers_to_read(inventory)))


def containers_to_read(inventory: Inventory) -> list[str]:
    """The slots' containers and, in the same round trip, a new HAProxy left beside the old
    one by an `up` cut off mid hand-over: both serve, and only the new one would learn of a
    swap; with haproxy.shared, the app's own HAProxy too (a move cut short: the same); with
    today's layout, the shared HAProxy (a move cut short, then haproxy.shared turned off: it
    may serve the app beside its own; slotswap.server.half_moved). No round trip more: the
    names go in the same `docker inspect`."""
    names = [*(inventory.container_name(slot) for slot in SLOTS), next_container(inventory)]
    if inventory.haproxy.shared:  # the app's own HAProxy, left by a move cut short
        names.append(inventory.haproxy_container)
    else:  # the shared HAProxy, which may have the app (asked only where it is there)
        names.append(PROXY_CONTAINER)
    return names


def read_slots_with(server: ServerLike, inventory: Inventory,
                    containers_now: Callable[[], dict[str, docker.ContainerInfo]]
                    ) -> dict[str, SlotView]:
    """HAProxy's view of both slots (one runtime-API line), then `containers_now()`."""
    backend = inventory.app
    stat_text, state_text = haproxy.split_stat_and_state(
        server.runtime_api(haproxy.command_show_stat_and_state(backend)))
    stats = haproxy.parse_show_stat(stat_text)
    states = haproxy.parse_servers_state(state_text)
    haproxy.require_servers(stats, backend, SLOTS)
    haproxy.require_servers(states, backend, SLOTS)
    containers = containers_now()
    names = [inventory.container_name(slot) for slot in SLOTS]
    handing_over = next_container(inventory)
    if handing_over in containers:
        raise haproxy.RuntimeApiError(cut_hand_over_line(server.name, handing_over))
    if inventory.haproxy.shared and inventory.haproxy_container in containers:
        raise haproxy.RuntimeApiError(
            f"{server.name}: half-moved: {inventory.haproxy_container} still runs beside the "
            "shared HAProxy (a move cut short); run `fab up` to finish or undo it")
    if not inventory.haproxy.shared and half_moved(server, inventory, containers):
        raise haproxy.RuntimeApiError(half_moved_line(server, inventory, True))
    return {
        slot: SlotView(slot, stats[slot], states[slot], containers.get(name),
                       stats.get(haproxy.fallback_name(slot)))
        for slot, name in zip(SLOTS, names, strict=True)
    }


def read_slots_and_roles(server: ServerLike, inventory: Inventory
                         ) -> tuple[dict[str, SlotView], list[docker.ContainerInfo]]:
    """read_slots, and every role container of the app, in the same `docker inspect` (a
    swap with no roles in its inventory still stops those of roles gone)."""
    found: dict[str, docker.ContainerInfo] = {}

    def containers_now() -> dict[str, docker.ContainerInfo]:
        names = containers_to_read(inventory)
        result = server.run(inspect_with_roles(inventory.app, names), check=False)
        found.update(containers_inspected(server, describe_inspect_with_roles(names), result))
        return found

    views = read_slots_with(server, inventory, containers_now)
    return views, [info for info in found.values() if docker.LABEL_GENERATION in info.labels]


def inspect_slots(server: ServerLike, names: list[str]) -> dict[str, docker.ContainerInfo]:
    """The slots' containers that exist. `docker inspect` exits 1 when one of them does not,
    and still prints the others; any other failure must not pass for "no container", or a
    live slot would look idle."""
    argv = docker.inspect_containers(*names)
    return containers_inspected(server, shlex.join(argv), server.run(argv, check=False))


def containers_inspected(server: ServerLike, command: str,
                         result: CommandResult) -> dict[str, docker.ContainerInfo]:
    """The containers a `docker container inspect` (`command`, as an error names it)
    printed. Its exit 1 with only "No such container" lines means some do not exist; any
    other failure (no error output at all included) raises: it must never read as "no
    container", or a live slot would look idle."""
    missing_only = result.exit_code == 1 and docker.only_missing_containers(result.stderr)
    if not result.ok and not missing_only:
        raise RemoteCommandError(server.name, command, result.exit_code, result.stderr)
    return docker.parse_inspect(result.stdout)


def slot_published_ports(inventory: Inventory, slot: str) -> tuple[tuple[int, int], ...]:
    """Pure: (server port, container port) pairs of the slot on the server's loopback."""
    return inventory.slot_published_ports(slot)


def serving_views(views: dict[str, SlotView]) -> list[SlotView]:
    """The slots HAProxy gives new requests to through their own line; with none, those it
    gives them to through their fallback line alone (a run cut in its window left the old
    slot draining with its fallback line ready, and the new slot failed since)."""
    return [v for v in views.values() if v.serving] or [
        v for v in views.values() if v.running and v.fallback is not None
        and v.fallback.takes_new_traffic]


def describe_serving(views: dict[str, SlotView]) -> str:
    if not views:
        return "unknown (could not read the server's state)"
    through = "" if any(v.serving for v in views.values()) else " (through its fallback line)"
    serving = [f"{v.version} in {v.slot}{through}" for v in serving_views(views)]
    return " and ".join(serving) if serving else "NOTHING"


def read_slots_quietly(server: ServerLike, inventory: Inventory) -> dict[str, SlotView]:
    try:
        return read_slots(server, inventory)
    except Exception:
        return {}
