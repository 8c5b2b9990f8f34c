"""What a server's history says after a run cut by a fault, on simulated servers (the fault
sweep's Fleet): the last entry names what serves, a transiently lost append is written
once all the same, and a plain `rollback` afterwards undoes exactly that run."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.fleet import rollback_targets as targets_module
from slotswap.fleet import rollout
from slotswap.fleet.outcomes import Outcome, RolloutResult
from slotswap.server import history
from slotswap.server.history import HistoryEntry
from tests.unit.simulated_fleet import Fleet
from tests.unit.simulated_server import Fault, SimulatedServer, step_name, versions_in_rotation


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr("slotswap.fleet.rollout.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(targets_module, "say", lambda *args, **kwargs: None)


def on_v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Fleet:
    fleet = Fleet(tmp_path / "template", 1, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    return fleet


def calls_of(fleet: Fleet, command: str, tmp_path: Path,
             monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, str]]:
    """(call index from 1, step, what) of each call of a clean run of `command`."""
    clean = fleet.clone(tmp_path / "clean", monkeypatch)
    server = clean.servers[0]
    start, seen = server.calls, []
    checks = server.after_call

    def after_call(of: SimulatedServer, what: str) -> None:
        seen.append((of.calls - start, step_name(of, what), what))
        checks(of, what)

    server.after_call = after_call
    assert clean.run(command).exit_code == 0
    return seen


def faulted(fleet: Fleet, at: int, fault: str, command: str, root: Path,
            monkeypatch: pytest.MonkeyPatch, *, back_lost: bool = False,
            ) -> tuple[Fleet, RolloutResult]:
    """`fault` at the call `at`; with `back_lost`, the connection is lost again before each
    of the two tries of the line that would send the traffic back (after the state file
    written ahead of it: its read and its write)."""
    case = fleet.clone(root, monkeypatch)
    server = case.servers[0]
    server.faults = [Fault(server.calls + at, fault)] + [
        Fault(server.calls + at + later, "lost_before") for later in (3, 4) if back_lost]
    return case, case.run(command)


def entries(fleet: Fleet) -> list[HistoryEntry]:
    server = fleet.servers[0]
    return history.parse_history(server.read_local(history.history_path(fleet.inventory))
                                 or "")


@pytest.mark.parametrize("fault", ["lost_before", "lost_after", "deadline"])
def test_cut_in_its_watch_and_not_sent_back_the_history_says_the_new_version_serves(
        fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Path 4: cut in its watch, and the line that would send the traffic back lost too: the
    new version keeps the traffic (`left switched`). Before, its entry said "failed" from
    v1, which reads as v1 serving."""
    fleet = on_v1(tmp_path, monkeypatch)
    last = max(at for at, step, _ in calls_of(fleet, "deploy v2", tmp_path, monkeypatch)
               if step == "watch")
    case, result = faulted(fleet, last, fault, "deploy v2", tmp_path / "case", monkeypatch,
                           back_lost=True)
    # As the window left it: v2 takes every request, v1's fallback line only what v2 cannot.
    routed = case.servers[0].routed()
    assert routed is not None and routed.version == "v2"
    assert result.exit_code == 1
    assert (result.outcomes[0].outcome, result.outcomes[0].serving) == (
        Outcome.LEFT_SWITCHED, "v2 in web2")
    entry = entries(case)[-1]
    assert (entry.from_tag, entry.to_tag, entry.outcome) == ("v1", "v2", "left switched")
    assert history.served_after(entries(case)) == "v2"
    # The plain rollback undoes that deploy: v2 goes back to v1.
    assert targets_module.rollback_targets(case.inventory) == ({case.servers[0].name: "v1"},
                                                               {})
    assert case.run("rollback").exit_code == 0
    assert versions_in_rotation(case.servers[0]) == {"v1"}


