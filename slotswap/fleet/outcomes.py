"""What a run did on each server, and on the whole fleet: a server's outcome (one word of
`Outcome`, as the summary, --json, the hooks and the server's history spell it), a rolling
run's result with its exit code, and a locked task's result per server."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from slotswap.core.timings import Timings
from slotswap.fleet.errors import EXIT_OK


class Outcome(StrEnum):
    """A server's outcome in a deploy or rollback; its value is the word written everywhere
    (the summary, --json, the history), so a member is the string itself."""

    DEPLOYED = "deployed"
    UNCHANGED = "unchanged"  # it already served the tag: left alone
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
    NOT_SWITCHED = "not switched"
    # It took the new version's traffic, then failed before its swap was over (a lost
    # connection, a command past its deadline) and the traffic was never sent back: the
    # new version is the one the kit last put in rotation there.
    LEFT_SWITCHED = "left switched"
    NOT_STARTED = "not started"
    INTERRUPTED = "interrupted"
    ROLLBACK_FAILED = "rollback failed"


@dataclass
class ServerOutcome:
    name: str
    address: str
    old_tag: str | None = None
    new_tag: str | None = None
    outcome: Outcome = Outcome.NOT_STARTED
    seconds: float = 0.0  # the whole swap, the watch period and the old slot's stop included
    serving: str = ""
    error: str = ""
    switch_seconds: float | None = None  # from the start until the new slot took the traffic
    # The new slot's traffic during its watch, from HAProxy's counters (None: not watched).
    watched_requests: int | None = None
    watched_errors: int | None = None
    timings: Timings | None = None  # the server's steps and round trips (--timings)
    run: str = ""  # the run's id, in the server's history (what a plain rollback undoes)
    recorded: bool = False  # the server's history has the run's entry

    @property
    def swap_seconds(self) -> float:
        """How long the swap made clients wait for the new version: until the switch (what
        follows, the watch period and stopping the old slot, delays nobody)."""
        return self.seconds if self.switch_seconds is None else self.switch_seconds


@dataclass
class RolloutResult:
    tag: str
    outcomes: list[ServerOutcome] = field(default_factory=list)
    exit_code: int = EXIT_OK
    message: str = ""
    timings: Timings = field(default_factory=Timings)  # the run's fleet-wide phases

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


@dataclass(frozen=True)
class ServerResult:
    name: str
    text: str  # what was done, or why it failed
    ok: bool
    exit_code: int = EXIT_OK
