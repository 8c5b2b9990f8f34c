"""One-off containers (the release command, `exec`) never outlive the run that started them
unnoticed: each has a name of its own, is killed (`docker rm --force`) when its command runs
past its deadline, the connection is lost or the run is interrupted, and the message says
what became of it; one a killed run left is removed by the next release, which says so."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from slotswap.config.app_env import resolve_app_env
from slotswap.config.inventory import Inventory
from slotswap.core import interrupts
from slotswap.remote.server import CommandDeadlineError, CommandResult, ConnectionLostError
from slotswap.server import one_off, release
from tests.unit.fake_server import FakeServer, make_inventory

RUN = ("docker", "run")
RM = ("docker", "rm", "--force")
LEFT = "webapp-release-0a1b2c3d"


def inventory(tmp_path: Path) -> Inventory:
    return make_inventory(tmp_path, image="r/webapp",
                          release={"command": ["bin/migrate"], "timeout": 5})


def started_name(server: FakeServer) -> str:
    argv = next(a for a in server.commands if tuple(a[:2]) == RUN)
    return argv[argv.index("--name") + 1]


def removed(server: FakeServer) -> list[str]:
    return [a[3] for a in server.commands if tuple(a[:3]) == RM]


def run_release(server: FakeServer, tmp_path: Path, shown: list[str]) -> str:
    inv = inventory(tmp_path)
    return release.run(server, inv, "v2", resolve_app_env(inv, {}), shown.append)


def test_a_release_command_past_its_timeout_is_killed_and_said(tmp_path: Path) -> None:
    def deadline(argv: list[str]) -> CommandResult:
        raise CommandDeadlineError("s1", "docker run ...", 5)

    server = FakeServer(answers={RUN: deadline})
    with pytest.raises(release.ReleaseFailed) as failed:
        run_release(server, tmp_path, [])
    name = started_name(server)
    assert name.startswith("webapp-release-") and removed(server) == [name]
    assert str(failed.value) == (
        f"the release command `bin/migrate` timed out after 5s (release.timeout) on s1: its "
        f"container {name} was killed; nothing else was changed")
    entry = json.loads(server.stdins[-1])
    assert entry["outcome"] == "failed" and entry["error"].startswith("timed out after 5s")


def test_a_lost_connection_kills_the_release_command_over_a_new_one(tmp_path: Path) -> None:
    def lost(argv: list[str]) -> CommandResult:
        raise ConnectionLostError("s1: lost the SSH connection (reset by peer)")

    server = FakeServer(answers={RUN: lost, RM: CommandResult("", "Error: No such container", 1)})
    with pytest.raises(release.ReleaseFailed, match=r"`bin/migrate` stopped on s1: lost the SSH "
                                                     r"connection \(reset by peer\): its "
                                                     r"container webapp-release-\w+ had ended; "
                                                     r"nothing else was changed$"):
        run_release(server, tmp_path, [])
    assert removed(server) == [started_name(server)]


def test_ctrl_c_in_a_guarded_run_kills_the_release_command_at_once(tmp_path: Path) -> None:
    """The deploy notes Ctrl-C and acts at safe points; the release command is not one: its
    container is killed while the command still runs, and the interrupt goes on."""
    server = FakeServer()

    def runs_until_killed(argv: list[str]) -> CommandResult:
        os.kill(os.getpid(), signal.SIGINT)  # noted only: the run is guarded
        deadline = time.monotonic() + 5
        while not removed(server):
            assert time.monotonic() < deadline, "never killed"
            time.sleep(0.05)
        return CommandResult("", "", 137)

    server.answers[RUN] = runs_until_killed
    shown: list[str] = []
    with pytest.raises(KeyboardInterrupt), interrupts.guarded():
        run_release(server, tmp_path, shown)
    name = started_name(server)
    assert removed(server) == [name]
    assert shown[-1] == f"interrupted: its container {name} was killed"
    assert json.loads(server.stdins[-1])["outcome"] == "interrupted"


def test_a_release_container_an_earlier_run_left_is_removed_first_and_said(
        tmp_path: Path) -> None:
    listing = CommandResult(f"{LEFT}\tUp 12 minutes\n", "", 0)
    server = FakeServer(answers={("docker", "ps"): listing,
                                 RUN: CommandResult("migrated\n", "", 0)})
    shown: list[str] = []
    assert run_release(server, tmp_path, shown) == "migrated"
    assert removed(server) == [LEFT]
    first = [tuple(a[:3]) for a in server.commands].index(RM)
    assert first < [tuple(a[:2]) for a in server.commands].index(RUN)
    assert shown[0] == (f"removed {LEFT} (Up 12 minutes), left by an earlier run that was "
                        "stopped before it could kill it")


def test_a_release_that_ends_by_itself_kills_nothing(tmp_path: Path) -> None:
    server = FakeServer(answers={RUN: CommandResult("done\n", "", 0)})
    run_release(server, tmp_path, [])
    assert removed(server) == []


def exec_server(answer: object) -> FakeServer:
    server = FakeServer(state="live_web1")
    server.answers[RUN] = answer  # type: ignore[assignment]
    return server


def test_ctrl_c_in_exec_kills_its_one_off_container(tmp_path: Path) -> None:
    def interrupted(argv: list[str]) -> CommandResult:
        raise KeyboardInterrupt

    server = exec_server(interrupted)
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        one_off.run(server, make_inventory(tmp_path), ["sleep", "600"], live=False,
                    interactive=False, say=said.append, on_line=said.append)
    name = started_name(server)
    assert name.startswith("webapp-exec-") and removed(server) == [name]
    assert said[-1] == f"s1: interrupted: its container {name} was killed"


def test_exec_live_has_no_container_of_its_own_to_kill(tmp_path: Path) -> None:
    server = FakeServer(state="live_web1", answers={("docker", "exec"): CommandResult("", "", 0)})
    assert one_off.run(server, make_inventory(tmp_path), ["true"], live=True,
                       interactive=False, say=print, on_line=print) == 0
    assert removed(server) == []
