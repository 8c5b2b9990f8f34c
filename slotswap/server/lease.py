"""This run's lease on one server's lock, and the guard that keeps a run that lost it from
touching that server again.

The run's heartbeat (slotswap.fleet.fleet_lock) renews the lock every lease/3 seconds; each
renewal that finds the lock still the run's confirms the lease. Before every call to the
server (slotswap.remote.call_guard) the lease looks at when it was last confirmed, on a
clock that goes on while this process is stopped and while the machine sleeps: within 2/3
of the lease nothing more is asked, so a healthy run pays no round trip for this. Older
(the process was stopped or asleep, the heartbeat could not reach the server), the lock is
renewed first, one round trip; if it is no longer the run's, LeaseLostError stops that
server's work, for this call and every later one. A renewal and a take-over hold the same
guard on the server (slotswap.server.locking), so a renewal that confirms the lock leaves it
the run's for a whole lease: nobody can take it over between the check and the call.

A shell command line is guarded on the server as well, at no cost: it runs only if the
lock's owner file still holds the run's token (a `grep` in front of it). That covers the
moment between the check here and the command's start (a process stopped right then), and
a lock released with `fab unlock` and taken by another run while this one is still
confirmed.

The other locks a run holds on a server for a while (several apps on one server: the shared
HAProxy's lock, other apps' locks; slotswap.server.proxy_locks) are held by the same lease
while they are: each renewal renews them too (one round trip each, after the app's lock),
and confirms the lease only when every one of them is still the run's; a command line is
guarded by their owner files as well. One found taken over (not renewed for its own lease)
or released stops the run on that server before its next call, as a lost app lock does
(LeaseLostError, exit 4); the app's own lock, still the run's, is released at the end.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from slotswap.config.inventory import Inventory
from slotswap.config.layout import lock_dir
from slotswap.remote.protocol import ServerLike
from slotswap.server.locking import (
    TAKEOVER_GUARD_SECONDS,
    LeaseLostError,
    LockOwner,
    Renewal,
    read_lock,
    read_lock_at,
    renew,
    renew_at,
)

# What a guarded command line exits with, and says on stderr, when the lock is not the run's.
LOST_EXIT = 75
LOST_MARK = "slotswap: not run, this run's lock is gone"
LOST_OTHER_MARK = "slotswap: not run, another lock this run holds is gone"
TRUSTED_SHARE = 2 / 3  # of the lease: a confirmation younger than this is trusted
BUSY_RETRY_SECONDS = 0.2  # between renewals that met a take-over (or an attempt) under way

Clock = Callable[[], float]


def still_ours(token: str, lock: str) -> str:
    """Pure: the shell test that the lock directory `lock` still holds the run's `token`."""
    return shlex.join(["grep", "-qsF", "--", token, f"{lock}/owner.json"])


@dataclass(frozen=True)
class HeldLock:
    """A lock a run holds on a server besides its app's own, for a while: the name a message
    gives it, its directory, the owner it was taken for and its lease in seconds (at least
    the app lock's: the heartbeat renews it as often)."""

    name: str  # "the shared HAProxy's lock", "blog's lock"
    lock_dir: str
    owner: LockOwner
    lease: int

    def condition(self) -> str:
        """The shell test that the lock is still this run's."""
        return still_ours(self.owner.token, self.lock_dir)


