"""A plain `rollback` after a deploy that did not finish undoes that deploy: each server it
moved and left on its new version goes back to what it served before it, every other server
stays as it is; after a run that finished, each server goes back one version, as before.
The servers are FakeServers answering from recorded HAProxy and Docker states."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotswap.config.inventory import Inventory
from slotswap.fleet import rollback_targets as targets_module
from slotswap.fleet.outcomes import Outcome, ServerOutcome
from slotswap.fleet.rollback_targets import rollback_targets
from slotswap.fleet.server_run import record_history
from slotswap.server.history import HistoryEntry, new_entry, served_after
from tests.unit.fake_server import FakeServer, make_inventory

HISTORY = "/var/lib/slotswap/webapp/history.jsonl"
HOSTS = ["203.0.113.10", "203.0.113.11", "203.0.113.12"]


def entry(task: str, from_tag: str, to_tag: str, outcome: str = "deployed", *,
          run: str = "", minute: int = 0) -> HistoryEntry:
    return new_entry(task, from_tag, to_tag, outcome, 1.0, run=run,
                     now=datetime(2026, 12, 3, 10, minute, tzinfo=UTC))


# The recorded states: web1 or web2 live, each container labelled with its version (v1).
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
          servers: dict[str, tuple[str, list[HistoryEntry]]]) -> Inventory:
    """Each server (s1, s2, s3) serving a version, with a history; the recorded slots'
    containers are relabelled with that version."""
    inventory = make_inventory(tmp_path, hosts=HOSTS)
    fakes = []
    for host, (name, (version, entries)) in zip(inventory.hosts, servers.items(), strict=False):
        server = FakeServer(name, inventory=inventory, state="live_web1")
        server.host = host
        server.name = name
        server.files[HISTORY] = "".join(json.dumps(asdict(e)) + "\n" for e in entries)
        recorded = server.answer(["docker", "container", "inspect"]).stdout
        server.answers[("docker", "container", "inspect")] = type(
            server.answer(["true"]))(recorded.replace('"v1"', json.dumps(version)), "", 0)
        fakes.append(server)
    monkeypatch.setattr(targets_module, "servers_of", lambda inv: fakes)
    return inventory


BEFORE = [entry("deploy", "v0", "v1", run="r0")]


def test_after_a_finished_deploy_each_server_goes_back_one_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    done = [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1)]
    inventory = fleet(tmp_path, monkeypatch, {"s1": ("v2", done), "s2": ("v2", done)})
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v1"}, {})


def test_after_an_interrupted_deploy_the_servers_it_moved_go_back_and_the_others_stay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # s1 kept v2 (it had its full watch), s2 was switched back by the interrupt, s3 was never
    # reached. Before: s1 "no earlier version" (v2 has no "deployed" entry), so nothing.
    inventory = fleet(tmp_path, monkeypatch, {
        "s1": ("v2", [*BEFORE, entry("deploy", "v1", "v2", "interrupted", run="r1", minute=1)]),
        "s2": ("v1", [*BEFORE, entry("deploy", "v1", "v2", "interrupted", run="r1", minute=1)]),
        "s3": ("v1", BEFORE),
    })
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v1", "s3": "v1"}, {})
    said = capsys.readouterr()
    assert ("the last deploy (v2, 2026-12-03T10:01:00+00:00 by " in said.out + said.err)
    assert "s1 back to v1; s2, s3 stay as they are" in said.out + said.err


def test_after_a_failed_window_the_servers_that_kept_the_new_version_go_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # s3's watch sent it back; s1 and s2 kept v2 (--on-failure=stop). Before: s3 went on
    # back to v0, a version the failed deploy never touched.
    inventory = fleet(tmp_path, monkeypatch, {
        "s1": ("v2", [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1)]),
        "s2": ("v2", [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1)]),
        "s3": ("v1", [*BEFORE, entry("deploy", "v1", "v2", "rolled back", run="r1",
                                     minute=2)]),
    })
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v1", "s3": "v1"}, {})


def test_a_server_the_deploy_moved_but_could_not_record_on_goes_back_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # s2's connection was lost right after its switch: no entry of the run, v2 serves.
    inventory = fleet(tmp_path, monkeypatch, {
        "s1": ("v2", [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1)]),
        "s2": ("v2", BEFORE),
        "s3": ("v1", BEFORE),
    })
    # Every entry of the run says "deployed", but s2's history does not say how it came to
    # serve v2: the run did not finish. Before: s2 "no earlier version", so nothing.
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v1", "s3": "v1"}, {})
    failed = [*BEFORE, entry("deploy", "v1", "v2", "failed", run="r1", minute=2)]
    inventory = fleet(tmp_path, monkeypatch, {
        "s1": ("v2", [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1)]),
        "s2": ("v2", failed),
        "s3": ("v1", BEFORE),
    })
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v1", "s3": "v1"}, {})


def test_a_server_left_on_the_new_version_with_no_entry_of_the_run_goes_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = fleet(tmp_path, monkeypatch, {
        "s1": ("v1", [*BEFORE, entry("deploy", "v1", "v2", "interrupted", run="r1",
                                     minute=1)]),
        "s2": ("v2", BEFORE),  # lost before its entry: what its history last says is v1
        "s3": ("v1", BEFORE),
    })
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v1", "s3": "v1"}, {})


def test_an_automatic_rollback_leaves_nothing_to_undo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --on-failure=rollback moved s1 back: the deploy is undone; every server stays.
    inventory = fleet(tmp_path, monkeypatch, {
        "s1": ("v1", [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1),
                      entry("rollback", "v2", "v1", "rolled back", run="r1", minute=2)]),
        "s2": ("v1", [*BEFORE, entry("deploy", "v1", "v2", "failed", run="r1", minute=2)]),
    })
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v1"}, {})


def test_a_server_unchanged_by_a_finished_deploy_goes_back_one_version_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_v2 = [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1)]
    inventory = fleet(tmp_path, monkeypatch, {
        "s1": ("v2", on_v2), "s2": ("v2", [*on_v2, entry("deploy", "v2", "v3", "deployed",
                                                         run="r2", minute=2),
                                           entry("rollback", "v3", "v2", run="r3", minute=3)]),
    })
    # r3 (s2 only) finished; s1 has no entry of it and serves what its history says.
    assert rollback_targets(inventory) == ({"s1": "v1", "s2": "v3"}, {})


def test_a_run_in_the_same_second_as_the_one_before_is_the_one_undone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both entries of the same second: the later one in the history is the last run. Before,
    # the finished deploy of v1 was taken for it, and s1 went on back to v0.
    inventory = fleet(tmp_path, monkeypatch, {"s1": ("v1", [
        entry("deploy", "v0", "v1", run="r0"),
        entry("deploy", "v1", "v2", "interrupted", run="r1")])})
    assert rollback_targets(inventory) == ({"s1": "v1"}, {})


def test_entries_without_a_run_id_keep_the_rule_of_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = [entry("deploy", "v0", "v1"), entry("deploy", "v1", "v2", "failed", minute=1)]
    inventory = fleet(tmp_path, monkeypatch, {"s1": ("v1", old)})
    assert rollback_targets(inventory) == ({"s1": "v0"}, {})


@pytest.mark.parametrize(("entries", "expected"), [
    ([], None),
    ([entry("deploy", "", "v1")], "v1"),
    ([entry("deploy", "v1", "v2"), entry("deploy", "v2", "v3", "rolled back")], "v2"),
    ([entry("deploy", "v1", "v2"), entry("rollback", "v3", "v2", "rolled back")], "v2"),
    ([entry("deploy", "v1", "v2"), entry("deploy", "v2", "v3", "interrupted")], "v2"),
    ([entry("deploy", "v1", "v2"), entry("deploy", "v2", "v3", "not switched")], "v2"),
    ([entry("deploy", "v1", "v2"), entry("release", "", "v3", "deployed")], "v2"),
    ([entry("deploy", "v1", "v2"), entry("deploy", "v2", "v3", "left switched")], "v3"),
])
def test_what_a_history_last_says_the_server_served(entries: list[HistoryEntry],
                                                    expected: str | None) -> None:
    assert served_after(entries) == expected


def test_each_entry_of_a_run_carries_its_id(tmp_path: Path) -> None:
    server = FakeServer(inventory=make_inventory(tmp_path))
    outcome = ServerOutcome("s1", "203.0.113.10", old_tag="v1", new_tag="v2",
                            outcome=Outcome.INTERRUPTED, run="5f0c1d2e3a4b")
    record_history(server, server.inventory, "deploy", outcome)
    written = json.loads(server.stdins[0])
    assert (written["outcome"], written["from_tag"], written["to_tag"], written["run"]) == (
        "interrupted", "v1", "v2", "5f0c1d2e3a4b")


@pytest.mark.parametrize("outcome", ["not started", "failed", "interrupted"])
def test_a_run_of_the_tag_that_serves_stopped_before_its_swap_moved_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcome: str) -> None:
    """A redeploy of what serves (--force, a moving tag, a new environment) that stopped
    before its swap wrote its entry with no from-version: the server served that tag
    before the run too, so the run moved nothing and nothing is left to undo."""
    stopped = [*BEFORE, entry("deploy", "v1", "v2", run="r1", minute=1),
               entry("deploy", "", "v2", outcome, run="r2", minute=2)]
    inventory = fleet(tmp_path, monkeypatch, {"s1": ("v2", stopped)})
    assert rollback_targets(inventory) == ({"s1": "v2"}, {})
