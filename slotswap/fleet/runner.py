"""The fleet runner: how every task reaches its servers. A task's action runs on each server
in turn (`in_turn`: an operation's error is that server's result, never the end of the run;
every connection closed after its server) or on all at once (`at_once`, `on_each`,
`run_within`: each server in a thread of its own, what each did or raised handed back in
the servers' order)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from slotswap.config.inventory import Inventory
from slotswap.fleet.errors import OPERATION_ERRORS
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import Server

CONCURRENCY = 16  # servers worked on at the same time (connections and locks taken, ...)

T = TypeVar("T")


def servers_of(inventory: Inventory) -> list[ServerLike]:
    return [Server(host, inventory) for host in inventory.hosts]


def close_all(servers: list[ServerLike]) -> None:
    for server in servers:
        server.close()


@contextmanager
def connected(servers: list[ServerLike]) -> Iterator[list[ServerLike]]:
    """The servers, every connection they open closed at the end of the block."""
    try:
        yield servers
    finally:
        close_all(servers)


@dataclass(frozen=True)
class Done(Generic[T]):
    """One server's turn: what the action returned, or the error it was stopped by."""

    server: ServerLike
    value: T | None = None
    error: Exception | None = None


def in_turn(servers: list[ServerLike], action: Callable[[ServerLike], T], *,
            contain: tuple[type[Exception], ...] = OPERATION_ERRORS,
            close: bool = True) -> Iterator[Done[T]]:
    """`action` on each server in the inventory's order, one at a time, each result handed
    over as soon as it is known: an error of `contain` is that server's result, any other
    ends the run. Each server's connection is closed after its turn; with close=False the
    caller closes them all (after releasing the locks it holds through them)."""
    for server in servers:
        try:
            done = Done(server, value=action(server))
        except contain as error:
            done = Done(server, error=error)
        finally:
            if close:
                server.close()
        yield done


def at_once(servers: list[ServerLike], action: Callable[[ServerLike], T], *, workers: int,
            contain: tuple[type[Exception], ...] = OPERATION_ERRORS) -> list[Done[T]]:
    """`action` on every server at the same time, `workers` at a time, each in a thread of a
    pool; the results in the servers' order. An error of `contain` is that server's result;
    any other is raised once every server is over."""

    def attempt(server: ServerLike) -> Done[T]:
        try:
            return Done(server, value=action(server))
        except contain as error:
            return Done(server, error=error)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(attempt, servers))


def on_each(servers: list[ServerLike], action: Callable[[ServerLike], None], *,
            within: float | None = None) -> list[BaseException | None]:
    """`action` on every server at the same time (CONCURRENCY at a time), each server in
    a thread of its own; what each one raised, in the servers' order. With `within`, every
    server at once, and a server not done after that many seconds is left to its thread
    (TimeoutError)."""

    def attempt(server: ServerLike) -> BaseException | None:
        try:
            action(server)
        except BaseException as error:  # handed to the caller, which decides
            return error
        return None

    if within is not None:
        return run_within(servers, attempt, within)
    if len(servers) < 2:
        return [attempt(server) for server in servers]
    with ThreadPoolExecutor(max_workers=min(CONCURRENCY, len(servers))) as pool:
        return list(pool.map(attempt, servers))


def run_within(servers: list[ServerLike], attempt: Callable[[ServerLike], object],
               seconds: float) -> list[BaseException | None]:
    """Each server in a daemon thread of its own; after `seconds`, what is not done is
    reported as TimeoutError and left behind (the process does not wait for it)."""
    results: dict[int, BaseException | None] = {}
    threads = []
    for index, server in enumerate(servers):
        def work(index: int = index, server: ServerLike = server) -> None:
            try:
                answer = attempt(server)
            except BaseException as error:  # handed to the caller
                answer = error
            results[index] = answer if isinstance(answer, BaseException) else None
        thread = threading.Thread(target=work, daemon=True, name=f"within-{server.name}")
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [results.get(i, TimeoutError(f"no answer within {seconds:g}s"))
            for i in range(len(servers))]
