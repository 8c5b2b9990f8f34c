"""slotswap.server.swap's pure parts: which slot is live and which one the new version goes into."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.docker import ContainerInfo
from slotswap.commands.runtime_api import ServerStat, ServerState
from slotswap.config.inventory import SLOTS
from slotswap.server.slots import SlotView, describe_serving, other_slot
from slotswap.server.swap_plan import SlotPlan, plan_slots
from tests.unit.fake_server import FIXTURES


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


# -- building views -------------------------------------------------------------------------

CHECKS = {
    # status -> (check_status, check_code, check_desc) as HAProxy reports them with it
    "UP": ("L7OK", "200", "Layer7 check passed"),
    "UP 1/2": ("L4TOUT", "", "Layer4 timeout"),
    "DRAIN": ("L7OK", "200", "Layer7 check passed"),
    "DOWN": ("L4CON", "", "Connection refused"),
    "MAINT": ("", "", ""),
    "MAINT (resolution)": ("", "", ""),
}
ADDRESSES = {"web1": "10.111.1.3", "web2": "10.111.1.4"}


@dataclass(frozen=True)
class Slot:
    """What one slot looks like: HAProxy's status, and its container (None: no container)."""

    status: str
    container: str | None = None  # 'running' or 'exited'
    started_at: str = "2026-11-26T07:23:32.427366894Z"
    version: str = "v1"
    sessions: int = 0


def view(slot: str, spec: Slot) -> SlotView:
    resolved = spec.status != "MAINT (resolution)"
    address = ADDRESSES[slot] if resolved else ""
    check_status, check_code, check_desc = CHECKS[spec.status]
    stat = ServerStat(name=slot, status=spec.status, sessions=spec.sessions,
                      check_status=check_status, check_code=check_code, check_desc=check_desc,
                      last_change=5, address=f"{address}:3000" if address else "")
    admin = {"MAINT": haproxy.ADMIN_FORCED_MAINT, "DRAIN": haproxy.ADMIN_FORCED_DRAIN,
             "MAINT (resolution)": haproxy.ADMIN_RESOLUTION_MAINT}.get(spec.status, 0)
    state = ServerState(name=slot, address=address or "-",
                        op_state=2 if spec.status.startswith(("UP", "DRAIN")) else 0,
                        admin_state=admin, fqdn=f"webapp-{slot}")
    container = None
    if spec.container is not None:
        running = spec.container == "running"
        container = ContainerInfo(
            name=f"webapp-{slot}", running=running, status=spec.container,
            image=f"10.77.0.1:5000/demo/webapp:{spec.version}", image_id="sha256:0123",
            labels={docker.LABEL_APP: "webapp", docker.LABEL_SLOT: slot,
                    docker.LABEL_VERSION: spec.version, docker.LABEL_ROLE: "app"},
            addresses={"webapp": ADDRESSES[slot] if running else ""},
            exit_code=0, started_at=spec.started_at,
        )
    return SlotView(slot, stat, state, container)


def views(web1: Slot, web2: Slot) -> dict[str, SlotView]:
    return {"web1": view("web1", web1), "web2": view("web2", web2)}


def recorded_views(state: str, stat_file: str | None = None,
                   inspect_file: str | None = None) -> dict[str, SlotView]:
    """Views built the way read_slots builds them, from recorded answers."""
    stats = haproxy.parse_show_stat(fixture(stat_file or f"show_stat_{state}.csv"))
    states_file = FIXTURES / f"show_servers_state_{state}.txt"
    states = (haproxy.parse_servers_state(states_file.read_text(encoding="utf-8"))
              if states_file.exists()
              else {slot: ServerState(slot, "-", 0, 0, f"webapp-{slot}") for slot in SLOTS})
    inspect = fixture(inspect_file or f"docker_inspect_{state}.json")
    containers = docker.parse_inspect(inspect)
    return {slot: SlotView(slot, stats[slot], states[slot], containers.get(f"webapp-{slot}"))
            for slot in SLOTS}


FRESH = Slot("MAINT (resolution)")

# -- plan_slots -----------------------------------------------------------------------------

