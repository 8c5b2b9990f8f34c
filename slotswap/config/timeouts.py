"""The `timeouts` section, and `watch`: how the new slots are watched after their switch."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting

# Seconds; the lock is renewed every lease/3 seconds, judged in whole seconds by the server.
MIN_LOCK_LEASE = 3
MAX_LOCK_LEASE = 3600


@dataclass(frozen=True)
class Timeouts:
    # seconds for the new slot to pass HAProxy's checks
    healthy: float = setting(kinds.SECONDS, 60.0)
    drain: float = setting(kinds.SECONDS, 30.0)  # seconds for the old slot's sessions to finish
    stop: int = setting(kinds.WHOLE_SECONDS, 10)  # seconds docker stop waits before SIGKILL
    # seconds the old slot stays running, drained, after the switch
    watch: float = setting(kinds.SECONDS_OR_ZERO, 5.0)
    command: float = setting(  # deadline of every remote command that has none of its own
        kinds.SECONDS, 60.0, description="Deadline of a remote command that has none of its own.")
    # seconds a run's lock lives unrenewed; renewed every lease/3 seconds
    lease: int = setting(
        kinds.integer(MIN_LOCK_LEASE, MAX_LOCK_LEASE), 60, description="Seconds a lock not "
        "renewed stays valid; a stale one is taken over by the next run.")


def _share(value: object, key: str, _: Context) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise values.Invalid(key, "expected a share from 0 to 1 (0.05: 5%), got "
                                  f"{values.describe(value)}")
    return float(value)


@dataclass(frozen=True)
class WatchSettings:
    """How the new slots are watched after their switch (timeouts.watch: for how long)."""

    # False: one window for the whole rollout (each server's old slot stays up, drained,
    # until timeouts.watch after the last switch); True: each server watched in turn.
    each: bool = setting(kinds.BOOLEAN, False, description="true: each server is watched "
                         "before the next one switches; false: one window for the whole rollout.")
    # A new slot whose share of requests answered 5xx or failed (HAProxy's counters) is
    # this much above the old slot's share before the switch is switched back.
    max_error_rate: float = setting(
        Kind(_share, {"type": "number", "minimum": 0, "maximum": 1}), 0.05,
        description="A new slot whose share of 5xx or failed requests (those the old slot "
        "answered for it included) exceeds the old slot's before the switch by more than this "
        "is switched back.")
    # requests a new slot must have had before its rate is judged
    min_requests: int = setting(
        kinds.integer(1, 1_000_000), 20,
        description="Requests a new slot must have had before its error rate is judged.")


def parse_timeouts(section: dict[str, object], key: str, context: Context) -> Timeouts:
    return Timeouts(**parse_fields(Timeouts, section, key, context))


def parse_watch(section: dict[str, object], key: str, context: Context) -> WatchSettings:
    # The rate first: the order of earlier versions' checks.
    return WatchSettings(**parse_fields(WatchSettings, section, key, context,
                                        order=("max_error_rate", "each", "min_requests")))
