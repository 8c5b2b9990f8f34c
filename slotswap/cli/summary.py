"""The end of a deploy or rollback: the summary table (one row per server), --timings' tables,
the after hook, the --json document, and the run's exit code with its one line."""

from __future__ import annotations

import os

from invoke.exceptions import Exit

from slotswap.cli import hooks, report
from slotswap.config.inventory import Inventory
from slotswap.core import timings
from slotswap.core.output import format_table, say, warn
from slotswap.fleet.outcomes import RolloutResult, ServerOutcome


def finish_rollout(inv: Inventory, task_name: str, result: RolloutResult,
                   as_json: bool = False, *, show_timings: bool = False) -> None:
    say("")
    say(summary_table(result.outcomes))
    if show_timings:
        say("")
        say(timings_tables(result))
    document = report.rollout_document(task_name, result)
    try:
        hooks.after(inv, os.environ, task=task_name, tag=result.tag,
                    exit_code=result.exit_code, message=result.message, document=document)
    except hooks.HookFailedError as error:
        warn(f"WARNING: {error}")
    if as_json:
        report.emit(document)
    if not result.ok:
        raise Exit(f"error: {result.message}", code=result.exit_code)
    say(f"all {len(result.outcomes)} servers serve {result.tag}")


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
