"""The example app's job queue, seen from the tests: enqueue jobs, read the folder, judge it.

The queue is a folder that `webapp worker` (example/app/worker.go, example/README.md) takes
jobs from: `pending/<id>` a job waiting, `taken/<id>` a job a worker holds (the job's text,
then `taken version=V host=H start=T`), `done/<id>` one line per run (`version=V host=H
start=T end=T`). `judge` says whether every job enqueued ran exactly once, and whether the
jobs in progress at a given moment (a deploy's start) finished.

How a sandbox test reaches it: each sandbox server has its own mount namespace, a copy of
this machine's made when the sandbox is created, where only `sandbox.PRIVATE_DIRS`, the
deploy login's home and the logins' `.slotswap` are the server's own (bind mounts). Any
other path is this machine's folder, so a host folder mounted into the worker containers
(a role's `container.volumes: ["<folder>:/queue"]`) is the same folder for the test (read it
directly: no `ip netns exec`, no ssh) and for every server's workers, one queue for the
fleet as a shared volume would be (`worker_role` writes that role). Make it with
`make_queue` under a plain folder of this machine (e.g. `tempfile.mkdtemp(dir="/var/tmp")`,
as test_app_life's `shared_folder`), one per test: not under PRIVATE_DIRS (each server's
own), not on a mount made after the sandbox (mounts do not propagate into the servers'
namespaces), and not a fixed path (two sandboxes may run at once). It must exist before the
deploy: Docker would make a missing one owned by root, where the app's user (65534) cannot
write.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PENDING, TAKEN, DONE = "pending", "taken", "done"
# Where a job is written before its rename into pending/: on the queue's file system (a
# rename is atomic only there), and a name starting with "." that no worker takes.
INCOMING = ".incoming"


@dataclass(frozen=True)
class Run:
    """One run of a job: a line of done/<id>."""

    version: str
    host: str
    start: datetime
    end: datetime

    def __str__(self) -> str:
        return (f"{self.version} on {self.host} from {self.start:%H:%M:%S.%f} "
                f"to {self.end:%H:%M:%S.%f}")


@dataclass(frozen=True)
class Held:
    """A job in taken/: who holds it since when (None: claimed, its line not written yet)."""

    version: str | None = None
    host: str | None = None
    start: datetime | None = None

    def __str__(self) -> str:
        if self.start is None:
            return "taken (no worker line yet)"
        return f"taken by {self.version} on {self.host} at {self.start:%H:%M:%S.%f}"


@dataclass(frozen=True)
class QueueState:
    pending: frozenset[str]
    taken: Mapping[str, Held]
    done: Mapping[str, tuple[Run, ...]]

    def unfinished(self, ids: Sequence[str]) -> list[str]:
        """Those of `ids` still pending or taken."""
        return [i for i in ids if i in self.pending or i in self.taken]


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...]
    # The jobs a worker held at the moment judged (taken before it, done after it or never):
    # a test asserts there were some, or it proves nothing about a job in progress.
    in_progress: tuple[str, ...]
    runs_by_version: Mapping[str, int]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(self.runs_by_version.items()))
        head = (f"{sum(self.runs_by_version.values())} runs ({versions or 'none'}), "
                f"{len(self.in_progress)} in progress at the moment judged")
        return "; ".join([head, *self.problems])


# --- the role ------------------------------------------------------------------------------

QUEUE_MOUNT = "/queue"  # where the workers see the queue's folder


def worker_role(queue: Path, *, job_seconds: float = 3, count: int = 1,
                hosts: Sequence[str] | None = None, stop_timeout: int | None = None,
                check: Mapping[str, object] | None = None) -> dict[str, object]:
    """The inventory's `roles.<name>` entry of the example worker on `queue` (made by
    make_queue): `webapp worker`, its queue mounted at /queue, jobs of `job_seconds`, and a
    stop timeout (default: a job and 10 s) that lets the job in hand finish."""
    role: dict[str, object] = {
        "cmd": ["worker"], "count": count,
        "stop_timeout": stop_timeout if stop_timeout is not None else int(job_seconds) + 10,
        "env": {"plain": {"QUEUE_DIR": QUEUE_MOUNT, "JOB_SECONDS": f"{job_seconds:g}"}},
        "container": {"volumes": [f"{queue}:{QUEUE_MOUNT}"]},
    }
    if hosts is not None:
        role["hosts"] = list(hosts)
    if check is not None:
        role["check"] = dict(check)
    return role


# --- the folder ----------------------------------------------------------------------------

def make_queue(folder: Path) -> Path:
    """The queue's folders, writable by the app's user (65534) whatever this umask."""
    for path in (folder, *(folder / sub for sub in (PENDING, TAKEN, DONE, INCOMING))):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
    return folder


def job_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n:04d}" for n in range(1, count + 1)]


def enqueue(folder: Path, count: int, *, prefix: str = "job",
            seconds: float | None = None) -> list[str]:
    """`count` jobs `<prefix>-0001`..., each written in full then renamed into pending/, so
    that a worker never reads half a job; `seconds`: how long each takes (else the worker's
    JOB_SECONDS). Refuses an id the queue has seen: the verdict needs them unique."""
    ids = job_ids(prefix, count)
    state = read_state(folder)
    seen = [i for i in ids if i in state.pending or i in state.taken or i in state.done]
    if seen:
        raise ValueError(f"{folder}: jobs {', '.join(seen[:3])}... are already in the queue")
    for job in ids:
        draft = folder / INCOMING / job
        draft.write_text(job_text(job, seconds))
        draft.chmod(0o666)
        os.rename(draft, folder / PENDING / job)
    return ids


def job_text(job: str, seconds: float | None) -> str:
    text = f"id={job}\n"
    return text if seconds is None else f"{text}seconds={seconds:g}\n"


def read_state(folder: Path) -> QueueState:
    """The queue as it is now. A job that moves while the folders are read (pending, then
    taken, then done) may show in two of them, never in none."""
    pending = frozenset(_jobs(folder / PENDING))
    taken = {}
    for job in _jobs(folder / TAKEN):
        try:
            taken[job] = parse_held((folder / TAKEN / job).read_text())
        except FileNotFoundError:  # done since the listing: read done/ after this
            continue
    done = {job: parse_runs((folder / DONE / job).read_text()) for job in _jobs(folder / DONE)}
    return QueueState(pending=pending, taken=taken, done=done)


def _jobs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def wait_until_drained(folder: Path, ids: Sequence[str], timeout: float,
                       interval: float = 0.2) -> QueueState:
    """The queue once none of `ids` is pending or taken, or as it is at the deadline (the
    verdict then says which are left)."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(folder)
        if not state.unfinished(ids) or time.monotonic() >= deadline:
            return state
        time.sleep(interval)


