"""Pure parts of locks and history: owner records, history lines, rollback targets."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from slotswap.config.app_env import OUTPUT_MASK, resolve_app_env
from slotswap.remote.server import CommandResult
from slotswap.server import release
from slotswap.server.history import (
    HistoryEntry,
    append_command,
    document,
    masked,
    new_entry,
    parse_history,
    render,
    rollback_target,
    with_output,
)
from slotswap.server.locking import (
    CANNOT_WRITE,
    LOCK_HELD,
    LockOwner,
    new_owner,
    parse_owner,
    take_lock_command,
)
from tests.unit.fake_server import FakeServer, make_inventory

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
    inventory = make_inventory(image="r/webapp")
    command = append_command(inventory)
    assert command[:2] == ["sh", "-c"] and "$1" in command[2] and "$2" in command[2]
    assert command[3:] == ["sh", "/var/lib/slotswap/webapp",
                           "/var/lib/slotswap/webapp/history.jsonl"]


def mode(path: Path) -> str:
    return f"{path.stat().st_mode & 0o777:o}"


def test_the_history_is_the_logins_alone_and_an_open_one_is_closed(tmp_path: Path) -> None:
    """Run by a real sh: a new history is 0600 in a 0700 folder; one an older release left
    0644 in a 0755 folder is closed by the next entry."""
    command = append_command(make_inventory(tmp_path, image="r/webapp",
                                            remote_dir=str(tmp_path / "remote")))
    state = tmp_path / "remote/webapp/state"
    subprocess.run(command, input="one\n", text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert (mode(state), mode(state / "history.jsonl")) == ("700", "600")
    state.chmod(0o755)
    (state / "history.jsonl").chmod(0o644)
    subprocess.run(command, input="two\n", text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert (mode(state), mode(state / "history.jsonl")) == ("700", "600")
    assert (state / "history.jsonl").read_text() == "one\ntwo\n"


def test_an_entry_sent_again_is_written_once(tmp_path: Path) -> None:
    """Run by a real sh: an append whose answer was lost is sent again (history.append);
    the entry the file already ends with is not written twice, an earlier one is."""
    command = append_command(make_inventory(tmp_path, image="r/webapp",
                                            remote_dir=str(tmp_path / "remote")))
    for entry in ("one\n", "two\n", "two\n", "one\n"):
        subprocess.run(command, input=entry, text=True, check=True,
                       env={"PATH": "/usr/bin:/bin"})
    history = tmp_path / "remote/webapp/state/history.jsonl"
    assert history.read_text() == "one\ntwo\none\n"


# -- the lock script, run by a real sh --------------------------------------------------------


def take_lock_here(tmp_path: Path, state: Path) -> subprocess.CompletedProcess[str]:
    inventory = make_inventory(tmp_path, remote_dir=str(state))
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


def test_the_lock_closes_the_state_folder_and_what_is_in_it(tmp_path: Path) -> None:
    """The first run that takes a lock closes a state folder an older release left open
    (0755, a 0644 history); what it makes there is the login's alone."""
    state = tmp_path / "remote/webapp/state"
    state.mkdir(parents=True)
    state.chmod(0o755)
    (state / "history.jsonl").write_text("{}\n")
    (state / "history.jsonl").chmod(0o644)
    assert take_lock_here(tmp_path, tmp_path / "remote").returncode == 0
    assert mode(state) == "700"
    assert mode(state / "history.jsonl") == "600"
    assert mode(state / "lock") == "700"
    assert {mode(f) for f in (state / "lock").iterdir()} == {"600"}



# -- a release command's output: the app's secrets masked before it is shown or kept --------

PASSWORD = "pw-9f2c-never-shown"


class ReleaseServer(FakeServer):
    """Runs the release command (it prints `printed`, exits `code`) and keeps what the
    history would get."""

    def __init__(self, printed: str, code: int) -> None:
        super().__init__(answers={("docker", "run"): CommandResult(printed, "", code)})

    @property
    def appended(self) -> list[str]:
        return self.stdins

    def write_private_file(self, path: str, text: str) -> None:
        assert path.endswith("/release.env")


@pytest.mark.parametrize("code", [0, 1])
def test_a_release_commands_output_is_kept_and_shown_with_secrets_masked(
        tmp_path: Path, code: int) -> None:
    inventory = make_inventory(tmp_path, image="r/webapp", env={"secret": ["DB_PASSWORD"]},
                               release={"command": ["bin/migrate"]})
    app_env = resolve_app_env(inventory, {"DB_PASSWORD": PASSWORD})
    # The history keeps the last OUTPUT_KEPT characters: that cut falls inside the last
    # occurrence, which must be masked before it is cut, or its end would be kept.
    tail = "y" * (release.OUTPUT_KEPT - 5)
    printed = (f"migrating\nFATAL: cannot connect to postgres://app:{PASSWORD}@db/app\n"
               f"{PASSWORD}{tail}\n")
    server = ReleaseServer(printed, code)
    shown: list[str] = []
    try:
        output = release.run(server, inventory, "v2", app_env, shown.append)
    except release.ReleaseFailed as error:
        assert code and PASSWORD not in str(error)
        assert f"postgres://app:{OUTPUT_MASK}@db/app" in str(error)
        output = ""
    assert PASSWORD not in output + "".join(shown) + "".join(server.appended)
    assert any(f"postgres://app:{OUTPUT_MASK}@db/app" in line for line in shown)
    kept = json.loads(server.appended[0])["output"]
    assert kept == OUTPUT_MASK[-5:] + tail


def test_history_shown_masks_secret_values_an_older_entry_kept() -> None:
    old = with_output(entry("deploy", "v1", "v2", "released"), f"url=db://u:{PASSWORD}@h")
    shown = masked([old], [PASSWORD, "unused"])
    assert shown[0].output == f"url=db://u:{OUTPUT_MASK}@h"
    assert PASSWORD not in render(shown, with_output=True)
    assert masked([old], []) == [old]
