"""The fleet's lock for one run: every server's lock (slotswap.server.locking) taken before any
server is changed, renewed while the run goes on (with the other locks the run holds on a
server for a while: slotswap.server.lease), all released at the end."""

from __future__ import annotations

import threading

from slotswap.config.inventory import Inventory
from slotswap.core import interrupts
from slotswap.core.output import warn
from slotswap.core.timings import Timings
from slotswap.fleet.errors import describe_error
from slotswap.fleet.runner import on_each
from slotswap.remote.call_guard import NO_GUARD
from slotswap.remote.protocol import ServerLike
from slotswap.server.lease import Clock, Lease, lease_clock
from slotswap.server.locking import LockOwner, acquire, release
from slotswap.server.registration_gate import refusal, registration_to_read


class Heartbeat:
    """Renews this run's lock on each server every lease/3 seconds, on a thread per server,
    over the connection the run already has (a command on a channel of its own, beside the
    commands of the run); each renewal confirms the server's lease (slotswap.server.lease). A
    server whose connection is down is skipped: the run cannot reach it, so its lock must
    expire (and the lease's guard renews it, or finds it lost, before the next call)."""

    def __init__(self, inventory: Inventory):
        self.interval = inventory.timeouts.lease / 3
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, leases: list[Lease]) -> None:
        for lease in leases:
            thread = threading.Thread(target=self._beat, args=(lease,), daemon=True,
                                      name=f"lease-{lease.server.name}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _beat(self, lease: Lease) -> None:
        warned = False  # of another lock lost (the app's own ends the beats)
        while not self._stop.wait(self.interval) and lease.lost is None:
            if not lease.server.is_connected:
                continue
            try:
                lease.renew_once(self.interval)
            except Exception:  # the next beat tries again; the run goes on
                continue
            lost = lease.lost or (None if warned else lease.other_lost)
            if lost is not None and not self._stop.is_set():
                warn(f"WARNING: {lost}")
                warned = True


class FleetLock:
    """Locks on several servers, all taken before any is changed, renewed while the run
    goes on, all released at the end. Each server's connection is opened here: the first
    server's, then all the others at the same time. While the locks are held, every call to
    a server goes through its lease's guard: a server whose lock is no longer this run's is
    not touched again (LeaseLostError), and its lock is not released (it is another's).
    `in_rotation`: the run puts a version of the app in rotation (deploy, rollback,
    maintenance): with haproxy.shared, each web server's registration of the app is read in
    the round trip that takes its lock, and a server where it is missing or leaving refuses
    the run once every lock is taken (slotswap.server.registration_gate), all released."""

    def __init__(self, servers: list[ServerLike], inventory: Inventory, owner: LockOwner,
                 phases: Timings | None = None, *, clock: Clock = lease_clock,
                 in_rotation: bool = False):
        self.servers, self.inventory, self.owner = servers, inventory, owner
        self.phases = phases  # the run's, where the release counts as `unlock`
        self.clock = clock
        self.held: list[ServerLike] = []
        self.leases: dict[str, Lease] = {}
        self.failed_on: str | None = None  # the server whose lock could not be taken
        self.heartbeat = Heartbeat(inventory)
        self.in_rotation = in_rotation
        # server -> (its registration's path, its text or None), read with its lock.
        self.registrations: dict[str, tuple[str, str | None]] = {}

    def __enter__(self) -> FleetLock:
        # The first server's lock alone first: of two runs started together on one inventory,
        # one gets it and the other stops there, rather than each taking some locks and both
        # giving up. Then all the others at once.
        for group in (self.servers[:1], self.servers[1:]):
            try:
                errors = on_each(group, self._take)
            except KeyboardInterrupt:
                # A second Ctrl-C while the locks are taken: the pool waited for every
                # take; the locks taken so far are released, not left to their lease.
                self.held = [server for server in self.servers if server.name in self.leases]
                self.release_all()
                raise
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
        self.refuse_unregistered()
        for server in self.held:
            server.call_guard = self.leases[server.name]
        self.heartbeat.start([self.leases[server.name] for server in self.held])
        return self

    def _take(self, server: ServerLike) -> None:
        sent = self.clock()  # the lease runs from before the lock was taken
        path = registration_to_read(server, self.inventory) if self.in_rotation else None
        taken = acquire(server, self.inventory, self.owner, read=path)
        self.leases[server.name] = Lease(server, self.inventory, self.owner,
                                         confirmed_at=sent, clock=self.clock)
        if path is not None:
            self.registrations[server.name] = (path, taken.read)

    def refuse_unregistered(self) -> None:
        """The first server (in the inventory's order) whose registration refuses the run:
        every lock released, its error raised."""
        for server in self.held:
            if server.name not in self.registrations:
                continue
            error = refusal(server.name, self.inventory, *self.registrations[server.name])
            if error is not None:
                self.failed_on = server.name
                self.release_all()
                raise error

    @property
    def lost(self) -> list[str]:
        """The servers whose lock this run lost while it ran."""
        return [name for name, lease in self.leases.items() if lease.lost is not None]

    def why_lost(self) -> str:
        """The first lost lock's error (the server, and who holds its lock now); "" if none."""
        return next((str(lease.lost) for lease in self.leases.values()
                     if lease.lost is not None), "")

    def __exit__(self, *exc: object) -> None:
        if self.phases is not None:
            self.phases.begin("unlock")
        self.release_all()

    def release_all(self) -> None:
        self.heartbeat.stop()
        # A lost lock is another run's: neither released nor touched again (its guard stays).
        held = [server for server in self.held if server.name not in self.lost]
        self.held = []
        for server in held:
            server.call_guard = NO_GUARD
        # After a second Ctrl-C: quickly, over new connections, or not at all (the lease
        # then ends the lock).
        stopping_now = interrupts.stopping_now()
        within = interrupts.REPORT_AFTER_STOP_SECONDS if stopping_now else None

        def release_one(server: ServerLike) -> None:
            if stopping_now:
                server.resume()
            with server.timings.step("unlock"):
                release(server, self.inventory, self.owner)

        errors = on_each(held, release_one, within=within)
        for server, error in zip(held, errors, strict=True):
            if isinstance(error, Exception):  # the others are released all the same
                warn(f"[{server.name}] WARNING: could not release its lock "
                     f"({describe_error(error)}); it expires {self.inventory.timeouts.lease}s "
                     "after its last renewal, and the next run then takes it over")
            elif error is not None:
                raise error
