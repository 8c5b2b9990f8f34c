"""One plan for the run and the dry run (issue 21): the swap's steps (slotswap.server.
swap_steps), as the dry run prints them, are the lines and commands a run then sends to the
server, every one of them, in that order. Checked on simulated servers (simulated_server.py),
for a swap with a live slot, a first deploy, and a rollback that starts the kept container
again; and against a change of a line on one side only (the plan held to the run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.fleet import dry_run, rollout
from slotswap.server.slots import read_slots
from slotswap.server.swap_steps import Step
from tests.unit.simulated_server import SimulatedServer
from tests.unit.test_fault_sweep import Fleet


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(rollout, "say", lambda *args, **kwargs: None)


def planned(server: SimulatedServer, fleet: Fleet, tag: str) -> list[Step]:
    inventory = server.with_folders(fleet.inventory)
    return dry_run.swap_plan_steps(server, inventory, read_slots(server, inventory), tag)


def sent_in_order(steps: list[Step], log: list[str]) -> list[str]:
    """The plan's lines and commands the run did not send, or not in the plan's order."""
    missing, at = [], 0
    for step in steps:
        if step.kind not in ("api", "shell"):
            continue
        try:
            at = log.index(step.text, at) + 1
        except ValueError:
            missing.append(step.render())
    return missing


@pytest.mark.parametrize(("setup", "command", "tag", "restart"), [
    (("v1",), "deploy v2", "v2", False),  # the live slot drains and is watched
    ((), "deploy v1", "v1", False),  # a first deploy: the new slot in alone
    (("v1", "v2"), "rollback v1", "v1", True),  # the kept container started again
])
def test_a_run_sends_every_line_and_command_of_its_plan_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: tuple[str, ...],
        command: str, tag: str, restart: bool) -> None:
    fleet = Fleet(tmp_path, 1, monkeypatch)
    for done in setup:
        assert fleet.run(f"deploy {done}").exit_code == 0
    fleet.problems = []
    server = fleet.servers[0]
    steps = planned(server, fleet, tag)
    assert any(step.kind == "shell" and ("docker start" in step.text) == restart
               and "docker container inspect" in step.text for step in steps)
    mark = len(server.log)
    result = fleet.run(command)
    assert result.exit_code == 0, result.message
    assert sent_in_order(steps, server.log[mark:]) == []
    assert fleet.problems == [] or not setup  # a first deploy: nothing served before it


def test_a_line_changed_on_one_side_only_is_found(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: the plan with one line the run does not send."""
    fleet = Fleet(tmp_path, 1, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    server = fleet.servers[0]
    steps = planned(server, fleet, "v2")
    at = next(i for i, step in enumerate(steps) if step.phase == "switch")
    steps[at] = Step("switch", "api", steps[at].text.replace("state ready", "state drain"))
    mark = len(server.log)
    assert fleet.run("deploy v2").exit_code == 0
    assert sent_in_order(steps, server.log[mark:]) == [steps[at].render()]
