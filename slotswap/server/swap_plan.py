"""What the swap on one server does, decided without touching it (pure): which slot the new
version goes into, whether the old slot's fallback line takes part, the runtime-API lines
that move the traffic, and the verdicts on the new slot after the switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.runtime_api import AdminState, ServerStat
from slotswap.config.inventory import SLOTS
from slotswap.server.slots import SlotView, other_slot, serving_views


@dataclass(frozen=True)
class SlotPlan:
    live: str | None  # the slot serving now (None: nothing serves, e.g. the first deploy)
    idle: str  # the slot the new version goes into


def plan_slots(views: dict[str, SlotView]) -> SlotPlan:
    """Pure: pick the live and the idle slot from what HAProxy and Docker report."""
    # A slot serving through its fallback line alone is the live one: never taken out.
    serving = [view.slot for view in serving_views(views)]
    if len(serving) == 2:
        # An interrupted run left both in rotation: keep the newer one, retire the other.
        newest = max(serving, key=lambda s: views[s].container.started_ns)  # type: ignore[union-attr]
        return SlotPlan(live=newest, idle=other_slot(newest))
    if len(serving) == 1:
        return SlotPlan(live=serving[0], idle=other_slot(serving[0]))
    not_running = [slot for slot in SLOTS if not views[slot].running]
    return SlotPlan(live=None, idle=(not_running or list(SLOTS))[0])


@dataclass(frozen=True)
class WatchFailure:
    """Why the new slot no longer counts as serving after the switch."""

    what: str  # "failed HAProxy's health checks", "its container exited", ...
    detail: str  # HAProxy's check summary, the exit code, ...
    failed: bool = True  # False: nothing wrong with it, the rollout goes back everywhere


def watch_failure(stat: ServerStat, since: ServerStat | None = None) -> WatchFailure | None:
    """Pure: HAProxy's view of the new slot after the switch. Anything but taking new traffic
    with passing checks fails: DOWN, `UP 1/3` on its way down, and also MAINT (resolution),
    which HAProxy may show once Docker's DNS drops a stopped container's name, before any
    check fails. With `since` (its reading at the switch), a check that failed since then
    fails it too, though the next one passed before this look (`UP` again)."""
    if stat.failing_checks:
        return WatchFailure("failed HAProxy's health checks", stat.check_summary)
    if since is not None and stat.check_failures > since.check_failures:
        failed = stat.check_failures - since.check_failures
        return WatchFailure("failed HAProxy's health checks",
                            f"{failed} failed check{'s' if failed > 1 else ''} since the "
                            f"switch (the last one: {stat.check_summary})")
    if not stat.takes_new_traffic:
        return WatchFailure("stopped taking traffic",
                            f"HAProxy reports it {stat.status}, {stat.check_summary}")
    return None


def container_failure(container: docker.ContainerInfo | None,
                      started_ns: int | None) -> WatchFailure | None:
    """Pure: the new slot's container after the switch. Not running, or started again since
    the swap started it (Docker's restart policy brings a crashing app back up, with
    back-off): the version crashed."""
    if container is None:
        return WatchFailure("lost its container", "it no longer exists")
    if not container.running:
        return WatchFailure("its container stopped",
                            f"{container.status}, exit code {container.exit_code}")
    if started_ns and container.started_ns != started_ns:
        return WatchFailure("its container crashed", "Docker restarted it")
    return None


def has_fallback_lines(views: dict[str, SlotView]) -> bool:
    """Pure: the backend has both slots' fallback lines (the kit's template does; a
    project's older one may not, and then the swap works as before without them)."""
    return all(view.fallback is not None for view in views.values())


def uses_fallback(views: dict[str, SlotView], live: str | None) -> bool:
    """Pure: the swap readies the live slot's fallback line at its switch: the backend has
    fallback lines, and the live slot's reaches the same address as its own line (a slot
    started before `fab up` moved HAProxy to the server's network is reached at an address
    of the app's network, which its fallback line does not have)."""
    if not has_fallback_lines(views) or live is None:
        return False
    fallback = views[live].fallback
    return fallback is not None and fallback.address == views[live].stat.address


