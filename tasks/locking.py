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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from tasks.inventory import Inventory
from tasks.output import warn
from tasks.remote import RemoteCommandError, Server


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
    return f"/var/lib/slotswap/{inventory.app}"


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


def acquire(server: Server, inventory: Inventory, owner: LockOwner) -> None:
    directory = lock_dir(inventory)
    server.run(["mkdir", "-p", state_dir(inventory)])
    taken = server.run(["mkdir", directory], check=False)
    if not taken.ok:
        if "File exists" not in taken.stderr:
            raise RemoteCommandError(server.name, f"mkdir {directory}", taken.exit_code,
                                     taken.stderr)
        holder = read_owner(server, inventory)
        held_by = holder.describe() if holder else "a run that just ended"
        raise LockedError(
            f"{server.name} is locked by {held_by}. If that run is still going, wait for it; "
            f"if it is gone, `fab lock` shows the locks and `fab unlock --server="
            f"{server.name}` releases this one")
    server.write_file(f"{directory}/owner.json", json.dumps(asdict(owner)) + "\n")


def release(server: Server, inventory: Inventory, owner: LockOwner) -> None:
    """Release the lock if it is still ours."""
    holder = read_owner(server, inventory)
    if holder is not None and holder.token == owner.token:
        server.run(["rm", "-rf", lock_dir(inventory)])


def force_release(server: Server, inventory: Inventory) -> LockOwner | None:
    holder = read_owner(server, inventory)
    if holder is not None:
        server.run(["rm", "-rf", lock_dir(inventory)])
    return holder


class FleetLock:
    """Locks on several servers, all taken before any is changed, all released at the end."""

    def __init__(self, servers: list[Server], inventory: Inventory, owner: LockOwner):
        self.servers, self.inventory, self.owner = servers, inventory, owner
        self.held: list[Server] = []
        self.failed_on: str | None = None  # the server whose lock could not be taken

    def __enter__(self) -> FleetLock:
        try:
            for server in self.servers:
                self.failed_on = server.name
                acquire(server, self.inventory, self.owner)
                self.held.append(server)
            self.failed_on = None
        except BaseException:
            self.release_all()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_all()

    def release_all(self) -> None:
        for server in reversed(self.held):
            try:
                release(server, self.inventory, self.owner)
            except Exception as error:  # the others must still be released
                warn(f"[{server.name}] WARNING: could not release its lock: {error}")
        self.held.clear()
