"""Several locks of one server taken in one round trip, all or none (several apps on one
server, docs/apps-design.md decision 5): an app's `up` or `down` takes its own lock and the
shared HAProxy's; a change of the shared HAProxy also takes every other app's lock there.
Each is taken as one lock is (slotswap.server.locking's take script: a stale one taken over,
a held one refused at once, never waited for); when one is refused, those this round trip
took are released before it ends, so a refused run holds none of them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import RemoteCommandError
from slotswap.server.locking import (
    CANNOT_WRITE,
    LOCKED_EXIT,
    RELEASE_SCRIPT,
    TAKE_SCRIPT,
    LockOwner,
    TakeResult,
    parse_take_answer,
)

# Before each lock's own answer: which lock it is.
LOCK_MARK = "slotswap-lock"
# The take script of each lock in turn, given the owner file read once from stdin; the
# first that fails ends it with its exit code, once the locks taken before it are released
# (innermost first, each only if it still holds this run's token). Paths and lease are
# arguments, never in the script's text.
TAKE_ALL_SCRIPT = (
    'TAKE=$1 RELEASE=$2 TOKEN=$3 LEASE=$4; shift 4; owner=$(cat) || exit 1; '
    'take_all() { [ $# -ge 2 ] || return 0; local lock=$2 code; '
    f'printf "{LOCK_MARK} %s\\n" "$lock"; '
    'printf "%s\\n" "$owner" | sh -c "$TAKE" sh "$1" "$lock" "$LEASE" || return $?; '
    'shift 2; take_all "$@"; code=$?; '
    '[ "$code" -eq 0 ] || sh -c "$RELEASE" sh "$TOKEN" "$lock"; return "$code"; }; '
    'take_all "$@"'
)


@dataclass(frozen=True)
class LockPlace:
    """One lock: the state folder it is made in (made if missing) and its directory."""

    state_dir: str
    lock_dir: str


def take_locks_command(places: Sequence[LockPlace], owner: LockOwner,
                       lease: int) -> list[str]:
    """Each lock of `places`, in order, taken for `owner` (the owner file on stdin)."""
    pairs = [word for place in places for word in (place.state_dir, place.lock_dir)]
    return ["sh", "-c", TAKE_ALL_SCRIPT, "sh", TAKE_SCRIPT, RELEASE_SCRIPT, owner.token,
            str(lease), *pairs]


def release_command(place: LockPlace, owner: LockOwner) -> list[str]:
    """Remove the lock directory if its owner file holds this run's token."""
    return ["sh", "-c", RELEASE_SCRIPT, "sh", owner.token, place.lock_dir]


def parse_take_all_answer(stdout: str) -> list[tuple[str, TakeResult]]:
    """Pure: each lock the script reached, with what its take script said (the last one
    alone may be refused)."""
    found: list[tuple[str, list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith(f"{LOCK_MARK} "):
            found.append((line.removeprefix(f"{LOCK_MARK} "), []))
        elif found:
            found[-1][1].append(line)
    return [(lock, parse_take_answer("\n".join(lines))) for lock, lines in found]


@dataclass(frozen=True)
class LocksTaken:
    """What one round trip did: every lock taken (`refused` None), or none held, and the
    lock that refused with what it said; the stale locks taken over meanwhile either way."""

    results: tuple[tuple[str, TakeResult], ...]
    refused: tuple[str, TakeResult] | None
    cannot_write: str | None = None  # the state folder this login cannot make or use


def take_locks(server: ServerLike, places: Sequence[LockPlace], owner: LockOwner,
               lease: int) -> LocksTaken:
    """Take every lock of `places` on the server, or none (one round trip)."""
    answer = server.run(take_locks_command(places, owner, lease), check=False,
                        stdin=json.dumps(asdict(owner)) + "\n")
    results = parse_take_all_answer(answer.stdout)
    if answer.exit_code == 0 and len(results) == len(places):
        return LocksTaken(tuple(results), None)
    if answer.exit_code == CANNOT_WRITE and results:
        state = next(place.state_dir for place in places if place.lock_dir == results[-1][0])
        return LocksTaken(tuple(results[:-1]), results[-1], cannot_write=state)
    if answer.exit_code == LOCKED_EXIT and results:
        return LocksTaken(tuple(results[:-1]), results[-1])
    raise RemoteCommandError(server.name, "mkdir " + " ".join(p.lock_dir for p in places),
                             answer.exit_code, answer.stderr)
