"""Where a run's seconds go: per server, the wall time of each step and the round trips (SSH
commands, runtime-API lines, channels opened) made in it; per run, the wall time of each
fleet-wide phase. Shown by `deploy --timings` and given in `--json` (`timings`).

A step is begun by `begin(name)` and lasts until the next `begin` or `end()` of the same
thread: the swap of one server and the watch of another run on threads of their own, and
the lock's renewals (a thread of their own, no step) count as `lease`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

UNNAMED = "lease"  # round trips made outside any step: the lock's renewals


class Timings:
    """Steps and round trips of one server (or, for the run's phases, of the fleet)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.seconds: dict[str, float] = {}
        self.round_trips: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    def begin(self, name: str) -> None:
        """Start step `name` on this thread, ending the one it was in."""
        self.end()
        self._local.current = (name, self.clock())
        with self._lock:
            self.seconds.setdefault(name, 0.0)

    def end(self) -> None:
        current = getattr(self._local, "current", None)
        if current is None:
            return
        name, started = current
        self._local.current = None
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + self.clock() - started

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end()

    def record_first(self, name: str, seconds: float) -> None:
        """A step measured elsewhere, shown before the others (the process's start-up)."""
        with self._lock:
            self.seconds = {name: seconds, **{k: v for k, v in self.seconds.items()
                                              if k != name}}

    def round_trip(self) -> None:
        """One exchange with the server, counted in this thread's step."""
        current = getattr(self._local, "current", None)
        name = current[0] if current else UNNAMED
        with self._lock:
            self.round_trips[name] = self.round_trips.get(name, 0) + 1

    @property
    def total_round_trips(self) -> int:
        return sum(self.round_trips.values())

    def document(self) -> dict[str, object]:
        """Pure: for --json, seconds rounded to milliseconds."""
        with self._lock:
            steps: dict[str, dict[str, object]] = {
                name: {"seconds": round(seconds, 3), "round_trips": self.round_trips.get(name, 0)}
                for name, seconds in self.seconds.items()}
            for name, count in self.round_trips.items():
                steps.setdefault(name, {"seconds": None, "round_trips": count})
            return {"steps": steps, "round_trips": sum(self.round_trips.values())}

    def names(self) -> list[str]:
        """The steps in the order they began, then any with round trips only (`lease`)."""
        with self._lock:
            return [*self.seconds, *(n for n in self.round_trips if n not in self.seconds)]


def table(rows: list[tuple[str, Timings]]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Pure: one row per server, a column per step (in the order steps first appear) giving
    `seconds (round trips)`, then the server's round trips in all."""
    steps: list[str] = []
    for _, timings in rows:
        steps += [name for name in timings.names() if name not in steps]
    header = ("server", *steps, "round trips")
    body = []
    for name, timings in rows:
        cells = [cell(timings, step) for step in steps]
        body.append((name, *cells, str(timings.total_round_trips)))
    return header, body


def cell(timings: Timings, step: str) -> str:
    """`0.42 (3)`: the step's seconds and round trips; `- (3)` for round trips outside any
    step; `-` for a step this server did not have."""
    count = timings.round_trips.get(step, 0)
    if step in timings.seconds:
        return f"{timings.seconds[step]:.2f} ({count})"
    return f"- ({count})" if count else "-"


def process_seconds() -> float | None:
    """Seconds since this process started (Linux: /proc), None where that is unknown."""
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rpartition(")")[2].split()[19])
        with open("/proc/uptime") as uptime:
            up = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, up - started_ticks / os.sysconf("SC_CLK_TCK"))
