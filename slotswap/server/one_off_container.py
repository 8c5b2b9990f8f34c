"""A one-off container's life (the release command, `exec`): it has a name of its own (app,
purpose, run: `webapp-release-3f2a9c1e`), and the kit kills it when the command does not end
by itself. Closing the SSH channel does not stop `docker run`: the container would go on (a
migration still running after the deploy said "nothing was changed", beside the next run's).

So an interrupt (Ctrl-C noted by a run that stops at safe points, or raised), the command's
deadline and a lost connection each end in `docker rm --force` of the container (over a new
connection when the old one is gone), and the message says what became of it. A container a
run left because the run itself was killed is found and removed by the next run before it
starts its own (remove_leftovers).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import TypeVar

from slotswap.commands import docker
from slotswap.core import interrupts
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandDeadlineError, ConnectError, RemoteCommandError

T = TypeVar("T")
Say = Callable[[str], None]
KILL_SECONDS = 30  # `docker rm --force`: SIGKILL and removal, on an engine that answers
POLL_SECONDS = 0.2  # how soon a noted interrupt kills the container


def container_name(app: str, purpose: str) -> str:
    """A name no other container has: the app's, the purpose, and this run's own part."""
    return f"{app}-{purpose}-{secrets.token_hex(4)}"


class OneOffStopped(RemoteCommandError):
    """A one-off command did not end by itself (its deadline, a lost connection): its
    container was killed, or could not be (`fate` says which)."""

    def __init__(self, server: str, command: str, cause: Exception, fate: str):
        reason = str(cause).removeprefix(f"{server}: ")
        RuntimeError.__init__(self, f"{server}: {reason}; {fate}")
        self.server, self.command, self.exit_code, self.stderr = server, command, -1, reason
        self.cause, self.reason, self.fate = cause, reason, fate


def kill(server: ServerLike, name: str, *, timeout: float = KILL_SECONDS) -> str:
    """`docker rm --force NAME`; what became of the container, in words."""
    try:
        answer = server.run(docker.remove(name), check=False, timeout=timeout)
    except Exception as error:  # said in the message; the next run removes it
        return f"its container {name} could not be killed ({error})"
    if answer.ok:
        return f"its container {name} was killed"
    if docker.only_missing_containers(answer.stderr):
        return f"its container {name} had ended"
    detail = answer.stderr.strip().splitlines()[-1:] or [f"exit {answer.exit_code}"]
    return f"its container {name} could not be killed ({detail[0]})"


def to_its_end(server: ServerLike, name: str, call: Callable[[], T], *, say: Say) -> T:
    """`call` (which runs the one-off container `name`) until it returns. On an interrupt the
    container is killed, `say` tells what became of it and KeyboardInterrupt goes on; on a
    deadline or a lost connection it is killed and OneOffStopped says so."""
    watcher = InterruptWatcher(server, name)
    watcher.start()
    try:
        value = call()
    except KeyboardInterrupt:  # raised at once (not a run that stops at safe points)
        watcher.stop()
        if interrupts.stopping_now():  # every connection was cut: a new one, quickly
            server.resume()
        fate = watcher.fate or kill(server, name, timeout=interrupts.REPORT_AFTER_STOP_SECONDS)
        say(f"interrupted: {fate}")
        raise
    except (CommandDeadlineError, ConnectError) as error:
        watcher.stop()
        raise OneOffStopped(server.name, name, error, watcher.fate or kill(server, name)
                            ) from error
    watcher.stop()
    if watcher.fate is not None:
        say(f"interrupted: {watcher.fate}")
        raise KeyboardInterrupt
    return value


class InterruptWatcher:
    """Kills the container as soon as an interrupt is noted (a run guarded by
    slotswap.core.interrupts turns Ctrl-C into a flag, and the command would otherwise run
    to its end): over a channel of its own, beside the command that waits for it."""

    def __init__(self, server: ServerLike, name: str):
        self.server, self.name = server, name
        self.fate: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name=f"one-off-{server.name}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            if interrupts.requested() and not interrupts.stopping_now():
                self.fate = kill(self.server, self.name)
                return


def remove_leftovers(server: ServerLike, app: str, role: str, say: Say) -> None:
    """Remove the app's one-off containers of `role` that an earlier run left (killed before
    it could kill them), saying so: one round trip when there are none."""
    listed = server.run(docker.list_one_offs(app, role))
    for name, status in docker.parse_one_offs(listed.stdout):
        server.run(docker.remove(name), timeout=KILL_SECONDS)
        say(f"removed {name} ({status}), left by an earlier run that was stopped before it "
            "could kill it")
