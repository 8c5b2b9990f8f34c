"""The `fab` tasks. Each loads and validates the whole inventory before it contacts a server."""

from __future__ import annotations

import functools
import os
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from textwrap import indent as indent_text
from typing import Any

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from tasks import docker_commands as docker
from tasks import dry_run as dry_run_plans
from tasks import history as history_log
from tasks import hooks, locking, logs, report, rollout, sandbox, scaffold
from tasks.batches import parse_batch
from tasks.delivery import up_action
from tasks.inventory import Inventory, load_inventory
from tasks.live_progress import live_progress_if_terminal
from tasks.output import format_table, messages_to_stderr, say, warn
from tasks.proxy import down_server
from tasks.remote import Server
from tasks.validation import InputError, validate_tag

INVENTORY_HELP = "inventory file (default: hosts.yaml in the current folder)"
JSON_HELP = ("print one JSON document on stdout (per server: name, address, tags, outcome, "
             "seconds, error, serving); everything else goes to stderr")
DRY_RUN_HELP = ("print, per server, every command that would run and change nothing (read-only "
                "queries still run: HAProxy's show commands, docker inspect, the installed "
                "config, the history); secrets are shown as NAME=<secret>")
EXIT_HOOK_REFUSED = 5
DRY_RUN_PREAMBLE = ("every server's lock is taken and the image put on every server before the "
                    "first swap; the swaps then run one server at a time, in this order, and "
                    "stop at the first failure; every lock is released at the end")


