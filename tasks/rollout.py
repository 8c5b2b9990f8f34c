"""Fleet-level work: the rolling deploy (one server at a time, stop at the first failure),
status, and running `up`/`down` on every server."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tasks.haproxy import RuntimeApiError
from tasks.inventory import SLOTS, Inventory
from tasks.output import format_table, progress_for, say
from tasks.proxy import ProxyError, ensure_image
from tasks.remote import ConnectError, RemoteCommandError, Server
from tasks.swap import SlotSwap, SwapError, describe_serving, read_slots

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_DEPLOY_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CONNECT = 3

PREPARE_CONCURRENCY = 8
OPERATION_ERRORS = (ConnectError, RemoteCommandError, RuntimeApiError, ProxyError, SwapError)


@dataclass
class ServerOutcome:
    name: str
    address: str
    old_tag: str | None = None
    new_tag: str | None = None
    outcome: str = "not started"  # deployed, unchanged, failed, not started, skipped
    seconds: float = 0.0
    serving: str = ""
    error: str = ""


@dataclass
class RolloutResult:
    tag: str
    outcomes: list[ServerOutcome] = field(default_factory=list)
    exit_code: int = EXIT_OK
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


def servers_of(inventory: Inventory) -> list[Server]:
    return [Server(host, inventory) for host in inventory.hosts]


def close_all(servers: list[Server]) -> None:
    for server in servers:
        server.close()


def prepare(servers: list[Server], inventory: Inventory, tag: str) -> dict[str, Exception]:
    """Connect to every server and put IMAGE:TAG on it, in parallel, before any traffic moves.
    Returns the servers that failed, with why."""
    image_ref = inventory.image_ref(tag)

    def prepare_one(server: Server) -> tuple[str, Exception | None]:
        try:
            server.connect()
            ensure_image(server, image_ref, progress_for(server.name), refresh=True)
        except OPERATION_ERRORS as error:
            return server.name, error
        return server.name, None

    with ThreadPoolExecutor(max_workers=min(PREPARE_CONCURRENCY, len(servers))) as pool:
        results = list(pool.map(prepare_one, servers))
    return {name: error for name, error in results if error}


def deploy(inventory: Inventory, tag: str) -> RolloutResult:
    result = RolloutResult(tag)
    servers = servers_of(inventory)
    result.outcomes = [ServerOutcome(s.name, s.host.address, new_tag=tag) for s in servers]
    try:
        say(f"deploy {inventory.image_ref(tag)} to {len(servers)} servers, one at a time")
        failures = prepare(servers, inventory, tag)
        if failures:
            for outcome in result.outcomes:
                outcome.outcome = "failed" if outcome.name in failures else "not started"
                outcome.error = str(failures.get(outcome.name, ""))
            connect_only = all(isinstance(e, ConnectError) for e in failures.values())
            result.exit_code = EXIT_CONNECT if connect_only else EXIT_DEPLOY_FAILED
            result.message = ("nothing was changed: the image could not be put on every "
                              "server:\n" + "\n".join(f"  {e}" for e in failures.values()))
            fill_serving(servers, inventory, result.outcomes)
            return result
        for server, outcome in zip(servers, result.outcomes, strict=True):
            if not swap_one(server, inventory, tag, outcome):
                result.exit_code = EXIT_DEPLOY_FAILED
                result.message = (f"deploy of {tag} stopped at {server.name}: {outcome.error}")
                later = result.outcomes[result.outcomes.index(outcome) + 1:]
                fill_serving(servers[len(servers) - len(later):], inventory, later)
                break
        return result
    finally:
        close_all(servers)


def swap_one(server: Server, inventory: Inventory, tag: str, outcome: ServerOutcome) -> bool:
    progress = progress_for(server.name)
    started = time.monotonic()
    swap = SlotSwap(server, inventory, tag, progress)
    try:
        old_tag, serving = swap.run()
    except SwapError as error:
        outcome.outcome, outcome.error, outcome.serving = "failed", str(error), error.serving
        progress(f"FAILED: {error}")
        return False
    except OPERATION_ERRORS as error:
        outcome.outcome, outcome.error = "failed", str(error)
        outcome.serving = serving_now(server, inventory)
        progress(f"FAILED: {error}")
        return False
    finally:
        outcome.seconds = time.monotonic() - started
        outcome.old_tag = swap.old_version
    outcome.old_tag, outcome.outcome, outcome.serving = old_tag, "deployed", serving
    progress(f"done in {outcome.seconds:.1f}s: serves {serving}")
    return True


def serving_now(server: Server, inventory: Inventory) -> str:
    try:
        return describe_serving(read_slots(server, inventory))
    except OPERATION_ERRORS as error:
        return f"unknown ({error})"


def fill_serving(servers: list[Server], inventory: Inventory,
                 outcomes: list[ServerOutcome]) -> None:
    for server, outcome in zip(servers, outcomes, strict=True):
        if not outcome.serving:
            outcome.serving = serving_now(server, inventory)


def summary_table(outcomes: list[ServerOutcome]) -> str:
    rows = [(o.name, o.address, o.old_tag or "-", o.new_tag or "-", f"{o.seconds:.1f}",
             o.outcome, o.serving) for o in outcomes]
    return format_table(("server", "address", "old", "new", "seconds", "outcome", "serving now"),
                        rows)


@dataclass
class ServerStatus:
    name: str
    address: str
    live: str
    version: str
    slots: list[str]
    error: str = ""


def status(inventory: Inventory) -> list[ServerStatus]:
    reports = []
    for server in servers_of(inventory):
        try:
            views = read_slots(server, inventory)
            live = [v for v in views.values() if v.serving]
            reports.append(ServerStatus(
                server.name, server.host.address,
                live=",".join(v.slot for v in live) or "none",
                version=",".join(v.version or "?" for v in live) or "-",
                slots=[views[slot].describe() for slot in SLOTS],
            ))
        except OPERATION_ERRORS as error:
            reports.append(ServerStatus(server.name, server.host.address, "?", "?", [],
                                        error=str(error)))
        finally:
            server.close()
    return reports


@dataclass(frozen=True)
class ServerResult:
    name: str
    text: str  # what was done, or why it failed
    ok: bool
    exit_code: int = EXIT_OK


def on_every_server(inventory: Inventory,
                    action: Callable[[Server, Inventory, Callable[[str], None]], str],
                    ) -> list[ServerResult]:
    """Run `action` on each server in order; stop at the first failure."""
    results = []
    for server in servers_of(inventory):
        progress = progress_for(server.name)
        try:
            done = action(server, inventory, progress)
            progress(done)
            results.append(ServerResult(server.name, done, True))
        except OPERATION_ERRORS as error:
            progress(f"FAILED: {error}")
            code = EXIT_CONNECT if isinstance(error, ConnectError) else EXIT_DEPLOY_FAILED
            results.append(ServerResult(server.name, str(error), False, code))
            break
        finally:
            server.close()
    return results
