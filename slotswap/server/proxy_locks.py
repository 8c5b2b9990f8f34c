"""The locks a change of a server's shared HAProxy holds besides the app's own (several apps
on one server, docs/apps-design.md, decision 5): the shared HAProxy's lock, and every other
present app's lock while the generation changes. Taken in one round trip each (all or none,
slotswap.server.lock_sets), refused at once when held, released at the end of the block.

While they are held, the run's lease on the server holds them too (slotswap.server.lease):
its heartbeat renews them with the app's lock, and its guard checks them before every call,
so one taken over or released with `fab unlock` stops the run on that server before its
next change (exit 4), as a lost app lock does. Their lease is the app lock's or
SHARED_LOCK_LEASE, the longer: a run killed while holding them leaves them to be taken over
once that lease is out.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence

from slotswap.config.inventory import Inventory
from slotswap.config.layout import proxy_lock_dir, proxy_state_dir
from slotswap.remote.protocol import ServerLike
from slotswap.server.lease import HeldLock, Lease
from slotswap.server.lock_sets import LockPlace, LocksTaken, release_command, take_locks
from slotswap.server.locking import (
    LockedError,
    LockOwner,
    LockState,
    force_release_at,
    read_lock_at,
)

# Seconds: at least HAProxy's check of a generation (its command's deadline), a reload's
# wait for new workers and the round trips around them, with room to spare (a run that
# holds them renews them all the same; what is done outside a lease's guard, a server with
# no lease as in the tests, stays covered).
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
    lease_seconds = lease or shared_lock_lease(inventory)
    taken = take_locks(server, places, owner, lease_seconds)
    if taken.refused is not None:
        name = next(key for key, place in locks.items()
                    if place.lock_dir == taken.refused[0])
        raise refusal(server, taken, name, changed or f"nothing was changed on {server.name}")
    # The run's lease on the server (none outside a FleetLock) renews and guards them.
    run_lease = server.call_guard if isinstance(server.call_guard, Lease) else None
    held = [HeldLock(name, place.lock_dir, owner, lease_seconds)
            for name, place in locks.items()]
    if run_lease is not None:
        run_lease.hold(held)
    try:
        yield
    finally:
        if run_lease is not None:
            run_lease.let_go(held)
        # Each released only if it still holds this run's token: never refused by the guard.
        with run_lease.unguarded() if run_lease is not None else contextlib.nullcontext():
            for place in reversed(places):
                with contextlib.suppress(Exception):  # else its lease ends it
                    server.run(release_command(place, owner), check=False)


def shared_lock(inventory: Inventory) -> dict[str, LockPlace]:
    return {"the shared HAProxy's lock": proxy_lock_place(inventory)}


def other_apps_locks(inventory: Inventory, apps: Sequence[str]) -> dict[str, LockPlace]:
    return {f"{app}'s lock": app_lock_place(inventory, app) for app in apps}


def read_shared_lock(server: ServerLike, inventory: Inventory) -> LockState | None:
    """`fab lock`: the server's shared HAProxy's lock, None when nobody holds it."""
    inventory = server.with_folders(inventory)
    return read_lock_at(server, proxy_lock_place(inventory).lock_dir,
                        shared_lock_lease(inventory))


def release_shared_lock(server: ServerLike, inventory: Inventory) -> LockState | None:
    """`fab unlock --proxy`: the shared HAProxy's lock released, whoever holds it; who did."""
    inventory = server.with_folders(inventory)
    return force_release_at(server, proxy_lock_place(inventory).lock_dir,
                            shared_lock_lease(inventory))


def describe_shared_lock(state: LockState | None) -> str:
    """Pure: the shared HAProxy's lock in `fab lock`'s words: free, or who holds it and until
    when (its lease from its last renewal, by the server's clock), or stale."""
    if state is None:
        return "shared HAProxy free"
    until = "" if state.stale else (f", until {state.lease - state.age}s from now unless its "
                                    "run renews it")
    return f"shared HAProxy locked by {state.describe()}{until}"
