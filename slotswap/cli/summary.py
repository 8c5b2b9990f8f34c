"""The end of a deploy or rollback: the summary table (one row per server) and --timings'
tables."""

from __future__ import annotations

from slotswap.core import timings
from slotswap.core.output import format_table
from slotswap.fleet.outcomes import RolloutResult, ServerOutcome


def summary_table(outcomes: list[ServerOutcome]) -> str:
    rows = [(o.name, o.address, o.old_tag or "-", o.new_tag or "-", f"{o.seconds:.1f}",
             watched(o), o.outcome, o.serving) for o in outcomes]
    return format_table(("server", "address", "old", "new", "seconds", "watched (errors)",
                         "outcome", "serving now"), rows)


def timings_tables(result: RolloutResult) -> str:
    """--timings: the run's phases (wall time; parallel work counted once), then per server
    each step's seconds and round trips (`seconds (round trips)`)."""
    phases = format_table(("phase", "seconds"), [(name, f"{seconds:.2f}") for name, seconds
                                                  in result.timings.seconds.items()])
    header, rows = timings.table([(o.name, o.timings) for o in result.outcomes
                                  if o.timings is not None])
    return f"{phases}\n\n{format_table(header, rows)}"


def watched(outcome: ServerOutcome) -> str:
    """The new slot's requests during its watch, with the failed ones."""
    if outcome.watched_requests is None:
        return "-"
    return f"{outcome.watched_requests} ({outcome.watched_errors})"
