"""Pure parts of locks and history: owner records, history lines, rollback targets."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotswap.history import (
    HistoryEntry,
    append_command,
    document,
    new_entry,
    parse_history,
    render,
    rollback_target,
    with_output,
)
from slotswap.inventory import parse_inventory
from slotswap.locking import (
    CANNOT_WRITE,
    LOCK_HELD,
    LockOwner,
    new_owner,
    parse_owner,
    take_lock_command,
)

NOON = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)


def test_new_owner_records_who_when_what_and_a_token() -> None:
    owner = new_owner("deploy", "v2", now=NOON)
    assert owner.since == "2026-11-26T12:00:05+00:00"
    assert "@" in owner.who and owner.task == "deploy" and owner.tag == "v2"
    assert len(owner.token) == 32 and owner.token != new_owner("deploy", "v2").token


def test_owner_round_trips_and_describes_itself() -> None:
    owner = LockOwner("alice@laptop", "2026-11-26T08:00:00+00:00", "deploy", "v9", "t")
    assert parse_owner(json.dumps(asdict(owner))) == owner
    assert owner.describe() == "alice@laptop since 2026-11-26T08:00:00+00:00 (deploy v9)"
    assert LockOwner("bob@ci", "x", "up", "", "t").describe() == "bob@ci since x (up)"


@pytest.mark.parametrize("text", [None, "", "not json", "[1, 2]"])
def test_unreadable_owner_files_parse_as_none(text: str | None) -> None:
    assert parse_owner(text) is None


def entry(task: str, from_tag: str, to_tag: str, outcome: str = "deployed") -> HistoryEntry:
    return new_entry(task, from_tag, to_tag, outcome, 1.234, now=NOON)


def test_history_lines_round_trip_and_skip_foreign_lines() -> None:
    entries = [entry("deploy", "", "v1"), entry("deploy", "v1", "v2", "failed")]
    text = "".join(json.dumps(asdict(e)) + "\n" for e in entries)
    assert parse_history(text + "garbage\n{}\n") == entries
    assert entries[0].seconds == 1.23 and entries[0].from_tag == ""


def test_history_keeps_only_the_first_line_of_an_error() -> None:
    assert new_entry("deploy", "v1", "v2", "failed", 1, "boom\nlogs...").error == "boom"


def test_history_shows_a_release_commands_output_only_when_asked() -> None:
    entries = [entry("deploy", "", "v1"),
               with_output(entry("deploy", "v1", "v2"), "migrated 3 tables\nmarked v2\n")]
    plain = render(entries)
    assert "migrated" not in plain and len(plain.splitlines()) == 4
    shown = render(entries, with_output=True).splitlines()
    assert shown[3].split()[3:6] == ["v1", "v2", "deployed"]
    assert shown[4:] == ["    release command output (v2):", "    | migrated 3 tables",
                         "    | marked v2"]
    assert render([]) == "(no history yet)"


def test_history_document_has_every_field_and_the_errors() -> None:
    released = with_output(entry("deploy", "v1", "v2"), "marked v2\n")
    doc = document([("s1", "10.0.0.1", [released], None), ("s2", "10.0.0.2", None, "gone")])
    assert doc["ok"] is False
    assert json.loads(json.dumps(doc))["servers"] == [
        {"name": "s1", "address": "10.0.0.1", "entries": [asdict(released)], "error": None},
        {"name": "s2", "address": "10.0.0.2", "entries": [], "error": "gone"}]


@pytest.mark.parametrize(
    ("entries", "serving", "expected"),
    [
        ([], "v1", None),
        ([("deploy", "", "v1")], "v1", None),  # the first deploy: nothing before it
        ([("deploy", "v1", "v2")], "v2", "v1"),
        ([("deploy", "v1", "v2"), ("deploy", "v2", "v3", "failed")], "v2", "v1"),
        ([("deploy", "v1", "v2"), ("deploy", "v2", "v3")], "v3", "v2"),
        ([("deploy", "v1", "v2"), ("rollback", "v2", "v1")], "v1", "v2"),  # undo the undo
        # The watch sent the traffic back: v3 never counted, v2 came from v1.
        ([("deploy", "v1", "v2"), ("deploy", "v2", "v3", "rolled back")], "v2", "v1"),
        # --on-failure=rollback moved v3 back to v2: never back to v3, the failed version.
        ([("deploy", "v1", "v2"), ("deploy", "v2", "v3"),
          ("rollback", "v3", "v2", "rolled back")], "v2", "v1"),
        ([("deploy", "v1", "v2"), ("deploy", "v2", "v3", "failed"),
          ("rollback", "v3", "v2", "rolled back")], "v2", "v1"),
        ([("deploy", "v1", "v2")], "v9", None),  # serving something history does not know
        ([("deploy", "v1", "v2")], None, None),
    ],
)
def test_rollback_target(entries: list[tuple[str, ...]], serving: str | None,
                         expected: str | None) -> None:
    history = [entry(*e) for e in entries]
    assert rollback_target(history, serving) == expected


def test_the_history_entry_goes_in_one_command_its_paths_as_arguments() -> None:
    inventory = parse_inventory({"app": "webapp", "image": "r/webapp",
                                 "hosts": ["203.0.113.10"]}, Path("/srv/hosts.yaml"))
    assert append_command(inventory) == [
        "sh", "-c", 'mkdir -p -- "$1" && cat >> "$2"', "sh",
        "/var/lib/slotswap/webapp", "/var/lib/slotswap/webapp/history.jsonl"]


# -- the lock script, run by a real sh --------------------------------------------------------


def take_lock_here(tmp_path: Path, state: Path) -> subprocess.CompletedProcess[str]:
    data = {"app": "webapp", "image": "acme/webapp", "hosts": ["203.0.113.10"],
            "remote_dir": str(state)}
    inventory = parse_inventory(data, tmp_path / "hosts.yaml")
    return subprocess.run(take_lock_command(inventory), input='{"token": "t1"}\n', text=True,
                          capture_output=True, check=False,
                          env={"PATH": "/usr/bin:/bin", "LANGUAGE": "de", "LANG": "C.UTF-8"})


def test_the_lock_script_tells_taken_held_and_unwritable_apart_by_exit_code(
        tmp_path: Path) -> None:
    state = tmp_path / "remote"
    assert take_lock_here(tmp_path, state).returncode == 0
    assert json.loads((state / "webapp/state/lock/owner.json").read_text()) == {"token": "t1"}
    assert take_lock_here(tmp_path, state).returncode == LOCK_HELD
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # nobody can make a folder below a file, root included
    assert take_lock_here(tmp_path, blocked).returncode == CANNOT_WRITE
