"""The `fab` tasks. Each loads and validates the whole inventory before it contacts a server."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from tasks import docker_commands as docker
from tasks import rollout, sandbox
from tasks.inventory import Inventory, load_inventory
from tasks.output import format_table, say
from tasks.proxy import down_server, up_server
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
        raise Exit(f"error: `{task_name}` failed on {failed.name}; later servers were not "
                   f"touched", code=failed.exit_code)


def load(path: str) -> Inventory:
    return load_inventory(path)


@task(help={"tag": "image tag to build (default: the UTC time, YYYYMMDDHHMM)",
            "inventory": INVENTORY_HELP,
            "push": "push the image to its registry after building (default: yes)"})
@reports_errors
def build(c: Context, tag: str | None = None, inventory: str = "hosts.yaml",
          push: bool = True) -> None:
    """Build the app image on this machine and push it: docker build --build-arg VERSION=TAG.

    Uses the local Docker engine (honours DOCKER_HOST). Example: fab build --tag=v42
    """
    inv = load(inventory)
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
    results = rollout.on_every_server(inv, up_server)
    say(format_table(("server", "result"), [(r.name, r.text) for r in results]))
    exit_on_failure("up", results)


@task(help={"tag": "image tag to deploy (required); must have been built and pushed",
            "inventory": INVENTORY_HELP})
@reports_errors
def deploy(c: Context, tag: str | None = None, inventory: str = "hosts.yaml") -> None:
    """Roll TAG out, one server at a time, with zero downtime; stop at the first failure.

    On each server the new version starts in the idle slot and takes traffic only after
    HAProxy's own health checks pass; the old slot is drained, then stopped. A server that
    fails keeps serving its old version. Example: fab deploy --tag=v42
    """
    if tag is None:
        raise Exit("error: --tag is required (the image tag to deploy, e.g. --tag=v42)",
                   code=rollout.EXIT_BAD_INPUT)
    tag = validate_tag(tag)
    inv = load(inventory)
    result = rollout.deploy(inv, tag)
    say("")
    say(rollout.summary_table(result.outcomes))
    if not result.ok:
        raise Exit(f"error: {result.message}", code=result.exit_code)
    say(f"deployed {tag} to {len(result.outcomes)} servers")


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
    exit_on_failure("down", rollout.on_every_server(inv, down_server))


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
    return Collection(build, up, deploy, status, down, sandbox_tasks)