def default_tag(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")


def reports_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input exits 2 with its one-line message, before anything is contacted."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except InputError as error:
            raise Exit(f"error: {error}", code=rollout.EXIT_BAD_INPUT) from error
        except sandbox.SandboxError as error:
            raise Exit(f"sandbox: {error}", code=1) from error

    return wrapper


def exit_on_failure(task_name: str, results: list[rollout.ServerResult]) -> None:
    failed = next((r for r in results if not r.ok), None)
    if failed is not None:
        raise Exit(f"error: `{task_name}` failed on {failed.name}: {failed.text}\n"
                   "later servers were not touched", code=failed.exit_code)


def load(path: str) -> Inventory:
    return load_inventory(path)


@task(help={"tag": "image tag to build (default: the UTC time, YYYYMMDDHHMM)",
            "inventory": INVENTORY_HELP,
            "push": "push the image to its registry after building (default: yes; never "
                    "with `delivery: ssh` in the inventory)"})
@reports_errors
def build(c: Context, tag: str | None = None, inventory: str = "hosts.yaml",
          push: bool = True) -> None:
    """Build the app image on this machine and push it: docker build --build-arg VERSION=TAG.

    Uses the local Docker engine (honours DOCKER_HOST). With `delivery: ssh` the image stays
    there: deploys stream it to the servers. Example: fab build --tag=v42
    """
    inv = load(inventory)
    if push and inv.delivery.mode == "ssh":
        say("delivery: ssh in the inventory: not pushing (deploys send the image over SSH)")
        push = False
    tag = validate_tag(tag) if tag is not None else default_tag()
    image_ref = inv.image_ref(tag)
    say(f"building {image_ref} (tag {tag}) from {inv.build.context}")
    argv = docker.build(image_ref, tag, str(inv.build.dockerfile), str(inv.build.context))
    if not c.run(shlex.join(argv), warn=True, pty=False).ok:
        raise Exit(f"error: docker build of {image_ref} failed", code=1)
    if push:
        say(f"pushing {image_ref}")
        if not c.run(shlex.join(docker.push(image_ref)), warn=True, pty=False).ok:
            raise Exit(f"error: docker push of {image_ref} failed", code=1)
    say(f"built{' and pushed' if push else ''} {image_ref}")
    say(f"tag: {tag}")


@task(help={"inventory": INVENTORY_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def up(c: Context, inventory: str = "hosts.yaml", dry_run: bool = False) -> None:
    """Prepare every server: app network, HAProxy in front of slots web1/web2. Idempotent.

    A changed config is checked by HAProxy, then applied with a reload that drops no
    connection; if HAProxy does not start with it, the previous one is put back and keeps
    running. "unchanged" means HAProxy runs the rendered config. Example: fab up
    """
    inv = load(inventory)
    if dry_run:
        show_plan(inv, lambda server: dry_run_plans.up_plan(server, inv))
        return
    with live_progress_if_terminal(), up_action(inv) as up_one:
        results = rollout.on_every_server(inv, up_one, "up")
    say(format_table(("server", "result"), [(r.name, r.text) for r in results]))
    exit_on_failure("up", results)


@task(help={"tag": "image tag to deploy (required); must have been built (and pushed, "
                   "unless the inventory says delivery: ssh)",
            "on-failure": "what a failed server means for the others: 'stop' (default: the "
                          "servers done keep the new version) or 'rollback' (every server "
                          "that serves the new version goes back, a failed one included, "
                          "so the fleet ends on one version; the message says what each "
                          "serves)",
            "batch": "servers to swap at the same time: a number (e.g. 2) or a percentage of "
                     "the servers (e.g. 25%); the next batch starts only when the whole batch "
                     "succeeded (default: 1, one at a time)",
            "inventory": INVENTORY_HELP, "json": JSON_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def deploy(c: Context, tag: str | None = None, on_failure: str = rollout.ON_FAILURE_STOP,
           inventory: str = "hosts.yaml", batch: str | None = None, json: bool = False,
           dry_run: bool = False) -> None:
    """Roll TAG out, one server at a time, with zero downtime; stop at the first failure.

    On each server the new version starts in the idle slot and takes traffic only after
    HAProxy's own health checks pass; the old slot drains and keeps running for
    timeouts.watch seconds, and takes the traffic back if the new one fails a check, drops
    out of rotation or its container stops or restarts then; it is stopped (kept for a
    rollback) only once the new slot is seen serving. A server that fails keeps serving its
    old version. --batch swaps several servers at a time. Before the first swap every
    server gets the image, in parallel: pulled, or with `delivery: ssh` streamed from this
    machine's Docker over SSH, only the layers it lacks.
    Example: fab deploy --tag=v42   or   fab deploy --tag=v42 --batch=25%
    """
    if tag is None:
        raise Exit("error: --tag is required (the image tag to deploy, e.g. --tag=v42)",
                   code=rollout.EXIT_BAD_INPUT)
    tag = validate_tag(tag)
    if on_failure not in rollout.ON_FAILURE_POLICIES:
        raise Exit(f"error: --on-failure must be one of {', '.join(rollout.ON_FAILURE_POLICIES)}"
                   f", got {on_failure!r}", code=rollout.EXIT_BAD_INPUT)
    batch_size = parse_batch(batch) if batch is not None else None
    refuse_json_with_dry_run(json, dry_run)
    if json:
        messages_to_stderr()
    inv = load(inventory)
    if dry_run:
        show_plan(inv, lambda server: dry_run_plans.deploy_plan(server, inv, tag, pull=True,
                                                                task="deploy"), deploying=True)
        return
    servers_at_a_time = batch_size.servers(len(inv.hosts)) if batch_size else 1
    run_pre_deploy_hook(inv, "deploy", tag)
    with live_progress_if_terminal():
        result = rollout.deploy(inv, tag, on_failure=on_failure, batch=servers_at_a_time)
    finish_rollout(inv, "deploy", result, json)


def refuse_json_with_dry_run(as_json: bool, dry_run: bool) -> None:
    if as_json and dry_run:
        raise Exit("error: --dry-run prints a plan, not a result: give --json or --dry-run",
                   code=rollout.EXIT_BAD_INPUT)


def show_plan(inv: Inventory, build: Callable[[Server], dry_run_plans.ServerPlan], *,
              deploying: bool = False) -> None:
    """--dry-run: the plan of every server; exits as the real run would have for a server
    that cannot be read (3: cannot connect, 1: HAProxy not running, ...)."""
    plans, error = dry_run_plans.plan_each(rollout.servers_of(inv), build,
                                           rollout.OPERATION_ERRORS)
    preamble = [*dry_run_plans.hook_steps(inv), DRY_RUN_PREAMBLE] if deploying else []
    say(dry_run_plans.render(plans, preamble))
    if error is not None:
        raise Exit(f"error: {error}", code=rollout.exit_code_for(error))
    locked = [f"{plan.name} is locked by {plan.locked_by}" for plan in plans if plan.locked_by]
    if locked:
        raise Exit("error: " + "; ".join(locked), code=rollout.EXIT_LOCKED)


def run_pre_deploy_hook(inv: Inventory, task_name: str, tag: str) -> None:
    try:
        hooks.before(inv, os.environ, task=task_name, tag=tag)
    except hooks.HookFailedError as error:
        raise Exit(f"error: {error}; nothing was contacted or changed",
                   code=EXIT_HOOK_REFUSED) from error


def finish_rollout(inv: Inventory, task_name: str, result: rollout.RolloutResult,
                   as_json: bool = False) -> None:
    say("")
    say(rollout.summary_table(result.outcomes))
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


@task(help={"to": "tag to return every server to (default: per server, the version it "
                  "served before its last successful deploy)",
            "inventory": INVENTORY_HELP, "json": JSON_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def rollback(c: Context, to: str | None = None, inventory: str = "hosts.yaml",
             json: bool = False, dry_run: bool = False) -> None:
    """Return every server to its previous version, with the same zero-downtime swap.

    The previous version comes from each server's history (an automatic rollback does not
    count as a change: never back to a version that failed); the container the last deploy
    kept stopped starts again, and nothing is pulled. Example: fab rollback   or
    fab rollback --to=v41
    """
    refuse_json_with_dry_run(json, dry_run)
    if json:
        messages_to_stderr()
    inv = load(inventory)
    if to is not None:
        tag = validate_tag(to)
        if dry_run:
            show_plan(inv, lambda server: dry_run_plans.deploy_plan(
                server, inv, tag, pull=False, task="rollback"), deploying=True)
            return
        run_pre_deploy_hook(inv, "rollback", tag)
        with live_progress_if_terminal():
            result = rollout.deploy(inv, tag, task="rollback", pull=False)
    else:
        targets, problems = rollout.rollback_targets(inv)
        if problems:
            lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
            raise Exit(f"error: nothing was changed; no version to return to on:\n{lines}\n"
                       "give one with --to=TAG", code=rollout.EXIT_DEPLOY_FAILED)
        tags = sorted(set(targets.values()))
        if dry_run:
            show_plan(inv, lambda server: dry_run_plans.deploy_plan(
                server, inv, targets[server.name], pull=False, task="rollback"), deploying=True)
            return
        run_pre_deploy_hook(inv, "rollback", "/".join(tags))
        with live_progress_if_terminal():
            result = rollout.deploy(inv, "/".join(tags), task="rollback", tags=targets,
                                    pull=False)
    finish_rollout(inv, "rollback", result, json)


@task(help={"inventory": INVENTORY_HELP, "lines": "entries per server (default 10)"})
@reports_errors
def history(c: Context, inventory: str = "hosts.yaml", lines: int = 10) -> None:
    """Show each server's history: time, who, task, from and to tag, outcome, seconds.

    Example: fab history --lines=20
    """
    inv = load(inventory)
    for server in rollout.servers_of(inv):
        try:
            entries = history_log.read(server, inv)[-lines:] if lines > 0 else []
        except rollout.OPERATION_ERRORS as error:
            say(f"{server.name}: ERROR {error}")
            continue
        finally:
            server.close()
        say(f"{server.name} ({server.host.address}):")
        rows = [(e.time, e.who, e.task, e.from_tag or "-", e.to_tag, e.outcome,
                 f"{e.seconds:.1f}") for e in entries]
        say(indent_text(format_table(("time", "who", "task", "from", "to", "outcome", "seconds"),
                                rows) if rows else "(no history yet)", "    "))


@task(name="lock", help={"inventory": INVENTORY_HELP})
@reports_errors
def lock_status(c: Context, inventory: str = "hosts.yaml") -> None:
    """Show which servers are locked by a run, by whom and since when. Example: fab lock"""
    inv = load(inventory)
    for server in rollout.servers_of(inv):
        try:
            holder = locking.read_owner(server, inv)
            say(f"{server.name}: " + (f"locked by {holder.describe()}" if holder else "free"))
        except rollout.OPERATION_ERRORS as error:
            say(f"{server.name}: ERROR {error}")
        finally:
            server.close()


@task(help={"server": "name (or address) of the server whose lock to release",
            "all": "release the locks of every server of the inventory",
            "inventory": INVENTORY_HELP})
@reports_errors
def unlock(c: Context, server: str | None = None, all: bool = False,
           inventory: str = "hosts.yaml") -> None:
    """Release a lock left by a run that is gone (check with `fab lock` first).

    Example: fab unlock --server=web-b
    """
    inv = load(inventory)
    chosen = [s for s in rollout.servers_of(inv)
              if all or server in (s.name, s.host.address)]
    if not chosen:
        raise Exit("error: give --server=NAME (one of: "
                   + ", ".join(h.name for h in inv.hosts) + ") or --all",
                   code=rollout.EXIT_BAD_INPUT)
    for target in chosen:
        try:
            holder = locking.force_release(target, inv)
            say(f"{target.name}: " + (f"released the lock of {holder.describe()}" if holder
                                       else "was not locked"))
        finally:
            target.close()


@task(help={"inventory": INVENTORY_HELP,
            "json": "print one JSON document on stdout (per server: name, address, live "
                    "slot, version, both slots as HAProxy and Docker see them, error)"})
@reports_errors
def status(c: Context, inventory: str = "hosts.yaml", json: bool = False) -> None:
    """Show, per server, the live slot, the version it serves, and HAProxy's view of both slots.

    Example: fab status
    """
    if json:
        messages_to_stderr()
    inv = load(inventory)
    reports = rollout.status(inv)
    for server_report in reports:
        if server_report.error:
            say(f"{server_report.name} ({server_report.address}): ERROR {server_report.error}")
            continue
        say(f"{server_report.name} ({server_report.address}): live {server_report.live}, "
            f"serving {server_report.version}")
        for line in server_report.slots:
            say(f"    {line}")
    exit_code = rollout.EXIT_CONNECT if any(r.error for r in reports) else rollout.EXIT_OK
    if json:
        report.emit(report.status_document(reports, exit_code))
    if exit_code:
        raise Exit(code=exit_code)


@task(help={"inventory": INVENTORY_HELP, "dry-run": DRY_RUN_HELP})
@reports_errors
def down(c: Context, inventory: str = "hosts.yaml", dry_run: bool = False) -> None:
    """Remove the app's containers (slots and HAProxy), network and config from every server.

    Example: fab down
    """
    inv = load(inventory)
    if dry_run:
        show_plan(inv, lambda server: dry_run_plans.down_plan(server, inv))
        return
    with live_progress_if_terminal():
        results = rollout.on_every_server(inv, down_server, "down")
    exit_on_failure("down", results)


@task(help={"force": "overwrite hosts.yaml and templates/ files that exist (default: refuse, "
                     "writing nothing)"})
@reports_errors
def init(c: Context, force: bool = False) -> None:
    """Start a project here: write an annotated hosts.yaml and templates/haproxy.cfg.j2.

    Edit hosts.yaml (app, image, hosts, ssh); the kit uses a templates/ folder next to the
    inventory file by file before its own. Never overwrites without --force.
    Example: fab -r PATH/TO/slotswap init
    """
    folder = Path.cwd()
    try:
        written = scaffold.write_starter(folder, force=force)
    except scaffold.ScaffoldError as error:
        raise Exit(f"error: {error}", code=rollout.EXIT_BAD_INPUT) from error
    for path in written:
        say(f"wrote {path}")
    say("next: edit hosts.yaml (app, image, hosts, ssh), then fab up and fab deploy --tag=T")


@task(help={"slot": "whose logs: 'live' (default: the slot serving) or 'idle' (the other one, "
                    "e.g. a new version that failed its checks)",
            "follow": "keep streaming from every server at once until Ctrl-C",
            "lines": "lines from the end of each log to show first (default 50)",
            "inventory": INVENTORY_HELP})
@reports_errors
def logs_task(c: Context, slot: str = logs.LIVE, follow: bool = False, lines: int = 50,
              inventory: str = "hosts.yaml") -> None:
    """Show the app's container logs of every server, each line prefixed by the server.

    Example: fab logs --slot=idle --lines=100   or   fab logs --follow
    """
    logs.validate_choice(slot, lines)
    inv = load(inventory)
    servers = rollout.servers_of(inv)
    try:
        sources = [logs.pick_slot(server, inv, slot) for server in servers]
        if follow:
            logs.follow(sources, lines, say)
            return
        problems = logs.show(sources, lines, say)
    except rollout.OPERATION_ERRORS as error:
        raise Exit(f"error: {error}", code=rollout.exit_code_for(error)) from error
    except KeyboardInterrupt:
        return
    finally:
        rollout.close_all(servers)
    if problems:
        raise Exit("error: " + "; ".join(problems), code=rollout.EXIT_DEPLOY_FAILED)


@task(help={"servers": "number of servers to create (default 3)"})
@reports_errors
def sandbox_create(c: Context, servers: int = 3) -> None:
    """Create the local sandbox: N servers (netns + sshd + dockerd), registry, resolver.

    Needs root. Writes .sandbox/hosts.yaml; `source .sandbox/env` points DOCKER_HOST at its
    build engine. Example: fab sandbox.create --servers=3
    """
    sandbox.create(servers)


@task
@reports_errors
def sandbox_destroy(c: Context) -> None:
    """Remove the local sandbox and everything in it. Example: fab sandbox.destroy"""
    sandbox.destroy()


def collection() -> Collection:
    sandbox_tasks = Collection("sandbox")
    sandbox_tasks.add_task(sandbox_create, name="create")
    sandbox_tasks.add_task(sandbox_destroy, name="destroy")
    tasks = Collection(init, build, up, deploy, rollback, status, history, lock_status, unlock,
                       down, sandbox_tasks)
    tasks.add_task(logs_task, name="logs")
    return tasks

