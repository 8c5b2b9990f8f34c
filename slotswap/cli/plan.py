"""--dry-run: every server's plan, printed, then the exit the real run would have had (it
never has --json: a plan is not a result)."""

from __future__ import annotations

from collections.abc import Callable

from invoke.exceptions import Exit

from slotswap.config.inventory import Inventory
from slotswap.core.output import say
from slotswap.fleet import dry_run as dry_run_plans
from slotswap.fleet.errors import EXIT_BAD_INPUT, EXIT_LOCKED, exit_code_for
from slotswap.fleet.runner import close_all, servers_of
from slotswap.remote.protocol import ServerLike
from slotswap.server.registration_gate import refuse_unregistered


def refuse_json_with_dry_run(as_json: bool, dry_run: bool) -> None:
    if as_json and dry_run:
        raise Exit("error: --dry-run prints a plan, not a result: give --json or --dry-run",
                   code=EXIT_BAD_INPUT)


def in_rotation(inv: Inventory, build: Callable[[ServerLike], dry_run_plans.ServerPlan]
                ) -> Callable[[ServerLike], dry_run_plans.ServerPlan]:
    """The plan of a task that puts a version of the app in rotation (deploy, rollback,
    maintenance): with haproxy.shared, a server where the app is not (or no longer wholly)
    on the shared HAProxy is refused first, as the run refuses it (exit 1)."""
    def build_checked(server: ServerLike) -> dry_run_plans.ServerPlan:
        refuse_unregistered(server, server.with_folders(inv))
        return build(server)
    return build_checked


def show_plan(inv: Inventory, build: Callable[[ServerLike], dry_run_plans.ServerPlan], *,
              rollout: list[str] | None = None, preamble: list[str] | None = None,
              first: Callable[[list[ServerLike], Inventory], object] | None = None) -> None:
    """--dry-run: the plan of every server, after what a deploy or rollback does fleet-wide
    (`rollout`: dry_run.rollout_steps, after the hooks) or what another task does before it
    changes a server (`preamble`); exits as the real run would have for a server that
    cannot be read (3: cannot connect, 1: HAProxy not running, ...). `first`: the run's
    check of every server before any changes (fleet.shared_checks), run first: what it
    raises (a contradiction: exit 2) ends the dry run before any plan; a server it could
    not read or refused gets that in its plan (each plan checks that server again, as its
    run does)."""
    servers = servers_of(inv)
    if first is not None:
        try:
            first(servers, inv)
        except BaseException:
            close_all(servers)
            raise
    plans, error = dry_run_plans.plan_each(servers, build)
    opening = [*dry_run_plans.hook_steps(inv), *rollout] if rollout is not None else []
    say(dry_run_plans.render(plans, opening + (preamble or [])))
    if error is not None:
        raise Exit(f"error: {error}", code=exit_code_for(error))
    locked = [f"{plan.name} is locked by {plan.locked_by}" for plan in plans if plan.locked_by]
    if locked:
        raise Exit("error: " + "; ".join(locked), code=EXIT_LOCKED)
