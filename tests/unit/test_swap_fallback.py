"""The old slot's fallback line during the watch (templates/haproxy.cfg.j2, `balance first`):
ready from the switch until the window closes or the traffic goes back, in maint otherwise,
and every change of it in the same runtime-API line as the slots' own. A backend without
fallback lines (a project's older template) gets exactly the lines it got before."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.commands import runtime_api as haproxy
from slotswap.commands.runtime_api import ServerStat, ServerState, Traffic, fallback_name
from slotswap.server.slots import SlotView
from slotswap.server.swap import SlotSwap, SwapRolledBack
from slotswap.server.swap_plan import (
    new_slot_traffic,
    old_sessions,
    out_of_rotation_line,
    switch_back_line,
    switch_line,
    uses_fallback,
)
from tests.unit.fake_server import BOTH_UP_STATE, FIXTURES, FakeServer, make_inventory


def test_the_switch_readies_the_old_slots_fallback_line_in_the_same_line() -> None:
    assert switch_line("webapp", "web2", "web1", fallback=True) == (
        "set server webapp/web1-fallback state ready; set server webapp/web2 state ready; "
        "set server webapp/web1 state drain")
    assert switch_line("webapp", "web2", "web1", fallback=False) == (
        "set server webapp/web2 state ready; set server webapp/web1 state drain")


def test_going_back_puts_the_fallback_line_in_maint_after_the_old_slot_is_ready() -> None:
    assert switch_back_line("webapp", "web2", "web1", fallback=True) == (
        "set server webapp/web1 state ready; set server webapp/web2 state maint; "
        "set server webapp/web1-fallback state maint")
    assert switch_back_line("webapp", "web2", "web1", fallback=False) == (
        "set server webapp/web1 state ready; set server webapp/web2 state maint")


def test_a_slot_leaves_rotation_with_its_fallback_line() -> None:
    assert out_of_rotation_line("webapp", "web1", fallback=True) == (
        "set server webapp/web1-fallback state maint; set server webapp/web1 state maint")
    assert out_of_rotation_line("webapp", "web1", fallback=False) == (
        "set server webapp/web1 state maint")


def stat(name: str, status: str, sessions: int = 0) -> ServerStat:
    return ServerStat(name, status, sessions, "L7OK", "200", "", 0, "127.0.0.1:18081")


def test_the_old_slot_has_drained_once_its_fallback_line_has_no_session_either() -> None:
    stats = {"web1": stat("web1", "DRAIN"), "web2": stat("web2", "UP"),
             fallback_name("web1"): stat(fallback_name("web1"), "UP", sessions=2)}
    assert old_sessions(stats, "web1") == 2
    assert old_sessions({"web1": stat("web1", "DRAIN", 1)}, "web1") == 1


@pytest.mark.parametrize("fallback", [True, False])
def test_switch_back_and_retire_carry_the_fallback_line_when_the_backend_has_one(
        tmp_path: Path, fallback: bool) -> None:
    server = FakeServer(api={"show servers state": BOTH_UP_STATE,
                             "show": RuntimeError("not recorded here")})
    swap = SlotSwap(server, make_inventory(tmp_path), "v2", lambda _: None)
    swap.old_version, swap.fallback = "v1", fallback
    swap.switch("web2", "web1")
    with pytest.raises(SwapRolledBack):
        swap.switch_back("web2", "web1", {"web1": stat("web1", "DRAIN"),
                                          "web2": stat("web2", "DOWN")}, 1.0)
    swap.take_out_of_rotation("web1")
    assert server.sent == [switch_line("webapp", "web2", "web1", fallback=fallback),
                           switch_back_line("webapp", "web2", "web1", fallback=fallback),
                           out_of_rotation_line("webapp", "web1", fallback=fallback)]


def view(slot: str, address: str, fallback_address: str | None) -> SlotView:
    fallback = (None if fallback_address is None else
                ServerStat(fallback_name(slot), "MAINT", 0, "", "", "", 0, fallback_address))
    return SlotView(slot, ServerStat(slot, "UP", 0, "L7OK", "200", "", 0, address),
                    ServerState(slot, address.split(":")[0], 2, 0, "-"), None, fallback)


def test_the_fallback_line_is_used_only_where_it_reaches_the_old_slots_container() -> None:
    loopback = {"web1": view("web1", "127.0.0.1:18081", "127.0.0.1:18081"),
                "web2": view("web2", "127.0.0.1:18082", "127.0.0.1:18082")}
    assert uses_fallback(loopback, "web1")
    assert not uses_fallback(loopback, None)  # a first deploy: no old slot
    # The first deploy after `fab up` moved HAProxy to the server's network: the live
    # slot's container is still reached at its address on the app's network.
    moved = {**loopback, "web1": view("web1", "172.18.0.5:3000", "127.0.0.1:18081")}
    assert not uses_fallback(moved, "web1")
    older_template = {slot: view(slot, f"127.0.0.1:1808{n}", None)
                      for n, slot in enumerate(("web1", "web2"), 1)}
    assert not uses_fallback(older_template, "web1")


def zeroed(stats: dict[str, ServerStat]) -> dict[str, ServerStat]:
    """The same lines with every counter at 0: the reading at the switch of that recording
    (web1-fallback took no request before it: stot = req_tot = 144, all in the window)."""
    return {name: ServerStat(s.name, s.status, 0, s.check_status, s.check_code, s.check_desc,
                             s.last_change, s.address) for name, s in stats.items()}


def test_requests_the_new_slot_failed_onto_the_old_slots_fallback_line_are_its_errors() -> None:
    # Recorded in the watch of hangup1 (closes every other GET unanswered) over v1: clients
    # got only answers, 144 of them from v1 through web1's fallback line. web2's own
    # counters: 145 requests, 0 errors.
    stats = haproxy.parse_show_stat(
        (FIXTURES / "show_stat_web2_closes_half_web1_fallback.csv").read_text())
    traffic = new_slot_traffic(zeroed(stats), stats, "web2", "web1")
    # wretr, wredis and the fallback line's requests count the same 144 GETs: once.
    assert traffic == Traffic(145 + 144, 144)
    failure = haproxy.error_rate_failure(traffic, Traffic(0, 0), 0.05, 20)
    assert failure == ("144 of its 289 requests failed (50%; 0% on the old slot before the "
                       "switch, 5% allowed above it)")


def test_requests_sent_to_the_fallback_line_alone_count_too() -> None:
    # The new slot DOWN or in maint: HAProxy sends the fallback line every request without
    # trying the new slot (no retry counted on it).
    at_switch = {"web2": stat("web2", "UP"), "web1-fallback": stat("web1-fallback", "MAINT")}
    now = {"web2": ServerStat("web2", "DOWN", 0, "L4CON", "", "", 0, "", 30, 0),
           "web1-fallback": ServerStat("web1-fallback", "UP", 0, "L7OK", "200", "", 0, "", 12)}
    assert new_slot_traffic(at_switch, now, "web2", "web1") == Traffic(42, 12)


def test_a_healthy_new_slot_keeps_its_own_counts() -> None:
    # Recorded: web1 took 950 requests, none retried elsewhere. A backend without fallback
    # lines (an older template) is judged by the slot's own line as before.
    stats = haproxy.parse_show_stat(
        (FIXTURES / "show_stat_web1_live_web2_drain.csv").read_text())
    assert new_slot_traffic(zeroed(stats), stats, "web1", "web2") == Traffic(950, 0)
    fallback = haproxy.parse_show_stat(
        (FIXTURES / "show_stat_web2_closes_half_web1_fallback.csv").read_text())
    healthy = {**stats, "web2-fallback": fallback["web2-fallback"]}
    assert new_slot_traffic(zeroed(healthy), healthy, "web1", "web2") == Traffic(950, 0)
