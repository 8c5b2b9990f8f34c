"""A lock per server and app, so that two runs never change the same server at once.

The lock is a directory (`mkdir` is atomic on the server) holding an owner file that says
who took it, when, for which task and tag. A run takes the lock on every server it will
touch before it changes any of them, and releases it on success, failure and Ctrl-C.
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from slotswap.inventory import Inventory
from slotswap.output import warn
from slotswap.remote import RemoteCommandError, Server

LOCK_CONCURRENCY = 16  # servers whose connection and lock are taken at the same time


class LockedError(RuntimeError):
    """Another run holds the lock of a server: nothing was changed."""


@dataclass(frozen=True)
class LockOwner:
    who: str  # user@machine
    since: str  # UTC, ISO 8601
    task: str
    tag: str
    token: str  # tells this run's lock from anybody else's

    def describe(self) -> str:
        tag = f" {self.tag}" if self.tag else ""
        return f"{self.who} since {self.since} ({self.task}{tag})"


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def state_dir(inventory: Inventory) -> str:
    return inventory.state_dir


def lock_dir(inventory: Inventory) -> str:
    return f"{state_dir(inventory)}/lock"


def new_owner(task: str, tag: str = "", now: datetime | None = None) -> LockOwner:
    moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return LockOwner(operator(), moment, task, tag, uuid.uuid4().hex)


def parse_owner(text: str | None) -> LockOwner | None:
    try:
        data = json.loads(text or "")
        return LockOwner(**{key: str(data.get(key, "")) for key in LockOwner.__annotations__})
    except (ValueError, TypeError, AttributeError):
        return None


def read_owner(server: Server, inventory: Inventory) -> LockOwner | None:
    """The lock's owner, None when the server is not locked."""
    text = server.read_file(f"{lock_dir(inventory)}/owner.json")
    if text is None:
        exists = server.run(["test", "-d", lock_dir(inventory)], check=False).ok
        return LockOwner("unknown", "unknown", "unknown", "", "") if exists else None
    return parse_owner(text) or LockOwner("unknown", "unknown", "unreadable owner file", "", "")


# Fixed scripts, their paths and token passed as arguments: one round trip each. The outcome
# is told by the exit code, never by a message (which the server's language may change).
LOCK_HELD = 10  # the lock directory exists: another run holds the lock
CANNOT_WRITE = 11  # the state folder or the lock directory cannot be made
TAKE_SCRIPT = (
    f'mkdir -p -- "$1" || exit {CANNOT_WRITE}; '
    f'if ! mkdir -- "$2"; then if [ -d "$2" ]; then exit {LOCK_HELD}; fi; exit {CANNOT_WRITE}; fi; '
    '{ cat > "$2/owner.json.tmp" && mv -f -- "$2/owner.json.tmp" "$2/owner.json"; } || '
    '{ status=$?; rm -rf -- "$2"; exit "$status"; }'
)
RELEASE_SCRIPT = 'if grep -qsF -- "$1" "$2/owner.json"; then rm -rf -- "$2"; fi'


def take_lock_command(inventory: Inventory) -> list[str]:
    """`mkdir` of the lock directory (atomic: it fails if it exists), then the owner file
    from stdin."""
    return ["sh", "-c", TAKE_SCRIPT, "sh", state_dir(inventory), lock_dir(inventory)]


def release_lock_command(inventory: Inventory, owner: LockOwner) -> list[str]:
    """Remove the lock directory if its owner file holds this run's token."""
    return ["sh", "-c", RELEASE_SCRIPT, "sh", owner.token, lock_dir(inventory)]


def acquire(server: Server, inventory: Inventory, owner: LockOwner) -> None:
    taken = server.run(take_lock_command(inventory), check=False,
                       stdin=json.dumps(asdict(owner)) + "\n")
    if taken.exit_code == CANNOT_WRITE:
        raise server.cannot_write(state_dir(inventory), taken.stderr)
    if taken.exit_code == LOCK_HELD:
        holder = read_owner(server, inventory)
        held_by = holder.describe() if holder else "a run that just ended"
        raise LockedError(
            f"{server.name} is locked by {held_by}. If that run is still going, wait for it; "
            f"if it is gone, `fab lock` shows the locks and `fab unlock --server="
            f"{server.name}` releases this one")
    if not taken.ok:
        raise RemoteCommandError(server.name, f"mkdir {lock_dir(inventory)}", taken.exit_code,
                                 taken.stderr)


def release(server: Server, inventory: Inventory, owner: LockOwner) -> None:
    """Release the lock if it is still ours."""
    server.run(release_lock_command(inventory, owner))


def force_release(server: Server, inventory: Inventory) -> LockOwner | None:
    holder = read_owner(server, inventory)
    if holder is not None:
        server.run(["rm", "-rf", lock_dir(inventory)])
    return holder


def on_each(servers: list[Server],
            action: Callable[[Server], None]) -> list[BaseException | None]:
    """`action` on every server at the same time (LOCK_CONCURRENCY at a time), each server in
    a thread of its own; what each one raised, in the servers' order."""

    def attempt(server: Server) -> BaseException | None:
        try:
            action(server)
        except BaseException as error:  # handed to the caller, which decides
            return error
        return None

    if len(servers) < 2:
        return [attempt(server) for server in servers]
    with ThreadPoolExecutor(max_workers=min(LOCK_CONCURRENCY, len(servers))) as pool:
        return list(pool.map(attempt, servers))


class FleetLock:
    """Locks on several servers, all taken before any is changed, all released at the end.
    Each server's connection is opened here: the first server's, then all the others at
    the same time."""

    def __init__(self, servers: list[Server], inventory: Inventory, owner: LockOwner):
        self.servers, self.inventory, self.owner = servers, inventory, owner
        self.held: list[Server] = []
        self.failed_on: str | None = None  # the server whose lock could not be taken

    def __enter__(self) -> FleetLock:
        # The first server's lock alone first: of two runs started together on one inventory,
        # one gets it and the other stops there, rather than each taking some locks and both
        # giving up. Then all the others at once.
        for group in (self.servers[:1], self.servers[1:]):
            errors = on_each(group, lambda server: acquire(server, self.inventory, self.owner))
            self.held += [server for server, error in zip(group, errors, strict=True)
                          if error is None]
            failed = [(server, error) for server, error in zip(group, errors, strict=True)
                      if error is not None]
            if failed:
                # The first server in the inventory's order, unless the operator asked to stop.
                server, error = next(((s, e) for s, e in failed if not isinstance(e, Exception)),
                                     failed[0])
                self.failed_on = server.name
                self.release_all()
                raise error
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_all()

    def release_all(self) -> None:
        held, self.held = self.held, []
        errors = on_each(held, lambda server: release(server, self.inventory, self.owner))
        for server, error in zip(held, errors, strict=True):
            if isinstance(error, Exception):  # the others are released all the same
                warn(f"[{server.name}] WARNING: could not release its lock: {error}")
            elif error is not None:
                raise error
