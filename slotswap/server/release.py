"""The release command (`release.command`): run once per deploy, in a one-off container of
the new image with the app's environment and container options, on the first server, after
the image is on every server and before any traffic moves. A database migration, typically:
when it fails, the deploy stops and nothing is changed anywhere."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

from slotswap.commands import docker
from slotswap.config.app_env import AppEnv
from slotswap.config.inventory import Inventory
from slotswap.config.layout import RELEASE_ENV_NAME, env_file_path
from slotswap.core import interrupts
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandDeadlineError
from slotswap.server import history
from slotswap.server.one_off_container import (
    OneOffStopped,
    container_name,
    remove_leftovers,
    to_its_end,
)

ROLE = "release"  # its container's label slotswap.role, and the middle of its name
OUTPUT_KEPT = 4000  # characters of its output kept in the server's history
Progress = Callable[[str], None]


class ReleaseFailed(RuntimeError):
    """The release command exited non-zero (or timed out): nothing was changed."""


def command(inventory: Inventory, tag: str, env_file: str | None, name: str) -> list[str]:
    return docker.run_one_off(
        image=inventory.image_ref(tag), network=inventory.network, app=inventory.app,
        command=list(inventory.release.command), app_port=inventory.app_port,
        env_file=env_file, tty=False, name=name, role=ROLE, options=inventory.container)


def run(server: ServerLike, inventory: Inventory, tag: str, app_env: AppEnv,
        progress: Progress) -> str:
    """Run it; return its output. Its output and outcome go into the server's history. Its
    container is killed when it runs past release.timeout, the connection is lost or the
    run is interrupted; one an earlier run left is removed first."""
    inventory = server.with_folders(inventory)
    remove_leftovers(server, inventory.app, ROLE, progress)
    env_file = None
    if not inventory.env.empty:
        env_file = env_file_path(inventory, RELEASE_ENV_NAME)
        server.write_private_file(env_file, app_env.text)
    words = shlex.join(inventory.release.command)
    name = container_name(inventory.app, ROLE)
    progress(f"release command: {words} (in a one-off container of {tag}, {name})")
    started = time.monotonic()

    def record(outcome: str, error: str, output: str = "") -> None:
        entry = history.new_entry("release", None, tag, outcome, time.monotonic() - started,
                                  error)
        history.append(server, inventory, history.with_output(entry, output[-OUTPUT_KEPT:]))

    try:
        result = to_its_end(server, name, lambda: server.run(
            command(inventory, tag, env_file, name), check=False,
            timeout=inventory.release.timeout), say=progress)
    except KeyboardInterrupt:
        if not interrupts.stopping_now():
            record("interrupted", f"interrupted: {words}")
        raise
    except OneOffStopped as stopped:
        timed_out = isinstance(stopped.cause, CommandDeadlineError)
        reason = (f"timed out after {inventory.release.timeout:g}s (release.timeout)"
                  if timed_out else stopped.reason)
        record("failed", f"{reason}: {words}")
        what = (f"{reason} on {server.name}" if timed_out
                else f"stopped on {server.name}: {reason}")
        raise ReleaseFailed(f"the release command `{words}` {what}: {stopped.fate}; nothing "
                            "else was changed") from stopped
    seconds = time.monotonic() - started
    # Masked before anything is shown, kept or cut: a failed migration often prints its
    # connection string, password and all.
    output = app_env.mask((result.stdout + result.stderr).strip())
    for line in output.splitlines()[-20:]:
        progress(f"release | {line}")
    record("released" if result.ok else "failed",
           "" if result.ok else f"exit {result.exit_code}: {words}", output)
    if not result.ok:
        last = "\n".join(output.splitlines()[-10:])
        raise ReleaseFailed(f"the release command `{words}` exited {result.exit_code} on "
                            f"{server.name}; nothing was changed"
                            + (f"; its last output:\n{last}" if last else ""))
    progress(f"release command done in {seconds:.1f}s")
    return output
