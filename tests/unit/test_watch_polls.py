"""The watch's looks at HAProxy: few enough that a window over ten servers does not take the
operator's CPU from the swaps still to come, and no failed check missed between two looks."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from slotswap.commands.docker import ContainerInfo
from slotswap.commands.runtime_api import ServerStat, parse_show_stat, parse_stat_rows
from slotswap.server.swap import SlotSwap, SwapRolledBack
from slotswap.server.swap_plan import watch_failure
from tests.unit.fake_server import FIXTURES, FakeServer, make_inventory

UP = ServerStat("web2", "UP", 3, "L7OK", "200", "", 0, "127.0.0.1:18082")


def test_the_check_failure_counter_is_read_from_show_stat() -> None:
    text = (FIXTURES / "show_stat_web1_up_stopped_web2_down.csv").read_text()
    stats = parse_show_stat(text)
    rows = {row["svname"]: row for row in parse_stat_rows(text)}
    assert {name: stat.check_failures for name, stat in stats.items()} == {
        name: int(rows[name]["chkfail"] or 0) for name in stats}


def test_a_check_that_failed_between_two_looks_fails_the_watch() -> None:
    # One failed check that the next one cleared shows `UP 2/3` for one fastinter (100 ms)
    # only: a look every 250 ms may not see it, HAProxy's counter of failed checks does.
    later = dataclasses.replace(UP, check_failures=1)
    failure = watch_failure(later, since=UP)
    assert failure is not None and failure.what == "failed HAProxy's health checks"
    assert "1 failed check" in failure.detail
    assert watch_failure(UP, since=UP) is None
    # A new HAProxy process (counters from zero) is no failure by itself.
    assert watch_failure(UP, since=dataclasses.replace(UP, check_failures=4)) is None


class QuietServer(FakeServer):
    """A server whose new slot serves well: counts the watch's looks."""

    def __init__(self, failed_checks_after: float | None = None) -> None:
        super().__init__()
        self.looks = 0
        self.started = time.monotonic()
        self.failed_checks_after = failed_checks_after

    def runtime_api(self, command: str) -> str:
        raise AssertionError(f"not expected here: {command}")


def watching(tmp_path: Path, server: QuietServer) -> SlotSwap:
    swap = SlotSwap(server, make_inventory(tmp_path), "v2", lambda _: None)
    old = ServerStat("web1", "DRAIN", 0, "L7OK", "200", "", 0, "127.0.0.1:18081")
    swap.at_switch = {"web1": old, "web2": UP}
    swap.switched_at = time.monotonic()

    def stats() -> dict[str, ServerStat]:
        server.looks += 1
        new = UP
        after = server.failed_checks_after
        if after is not None and time.monotonic() - server.started >= after:
            new = dataclasses.replace(UP, check_failures=1)  # status UP again already
        return {"web1": old, "web2": new}

    swap.stats = stats  # type: ignore[method-assign]
    swap.container = lambda slot: ContainerInfo(  # type: ignore[method-assign]
        "webapp-web2", True, "running", "acme/webapp:v2", "sha256:2", {}, {}, 0, "")
    return swap


def test_the_watch_looks_at_haproxy_a_few_times_a_second(tmp_path: Path) -> None:
    server = QuietServer()
    swap = watching(tmp_path, server)
    closes = time.monotonic() + 1.0
    swap.watch_and_drain("web2", "web1", lambda: closes)
    # HAProxy marks a failing slot DOWN 200 ms after its first failed check: a look every
    # 250 ms is enough (the counter of failed checks catches what happens between two).
    assert server.looks <= 6


def test_a_check_failed_between_two_looks_switches_back(tmp_path: Path) -> None:
    server = QuietServer(failed_checks_after=0.3)
    swap = watching(tmp_path, server)
    swap.old_version = "v1"
    backs: list[str] = []

    def switch_back(new: str, old: str, stats: dict[str, ServerStat], after: float,
                    failure: object = None) -> None:
        backs.append(getattr(failure, "what", ""))
        raise SwapRolledBack("back", "v1 in web1")

    swap.switch_back = switch_back  # type: ignore[method-assign]
    closes = time.monotonic() + 2.0
    with pytest.raises(SwapRolledBack):
        swap.watch_and_drain("web2", "web1", lambda: closes)
    assert backs == ["failed HAProxy's health checks"]


def test_checks_that_never_pass_are_reported_by_a_finished_checks_code(
        tmp_path: Path) -> None:
    """HAProxy reports a check under way as `* L7STS` with code 0 (recorded): the timeout's
    error names the code of the last finished check, not 0 (seen as `L7STS 0`)."""
    inventory = make_inventory(tmp_path, timeouts={"healthy": 0.3})
    swap = SlotSwap(FakeServer(), inventory, "v2", lambda _: None)
    finished = ServerStat("web2", "DRAIN", 0, "L7STS", "400", "HTTP status check returned "
                          "code <3C>400<3E>", 0, "127.0.0.1:18082")
    running = dataclasses.replace(finished, check_status="* L7STS", check_code="0")
    readings = iter([finished] + [running] * 1000)  # every look after the first: under way
    swap.stat = lambda slot: next(readings)  # type: ignore[method-assign]
    swap.fail_if_container_died = lambda slot, what: None  # type: ignore[method-assign]
    with pytest.raises(Exception, match="L7STS 400") as raised:
        swap.wait_healthy("web2", "127.0.0.1")
    assert "L7STS 0" not in str(raised.value)
    assert running.check_summary.startswith("L7STS (")  # no code rather than 0
