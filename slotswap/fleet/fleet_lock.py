"""The fleet's lock for one run: every server's lock (slotswap.server.locking) taken before any
server is changed, renewed while the run goes on, all released at the end."""

from __future__ import annotations

import threading

from slotswap.config.inventory import Inventory
from slotswap.core import interrupts
from slotswap.core.output import warn
from slotswap.core.timings import Timings
from slotswap.fleet.runner import on_each
from slotswap.remote.protocol import ServerLike
from slotswap.server.locking import LockOwner, acquire, release, renew


class Heartbeat:
    """Renews this run's lock on each server every lease/3 seconds, on a thread per server,
    over the connection the run already has (a command on a channel of its own, beside the
    commands of the run). A server whose connection is down is skipped: the run cannot
    reach it, so its lock must expire."""

    def __init__(self, inventory: Inventory, owner: LockOwner):
        self.inventory, self.owner = inventory, owner
        self.interval = inventory.timeouts.lease / 3
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, servers: list[ServerLike]) -> None:
        for server in servers:
            thread = threading.Thread(target=self._beat, args=(server,), daemon=True,
                                      name=f"lease-{server.name}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def _beat(self, server: ServerLike) -> None:
        lost = False
        while not self._stop.wait(self.interval):
            if not server.is_connected:
                continue
            try:
                ours = renew(server, self.inventory, self.owner, self.interval)
            except Exception:  # the next beat tries again; the run goes on
                continue
            if not ours and not lost and not self._stop.is_set():
                lost = True
                warn(f"[{server.name}] WARNING: this run's lock on it is gone (released with "
                     "`fab unlock`, or taken over by another run after it was not renewed "
                     "in time)")


class FleetLock:
    """Locks on several servers, all taken before any is changed, renewed while the run
    goes on, all released at the end. Each server's connection is opened here: the first
    server's, then all the others at the same time."""

    def __init__(self, servers: list[ServerLike], inventory: Inventory, owner: LockOwner,
                 phases: Timings | None = None):
        self.servers, self.inventory, self.owner = servers, inventory, owner
        self.phases = phases  # the run's, where the release counts as `unlock`
        self.held: list[ServerLike] = []
        self.failed_on: str | None = None  # the server whose lock could not be taken
        self.heartbeat = Heartbeat(inventory, owner)

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
        self.heartbeat.start(self.held)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.phases is not None:
            self.phases.begin("unlock")
        self.release_all()

    def release_all(self) -> None:
        self.heartbeat.stop()
        held, self.held = self.held, []
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
                warn(f"[{server.name}] WARNING: could not release its lock ({error}); it "
                     f"expires {self.inventory.timeouts.lease}s after its last renewal, and "
                     "the next run then takes it over")
            elif error is not None:
                raise error