PLAN_CASES = {
    "fresh server: no containers, both unresolved": (FRESH, FRESH, None, "web1"),
    "web1 serving": (Slot("UP", "running", version="v1"), FRESH, "web1", "web2"),
    "web2 serving": (Slot("MAINT (resolution)", "exited"), Slot("UP", "running", version="v2"),
                     "web2", "web1"),
    "web2 serving, web1 stopped and forced to maint": (
        Slot("MAINT", "exited"), Slot("UP", "running"), "web2", "web1"),
    "web1 serving while failing a check (UP 1/2)": (
        Slot("UP 1/2", "running"), Slot("MAINT (resolution)", "exited"), "web1", "web2"),
    # HAProxy keeps a stopped container's address and calls it UP for a while.
    "held address: web1 UP, its container stopped": (
        Slot("UP", "exited"), FRESH, None, "web1"),
    "held address: web1 UP, its container removed": (Slot("UP"), FRESH, None, "web1"),
    "held address: web2 UP but stopped, web1 serving": (
        Slot("UP", "running"), Slot("UP", "exited", sessions=4), "web1", "web2"),
    "held address: web1 UP but stopped, web2 running but DOWN": (
        Slot("UP", "exited"), Slot("DOWN", "running"), None, "web1"),
    "both serving (interrupted run), web1 started last": (
        Slot("UP", "running", started_at="2026-11-26T07:26:41.579493904Z", version="v2"),
        Slot("UP", "running", started_at="2026-11-26T07:26:33.319730102Z", version="v1"),
        "web1", "web2"),
    "both serving (interrupted run), web2 started last": (
        Slot("UP", "running", started_at="2026-11-26T07:27:05.817252522Z", version="v2"),
        Slot("UP", "running", started_at="2026-11-26T07:27:11.576750666Z", version="v1"),
        "web2", "web1"),
    "both serving, started in different minutes": (
        Slot("UP", "running", started_at="2026-11-26T07:59:59.9Z"),
        Slot("UP", "running", started_at="2026-11-26T08:00:00.1Z"),
        "web2", "web1"),
    "web1 draining with its container running, web2 unresolved": (
        Slot("DRAIN", "running"), FRESH, None, "web2"),
    "web1 draining with its container running, web2 stopped": (
        Slot("DRAIN", "running"), Slot("MAINT (resolution)", "exited"), None, "web2"),
    "web1 serving, web2 draining with its container running": (
        Slot("UP", "running"), Slot("DRAIN", "running", sessions=3), "web1", "web2"),
    "web1 new and still DOWN, web2 serving": (Slot("DOWN", "running"), Slot("UP", "running"),
                                              "web2", "web1"),
    "web1 running in maint, web2 no container": (Slot("MAINT", "running"), FRESH, None, "web2"),
    "both stopped": (Slot("MAINT (resolution)", "exited"), Slot("MAINT (resolution)", "exited"),
                     None, "web1"),
    "both running, neither in rotation": (Slot("MAINT", "running"), Slot("DOWN", "running"),
                                          None, "web1"),
}


@pytest.mark.parametrize(("web1", "web2", "live", "idle"), PLAN_CASES.values(), ids=PLAN_CASES)
def test_plan_slots(web1: Slot, web2: Slot, live: str | None, idle: str) -> None:
    assert plan_slots(views(web1, web2)) == SlotPlan(live=live, idle=idle)


@pytest.mark.parametrize(("web1", "web2", "live", "idle"), PLAN_CASES.values(), ids=PLAN_CASES)
def test_plan_never_puts_the_new_version_into_the_live_slot(web1: Slot, web2: Slot,
                                                           live: str | None, idle: str) -> None:
    plan = plan_slots(views(web1, web2))
    assert plan.idle in SLOTS
    assert plan.idle != plan.live


@pytest.mark.parametrize(
    ("older", "newer"),
    [
        # Docker drops trailing zeros of the nanoseconds (recorded: ...:55.3440026Z), and all
        # of the fraction when it is zero. Each pair is 10 ns / 0.5 s apart, newer second.
        ("2026-11-26T07:26:55.3440026Z", "2026-11-26T07:26:55.34400261Z"),
        ("2026-11-26T07:26:55Z", "2026-11-26T07:26:55.5Z"),
    ],
    ids=["trimmed-nanoseconds", "whole-second"],
)
@pytest.mark.parametrize("newer_slot", SLOTS)
def test_plan_slots_both_serving_newest_by_time_not_text(older: str, newer: str,
                                                         newer_slot: str) -> None:
    started = {newer_slot: newer, other_slot(newer_slot): older}
    both = views(Slot("UP", "running", started_at=started["web1"]),
                 Slot("UP", "running", started_at=started["web2"]))
    assert plan_slots(both).live == newer_slot


# The same decisions from states recorded in the sandbox (HAProxy 2.6.12 + Docker).
RECORDED_PLAN_CASES = {
    "live_web2": (None, None, "web2", "web1"),
    "live_web1": (None, None, "web1", "web2"),
    "live_web1_web2_removed": (None, None, "web1", "web2"),
    "web1_maint_stopped_web2_live": (None, None, "web2", "web1"),
    "web1_down_starting_web2_live": (None, None, "web2", "web1"),
    "web1_live_web2_drain": (None, None, "web1", "web2"),
    "both_up_web1_newer": (None, None, "web1", "web2"),
    "both_up_web2_newer": (None, None, "web2", "web1"),
    "web1_live_web2_up_stopped": (None, None, "web1", "web2"),
    "web1_up_stopped_web2_down": (None, None, None, "web1"),
    "first_deploy_drain": (None, "docker_inspect_web1_running.json", None, "web2"),
    "after_stop_drain": (None, "docker_inspect_web1_stopped.json", None, "web1"),
}