def lease_clock() -> float:
    """Seconds on a clock that goes on while this process is stopped (SIGSTOP, a suspended
    job) and while the machine sleeps: CLOCK_BOOTTIME where there is one (Linux); else the
    wall clock, which a machine that slept sets right when it wakes."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.time()


class Lease:
    """This run's lease on one server: when it was last confirmed, whether it was lost, and
    the guard (a slotswap.remote.call_guard.CallGuard) the server asks before each call."""

    def __init__(self, server: ServerLike, inventory: Inventory, owner: LockOwner, *,
                 confirmed_at: float, clock: Clock = lease_clock):
        self.server, self.owner, self.clock = server, owner, clock
        self.inventory = server.with_folders(inventory)
        self.seconds = inventory.timeouts.lease
        self.trusted_for = self.seconds * TRUSTED_SHARE
        self.confirmed_at = confirmed_at  # by this clock, when the renewal was sent
        self.lost: LeaseLostError | None = None  # the app's lock
        self.other_lost: LeaseLostError | None = None  # one of `held`
        self.held: list[HeldLock] = []  # the other locks held now (see hold)
        self._holding = threading.Lock()  # a renewal of `held` against their release
        self._confirming = threading.Lock()
        self._confirming_other = threading.Lock()
        self._unguarded = threading.local()
        self._condition = still_ours(owner.token, lock_dir(self.inventory))
        self._refusal = refusal(LOST_MARK)

    # -- the guard ---------------------------------------------------------------------------
    def before_call(self) -> None:
        if self._off():
            return
        self._raise_if_lost()
        if self.clock() - self.confirmed_at < self.trusted_for:
            return
        with self._confirming:  # one renewal, however many threads call at once
            self._raise_if_lost()
            if self.clock() - self.confirmed_at >= self.trusted_for:
                self._confirm()

    def guard_line(self, line: str) -> str:
        self.before_call()
        if self._off():
            return line
        others = "".join(f"{lock.condition()} || {refusal(LOST_OTHER_MARK)}; "
                         for lock in list(self.held))
        return f"{self._condition} || {self._refusal}; {others}{line}"

    def check_answer(self, exit_code: int, stderr: str) -> None:
        if exit_code != LOST_EXIT or self._off():
            return
        if LOST_MARK in stderr:
            self.lose()
            self._raise_if_lost()
        elif LOST_OTHER_MARK in stderr:
            self.lose_other(None)
            self._raise_if_lost()

    def _raise_if_lost(self) -> None:
        for lost in (self.lost, self.other_lost):
            if lost is not None:  # a new error each time: one per call it refused
                raise LeaseLostError(*lost.args)

    @contextmanager
    def unguarded(self) -> Iterator[None]:
        """The lock's own commands (renew, release) in this thread: never refused."""
        before = self._off()
        self._unguarded.on = True
        try:
            yield
        finally:
            self._unguarded.on = before

    def _off(self) -> bool:
        return bool(getattr(self._unguarded, "on", False))

    # -- renewals ----------------------------------------------------------------------------
    def renew_once(self, timeout: float) -> Renewal:
        """One renewal (the heartbeat's, or a check's) of the app's lock, then of every other
        lock held: a lock found not ours is lost; the lease is confirmed when all were
        renewed."""
        return self._renew_all(timeout)[0]

    def _renew_all(self, timeout: float) -> tuple[Renewal, HeldLock | None]:
        """renew_once, and the other lock that was not renewed (None: the app's, or all
        were)."""
        sent = self.clock()
        with self.unguarded():
            found = renew(self.server, self.inventory, self.owner, timeout)
        if found is Renewal.NOT_OURS:
            self.lose()
        if found is not Renewal.RENEWED:
            return found, None
        with self._holding, self.unguarded():  # none is released while it is renewed
            for lock in self.held:
                found = renew_at(self.server, lock.lock_dir, lock.owner.token, timeout)
                if found is Renewal.NOT_OURS:
                    self.lose_other(lock)
                if found is not Renewal.RENEWED:
                    return found, lock
        self.confirmed_at = max(self.confirmed_at, sent)
        return Renewal.RENEWED, None

    def _confirm(self) -> None:
        """Renew now, before a call; raise LeaseLostError if a lock is not ours. A take-over
        under way (or a refused attempt) holds the server's guard for a moment: wait it out
        (a guard left by a dead shell is removed after TAKEOVER_GUARD_SECONDS)."""
        give_up = time.monotonic() + TAKEOVER_GUARD_SECONDS + 5
        while True:
            found, other = self._renew_all(self.inventory.timeouts.command)
            if found is Renewal.RENEWED:
                return
            if found is Renewal.NOT_OURS or time.monotonic() > give_up:
                if other is None:
                    self.lose()
                else:
                    self.lose_other(other)
                self._raise_if_lost()
            time.sleep(BUSY_RETRY_SECONDS)

    # -- the other locks ---------------------------------------------------------------------
    def hold(self, locks: Sequence[HeldLock]) -> None:
        """`locks`, just taken, are renewed and guarded with the app's lock from now on."""
        with self._holding:
            self.held = [*self.held, *locks]

    def let_go(self, locks: Sequence[HeldLock]) -> None:
        """`locks` are about to be released: no longer renewed (a renewal under way ends
        first) nor guarded. A loss found while they were held stays."""
        with self._holding:
            self.held = [lock for lock in self.held if lock not in locks]

    def lose_other(self, lock: HeldLock | None) -> LeaseLostError:
        """One of the other locks (None: the first one found not ours) is no longer this
        run's: from now on every call to the server is refused with this error."""
        with self._confirming_other:
            if self.other_lost is None:
                self.other_lost = LeaseLostError(
                    f"{self.server.name}: {self._why_other_lost(lock)}")
        return self.other_lost

    def _why_other_lost(self, lock: HeldLock | None) -> str:
        holder = "its holder could not be read"
        try:
            with self.unguarded():
                for candidate in [lock] if lock is not None else list(self.held):
                    state = read_lock_at(self.server, candidate.lock_dir, candidate.lease)
                    if state is None or state.owner.token != candidate.owner.token:
                        lock = candidate
                        holder = ("no run holds it now" if state is None
                                  else f"now held by {state.owner.describe()}")
                        break
        except Exception:  # lost all the same; only the holder goes unnamed
            pass
        name, lease = ((lock.name, lock.lease) if lock is not None
                       else ("a lock it holds besides the app's", self.seconds))
        return (f"{name}, held by this run, is gone ({holder}): not renewed within its lease "
                f"of {lease}s (this process was stopped or asleep, or cut off from the "
                "server), or released with `fab unlock`; this run does not touch the server "
                "again")

    def lose(self) -> LeaseLostError:
        """The lock is no longer this run's: from now on every call to the server is refused
        with this error (which names who holds the lock now, when the server says)."""
        if self.lost is None:
            self.lost = LeaseLostError(f"{self.server.name}: {self._why_lost()}")
        return self.lost

    def _why_lost(self) -> str:
        try:
            with self.unguarded():
                state = read_lock(self.server, self.inventory)
            holder = ("no run holds it now" if state is None
                      else f"now held by {state.owner.describe()}")
        except Exception:  # lost all the same; only the holder goes unnamed
            holder = "its holder could not be read"
        return (f"this run's lock on it is gone ({holder}): not renewed within its lease of "
                f"{self.seconds}s (this process was stopped or asleep, or cut off from the "
                "server), or released with `fab unlock`; this run does not touch it again")


def refusal(mark: str) -> str:
    """What a guarded command line runs instead of its command: `mark` on stderr, LOST_EXIT."""
    return f"{{ printf '%s\\n' {shlex.quote(mark)} >&2; exit {LOST_EXIT}; }}"
