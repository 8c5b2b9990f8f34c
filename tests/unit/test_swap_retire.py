"""SlotSwap.watch_and_retire: the old slot is stopped only once the new one is seen serving.
The watch may end "fine" while the new slot no longer serves (its container exited and
Docker's DNS dropped its name, HAProxy put it in maint, or drain): the check before retiring
(verify_before_retiring) then sends the traffic back to the old slot, which keeps running.
The server's answers are the ones recorded from the sandbox (tests/unit/fixtures)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.remote.server import CommandDeadlineError, CommandResult, ConnectionLostError
from slotswap.server.swap import SlotSwap, SwapError, SwapRolledBack
from tests.unit.fake_server import FakeServer, make_inventory, recorded


def swapped(tmp_path: Path, server: FakeServer, new: str, old: str,
            shown: list[str] | None = None) -> SlotSwap:
    """A swap right after its switch to `new` (the new container as the recording has it),
    its watch window over without a failure seen. The server answers `show stat`, `show
    servers state` and `docker inspect` with one recorded state of the sandbox's server, and
    records every other runtime-API line and command."""
    swap = SlotSwap(server, make_inventory(tmp_path), "v2",
                    (shown if shown is not None else []).append)
    swap.new_slot, swap.old_slot, swap.old_version = new, old, "v1"
    swap.switched_at = time.monotonic()
    started = docker.parse_inspect(recorded(f"docker_inspect_{server.state}.json"))
    swap.new_started_ns = started[f"webapp-{new}"].started_ns
    swap.watch_and_drain = lambda *_args, **_kwargs: None  # type: ignore[method-assign]
    return swap


def stops_of(server: FakeServer, slot: str) -> list[list[str]]:
    return [argv for argv in server.commands
            if argv[:2] == ["docker", "stop"] and argv[-1] == f"webapp-{slot}"]


@pytest.mark.parametrize(("state", "new", "old", "why"), [
    # HAProxy dropped the exited container's name: MAINT (resolution).
    ("live_web1", "web2", "web1", "stopped taking traffic"),
    # HAProxy still counts it UP (4 sessions), its container has exited.
    ("web1_live_web2_up_stopped", "web2", "web1", "its container stopped"),
    # Running, but out of rotation.
    ("web1_live_web2_drain", "web2", "web1", "stopped taking traffic"),
    # Running, failing its checks.
    ("web1_down_starting_web2_live", "web1", "web2", "failed HAProxy's health checks"),
    # In maint, its container exited.
    ("web1_maint_stopped_web2_live", "web1", "web2", "stopped taking traffic"),
])
def test_the_old_slot_is_never_stopped_when_the_new_one_does_not_serve(
        tmp_path: Path, state: str, new: str, old: str, why: str) -> None:
    server = FakeServer(state=state)
    with pytest.raises(SwapRolledBack, match=rf"took traffic in {new}, then {why}"):
        swapped(tmp_path, server, new, old).watch_and_retire(lambda: 0.0)
    assert stops_of(server, old) == []
    # The only line that names the old slot puts it back in rotation.
    assert server.sent == [f"set server webapp/{old} state ready; "
                           f"set server webapp/{new} state maint"]
    assert stops_of(server, new)


def test_a_new_slot_that_serves_retires_the_old_one(tmp_path: Path) -> None:
    """The control: web2 (v2) running and UP; web1 goes out of rotation, then is stopped."""
    server = FakeServer(state="live_web2")
    serving = swapped(tmp_path, server, "web2", "web1").watch_and_retire(lambda: 0.0)
    assert "web2" in serving and "v2" in serving
    assert server.sent == ["set server webapp/web1 state maint"]
    assert stops_of(server, "web1") and not stops_of(server, "web2")


# -- path 10: after the full watch, the server fails while the old slot is retired ------------
FROZEN = CommandDeadlineError("s1", "docker container inspect webapp-web1 webapp-web2", 60)
LOST = ConnectionLostError("s1: lost the SSH connection (EOF)")
OLD_OUT = "set server webapp/web1 state maint"


def failing(error: BaseException, times: int = 1_000_000):
    """A command answer that raises `error` `times` times, then answers as the recording."""
    left = [times]

    def answer(argv: list[str]) -> CommandResult:
        if left[0] > 0:
            left[0] -= 1
            raise error
        if argv[:3] == ["docker", "container", "inspect"]:
            return CommandResult(recorded("docker_inspect_live_web2.json"), "", 0)
        return CommandResult("", "", 0)
    return answer


def test_a_docker_engine_that_stops_answering_after_the_watch_leaves_the_new_version_alone(
        tmp_path: Path) -> None:
    """verify's `docker inspect` meets its deadline (a frozen engine): the new version had its
    full watch, and HAProxy still sees it pass: the old slot leaves rotation all the same,
    its container left running (no `docker stop` waits for a deadline too)."""
    server = FakeServer(state="live_web2", answers={("docker",): failing(FROZEN)})
    shown: list[str] = []
    serving = swapped(tmp_path, server, "web2", "web1", shown).watch_and_retire(lambda: 0.0)
    assert server.sent == [OLD_OUT]
    assert not stops_of(server, "web1") and not stops_of(server, "web2")
    assert "v2 in web2" in serving and "HAProxy" in serving
    assert any(line.startswith("WARNING: webapp-web1") and "next deploy" in line
               for line in shown), shown


def test_a_connection_lost_after_the_watch_still_retires_the_old_slot(tmp_path: Path) -> None:
    server = FakeServer(state="live_web2",
                        answers={("docker", "container", "inspect"): failing(LOST, times=1)})
    serving = swapped(tmp_path, server, "web2", "web1").watch_and_retire(lambda: 0.0)
    assert server.sent == [OLD_OUT]
    assert stops_of(server, "web1") and not stops_of(server, "web2")
    assert "v2 in web2" in serving


@pytest.mark.parametrize("fault", [LOST, CommandDeadlineError(
    "s1", "docker stop --time 10 webapp-web1", 40)])
def test_an_old_container_that_cannot_be_stopped_is_left_out_of_rotation(
        tmp_path: Path, fault: BaseException) -> None:
    server = FakeServer(state="live_web2", answers={("docker", "stop"): failing(fault)})
    shown: list[str] = []
    serving = swapped(tmp_path, server, "web2", "web1", shown).watch_and_retire(lambda: 0.0)
    assert server.sent == [OLD_OUT]
    assert serving == "v2 in web2"
    assert any(line.startswith("WARNING: could not stop webapp-web1") for line in shown), shown


def test_a_new_slot_haproxy_no_longer_sees_pass_gets_the_traffic_sent_back(
        tmp_path: Path) -> None:
    """Docker does not answer and HAProxy has the new slot out (MAINT (resolution)), the old
    one UP: the traffic goes back, the old slot is never taken out."""
    server = FakeServer(state="live_web1", answers={("docker",): failing(FROZEN)})
    with pytest.raises(SwapRolledBack, match="took traffic in web2, then stopped taking"):
        swapped(tmp_path, server, "web2", "web1").watch_and_retire(lambda: 0.0)
    assert server.sent == ["set server webapp/web1 state ready; "
                           "set server webapp/web2 state maint"]


class SilentServer(FakeServer):
    """Docker does not answer, nor does the runtime API to any line that changes a state."""

    def runtime_api(self, command: str) -> str:
        if not command.startswith("show"):
            self.sent.append(command)
            raise LOST
        return super().runtime_api(command)


def test_an_old_slot_that_cannot_be_taken_out_is_said_and_left_to_the_next_deploy(
        tmp_path: Path) -> None:
    server = SilentServer(state="live_web2", answers={("docker",): failing(FROZEN)})
    shown: list[str] = []
    with pytest.raises(SwapError, match=r"web2 \(v2\) had its full watch.*next deploy") as raised:
        swapped(tmp_path, server, "web2", "web1", shown).watch_and_retire(lambda: 0.0)
    assert not isinstance(raised.value, SwapRolledBack)
    assert server.sent == [OLD_OUT, OLD_OUT]  # sent again once: twice is as once
    assert "v1" not in raised.value.serving  # no claim beyond what is known
