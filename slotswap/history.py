"""Each server's append-only record of what the kit did to it: one JSON object a line in
history.jsonl of the app's state folder on the server itself (/var/lib/slotswap/<app>, or
<remote_dir>/<app>/state), so every operator sees the same."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from slotswap.inventory import Inventory
from slotswap.locking import operator, state_dir
from slotswap.remote import Server

# The folder and file come as $1 and $2, never inside the script: one round trip.
APPEND = ["sh", "-c", 'mkdir -p -- "$1" && cat >> "$2"', "sh"]


@dataclass(frozen=True)
class HistoryEntry:
    time: str  # UTC, ISO 8601
    who: str
    task: str  # deploy, rollback
    from_tag: str
    to_tag: str
    # deployed, failed, interrupted, unchanged; "rolled back": a deploy whose watch sent the
    # traffic back to the old version, or a rollback that --on-failure=rollback made
    outcome: str
    seconds: float
    error: str = ""
    output: str = ""  # what a release command printed


def with_output(entry: HistoryEntry, output: str) -> HistoryEntry:
    return dataclasses.replace(entry, output=output)


def history_path(inventory: Inventory) -> str:
    return f"{state_dir(inventory)}/history.jsonl"


def new_entry(task: str, from_tag: str | None, to_tag: str, outcome: str, seconds: float,
              error: str = "", now: datetime | None = None) -> HistoryEntry:
    return HistoryEntry(
        time=(now or datetime.now(UTC)).isoformat(timespec="seconds"), who=operator(),
        task=task, from_tag=from_tag or "", to_tag=to_tag, outcome=outcome,
        seconds=round(seconds, 2), error=error.splitlines()[0][:300] if error else "",
    )


def append(server: Server, inventory: Inventory, entry: HistoryEntry) -> None:
    server.run(append_command(inventory), stdin=json.dumps(asdict(entry)) + "\n")


def append_command(inventory: Inventory) -> list[str]:
    """Appends its stdin to the history file, the folder made first if need be."""
    return [*APPEND, state_dir(inventory), history_path(inventory)]


def parse_history(text: str) -> list[HistoryEntry]:
    """Entries in file order; lines that are not an entry (hand edits) are skipped."""
    entries = []
    for line in text.splitlines():
        try:
            data = json.loads(line)
            entries.append(HistoryEntry(**{k: data[k] for k in HistoryEntry.__annotations__
                                           if k in data}))
        except (ValueError, TypeError, KeyError):
            continue
    return entries


def read(server: Server, inventory: Inventory) -> list[HistoryEntry]:
    return parse_history(server.read_file(history_path(inventory)) or "")


def rollback_target(entries: list[HistoryEntry], serving: str | None) -> str | None:
    """The version served before the last successful change to what serves now. Automatic
    rollbacks (outcome "rolled back") are no such change: after one, the target is what
    served before the version it returned to, never the version that failed."""
    for entry in reversed(entries):
        if entry.outcome == "deployed" and entry.to_tag == serving and entry.from_tag:
            return entry.from_tag
    return None
