"""The `timeouts` section, and `watch`: how the new slots are watched after their switch."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config import values

# Seconds; the lock is renewed every lease/3 seconds, judged in whole seconds by the server.
MIN_LOCK_LEASE = 3


MAX_LOCK_LEASE = 3600


@dataclass(frozen=True)
class Timeouts:
    healthy: float = 60.0  # seconds for the new slot to pass HAProxy's checks
    drain: float = 30.0  # seconds for the old slot's sessions to finish
    stop: int = 10  # seconds docker stop waits before SIGKILL
    watch: float = 5.0  # seconds the old slot stays running, drained, after the switch
    command: float = 60.0  # deadline of every remote command that has none of its own
    lease: int = 60  # seconds a run's lock lives unrenewed; renewed every lease/3 seconds


@dataclass(frozen=True)
class WatchSettings:
    """How the new slots are watched after their switch (timeouts.watch: for how long)."""

    # False: one window for the whole rollout (each server's old slot stays up, drained,
    # until timeouts.watch after the last switch); True: each server watched in turn.
    each: bool = False
    # A new slot whose share of requests answered 5xx or failed (HAProxy's counters) is
    # this much above the old slot's share before the switch is switched back.
    max_error_rate: float = 0.05
    min_requests: int = 20  # requests a new slot must have had before its rate is judged


TIMEOUT_KEYS = ("healthy", "drain", "stop", "watch", "command", "lease")


WATCH_KEYS = ("each", "max_error_rate", "min_requests")


def parse_timeouts(section: dict[str, object]) -> Timeouts:
    defaults = Timeouts()
    return Timeouts(
        healthy=values.positive_number(section.get("healthy", defaults.healthy),
                                       "timeouts.healthy"),
        drain=values.positive_number(section.get("drain", defaults.drain), "timeouts.drain"),
        stop=values.positive_integer(section.get("stop", defaults.stop), "timeouts.stop"),
        watch=values.non_negative_number(section.get("watch", defaults.watch), "timeouts.watch"),
        command=values.positive_number(section.get("command", defaults.command),
                                       "timeouts.command"),
        lease=values.integer(section.get("lease", defaults.lease), "timeouts.lease", MIN_LOCK_LEASE,
                       MAX_LOCK_LEASE),
    )


def parse_watch(section: dict[str, object]) -> WatchSettings:
    defaults = WatchSettings()
    rate = section.get("max_error_rate", defaults.max_error_rate)
    if (isinstance(rate, bool) or not isinstance(rate, int | float)
            or not 0 <= rate <= 1):
        raise values.Invalid("watch.max_error_rate",
                       f"expected a share from 0 to 1 (0.05: 5%), got {values.describe(rate)}")
    return WatchSettings(
        each=values.boolean(section.get("each", defaults.each), "watch.each"),
        max_error_rate=float(rate),
        min_requests=values.integer(section.get("min_requests", defaults.min_requests),
                              "watch.min_requests", 1, 1_000_000),
    )
