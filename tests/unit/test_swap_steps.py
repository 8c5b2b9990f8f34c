"""One plan for the run and the dry run (issue 21): what a run changes on a server during its
swap is exactly its plan's changes (slotswap.server.swap_steps, as the dry run prints them):
the same runtime-API lines, shell commands and files written, in the same order, with only
reads between them. Checked on simulated servers (simulated_server.py) for a swap with a live
slot, a first deploy, a rollback that starts the kept container again, and a version that
fails in its watch (the steps back); and shown to catch a line changed on one side only and
a change the plan does not have."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.fleet import dry_run, rollout
from slotswap.server import swap as swap_module
from slotswap.server.slots import read_slots
from slotswap.server.swap_steps import Step, SwapPlan, back_steps, plan_swap, swap_steps
from tests.unit.simulated_docker import call_changes as changes
from tests.unit.simulated_fleet import Fleet
from tests.unit.simulated_server import SimulatedServer


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(rollout, "say", lambda *args, **kwargs: None)


def step_calls(steps: list[Step]) -> list[str]:
    """The plan's steps as the server's log names them (writes: `write PATH`)."""
    return [f"write {step.text}" if step.kind == "write" else step.text
            for step in steps if step.kind in ("api", "shell", "write")]


def plan_of(server: SimulatedServer, fleet: Fleet, tag: str) -> SwapPlan:
    inventory = server.with_folders(fleet.inventory)
    views = read_slots(server, inventory)
    idle = swap_module.plan_slots(views).idle
    restart = swap_module.SlotSwap(server, fleet.inventory, tag, print).can_restart(
        idle, views[idle])
    return plan_swap(views, inventory, tag, restart=restart)


def planned_changes(server: SimulatedServer, fleet: Fleet, tag: str, *,
                    fails: bool = False) -> list[str]:
    inventory = server.with_folders(fleet.inventory)
    plan = plan_of(server, fleet, tag)
    steps = swap_steps(plan, inventory)
    if fails:  # up to the switch, then the steps back
        steps = steps[:next(i for i, s in enumerate(steps) if s.phase == "watch")]
        steps += back_steps(plan, inventory)
    return [call for call in step_calls(steps) if changes(call)]


def run_changes(fleet: Fleet, server: SimulatedServer, command: str) -> tuple[int, list[str]]:
    mark = len(server.log)
    result = fleet.run(command)
    return result.exit_code, [call for call in server.log[mark:] if changes(call)]


def found_in_one_piece(planned: list[str], done: list[str]) -> bool:
    return any(done[at:at + len(planned)] == planned for at in range(len(done)))


@pytest.mark.parametrize(("setup", "command", "tag", "exit_code"), [
    (("v1",), "deploy v2", "v2", 0),  # the live slot drains and is watched, then stopped
    ((), "deploy v1", "v1", 0),  # a first deploy: the new slot in alone
    (("v1", "v2"), "rollback v1", "v1", 0),  # the kept container started again
    (("v1",), "deploy v3", "v3", 1),  # v3 fails in its watch: the steps back
])
def test_a_run_changes_exactly_what_its_plan_says_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: tuple[str, ...],
        command: str, tag: str, exit_code: int) -> None:
    fleet = Fleet(tmp_path, 1, monkeypatch)
    for done in setup:
        assert fleet.run(f"deploy {done}").exit_code == 0
    fleet.problems = []
    server = fleet.servers[0]
    planned = planned_changes(server, fleet, tag, fails=exit_code != 0)
    assert any(("docker start" in call) == (command == "rollback v1")
               and "docker container inspect" in call for call in planned)
    code, done = run_changes(fleet, server, command)
    assert code == exit_code
    assert found_in_one_piece(planned, done), "\n".join(
        ["planned:", *planned, "", "done:", *done])
    assert fleet.problems == [] or not setup  # a first deploy: nothing served before it


def on_v1_planning_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      ) -> tuple[Fleet, SimulatedServer, list[str]]:
    """One server serving v1, and the changes its plan for v2 makes."""
    fleet = Fleet(tmp_path, 1, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    return fleet, fleet.servers[0], planned_changes(fleet.servers[0], fleet, "v2")


def test_a_line_changed_on_one_side_only_is_found(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, server, planned = on_v1_planning_v2(tmp_path, monkeypatch)
    at = next(i for i, call in enumerate(planned) if "state ready" in call)
    planned[at] = planned[at].replace("state ready", "state drain", 1)
    assert not found_in_one_piece(planned, run_changes(fleet, server, "deploy v2")[1])


def test_a_change_the_plan_does_not_have_is_found(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fleet, server, planned = on_v1_planning_v2(tmp_path, monkeypatch)
    checked = swap_module.SlotSwap.wait_healthy

    def and_one_more(self: swap_module.SlotSwap, slot: str, address: str) -> None:
        checked(self, slot, address)
        self.server.runtime_api(f"set server webapp/{slot} state drain")

    monkeypatch.setattr(swap_module.SlotSwap, "wait_healthy", and_one_more)
    code, done = run_changes(fleet, server, "deploy v2")
    assert code == 0 and not found_in_one_piece(planned, done)


def test_the_dry_run_prints_the_plan_and_its_steps_back(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 1, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    server = fleet.servers[0]
    inventory = server.with_folders(fleet.inventory)
    shown = dry_run.swap_plan_steps(server, inventory, read_slots(server, inventory), "v2")
    plan = plan_of(server, fleet, "v2")
    assert [line for line in shown if not line.startswith("  ")] == [
        step.render() for step in swap_steps(plan, inventory)]
    assert [line for line in shown if line.startswith("  if it fails: ")] == [
        f"  if it fails: {step.render()}" for step in back_steps(plan, inventory)]
