"""`fab sandbox.create` / `fab sandbox.destroy`: the local test fleet, for this repository's
fabfile only (the tests, the demo, the benchmarks); not part of the installed command."""

from __future__ import annotations

from invoke import Collection, Context, task
from invoke.exceptions import Exit

from testbed import sandbox


@task(auto_shortflags=False, help={"servers": "number of servers to create (default 3)"})
def create(c: Context, servers: int = 3) -> None:
    """Create the local sandbox: N servers (netns + sshd + dockerd), registry, resolver.

    Needs root. Writes .sandbox/hosts.yaml; `source .sandbox/env` points DOCKER_HOST at its
    build engine. SLOTSWAP_SANDBOX_ID=N (1-9) makes another one beside it.
    Example: fab sandbox.create --servers=3
    """
    try:
        sandbox.create(servers)
    except sandbox.SandboxError as error:
        raise Exit(f"sandbox: {error}", code=1) from error


@task
def destroy(c: Context) -> None:
    """Remove the local sandbox and everything in it. Example: fab sandbox.destroy"""
    try:
        sandbox.destroy()
    except sandbox.SandboxError as error:
        raise Exit(f"sandbox: {error}", code=1) from error


def collection() -> Collection:
    return Collection("sandbox", create, destroy)
