"""The `fab` tasks. Each loads and validates the whole inventory before it contacts a server."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from textwrap import indent as indent_text
from typing import Any

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from tasks import docker_commands as docker
from tasks import history as history_log
from tasks import locking, rollout, sandbox
from tasks.batches import parse_batch
from tasks.delivery import up_action
from tasks.inventory import Inventory, load_inventory
from tasks.output import format_table, say
from tasks.proxy import down_server
from tasks.validation import InputError, validate_tag

INVENTORY_HELP = "inventory file (default: hosts.yaml in the current folder)"


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


@task(help={"inventory": INVENTORY_HELP})
@reports_errors
def up(c: Context, inventory: str = "hosts.yaml") -> None:
    """Prepare every server: app network, HAProxy in front of slots web1/web2. Idempotent.

    A changed config is checked by HAProxy, then applied with a reload that drops no
    connection. Example: fab up
    """
    inv = load(inventory)
    with up_action(inv) as up_one:
        results = rollout.on_every_server(inv, up_one, "up")
    say(format_table(("server", "result"), [(r.name, r.text) for r in results]))
    exit_on_failure("up", results)


@task(help={"tag": "image tag to deploy (required); must have been built (and pushed, "
                   "unless the inventory says delivery: ssh)",
            "on-failure": "what a failed server means for the servers already moved: 'stop' "
                          "(default: they keep the new version) or 'rollback' (they go back, "
                          "so the fleet ends on one version)",
            "batch": "servers to swap at the same time: a number (e.g. 2) or a percentage of "
                     "the servers (e.g. 25%); the next batch starts only when the whole batch "
                     "succeeded (default: 1, one at a time)",
            "inventory": INVENTORY_HELP})
@reports_errors
def deploy(c: Context, tag: str | None = None, on_failure: str = rollout.ON_FAILURE_STOP,
           inventory: str = "hosts.yaml", batch: str | None = None) -> None:
    """Roll TAG out, one server at a time, with zero downtime; stop at the first failure.

    On each server the new version starts in the idle slot and takes traffic only after
    HAProxy's own health checks pass; the old slot is drained, then stopped. A server that
    fails keeps serving its old version. --batch swaps several servers at a time.
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
    inv = load(inventory)
    servers_at_a_time = batch_size.servers(len(inv.hosts)) if batch_size else 1
    finish_rollout(rollout.deploy(inv, tag, on_failure=on_failure, batch=servers_at_a_time))


def finish_rollout(result: rollout.RolloutResult) -> None:
    say("")
    say(rollout.summary_table(result.outcomes))
    if not result.ok:
        raise Exit(f"error: {result.message}", code=result.exit_code)
    say(f"all {len(result.outcomes)} servers serve {result.tag}")


@task(help={"to": "tag to return every server to (default: per server, the version it "
                  "served before its last successful deploy)",
            "inventory": INVENTORY_HELP})
@reports_errors
def rollback(c: Context, to: str | None = None, inventory: str = "hosts.yaml") -> None:
    """Return every server to its previous version, with the same zero-downtime swap.

    The previous version comes from each server's history; its image is still on the
    server, so nothing is pulled. Example: fab rollback   or   fab rollback --to=v41
    """
    inv = load(inventory)
    if to is not None:
        tag = validate_tag(to)
        result = rollout.deploy(inv, tag, task="rollback", pull=False)
    else:
        targets, problems = rollout.rollback_targets(inv)
        if problems:
            lines = "\n".join(f"  {name}: {why}" for name, why in problems.items())
            raise Exit(f"error: nothing was changed; no version to return to on:\n{lines}\n"
                       "give one with --to=TAG", code=rollout.EXIT_DEPLOY_FAILED)
        tags = sorted(set(targets.values()))
        result = rollout.deploy(inv, "/".join(tags), task="rollback", tags=targets, pull=False)
    finish_rollout(result)


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


@task(help={"inventory": INVENTORY_HELP})
@reports_errors
def status(c: Context, inventory: str = "hosts.yaml") -> None:
    """Show, per server, the live slot, the version it serves, and HAProxy's view of both slots.

    Example: fab status
    """
    inv = load(inventory)
    reports = rollout.status(inv)
    for report in reports:
        if report.error:
            say(f"{report.name} ({report.address}): ERROR {report.error}")
            continue
        say(f"{report.name} ({report.address}): live {report.live}, serving {report.version}")
        for line in report.slots:
            say(f"    {line}")
    if any(r.error for r in reports):
        raise Exit(code=rollout.EXIT_CONNECT)


@task(help={"inventory": INVENTORY_HELP})
@reports_errors
def down(c: Context, inventory: str = "hosts.yaml") -> None:
    """Remove the app's containers (slots and HAProxy), network and config from every server.

    Example: fab down
    """
    inv = load(inventory)
    exit_on_failure("down", rollout.on_every_server(inv, down_server, "down"))


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
    return Collection(build, up, deploy, rollback, status, history, lock_status, unlock, down,
                      sandbox_tasks)

