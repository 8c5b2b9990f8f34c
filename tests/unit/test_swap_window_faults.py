"""Faults in and around a server's watch window, on the shared FakeServer: once the traffic is
back on the old slot nothing takes it out again (a failed clean-up is said and left to the
next run); an interrupt or a lost connection before the new version had its full watch puts
the traffic back on the old slot, which still runs; a switch line whose answer is lost is
followed by the switch back's line, which is right whichever way the switch went."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from slotswap.commands.docker import LABEL_VERSION, ContainerInfo
from slotswap.commands.runtime_api import RuntimeApiError, ServerStat
from slotswap.remote.server import (
    CommandDeadlineError,
    CommandResult,
    ConnectionLostError,
)
from slotswap.server import swap as swap_module
from slotswap.server.slots import SlotView
from slotswap.server.swap import SlotSwap, SwapError, SwapRolledBack
from slotswap.server.swap_plan import WatchFailure
from tests.unit.fake_server import BOTH_UP_STATE, FIXTURES, FakeServer, make_inventory

BACK = "set server webapp/web1 state ready; set server webapp/web2 state maint"
OLD_OUT = "set server webapp/web1 state maint"
LOST = ConnectionLostError("s1: lost the SSH connection (EOF)")


class FaultyServer(FakeServer):
    """Raises `fault` for the commands that start with `command` (docker logs, docker
    stop), and for the first `api_faults` runtime-API lines that change state."""

    def __init__(self, *, command: tuple[str, ...] = (), fault: BaseException = LOST,
                 api_faults: int = 0, api_fault: BaseException = LOST) -> None:
        # The reads after the swap (what serves now) get nothing usable: unknown. The state
        # written ahead of a line that moves traffic: both slots checked up.
        super().__init__(api={"show servers state": BOTH_UP_STATE,
                              "show": RuntimeError("not recorded here")})
        self.command, self.fault = command, fault
        self.api_faults, self.api_fault = api_faults, api_fault

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        if self.command and tuple(argv[:len(self.command)]) == self.command:
            self.commands.append(list(argv))
            raise self.fault
        return super().run(argv, check=check, timeout=timeout, stdin=stdin)

    def runtime_api(self, command: str) -> str:
        if self.api_faults and not command.startswith("show"):
            self.api_faults -= 1
            self.sent.append(command)  # sent: HAProxy may or may not have run it
            raise self.api_fault
        return super().runtime_api(command)


def stats(new_status: str = "UP", old_status: str = "DRAIN") -> dict[str, ServerStat]:
    return {"web2": ServerStat("web2", new_status, 3, "L7STS", "500", "", 0, "127.0.0.1:18082"),
            "web1": ServerStat("web1", old_status, 0, "L7OK", "200", "", 0, "127.0.0.1:18081")}


def switched(tmp_path: Path, server: FakeServer, shown: list[str],
             watched_for: float = 0.5) -> SlotSwap:
    """A swap `watched_for` seconds after its switch from web1 (v1) to web2 (v2), with a 5 s
    watch; its last reading of HAProxy has both slots up."""
    swap = SlotSwap(server, make_inventory(tmp_path), "v2", shown.append)
    swap.new_slot, swap.old_slot, swap.old_version = "web2", "web1", "v1"
    swap.switched_at = time.monotonic() - watched_for
    swap.last_stats = stats()
    swap.passed_at = time.monotonic()  # the watch's last look, just now, found web2 passing
    return swap


def failing_in_watch(swap: SlotSwap) -> None:
    """The watch sees the new slot fail: it sends the traffic back (switch_back)."""
    def watch(*_args: object, **_kwargs: object) -> None:
        swap.switch_back("web2", "web1", stats("DOWN", "DRAIN"), 1.5,
                         WatchFailure("failed HAProxy's health checks", "L7STS 500"))
    swap.watch_and_drain = watch  # type: ignore[method-assign]


def raising_in_watch(swap: SlotSwap, error: BaseException) -> None:
    def watch(*_args: object, **_kwargs: object) -> None:
        raise error
    swap.watch_and_drain = watch  # type: ignore[method-assign]


def old_slot_taken_out(server: FakeServer) -> bool:
    return any(OLD_OUT in line for line in server.sent)


# -- path 1: the traffic back on the old slot, then a clean-up that fails ---------------------
@pytest.mark.parametrize(("command", "fault"), [
    (("docker", "logs"), CommandDeadlineError("s1", "docker logs --tail 20 webapp-web2", 60)),
    (("docker", "logs"), LOST),
    (("docker", "stop"), CommandDeadlineError("s1", "docker stop --time 10 webapp-web2", 40)),
    (("docker", "stop"), LOST),
])
def test_a_failed_clean_up_after_the_switch_back_never_takes_the_old_slot_out(
        tmp_path: Path, command: tuple[str, ...], fault: BaseException) -> None:
    server = FaultyServer(command=command, fault=fault)
    shown: list[str] = []
    swap = switched(tmp_path, server, shown)
    failing_in_watch(swap)
    with pytest.raises(SwapRolledBack, match="rolled back to v1 in web1") as raised:
        swap.watch_and_retire(lambda: 0.0)
    assert server.sent == [BACK]  # the only line: nothing took web1 out again
    # What the summary says serves is what serves, though the server no longer answers.
    assert raised.value.serving == "v1 in web1"
    said = [line for line in shown if line.startswith("could not stop webapp-web2")]
    assert len(said) == 1 and "the next deploy removes it" in said[0], shown


def test_a_lost_answer_to_the_switch_back_line_is_sent_again(tmp_path: Path) -> None:
    # HAProxy did not answer in time: a RuntimeApiError, not a ConnectError.
    server = FaultyServer(api_faults=1, api_fault=RuntimeApiError(
        "s1: runtime API `set server ...`: no answer from HAProxy within 10s"))
    swap = switched(tmp_path, server, [])
    failing_in_watch(swap)
    with pytest.raises(SwapRolledBack, match="rolled back to v1 in web1"):
        swap.watch_and_retire(lambda: 0.0)
    assert server.sent == [BACK, BACK]
    assert not old_slot_taken_out(server)


def test_an_interrupt_during_the_clean_up_leaves_the_traffic_on_the_old_slot(
        tmp_path: Path) -> None:
    # --watch-each: the watch runs in the main thread, where a second Ctrl-C lands anywhere.
    server = FaultyServer(command=("docker", "stop"), fault=KeyboardInterrupt())
    swap = switched(tmp_path, server, [])
    failing_in_watch(swap)
    with pytest.raises(KeyboardInterrupt):
        swap.watch_and_retire(lambda: 0.0)
    assert server.sent == [BACK]


# -- path 4: an interrupt or a lost connection in the window ----------------------------------
@pytest.mark.parametrize("error", [KeyboardInterrupt(), LOST,
                                   CommandDeadlineError("s1", "docker inspect webapp-web2", 60)])
def test_stopped_in_the_window_before_a_full_watch_goes_back_to_the_old_slot(
        tmp_path: Path, error: BaseException) -> None:
    server = FaultyServer()
    shown: list[str] = []
    swap = switched(tmp_path, server, shown, watched_for=0.5)
    raising_in_watch(swap, error)
    with pytest.raises(type(error)):
        swap.watch_and_retire(lambda: None)
    assert server.sent == [BACK]  # one line: web1 in rotation, web2 out
    assert ["docker", "stop", "--time", "10", "webapp-web2"] in server.commands
    assert not any(argv[:2] == ["docker", "stop"] and argv[-1] == "webapp-web1"
                   for argv in server.commands)  # the old version keeps running
    assert any(line.startswith("stopped early: traffic is back on web1 (v1)") for line in shown)
    assert swap.serving == "v1 in web1"


def test_stopped_after_a_full_watch_keeps_the_proven_version(tmp_path: Path) -> None:
    server = FaultyServer()
    shown: list[str] = []
    swap = switched(tmp_path, server, shown, watched_for=6)
    raising_in_watch(swap, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        swap.watch_and_retire(lambda: None)
    assert server.sent == [OLD_OUT]  # web2 (v2) had its full watch: it stays
    assert server.commands == []  # web1's container still runs
    assert any(line.startswith("stopped early: web2 (v2) serves") for line in shown)


def test_a_proven_version_failing_since_the_last_look_is_not_kept_alone(
        tmp_path: Path) -> None:
    """Stopped after a full watch, the new version is looked at once more before the old
    slot goes: found DOWN now (recorded: web1 up, web2 down), the traffic goes back to web1,
    which still runs, instead of leaving no slot in rotation."""
    server = FaultyServer()
    server.api = {"show stat": (FIXTURES / "show_stat_web1_up_stopped_web2_down.csv"
                                ).read_text(), **server.api}
    shown: list[str] = []
    swap = switched(tmp_path, server, shown, watched_for=6)
    raising_in_watch(swap, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        swap.watch_and_retire(lambda: None)
    assert server.sent == [BACK]
    assert not old_slot_taken_out(server)
    assert any(line.startswith("stopped early: traffic is back on web1 (v1), which kept "
                               "running; web2 (v2) failed HAProxy's health checks")
               for line in shown)


@pytest.mark.parametrize("error", [LOST, RuntimeApiError(
    "s1: runtime API `show stat webapp 4 -1`: no answer from HAProxy within 10s")])
def test_a_watch_cut_at_its_last_look_is_no_full_watch(tmp_path: Path,
                                                       error: BaseException) -> None:
    """The window closed (6 s since the switch, a 5 s watch), but the look at its end, the
    one that would have seen web2 fail, got no answer: web2 was last seen passing 4.75 s
    after its switch, so it is not proven and the traffic goes back to web1, never out."""
    server = FaultyServer()
    shown: list[str] = []
    swap = switched(tmp_path, server, shown, watched_for=6)
    swap.passed_at = swap.switched_at + 4.75
    raising_in_watch(swap, error)
    with pytest.raises(type(error)):
        swap.watch_and_retire(lambda: None)
    assert server.sent == [BACK]
    assert not old_slot_taken_out(server)
    assert any(line.startswith("stopped early: traffic is back on web1 (v1)") for line in shown)


def test_an_old_slot_no_longer_up_is_not_switched_back_to(tmp_path: Path) -> None:
    server = FaultyServer()
    swap = switched(tmp_path, server, [])
    swap.last_stats = stats("UP", "DOWN")
    raising_in_watch(swap, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        swap.watch_and_retire(lambda: None)
    assert BACK not in server.sent


def test_a_server_that_cannot_be_reached_again_is_left_for_the_next_run(
        tmp_path: Path) -> None:
    # The switch back's line fails twice: the slots stay as they were (web2 in rotation,
    # web1 draining and running): the next deploy or rollback swaps from there.
    server = FaultyServer(api_faults=2)
    shown: list[str] = []
    swap = switched(tmp_path, server, shown)
    raising_in_watch(swap, LOST)
    with pytest.raises(ConnectionLostError):
        swap.watch_and_retire(lambda: None)
    assert server.sent == [BACK, BACK]
    assert server.commands == []
    assert any(line.startswith("could not send the traffic back to web1") for line in shown)


# -- path 4: the answer to the switch line lost -----------------------------------------------
@pytest.mark.parametrize("fault", [LOST, RuntimeApiError(
    "s1: runtime API `set server ...`: no answer from HAProxy within 10s")])
def test_a_lost_answer_to_the_switch_puts_the_traffic_on_the_old_slot(
        tmp_path: Path, fault: BaseException) -> None:
    server = FaultyServer(api_faults=1, api_fault=fault)
    swap = switched(tmp_path, server, [])
    with pytest.raises(SwapError, match=r"lost the SSH connection|no answer from HAProxy"):
        swap.switch_over("web2", "web1")
    switch = ("set server webapp/web2 state ready; set server webapp/web1 state drain; "
              "show servers state webapp")  # the state read back in the same round trip
    assert server.sent == [switch, BACK]
    assert ["docker", "stop", "--time", "10", "webapp-web2"] in server.commands


# -- path 7: no slot serving (a first deploy, or the live slot failing its checks) -----------
def view(slot: str, status: str, version: str | None, running: bool) -> SlotView:
    container = None if version is None else ContainerInfo(
        f"webapp-{slot}", running, "running" if running else "exited", f"acme/webapp:{version}",
        f"sha256:{version}", {LABEL_VERSION: version}, {}, 0, "2026-01-02T03:04:05Z")
    stat = ServerStat(slot, status, 0, "L7STS" if status == "DOWN" else "L7OK", "", "", 0,
                      f"127.0.0.1:1808{slot[-1]}")
    fallback = ServerStat(f"{slot}-fallback", "MAINT", 0, "", "", "", 0,
                          f"127.0.0.1:1808{slot[-1]}")
    return SlotView(slot, stat, None, container, fallback)  # type: ignore[arg-type]


@pytest.mark.parametrize(("web1", "new", "other"), [
    # The live slot fails its checks, its container still runs: the new version goes into
    # web2. web1 comes first in the backend (`balance first`): left ready, the old version
    # there would take every request back the moment its checks pass again.
    (view("web1", "DOWN", "v1", running=True), "web2", "web1"),
    (view("web1", "MAINT", None, running=False), "web1", "web2"),  # a first deploy
])
@pytest.mark.parametrize("lost_answers", [0, 1])
def test_with_no_slot_serving_the_new_one_goes_in_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, web1: SlotView, new: str,
        other: str, lost_answers: int) -> None:
    views = {"web1": web1, "web2": view("web2", "MAINT", None, running=False)}
    monkeypatch.setattr(swap_module, "read_slots_and_roles",
                        lambda server, inventory: (views, []))
    server = FaultyServer(api_faults=lost_answers)  # a lost answer: the line sent again
    swap = SlotSwap(server, make_inventory(tmp_path), "v2", lambda _: None)
    swap.retire = lambda plan: None  # type: ignore[method-assign]
    swap.start_new = lambda slot, slot_view, start: "127.0.0.1"  # type: ignore[method-assign]
    swap.wait_healthy = lambda slot, address: None  # type: ignore[method-assign]
    swap.verify = lambda slot: f"v2 in {slot}"  # type: ignore[method-assign]
    assert swap.switch_in() is False  # nothing to watch against
    assert server.sent == [f"set server webapp/{new} state ready; "
                           f"set server webapp/{other}-fallback state maint; "
                           f"set server webapp/{other} state maint"] * (1 + lost_answers)
    # Nothing stopped: the role containers read before the switch, and nothing else.
    assert server.commands == []  # the role containers were read with the slots
