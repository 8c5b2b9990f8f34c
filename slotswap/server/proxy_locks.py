"""The locks a change of a server's shared HAProxy holds besides the app's own (several apps
on one server, docs/apps-design.md, decision 5): the shared HAProxy's lock, and every other
present app's lock while the generation changes. Taken in one round trip each (all or none,
slotswap.server.lock_sets), refused at once when held, released at the end of the block.

They are not renewed by the run's heartbeat nor checked by its guard (a later step): their
lease is long enough for what is done while they are held (a generation's check, a reload
and a few round trips; no image pull, no container stop), and a run killed while holding
them leaves them to be taken over once that lease is out.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence

from slotswap.config.inventory import Inventory
from slotswap.config.layout import proxy_lock_dir, proxy_state_dir
from slotswap.remote.protocol import ServerLike
from slotswap.server.lock_sets import LockPlace, LocksTaken, release_command, take_locks
from slotswap.server.locking import LockedError, LockOwner

# Seconds: at least HAProxy's check of a generation (its command's deadline), a reload's
# wait for new workers and the round trips around them, with room to spare.
SHARED_LOCK_LEASE = 180


def shared_lock_lease(inventory: Inventory) -> int:
    return max(inventory.timeouts.lease, SHARED_LOCK_LEASE)


def proxy_lock_place(inventory: Inventory) -> LockPlace:
    return LockPlace(proxy_state_dir(inventory), proxy_lock_dir(inventory))


def app_lock_place(inventory: Inventory, app: str) -> LockPlace:
    """Another app's lock on this server (the same login and folders as this app's)."""
    other = dataclasses.replace(inventory, app=app)
    return LockPlace(other.state_dir, f"{other.state_dir}/lock")


def refusal(server: ServerLike, taken: LocksTaken, name: str, changed: str) -> Exception:
    """The one line for a lock set that was refused (`name`: the lock's, as said)."""
    assert taken.refused is not None
    _, result = taken.refused
    if taken.cannot_write is not None:
        return server.cannot_write(taken.cannot_write, "")
    holder = (f"{result.previous.owner.describe()}, renewed {result.previous.age}s ago"
              if result.previous is not None else "another run, taking it right now")
    return LockedError(f"{server.name}: {name} is held by {holder}; the shared HAProxy "
                       f"changes only while no other app's run is on the server; {changed}")


@contextlib.contextmanager
def holding(server: ServerLike, inventory: Inventory, owner: LockOwner,
            locks: Mapping[str, LockPlace], changed: str = "",
            lease: int | None = None) -> Iterator[None]:
    """Every lock of `locks` (by the name a refusal says) held for the block; none: nothing
    to take. `changed`: what a refusal adds about this server (default: nothing changed);
    `lease`: seconds, when the block may take longer than shared_lock_lease (a hand-over's
    soft stop)."""
    places: Sequence[LockPlace] = list(locks.values())
    if not places:
        yield
        return
    taken = take_locks(server, places, owner, lease or shared_lock_lease(inventory))
    if taken.refused is not None:
        name = next(key for key, place in locks.items()
                    if place.lock_dir == taken.refused[0])
        raise refusal(server, taken, name, changed or f"nothing was changed on {server.name}")
    try:
        yield
    finally:
        for place in reversed(places):
            with contextlib.suppress(Exception):  # else its lease ends it
                server.run(release_command(place, owner), check=False)


def shared_lock(inventory: Inventory) -> dict[str, LockPlace]:
    return {"the shared HAProxy's lock": proxy_lock_place(inventory)}


def other_apps_locks(inventory: Inventory, apps: Sequence[str]) -> dict[str, LockPlace]:
    return {f"{app}'s lock": app_lock_place(inventory, app) for app in apps}
