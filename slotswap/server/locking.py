"""A lock per server and app, so that two runs never change the same server at once; a lease,
so that a run that is gone (killed, or cut off from the server) never blocks the next one
for long.

The lock is a directory (`mkdir` is atomic on the server) holding an owner file that says
who took it, when, for which task and tag, and the holder's lease in seconds. A run takes
the lock on every server it will touch before it changes any of them, renews it (touches
the directory) every lease/3 seconds while it runs, and releases it on success, failure
and Ctrl-C. A lock whose directory was not touched for longer than its lease, by the
server's own clock (so clock skew between machines never matters), is stale: the next run
takes it over, in the same round trip, and says whose it was and how old. Take-overs are
serialised by a second directory (`<lock>.takeover`), so of two runs finding the same stale
lock only one gets it; renewals take it too, so none lands between a take-over's reading
of the lock and its removal (see slotswap.server.lease for what a run that lost its lock
does).
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import Enum

from slotswap.config.inventory import Inventory
from slotswap.config.layout import lock_dir
from slotswap.core.output import progress_for
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import RemoteCommandError

LOCKED_EXIT = 4  # what the take script exits with when the lock is held by another run
# The outcome is told by exit codes, never by a message (which the server's language may
# change): the state folder or the lock directory cannot be made by this login.
CANNOT_WRITE = 11
LOCK_HELD = LOCKED_EXIT
RENEW_NOT_OURS = 1  # the renew script: the lock is not this run's (any more)
RENEW_BUSY = 3  # the renew script: another run is taking the lock over, or trying to
TAKEOVER_GUARD_SECONDS = 30  # a take-over guard older than this was left by a dead shell
# The task of the lock left for good in the folders a server was carried over from (see
# slotswap.server.carry_over): runs that still use them are refused.
CARRIED_TASK = "carried over"


class LockedError(RuntimeError):
    """Another run holds the lock of a server: nothing was changed."""


class LeaseLostError(LockedError):
    """This run's lock on a server is no longer its own (taken over after it was not renewed
    for its lease, or released with `fab unlock`): the run does not touch that server again."""


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


UNKNOWN_OWNER = LockOwner("unknown", "unknown", "unreadable owner file", "", "")


@dataclass(frozen=True)
class LockState:
    """A lock as the server sees it: its owner, the seconds since it was last taken or
    renewed (the server's clock) and the lease its holder keeps it for."""

    owner: LockOwner
    age: int
    lease: int

    @property
    def stale(self) -> bool:
        return self.age > self.lease

    def describe(self) -> str:
        if self.stale:
            return (f"{self.owner.describe()}, not renewed for {self.age}s (lease {self.lease}s):"
                    " stale, the next run takes it over")
        return f"{self.owner.describe()}, renewed {self.age}s ago (lease {self.lease}s)"


@dataclass(frozen=True)
class TakeResult:
    """What taking one server's lock did: taken (maybe over a stale one), or refused."""

    taken: bool
    previous: LockState | None = None  # the stale lock taken over, or the live one refusing
    busy: bool = False  # another run is taking over a stale lock right now
    # With a file to read once the lock is taken (acquire's `read`): its text, None when it
    # does not exist (or the lock was not taken).
    read: str | None = None


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def new_owner(task: str, tag: str = "", now: datetime | None = None) -> LockOwner:
    moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return LockOwner(operator(), moment, task, tag, uuid.uuid4().hex)


def parse_owner(text: str | None) -> LockOwner | None:
    try:
        data = json.loads(text or "")
        return LockOwner(**{key: str(data.get(key, "")) for key in LockOwner.__annotations__})
    except (ValueError, TypeError, AttributeError):
        return None


# Fixed scripts, their paths, lease and token passed as arguments: one round trip each.
# The lease and age are whole seconds of the server's clock (`date +%s`, the lock
# directory's mtime); a lock without a readable lease file is judged by the reader's lease.
_HELD_FOR = ('held_for=$(cat -- "$LOCK/lease" 2>/dev/null); '
             'case $held_for in ""|*[!0-9]*) held_for=$LEASE;; esac; ')
# The take-over guard (`<lock>.takeover`), when `mkdir` of it failed: one older than
# TAKEOVER_GUARD_SECONDS was left by a shell that died holding it, and is removed.
_STALE_GUARD = (
    'if [ $(( $(date +%s) - $(stat -c %Y -- "$guard" 2>/dev/null || date +%s) )) -gt '
    f'{TAKEOVER_GUARD_SECONDS} ]; then rmdir -- "$guard" 2>/dev/null; fi; ')
# The state folder is the login's alone (0700) and what the kit makes in it 0600/0700
# (umask 077): the history keeps what a release command printed. A folder or files left
# with wider modes by an older release are closed here, by the first run that takes a lock;
# a folder this login cannot close is one it does not own, and counts as one it cannot use.
TAKE_SCRIPT = (
    'STATE=$1 LOCK=$2 LEASE=$3; owner=$(cat) || exit 1; umask 077; '
    f'mkdir -p -- "$STATE" && chmod 700 -- "$STATE" || exit {CANNOT_WRITE}; '
    f'[ -w "$STATE" ] || exit {CANNOT_WRITE}; chmod -R go= -- "$STATE" 2>/dev/null; '
    'take() { mkdir -- "$LOCK" 2>/dev/null && printf "%s\\n" "$LEASE" > "$LOCK/lease" && '
    'printf "%s\\n" "$owner" > "$LOCK/owner.json.tmp" && '
    'mv -f -- "$LOCK/owner.json.tmp" "$LOCK/owner.json"; }; '
    'if take; then echo taken; exit 0; fi; '
    'guard=$LOCK.takeover; '
    'if ! mkdir -- "$guard" 2>/dev/null; then ' + _STALE_GUARD +
    f'echo busy; exit {LOCKED_EXIT}; fi; '
    'trap \'rmdir -- "$guard"\' EXIT; '
    'now=$(date +%s); '
    'if ! renewed=$(stat -c %Y -- "$LOCK" 2>/dev/null); then '
    f'if take; then echo taken; exit 0; fi; echo busy; exit {LOCKED_EXIT}; fi; '
    + _HELD_FOR +
    'age=$((now - renewed)); state=held; [ "$age" -gt "$held_for" ] && state=stale; '
    'echo "$state $age $held_for"; cat -- "$LOCK/owner.json" 2>/dev/null; echo; '
    f'[ "$state" = held ] && exit {LOCKED_EXIT}; '
    'rm -rf -- "$LOCK" && take && { echo taken; exit 0; }; '
    f'echo busy; exit {LOCKED_EXIT}'
)
# A renewal holds the take-over guard too: a take-over reads the lock's age and removes it
# under that guard, so a renewal lands wholly before it (the lock is fresh again, and the
# take-over refused) or after it (the lock is another run's): never between its reading
# and its removal, which would let a run go on with a lock another has just taken.
RENEW_SCRIPT = (
    'TOKEN=$1 LOCK=$2; guard=$LOCK.takeover; '
    'if ! mkdir -- "$guard" 2>/dev/null; then ' + _STALE_GUARD + f'exit {RENEW_BUSY}; fi; '
    'trap \'rmdir -- "$guard"\' EXIT; '
    f'grep -qsF -- "$TOKEN" "$LOCK/owner.json" || exit {RENEW_NOT_OURS}; touch -c -- "$LOCK"'
)
RELEASE_SCRIPT = 'if grep -qsF -- "$1" "$2/owner.json"; then rm -rf -- "$2"; fi'
READ_SCRIPT = (
    'LOCK=$1 LEASE=$2; now=$(date +%s); '
    'renewed=$(stat -c %Y -- "$LOCK" 2>/dev/null) || { echo free; exit 0; }; '
    + _HELD_FOR +
    'echo "lock $((now - renewed)) $held_for"; cat -- "$LOCK/owner.json" 2>/dev/null; echo'
)


# The take script, then, once the lock is taken, a file read under it in the same round trip:
# when it exists, a line MARK and its text (a line saying it cannot be read, when it cannot,
# which no reader takes for the file). The take script's exit code is this one's. Its text,
# the mark and the path are arguments, never in the script's text.
TAKE_AND_READ_SCRIPT = (
    'TAKE=$1 MARK=$5 FILE=$6; sh -c "$TAKE" sh "$2" "$3" "$4" || exit; '
    '[ -e "$FILE" ] || exit 0; printf "%s\\n" "$MARK"; cat -- "$FILE" || echo "(unreadable)"'
)


def take_lock_command(inventory: Inventory) -> list[str]:
    """`mkdir` of the lock directory (atomic: it fails if it exists) and the owner file from
    stdin; or, when the lock is held, its state, and a take-over when it is stale."""
    return ["sh", "-c", TAKE_SCRIPT, "sh", inventory.state_dir, lock_dir(inventory),
            str(inventory.timeouts.lease)]


def take_and_read_command(inventory: Inventory, path: str, mark: str) -> list[str]:
    """take_lock_command, then, once the lock is taken, the file `path` read under it."""
    return ["sh", "-c", TAKE_AND_READ_SCRIPT, "sh", TAKE_SCRIPT,
            *take_lock_command(inventory)[4:], mark, path]


def split_read(stdout: str, mark: str) -> tuple[str, str | None]:
    """Pure: TAKE_AND_READ_SCRIPT's answer as the take script's and the file's text (None:
    no file, or the lock was not taken)."""
    take, found, text = stdout.partition(f"{mark}\n")
    return take, text if found else None


def renew_lock_command(inventory: Inventory, owner: LockOwner) -> list[str]:
    """Touch the lock directory if its owner file holds this run's token (exit 1 if not)."""
    return renew_lock_at_command(lock_dir(inventory), owner.token)


def renew_lock_at_command(lock: str, token: str) -> list[str]:
    return ["sh", "-c", RENEW_SCRIPT, "sh", token, lock]


def release_lock_command(inventory: Inventory, owner: LockOwner) -> list[str]:
    """Remove the lock directory if its owner file holds this run's token."""
    return ["sh", "-c", RELEASE_SCRIPT, "sh", owner.token, lock_dir(inventory)]


def read_lock_command(inventory: Inventory) -> list[str]:
    return read_lock_at_command(lock_dir(inventory), inventory.timeouts.lease)


def read_lock_at_command(lock: str, lease: int) -> list[str]:
    """The state of the lock directory `lock`, judged by `lease` when it has no lease file."""
    return ["sh", "-c", READ_SCRIPT, "sh", lock, str(lease)]


def parse_lock_state(header: str, owner_text: str) -> LockState | None:
    """`held|stale|lock AGE LEASE` and the owner file's text; None if it is not that."""
    words = header.split()
    if len(words) != 3 or not all(w.lstrip("-").isdigit() for w in words[1:]):
        return None
    owner = parse_owner(owner_text) or UNKNOWN_OWNER
    return LockState(owner, max(0, int(words[1])), int(words[2]))


def parse_take_answer(stdout: str) -> TakeResult:
    """What the take script printed: `taken`; `busy`; or a state line and the owner file,
    then `taken` if the lock was stale and is now ours."""
    lines = stdout.strip().splitlines()
    if not lines or lines[0] == "busy":
        return TakeResult(False, busy=True)
    if lines == ["taken"]:
        return TakeResult(True)
    if lines[-1] == "busy":  # stale, but another run took it first
        return TakeResult(False, busy=True)
    taken = lines[-1] == "taken"
    body = lines[1:-1] if taken else lines[1:]
    state = parse_lock_state(lines[0], "\n".join(body))
    if taken and lines[0].startswith("stale"):
        return TakeResult(True, previous=state)
    return TakeResult(False, previous=state, busy=state is None)


def parse_read_answer(stdout: str) -> LockState | None:
    lines = stdout.strip().splitlines()
    if not lines or lines[0] == "free":
        return None
    return parse_lock_state(lines[0], "\n".join(lines[1:])) or LockState(UNKNOWN_OWNER, 0, 0)


def read_lock(server: ServerLike, inventory: Inventory) -> LockState | None:
    """The server's lock, None when it is not locked."""
    inventory = server.with_folders(inventory)
    return parse_read_answer(server.run(read_lock_command(inventory)).stdout)


def read_lock_at(server: ServerLike, lock: str, lease: int) -> LockState | None:
    """The lock directory `lock` (another than the app's), None when it is not there."""
    return parse_read_answer(server.run(read_lock_at_command(lock, lease)).stdout)


def read_owner(server: ServerLike, inventory: Inventory) -> LockOwner | None:
    """The lock's owner, None when the server is not locked."""
    state = read_lock(server, inventory)
    return state.owner if state else None


def acquire(server: ServerLike, inventory: Inventory, owner: LockOwner,
            read: str | None = None) -> TakeResult:
    """The server's lock taken for `owner` (one round trip); with `read`, that file read
    under it in the same round trip (TakeResult.read). Raises LockedError when another run
    holds it."""
    inventory = server.with_folders(inventory)
    mark = f"slotswap-read-{uuid.uuid4().hex}"
    command = (take_lock_command(inventory) if read is None
               else take_and_read_command(inventory, read, mark))
    with server.timings.step("connect, lock"):
        taken = server.run(command, check=False, stdin=json.dumps(asdict(owner)) + "\n")
    if taken.exit_code == CANNOT_WRITE:
        raise server.cannot_write(inventory.state_dir, taken.stderr)
    if taken.exit_code not in (0, LOCKED_EXIT):
        raise RemoteCommandError(server.name, f"mkdir {lock_dir(inventory)}",
                                 taken.exit_code, taken.stderr)
    take_answer, text = split_read(taken.stdout, mark)
    result = parse_take_answer(take_answer)
    if result.taken:
        if read is not None:
            result = replace(result, read=text)
        if result.previous is not None:
            progress_for(server.name)(
                f"took over the stale lock of {result.previous.owner.describe()}: not renewed "
                f"for {result.previous.age}s (its lease: {result.previous.lease}s); its run is "
                "gone, and this one repairs what it left")
        return result
    if result.previous is None:
        raise LockedError(
            f"{server.name} is locked: another run is taking its lock right now (`fab lock` "
            "shows by whom)")
    state = result.previous
    if state.owner.task == CARRIED_TASK:
        raise LockedError(
            f"{server.name} was carried over {state.owner.tag} by {state.owner.who} on "
            f"{state.owner.since} (`up`): run the kit as that login, with its remote_dir; "
            f"`fab unlock --server={server.name}` with these settings makes this folder usable "
            f"again (the next `fab up` then carries the server back)")
    raise LockedError(
        f"{server.name} is locked by {state.owner.describe()}, renewed {state.age}s ago (its "
        f"lease: {state.lease}s). If that run is still going, wait for it; if it is gone, the "
        f"next run takes the lock over once it is {state.lease}s old, or `fab unlock "
        f"--server={server.name}` releases it now (`fab lock` shows the locks)")


class Renewal(Enum):
    """What a renewal found: the lock renewed (still this run's), another's or none (taken
    over, or released with `fab unlock`), or a take-over under way (ask again)."""

    RENEWED = "renewed"
    NOT_OURS = "not ours"
    BUSY = "busy"


def renew(server: ServerLike, inventory: Inventory, owner: LockOwner,
          timeout: float) -> Renewal:
    """Renew this run's lease, in one round trip."""
    inventory = server.with_folders(inventory)
    return renew_at(server, lock_dir(inventory), owner.token, timeout)


def renew_at(server: ServerLike, lock: str, token: str, timeout: float) -> Renewal:
    """Renew the lock directory `lock` if it holds `token`, in one round trip."""
    answer = server.run(renew_lock_at_command(lock, token), check=False, timeout=timeout)
    if answer.ok:
        return Renewal.RENEWED
    if answer.exit_code == RENEW_NOT_OURS:
        return Renewal.NOT_OURS
    if answer.exit_code == RENEW_BUSY:
        return Renewal.BUSY
    raise RemoteCommandError(server.name, f"touch {lock}", answer.exit_code, answer.stderr)


def release(server: ServerLike, inventory: Inventory, owner: LockOwner) -> None:
    """Release the lock if it is still ours."""
    inventory = server.with_folders(inventory)
    server.run(release_lock_command(inventory, owner))


def force_release(server: ServerLike, inventory: Inventory) -> LockState | None:
    inventory = server.with_folders(inventory)
    return force_release_at(server, lock_dir(inventory), inventory.timeouts.lease)


def force_release_at(server: ServerLike, lock: str, lease: int) -> LockState | None:
    """`fab unlock`: the lock directory `lock` removed, whoever holds it; who did."""
    holder = read_lock_at(server, lock, lease)
    if holder is not None:
        server.run(["rm", "-rf", lock])
    return holder
