"""What every task shares: @kit_task (long flags only, -I for --inventory), the flags' common
help, errors turned into one line and an exit code, and the inventory loaded with Fabric's
-i/-t and --hosts applied."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

from invoke import Task, task
from invoke.exceptions import Exit

from slotswap.cli.fabric_flags import ConnectOverrides, check_flags, identity_problem
from slotswap.cli.host_selection import select_hosts
from slotswap.config.inventory import Inventory
from slotswap.config.loader import load_inventory
from slotswap.core.output import say
from slotswap.core.validation import InputError
from slotswap.fleet.errors import (
    EXIT_BAD_INPUT,
    EXIT_DEPLOY_FAILED,
    OPERATION_ERRORS,
    describe_error,
    exit_code_for,
)
from slotswap.fleet.outcomes import ServerResult
from slotswap.fleet.runner import in_turn
from slotswap.https.files import AcmeError
from slotswap.remote.protocol import ServerLike

T = TypeVar("T")

INVENTORY_HELP = ("inventory file (default: $SLOTSWAP_INVENTORY, else hosts.yaml in the "
                  "current folder)")
HOSTS_HELP = ("only these servers of the inventory, by name or address, comma-separated "
              "(e.g. a canary: --hosts=web-a); they are taken in the inventory's order")
INVENTORY_ENV = "SLOTSWAP_INVENTORY"
JSON_HELP = ("print one JSON document on stdout (per server: name, address, tags, outcome, "
             "seconds, error, serving); everything else goes to stderr")
DRY_RUN_HELP = ("print, per server, every command that would run and change nothing (read-only "
                "queries still run: HAProxy's show commands, docker inspect, the installed "
                "config, the history); secrets are shown as NAME=<secret>")

class KitTask(Task):
    """A task whose only short flag is -I for --inventory: `-i` stays Fabric's identity file
    (`fab -i KEY deploy`), never a task's inventory, and no other letter is taken."""

    def arg_opts(self, name: str, default: str, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        if name == "inventory":
            opts["names"] = [*opts["names"], INVENTORY_SHORT_FLAG]
        return opts


INVENTORY_SHORT_FLAG = "I"


def kit_task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """@task with long flags only, but -I for --inventory (KitTask)."""
    return task(klass=KitTask, auto_shortflags=False, **options)


# Fabric's -i/-t, read from the task's context when the task starts (fabric_flags).
_connect_overrides = ConnectOverrides()


def reports_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input exits 2 with its one-line message, before anything is contacted. Fabric's
    own flags are honoured or refused here, before the task runs (slotswap.cli.fabric_flags).
    A failure on a server that a task did not handle itself ends in one line and its exit
    code too: never a traceback (SLOTSWAP_DEBUG=1 shows it, for a bug report)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _connect_overrides
        try:
            _connect_overrides = check_flags(args[0]) if args else ConnectOverrides()
            return function(*args, **kwargs)
        except Exit:
            raise
        except InputError as error:
            raise Exit(f"error: {error}", code=EXIT_BAD_INPUT) from error
        except OPERATION_ERRORS as error:
            raise Exit(f"error: {error}", code=exit_code_for(error)) from error
        except Exception as error:
            if os.environ.get("SLOTSWAP_DEBUG"):
                raise
            raise Exit(f"error: {describe_error(error)} (SLOTSWAP_DEBUG=1 shows where)",
                       code=EXIT_DEPLOY_FAILED) from error

    return wrapper


def exit_on_failure(task_name: str, results: list[ServerResult]) -> None:
    failed = next((r for r in results if not r.ok), None)
    if failed is not None:
        raise Exit(f"error: `{task_name}` failed on {failed.name}: {failed.text}; later "
                   "servers were not touched", code=failed.exit_code)


def renewed_or_exit(renewal: Callable[[], list[ServerResult]]
                    ) -> list[ServerResult]:
    """A certificate renewal; an ACME CA that refuses or cannot be reached ends the task in
    one line, exit 1 (no server was changed)."""
    try:
        return renewal()
    except AcmeError as error:
        raise Exit(f"error: {error}", code=EXIT_DEPLOY_FAILED) from None


def inventory_path(path: str | None) -> str:
    """--inventory, else $SLOTSWAP_INVENTORY, else hosts.yaml in the current folder."""
    return path or os.environ.get(INVENTORY_ENV) or "hosts.yaml"


def load(path: str | None, hosts: str | None = None) -> Inventory:
    """The inventory, validated whole, with Fabric's -i/-t applied and only the servers
    --hosts names (all when None)."""
    overrides = _connect_overrides
    # Before the inventory: `-i hosts.yaml` is told that -i is the key even where the
    # inventory is elsewhere or broken.
    problem = None if overrides.identity is None else identity_problem(overrides.identity)
    if problem is not None:
        raise InputError(problem)
    inv = load_inventory(inventory_path(path))
    if overrides.identity is not None:
        inv = dataclasses.replace(inv, ssh=dataclasses.replace(inv.ssh,
                                                               identity=overrides.identity))
    if overrides.connect_timeout is not None:
        inv = dataclasses.replace(inv, ssh=dataclasses.replace(
            inv.ssh, connect_timeout=overrides.connect_timeout))
    return select_hosts(inv, hosts)


def exit_if_any_failed(failed: list[Exception]) -> None:
    """After a per-server report that said ERROR for some servers: their exit code."""
    if failed:
        raise Exit(code=exit_code_for(failed[0]))


def say_per_server(servers: list[ServerLike], action: Callable[[ServerLike], T],
                   describe: Callable[[T], str]) -> list[Exception]:
    """`action` on each server in turn, one line each: `NAME: ` and what `describe` makes of
    its answer, or `NAME: ERROR why`. Returns the errors, in the servers' order."""
    failed = []
    for done in in_turn(servers, action):
        if done.error is not None:
            say(f"{done.server.name}: ERROR {done.error}")
            failed.append(done.error)
        else:
            say(f"{done.server.name}: " + describe(done.value))  # type: ignore[arg-type]
    return failed
