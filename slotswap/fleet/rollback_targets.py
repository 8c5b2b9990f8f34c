"""What `rollback` returns each server to when no tag is given: the version it served before
its last successful change, from its history."""

from __future__ import annotations

from slotswap.config.inventory import Inventory
from slotswap.fleet.errors import describe_error
from slotswap.fleet.runner import in_turn, servers_of
from slotswap.remote.protocol import ServerLike
from slotswap.server import history
from slotswap.server.swap import describe_serving, read_slots


def rollback_targets(inventory: Inventory) -> tuple[dict[str, str], dict[str, str]]:
    """Per server, the version it served before its last successful change; and, for the
    servers where none is known, why."""
    targets, problems = {}, {}
    for done in in_turn(servers_of(inventory), lambda server: rollback_target(
            server, inventory), contain=(Exception,)):
        name = done.server.name
        if done.error is not None:
            problems[name] = describe_error(done.error)
        elif done.value is not None:
            target, why_none = done.value
            if target:
                targets[name] = target
            else:
                problems[name] = why_none
    return targets, problems


def rollback_target(server: ServerLike, inventory: Inventory) -> tuple[str | None, str]:
    """The server's rollback target; or None, and why."""
    views = read_slots(server, inventory)
    serving = [v.version for v in views.values() if v.serving]
    current = serving[0] if len(serving) == 1 else None
    target = history.rollback_target(history.read(server, inventory), current)
    if target:
        return target, ""
    return None, f"no earlier version in its history for what it serves ({describe_serving(views)})"