# --- parsing: what the worker writes ---------------------------------------------------------

def parse_fields(line: str) -> dict[str, str]:
    """`key=value key=value`: the worker's lines (its version and host have no spaces)."""
    fields = {}
    for word in line.split():
        key, sep, value = word.partition("=")
        if not sep:
            raise ValueError(f"not key=value: {word!r} in {line!r}")
        fields[key] = value
    return fields


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"a time without its zone: {text!r}")
    return moment


def parse_runs(text: str) -> tuple[Run, ...]:
    """The runs of done/<id>: one a complete line (a line being written is not one yet)."""
    complete = text[:text.rfind("\n") + 1]
    runs = []
    for line in complete.splitlines():
        fields = parse_fields(line)
        try:
            runs.append(Run(version=fields["version"], host=fields["host"],
                            start=parse_time(fields["start"]), end=parse_time(fields["end"])))
        except KeyError as missing:
            raise ValueError(f"done line without {missing}: {line!r}") from None
    return tuple(runs)


def parse_held(text: str) -> Held:
    """taken/<id>: the job's text, then the worker's `taken ...` line once it has written it."""
    for line in text.splitlines():
        if line.startswith("taken "):
            fields = parse_fields(line.removeprefix("taken "))
            return Held(version=fields.get("version"), host=fields.get("host"),
                        start=parse_time(fields["start"]) if "start" in fields else None)
    return Held()


# --- the verdict -----------------------------------------------------------------------------

def judge(enqueued: Sequence[str], state: QueueState, *,
          moment: datetime | None = None) -> Verdict:
    """Every job of `enqueued` done exactly once, none left pending or taken, no job in the
    queue that was not enqueued; with `moment` (e.g. when the deploy began, timezone-aware),
    every job a worker held then also finished (its problem says so)."""
    problems = []
    wanted = set(enqueued)
    in_progress = _in_progress(state, moment) if moment is not None else []
    at_moment = set(in_progress)
    for job in enqueued:
        runs = state.done.get(job, ())
        note = " (in progress when the moment judged came)" if job in at_moment else ""
        if job in state.taken and runs:
            # Its worker stopped between its done line and removing taken/<id> (or the
            # folder was read in that instant).
            problems.append(f"job {job} done but left in taken/: {state.taken[job]}")
        elif job in state.taken:
            problems.append(f"job {job} lost: {state.taken[job]}, never done{note}")
        elif job in state.pending and not runs:
            problems.append(f"job {job} never taken: still pending")
        elif not runs:
            problems.append(f"job {job} vanished: neither pending, taken nor done")
        if len(runs) > 1:
            problems.append(f"job {job} ran {len(runs)} times: "
                            + "; ".join(str(run) for run in runs))
        elif runs and job in state.pending:
            problems.append(f"job {job} done and pending again")
    strangers = sorted((state.pending | state.taken.keys() | state.done.keys()) - wanted)
    if strangers:
        problems.append(f"jobs not enqueued by this test in the queue: {', '.join(strangers[:5])}")
    versions = Counter(run.version for runs in state.done.values() for run in runs)
    return Verdict(problems=tuple(problems), in_progress=tuple(in_progress),
                   runs_by_version=dict(versions))


def _in_progress(state: QueueState, moment: datetime) -> list[str]:
    if moment.tzinfo is None:
        raise ValueError("moment must carry its time zone (the worker writes UTC)")
    held = {job for job, runs in state.done.items()
            if any(run.start <= moment < run.end for run in runs)}
    held |= {job for job, h in state.taken.items() if h.start is not None and h.start <= moment}
    return sorted(held)


def now() -> datetime:
    """This machine's time, as the moment to judge: the containers share its clock."""
    return datetime.now(UTC)
