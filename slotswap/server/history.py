"""Each server's append-only record of what the kit did to it: one JSON object a line in
history.jsonl of the app's state folder on the server itself (/var/lib/slotswap/<app>, or
<remote_dir>/<app>/state), so every operator sees the same."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from slotswap.config.app_env import mask_values
from slotswap.config.inventory import Inventory
from slotswap.config.layout import history_path
from slotswap.core.output import format_table
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandDeadlineError, ConnectError
from slotswap.server.locking import operator

# The folder and file come as $1 and $2, never inside the script: one round trip. Both are
# the login's alone (0700, 0600; closed again if an older release left them open): the
# history keeps what a release command printed. An entry the file already ends with is not
# written again: an append whose answer was lost can be sent again (append).
APPEND = ["sh", "-c", 'umask 077 && mkdir -p -- "$1" && chmod 700 -- "$1" && entry=$(cat) && '
          '{ [ "$(tail -n 1 "$2" 2>/dev/null)" = "$entry" ] || printf "%s\\n" "$entry" >> "$2"; } '
          '&& chmod 600 -- "$2"', "sh"]
# What a new connection may get through: the connection lost, or no answer in time.
TRANSIENT = (ConnectError, CommandDeadlineError)


@dataclass(frozen=True)
class HistoryEntry:
    time: str  # UTC, ISO 8601
    who: str
    task: str  # deploy, rollback
    from_tag: str
    to_tag: str
    # deployed, failed, interrupted, unchanged; "rolled back": a deploy whose watch sent the
    # traffic back to the old version, or a rollback that --on-failure=rollback made; "left
    # switched": the new version took the traffic, then the swap failed before it was over
    # and never sent the traffic back (to_tag serves)
    outcome: str
    seconds: float
    error: str = ""
    output: str = ""  # what a release command printed
    # The deploy or rollback run the entry belongs to (one id for all its servers' entries;
    # "" in entries written before runs had one): what a plain `rollback` undoes.
    run: str = ""


def with_output(entry: HistoryEntry, output: str) -> HistoryEntry:
    return dataclasses.replace(entry, output=output)


def masked(entries: list[HistoryEntry], secret_values: Iterable[str]) -> list[HistoryEntry]:
    """Entries as shown: the app's secret values that this run knows masked in what the
    kit kept of the app's output (entries written before output was masked may hold them)."""
    values = tuple(secret_values)
    return [dataclasses.replace(entry, output=mask_values(entry.output, values),
                                error=mask_values(entry.error, values)) for entry in entries]


def new_entry(task: str, from_tag: str | None, to_tag: str, outcome: str, seconds: float,
              error: str = "", now: datetime | None = None, run: str = "") -> HistoryEntry:
    return HistoryEntry(
        time=(now or datetime.now(UTC)).isoformat(timespec="seconds"), who=operator(),
        task=task, from_tag=from_tag or "", to_tag=to_tag, outcome=outcome,
        seconds=round(seconds, 2), error=error.splitlines()[0][:300] if error else "",
        run=run,
    )


def append(server: ServerLike, inventory: Inventory, entry: HistoryEntry) -> None:
    """One entry at the history's end; sent again once when the connection was lost (over a
    new one) or the answer did not come in time (the script writes an entry the file
    already ends with only once; a first try still running when the second has written
    may add it twice): a lost entry would leave the history saying the server serves what
    it served before."""
    inventory = server.with_folders(inventory)
    line = json.dumps(asdict(entry)) + "\n"
    try:
        server.run(append_command(inventory), stdin=line)
    except TRANSIENT:
        server.run(append_command(inventory), stdin=line)


def append_command(inventory: Inventory) -> list[str]:
    """Appends its stdin to the history file, the folder made first if need be."""
    return [*APPEND, inventory.state_dir, history_path(inventory)]


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


def read(server: ServerLike, inventory: Inventory) -> list[HistoryEntry]:
    inventory = server.with_folders(inventory)
    return parse_history(server.read_file(history_path(inventory)) or "")


def render(entries: list[HistoryEntry], *, with_output: bool = False) -> str:
    """Pure: one server's entries as `fab history` shows them; with_output, each entry that
    has a release command's output is followed by it, indented."""
    if not entries:
        return "(no history yet)"
    header = ("time", "who", "task", "from", "to", "outcome", "seconds")
    rows = [(e.time, e.who, e.task, e.from_tag or "-", e.to_tag, e.outcome, f"{e.seconds:.1f}")
            for e in entries]
    if not with_output:
        return format_table(header, rows)
    lines = format_table(header, rows).splitlines()
    shown = lines[:2]  # the header and its rule
    for line, entry in zip(lines[2:], entries, strict=True):
        shown.append(line)
        if entry.output:
            shown.append(f"    release command output ({entry.to_tag}):")
            shown.extend(f"    | {text}" for text in entry.output.rstrip("\n").splitlines())
    return "\n".join(shown)


def document(servers: list[tuple[str, str, list[HistoryEntry] | None, str | None]]
             ) -> dict[str, object]:
    """Pure: `fab history --json`: per server (name, address, entries or None, error), every
    field of each entry, a release command's output included."""
    return {"task": "history", "ok": all(error is None for *_, error in servers),
            "servers": [{"name": name, "address": address,
                         "entries": [asdict(e) for e in entries or []], "error": error}
                        for name, address, entries, error in servers]}


def rollback_target(entries: list[HistoryEntry], serving: str | None) -> str | None:
    """The version served before the last successful change to what serves now. Automatic
    rollbacks (outcome "rolled back") are no such change: after one, the target is what
    served before the version it returned to, never the version that failed."""
    for entry in reversed(entries):
        if entry.outcome == "deployed" and entry.to_tag == serving and entry.from_tag:
            return entry.from_tag
    return None


# A run's outcomes on a server that mean it did its work there.
DONE = ("deployed", "unchanged")
# It switched to the entry's new version, then failed before its swap was over.
LEFT_SWITCHED = "left switched"
RUN_TASKS = ("deploy", "rollback")


def served_after(entries: list[HistoryEntry]) -> str | None:
    """Pure: the version the server served after the last entry that says so: a deploy or
    rollback done, or left switched to its version, a watch that sent the traffic back, an
    automatic rollback, a new version never switched to. Entries of runs that stopped
    without knowing (failed, interrupted) say nothing: the one before them is asked."""
    for entry in reversed(entries):
        if entry.task not in RUN_TASKS:
            continue
        if entry.outcome in (*DONE, LEFT_SWITCHED) or (entry.outcome == "rolled back"
                                                       and entry.task == "rollback"):
            return entry.to_tag
        if entry.outcome in ("rolled back", "not switched"):
            return entry.from_tag or None
    return None
