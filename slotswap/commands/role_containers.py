"""Docker command lines of a role's containers (the app's queue workers, schedulers: see
slotswap.config.roles): the run of one, its stop with the role's stop timeout, the `docker
exec` of its check, and the inspection of them all on a server. Pure: nothing here runs them.

A role's container is `<app>-<role>-<generation>-<n>`: the generation is the web slot its
version goes into (web1, web2), so that the new version's containers start beside the old
ones and the old ones can be kept, stopped, for a rollback; n counts from 1 to the role's
count. Its labels say what it is (the server-level code reads them, never the name): the
app, the role, the version, the generation and the settings digest, as a slot's do.
"""

from __future__ import annotations

import math
import shlex

from slotswap.commands.docker import (
    LABEL_APP,
    LABEL_GENERATION,
    LABEL_ROLE,
    LABEL_SETTINGS,
    LABEL_VERSION,
    container_options,
    settings_digest,
    stop,
)
from slotswap.config.container import ContainerSettings
from slotswap.config.roles import MAX_STOP_TIMEOUT

# The seconds a check command may run over its deadline before `timeout` kills the docker
# exec client with SIGKILL (SIGTERM first, at the deadline).
CHECK_KILL_AFTER = 2
# Seconds a `docker stop` may take over the stop timeout it gives (the kill and the reply):
# its command's deadline is the stop timeout plus this.
STOP_MARGIN = 60


def stop_deadline(stop_timeout: int | None) -> float:
    """The deadline of a `docker stop` that gives `stop_timeout` (None: each container's
    own, at most MAX_STOP_TIMEOUT): longer, so that a job gets all of it."""
    return (stop_timeout or MAX_STOP_TIMEOUT) + STOP_MARGIN


def role_container_name(app: str, role: str, generation: str, index: int) -> str:
    return f"{app}-{role}-{generation}-{index}"


def role_digest(*, network: str, app_port: int, stop_timeout: int,
                options: ContainerSettings) -> str:
    """What a role's container is made with besides its image and environment (`options`:
    slotswap.config.roles.role_container's, the role's command and stop signal in them): a
    kept one is started again only when this matches today's inventory."""
    return settings_digest(network=network, app_port=app_port, stop_timeout=stop_timeout,
                           options=options)


def run_role(*, container: str, image_ref: str, network: str, app: str, role: str,
             generation: str, version: str, app_port: int, stop_timeout: int,
             options: ContainerSettings, env_file: str | None) -> list[str]:
    """One container of a role: on the app's network, no port published, restarted by
    Docker unless the kit stopped it, stopped by the role's signal (in `options`) with
    `stop_timeout` seconds to finish its job. Its variables come only from `env_file` (a path
    on the server): no value, secret or not, is ever on the command line. PORT is set as in
    the app's one-off containers (no port is published: it only keeps the app's config
    alike)."""
    digest = role_digest(network=network, app_port=app_port, stop_timeout=stop_timeout,
                         options=options)
    return [
        "docker", "run", "--detach",
        "--name", container,
        "--network", network,
        "--restart", "unless-stopped",
        "--stop-timeout", str(stop_timeout),
        *container_options(options),
        "--label", f"{LABEL_APP}={app}",
        "--label", f"{LABEL_ROLE}={role}",
        "--label", f"{LABEL_VERSION}={version}",
        "--label", f"{LABEL_GENERATION}={generation}",
        "--label", f"{LABEL_SETTINGS}={digest}",
        *(["--env-file", env_file] if env_file is not None else []),
        "--env", f"PORT={app_port}",
        image_ref,
        *options.command,
    ]


def stop_role(container: str, stop_timeout: int | None) -> list[str]:
    """The stop signal, then `stop_timeout` seconds to finish before Docker kills it; None:
    the stop timeout the container was made with (a role no longer in the inventory). The
    command's own deadline must be longer than that: the stop timeout and a margin."""
    if stop_timeout is None:
        return ["docker", "stop", container]
    return stop(container, stop_timeout)


def stop_roles(containers: list[str], stop_timeout: int | None) -> list[str]:
    """stop_role of several containers in one command (Docker stops them side by side, so
    the command takes one stop timeout, not one per container)."""
    return [*stop_role(containers[0], stop_timeout), *containers[1:]]


def exec_check(container: str, command: tuple[str, ...], seconds: float) -> list[str]:
    """One try of a role's check command inside its container (no shell, no tty), ended by
    coreutils' `timeout` on the server after `seconds` (exit 124; 137 after the kill): a
    command that hangs never holds the run past the check's timeout. What it started inside
    the container may run on: the check must be a short command."""
    return ["timeout", f"--kill-after={CHECK_KILL_AFTER}", str(max(1, math.ceil(seconds))),
            "docker", "exec", container, *command]


# Every role container of the app (a slot, HAProxy or a one-off has no generation label),
# running or not, as `docker container inspect`'s JSON array (docker.parse_inspect); nothing
# when there is none. A fixed script: the app's name is its argument, never in its text. Not
# a pipe: a `docker ps` that fails (the engine down) fails the script, instead of reading as
# "no role container" (IDs are hex, split on whitespace as they are).
INSPECT_ROLES_SCRIPT = (
    f'ids=$(docker ps --all --quiet --no-trunc --filter "label={LABEL_APP}=$1" '
    f'--filter "label={LABEL_GENERATION}") || exit; '
    '[ -z "$ids" ] || exec docker container inspect $ids')


def inspect_roles(app: str) -> list[str]:
    return ["sh", "-c", INSPECT_ROLES_SCRIPT, "sh", app]


# The containers named (a server's slots) and every role container of the app, in one
# `docker container inspect` (exit 1 when a named one does not exist, the others printed, as
# docker.inspect_containers). A `docker ps` that fails exits 125, its own error last on
# stderr, so that it never reads as "no role container", nor as a slot that does not exist.
INSPECT_WITH_ROLES_SCRIPT = (
    f'app=$1; shift; ids=$(docker ps --all --quiet --no-trunc --filter "label={LABEL_APP}=$app" '
    f'--filter "label={LABEL_GENERATION}") || exit 125; '
    'exec docker container inspect "$@" $ids')


def inspect_with_roles(app: str, names: list[str]) -> list[str]:
    return ["sh", "-c", INSPECT_WITH_ROLES_SCRIPT, "sh", app, *names]


def describe_inspect_with_roles(names: list[str]) -> str:
    """inspect_with_roles as an error shows it (the script itself says little)."""
    return shlex.join(["docker", "container", "inspect", *names]) + " <the role containers>"