def old_sessions(stats: dict[str, ServerStat], old: str) -> int:
    """Pure: the old slot's open sessions, its fallback line's included."""
    fallback = stats.get(haproxy.fallback_name(old))
    return stats[old].sessions + (fallback.sessions if fallback else 0)


def new_slot_traffic(at_switch: dict[str, ServerStat], stats: dict[str, ServerStat],
                     new: str, old: str) -> haproxy.Traffic:
    """Pure: the new slot's requests and failed ones since the switch (`show stat` readings
    by line name). Those it failed and HAProxy sent to the old slot's fallback line count as
    failed: clients got the old version's answer, and once the old slot stops they get none."""
    name = haproxy.fallback_name(old)
    fallback = (at_switch[name], stats[name]) if name in at_switch and name in stats else None
    return haproxy.traffic_between(at_switch[new], stats[new], fallback)


def fallback_states(slot: str, state: AdminState, fallback: bool) -> dict[str, AdminState]:
    return {haproxy.fallback_name(slot): state} if fallback else {}


def states_line(backend: str, states: Mapping[str, AdminState]) -> str:
    """Pure: one runtime-API line that sets these lines' states, in this order."""
    return haproxy.join_commands(*(haproxy.command_set_state(backend, line, state)
                                   for line, state in states.items()))


def switch_states(new: str, old: str, *, fallback: bool) -> dict[str, AdminState]:
    """Pure: the switch: the new slot in rotation, the old one draining. The old slot's
    fallback line is made ready first: it comes after both slot lines (`balance first`), so
    it gets no new request while a slot line is usable, only a retry of one the new slot
    failed, or every request while the new slot cannot take any."""
    return {**fallback_states(old, AdminState.READY, fallback), new: AdminState.READY,
            old: AdminState.DRAIN}


def switch_line(backend: str, new: str, old: str, *, fallback: bool) -> str:
    """Pure: the switch (switch_states) in one runtime-API line."""
    return states_line(backend, switch_states(new, old, fallback=fallback))


def switch_back_states(new: str, old: str, *, fallback: bool) -> dict[str, AdminState]:
    """Pure: the old slot back in rotation, the new one and the old one's fallback out."""
    return {old: AdminState.READY, new: AdminState.MAINT,
            **fallback_states(old, AdminState.MAINT, fallback)}


def switch_back_line(backend: str, new: str, old: str, *, fallback: bool) -> str:
    """Pure: the switch back (switch_back_states) in one runtime-API line."""
    return states_line(backend, switch_back_states(new, old, fallback=fallback))


def out_of_rotation_states(slot: str, *, fallback: bool) -> dict[str, AdminState]:
    """Pure: the slot and its fallback line get no request any more (open ones finish)."""
    return {**fallback_states(slot, AdminState.MAINT, fallback), slot: AdminState.MAINT}


def out_of_rotation_line(backend: str, slot: str, *, fallback: bool) -> str:
    return states_line(backend, out_of_rotation_states(slot, fallback=fallback))


def alone_states(new: str, *, fallback: bool) -> dict[str, AdminState]:
    """Pure: with no slot serving (a first deploy, or a live slot failing its checks), the
    new slot in rotation and the other one out, its fallback line too. A version left ready
    there, its checks failing, would take the traffic back the moment they pass again (web1
    comes first under `balance first`) while the kit says the new one serves."""
    return {new: AdminState.READY, **out_of_rotation_states(other_slot(new), fallback=fallback)}


def alone_line(backend: str, new: str, *, fallback: bool) -> str:
    """Pure: alone_states in one runtime-API line."""
    return states_line(backend, alone_states(new, fallback=fallback))