@pytest.mark.parametrize(("state", "stat_file", "inspect_file", "live", "idle"),
                         [(state, *case) for state, case in RECORDED_PLAN_CASES.items()],
                         ids=RECORDED_PLAN_CASES)
def test_plan_slots_recorded(state: str, stat_file: str | None, inspect_file: str | None,
                             live: str | None, idle: str) -> None:
    plan = plan_slots(recorded_views(state, stat_file, inspect_file))
    assert plan == SlotPlan(live=live, idle=idle)


# -- SlotView -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("spec", "running", "serving", "version"),
    [
        (Slot("UP", "running", version="v7"), True, True, "v7"),
        (Slot("UP 1/2", "running"), True, True, "v1"),
        (Slot("UP", "exited"), False, False, "v1"),
        (Slot("UP"), False, False, None),
        (Slot("DRAIN", "running"), True, False, "v1"),
        (Slot("DOWN", "running"), True, False, "v1"),
        (Slot("MAINT", "running"), True, False, "v1"),
        (Slot("MAINT (resolution)"), False, False, None),
    ],
)
def test_slot_view_properties(spec: Slot, running: bool, serving: bool,
                              version: str | None) -> None:
    slot_view = view("web1", spec)
    assert (slot_view.running, slot_view.serving, slot_view.version) == (running, serving, version)


def test_slot_view_describe_recorded() -> None:
    recorded = recorded_views("live_web2")
    assert recorded["web1"].describe() == (
        "web1: v1 exited, HAProxy MAINT (resolution) (checks off)")
    assert recorded["web2"].describe() == (
        "web2: v2 running, HAProxy UP (L7OK 200 (Layer7 check passed))")


def test_slot_view_describe_without_container() -> None:
    assert view("web2", FRESH).describe() == (
        "web2: no container, HAProxy MAINT (resolution) (checks off)")


def test_slot_view_describe_without_version_label() -> None:
    recorded = recorded_views("first_deploy_drain", None, "docker_inspect_web1_running.json")
    assert recorded["web1"].describe() == (
        "web1: ? running, HAProxy DRAIN (L7OK 200 (Layer7 check passed))")


# -- describe_serving, other_slot -----------------------------------------------------------

@pytest.mark.parametrize(
    ("slot_views", "expected"),
    [
        ({}, "unknown (could not read the server's state)"),
        (views(FRESH, FRESH), "NOTHING"),
        (views(Slot("UP", "exited"), FRESH), "NOTHING"),
        (views(Slot("DRAIN", "running"), FRESH), "NOTHING"),
        (views(Slot("UP", "running", version="v1"), FRESH), "v1 in web1"),
        (views(Slot("MAINT", "exited"), Slot("UP", "running", version="v2")), "v2 in web2"),
        (views(Slot("UP", "running", version="v2"), Slot("UP", "running", version="v1")),
         "v2 in web1 and v1 in web2"),
    ],
    ids=["no-views", "fresh", "held-address", "draining", "web1", "web2", "both"],
)
def test_describe_serving(slot_views: dict[str, SlotView], expected: str) -> None:
    assert describe_serving(slot_views) == expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("live_web2", "v2 in web2"),
        ("live_web1", "v1 in web1"),
        ("both_up_web1_newer", "v2 in web1 and v1 in web2"),
        ("web1_live_web2_up_stopped", "v2 in web1"),
        ("web1_up_stopped_web2_down", "NOTHING"),
    ],
)
def test_describe_serving_recorded(state: str, expected: str) -> None:
    assert describe_serving(recorded_views(state)) == expected


@pytest.mark.parametrize(("slot", "other"), [("web1", "web2"), ("web2", "web1")])
def test_other_slot(slot: str, other: str) -> None:
    assert other_slot(slot) == other
    assert other_slot(other_slot(slot)) == slot


@pytest.mark.parametrize("old", SLOTS)
def test_an_old_slot_serving_through_its_fallback_line_alone_is_the_live_one(old: str) -> None:
    """A run cut in its window left the old slot draining with its fallback line ready, and
    the new version failed since: HAProxy sends every request to that fallback line. The
    next run must not take the old slot out as the idle one (nothing would serve)."""
    new = other_slot(old)
    slots = {old: view(old, Slot("DRAIN", "running", version="v1")),
             new: view(new, Slot("DOWN", "running", version="v3"))}
    fallback = ServerStat(haproxy.fallback_name(old), "UP", 0, "L7OK", "200", "", 5,
                          f"{ADDRESSES[old]}:3000")
    slots[old] = SlotView(old, slots[old].stat, slots[old].state, slots[old].container,
                          fallback)
    assert plan_slots(slots) == SlotPlan(live=old, idle=new)
    # What status, the summaries and a plain rollback read say the same.
    assert describe_serving(slots) == f"v1 in {old} (through its fallback line)"