def test_sent_back_in_its_watch_the_history_still_says_failed_from_the_old_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut before its full watch: the traffic goes back to v1, and "failed" says so."""
    fleet = on_v1(tmp_path, monkeypatch)
    first = min(at for at, step, _ in calls_of(fleet, "deploy v2", tmp_path, monkeypatch)
                if step == "watch")
    case, result = faulted(fleet, first, "lost_before", "deploy v2", tmp_path / "case",
                           monkeypatch)
    assert versions_in_rotation(case.servers[0]) == {"v1"}
    assert result.outcomes[0].outcome == Outcome.FAILED
    assert (entries(case)[-1].from_tag, entries(case)[-1].outcome) == ("v1", "failed")


@pytest.mark.parametrize("fault", ["lost_before", "lost_after", "deadline"])
def test_a_history_entry_whose_append_was_cut_is_written_once(
        fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Path 11: the append is sent again over a new connection. Before, a connection lost
    before it left the history saying v1 was the last deployed while v2 served."""
    fleet = on_v1(tmp_path, monkeypatch)
    appends = [at for at, _, what in calls_of(fleet, "deploy v2", tmp_path, monkeypatch)
               if "history.jsonl" in what and "umask" in what]
    assert len(appends) == 1
    case, result = faulted(fleet, appends[0], fault, "deploy v2", tmp_path / "case",
                           monkeypatch)
    assert result.exit_code == 0
    assert [(e.from_tag, e.to_tag, e.outcome) for e in entries(case)] == [
        ("", "v1", "deployed"), ("v1", "v2", "deployed")]
    assert targets_module.rollback_targets(case.inventory) == ({case.servers[0].name: "v1"},
                                                               {})


@pytest.mark.parametrize(("fault", "step"), [("deadline", "image"), ("lost_before", "image"),
                                             ("interrupt", "unchanged?")])
def test_a_rollback_after_a_deploy_that_moved_nothing_has_nothing_to_undo(
        fault: str, step: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A deploy of v3 that stopped before any swap, on a server that went v1 -> v2: it
    leaves an entry, so the plain rollback after it finds it moved nothing and leaves v2
    serving, exit 0. Before, the run left no entry: the rollback undid the deploy of v2."""
    fleet = on_v1(tmp_path, monkeypatch)
    assert fleet.run("deploy v2").exit_code == 0
    fleet.servers[0].failing_after.clear()  # v3 is a good version here
    at = min(at for at, of, _ in calls_of(fleet, "deploy v3", tmp_path, monkeypatch)
             if of == step)
    case, result = faulted(fleet, at, fault, "deploy v3", tmp_path / "case", monkeypatch)
    assert result.exit_code != 0
    assert (entries(case)[-1].to_tag, entries(case)[-1].run) == ("v3", result.outcomes[0].run)
    monkeypatch.setattr(targets_module, "say", print)
    assert targets_module.rollback_targets(case.inventory) == ({case.servers[0].name: "v2"},
                                                               {})
    assert "rollback undoes it: 203.0.113.10 stays as it is; nothing left to undo" in \
        capsys.readouterr().out
    assert case.run("rollback").exit_code == 0
    assert versions_in_rotation(case.servers[0]) == {"v2"}


def test_left_switched_goes_back_with_on_failure_rollback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--on-failure=rollback swaps a server left switched back too: it serves the new
    version."""
    fleet = on_v1(tmp_path, monkeypatch)
    last = max(at for at, step, _ in calls_of(fleet, "deploy v2", tmp_path, monkeypatch)
               if step == "watch")
    case = fleet.clone(tmp_path / "case", monkeypatch)
    server = case.servers[0]
    server.faults = [Fault(server.calls + last + later, "lost_before") for later in (0, 3, 4)]
    result = rollout.deploy(case.inventory, "v2", on_failure=rollout.ON_FAILURE_ROLLBACK)
    assert (result.exit_code, result.outcomes[0].outcome) == (1, Outcome.ROLLED_BACK)
    assert versions_in_rotation(server) == {"v1"}
    assert [e.outcome for e in entries(case)][-2:] == ["left switched", "rolled back"]


def test_a_rollback_its_watch_sent_back_is_kept_as_failed_not_as_an_automatic_rollback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a rollback's entry "rolled back" means the rollback --on-failure=rollback made (its
    version serves). A rollback whose own watch sent the traffic back was kept so too: the
    history then said v1 served where v2 did (found by the sweep, with an engine restart in
    an automatic rollback's window)."""
    fleet = on_v1(tmp_path, monkeypatch)
    assert fleet.run("deploy v2").exit_code == 0
    server = fleet.servers[0]
    server.failing_after["v1"] = 0.3  # v1's new container fails in the rollback's watch
    result = fleet.run("rollback")
    assert result.exit_code == 1 and result.outcomes[0].outcome == Outcome.ROLLED_BACK
    assert versions_in_rotation(server) == {"v2"}
    entries = history.parse_history(server.read_local(history.history_path(fleet.inventory))
                                    or "")
    assert (entries[-1].task, entries[-1].outcome) == ("rollback", "failed")
    assert history.served_after(entries) == "v2"
