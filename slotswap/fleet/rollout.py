"""Fleet-level work: the rolling deploy (one server at a time, stop at the first failure),
status, and running `up`/`down` on every server."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from slotswap.commands import runtime_api as haproxy
from slotswap.commands.docker import UnexpectedOutputError
from slotswap.commands.runtime_api import RuntimeApiError
from slotswap.config.app_env import AppEnv, resolve_app_env
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import ProxyError
from slotswap.core import interrupts, timings
from slotswap.core.output import format_table, progress_for, say
from slotswap.core.timings import Timings
from slotswap.fleet.batches import run_in_batches
from slotswap.fleet.delivery import image_deliverer
from slotswap.fleet.watch_window import WatchWindow
from slotswap.remote.server import (
    CommandDeadlineError,
    ConnectError,
    RemoteCommandError,
    RemoteDirError,
    Server,
)
from slotswap.server import history, maintenance, release
from slotswap.server.haproxy import running_haproxy
from slotswap.server.locking import FleetLock, LockedError, new_owner, run_within
from slotswap.server.pruning import prune_images
from slotswap.server.redeploy import already_serving
from slotswap.server.slots import describe_serving, read_slots
from slotswap.server.swap import SlotSwap, SwapError, SwapRolledBack, SwapStopped

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_DEPLOY_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CONNECT = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130

ON_FAILURE_STOP = "stop"
ON_FAILURE_ROLLBACK = "rollback"
ON_FAILURE_POLICIES = (ON_FAILURE_STOP, ON_FAILURE_ROLLBACK)

OPERATION_ERRORS = (ConnectError, RemoteCommandError, RuntimeApiError, ProxyError, SwapError,
                    LockedError, RemoteDirError, UnexpectedOutputError)


@dataclass
class ServerOutcome:
    name: str
    address: str
    old_tag: str | None = None
    new_tag: str | None = None
    outcome: str = "not started"  # deployed, failed, rolled back, not started, interrupted
    seconds: float = 0.0  # the whole swap, the watch period and the old slot's stop included
    serving: str = ""
    error: str = ""
    switch_seconds: float | None = None  # from the start until the new slot took the traffic
    # The new slot's traffic during its watch, from HAProxy's counters (None: not watched).
    watched_requests: int | None = None
    watched_errors: int | None = None
    timings: Timings | None = None  # the server's steps and round trips (--timings)

    @property
    def swap_seconds(self) -> float:
        """How long the swap made clients wait for the new version: until the switch (what
        follows, the watch period and stopping the old slot, delays nobody)."""
        return self.seconds if self.switch_seconds is None else self.switch_seconds


@dataclass
class RolloutResult:
    tag: str
    outcomes: list[ServerOutcome] = field(default_factory=list)
    exit_code: int = EXIT_OK
    message: str = ""
    timings: Timings = field(default_factory=Timings)  # the run's fleet-wide phases

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


def servers_of(inventory: Inventory) -> list[Server]:
    return [Server(host, inventory) for host in inventory.hosts]


def close_all(servers: list[Server]) -> None:
    for server in servers:
        server.close()


def prepare(servers: list[Server], inventory: Inventory, tags: dict[str, str], *,
            refresh: bool, allow_stale: bool = False) -> dict[str, Exception]:
    """Put each server's IMAGE:TAG on it, in parallel (inventory `delivery`: how, and how many
    at a time), before any traffic moves anywhere. Returns the servers that failed, with why."""

    def prepare_one(server: Server) -> tuple[str, Exception | None]:
        try:
            with server.timings.step("image"):
                deliver(server, inventory.image_ref(tags[server.name]),
                        progress_for(server.name), refresh=refresh)
        except OPERATION_ERRORS as error:
            return server.name, error
        return server.name, None

    workers = min(inventory.delivery.concurrency, len(servers))
    with (image_deliverer(inventory, allow_stale=allow_stale) as deliver,
          ThreadPoolExecutor(max_workers=workers) as pool):
        results = list(pool.map(prepare_one, servers))
    return {name: error for name, error in results if error}


def deploy(inventory: Inventory, tag: str, *, task: str = "deploy",
           tags: dict[str, str] | None = None, pull: bool = True,
           on_failure: str = ON_FAILURE_STOP, batch: int = 1,
           run_release: bool = True, force: bool = False,
           watch_each: bool | None = None, allow_stale: bool = False) -> RolloutResult:
    """The rolling deploy: every server locked first, images in place next, then one swap at a
    time, stopping at the first failure. `tags` gives some servers another tag than `tag`
    (a rollback returns each server to its own previous version). `batch` servers swap at
    a time (see slotswap.fleet.batches). A server that already serves its tag from the same
    image, environment and settings is left alone unless `force`. `watch_each` (default:
    the inventory's watch.each) watches each server before the next one starts, instead of
    one window for the whole rollout (see slotswap.fleet.watch_window). `allow_stale`: a server
    that cannot refresh its tag's image deploys the copy it has (see images.ensure_image)."""
    app_env = resolve_app_env(inventory, os.environ)  # a missing secret: exit 2, no server
    result = RolloutResult(tag)
    servers = servers_of(inventory)
    tag_of = {s.name: (tags or {}).get(s.name, tag) for s in servers}
    result.outcomes = [ServerOutcome(s.name, s.host.address, new_tag=tag_of[s.name],
                                     timings=s.timings) for s in servers]
    phase = result.timings.begin
    owner = new_owner(task, tag)
    try:
        at_a_time = "one" if batch == 1 else f"{batch}"
        say(f"{task} {inventory.image_ref(tag)} to {len(servers)} servers, {at_a_time} at a time")
        phase("connect, lock")
        with interrupts.guarded(), FleetLock(servers, inventory, owner, result.timings):
            phase("image")
            failures = prepare(servers, inventory, tag_of, refresh=pull,
                               allow_stale=allow_stale)
            if failures:
                stop_before_any_swap(result, servers, inventory, failures)
                return result
            phase("unchanged?")
            if not force:
                leave_alone_what_already_serves(result, servers, inventory, tag_of, app_env)
            if all(o.outcome == "unchanged" for o in result.outcomes):
                result.message = "nothing to do: every server already serves it (--force " \
                                 "redeploys)"
                return result
            if run_release and inventory.release.command:
                phase("release command")
                try:
                    release.run(servers[0], inventory, tag_of[servers[0].name], app_env,
                                progress_for(servers[0].name))
                except release.ReleaseFailed as error:
                    result.exit_code, result.message = EXIT_DEPLOY_FAILED, str(error)
                    fill_serving(servers, inventory, result.outcomes)
                    return result
                except OPERATION_ERRORS as error:
                    result.exit_code = EXIT_DEPLOY_FAILED
                    result.message = (f"the release command could not run on "
                                      f"{servers[0].name}: {error}; nothing was changed")
                    fill_serving(servers, inventory, result.outcomes)
                    return result
            each = inventory.watch.each if watch_each is None else watch_each
            window = None if each else WatchWindow(
                inventory.timeouts.watch, revert_on_failure=on_failure == ON_FAILURE_ROLLBACK)
            phase("swaps")
            try:
                if batch > 1:
                    swap_in_batches(result, servers, inventory, tag_of, task, app_env, batch,
                                    window)
                else:
                    swap_in_turn(result, servers, inventory, tag_of, task, app_env, window)
            finally:
                if window is not None:
                    if window.failure() is None and not interrupts.requested():
                        say(f"every server switched; watching the new slots until "
                            f"{inventory.timeouts.watch:g}s after the last switch")
                    phase("watch window")
                    window.close()
            phase("report")
            not_started = [(server, outcome) for server, outcome
                           in zip(servers, result.outcomes, strict=True)
                           if outcome.outcome == "not started"]
            fill_serving([server for server, _ in not_started], inventory,
                         [outcome for _, outcome in not_started])
            if window is not None:
                interrupts.checkpoint()
                judge_window(result, task, window)
            if not result.ok and on_failure == ON_FAILURE_ROLLBACK:
                roll_back_moved(result, servers, inventory, app_env)
        if interrupts.stopping_now():
            # The second Ctrl-C's KeyboardInterrupt can be replaced on its way up by the error
            # of a cut connection: the run was stopped all the same.
            raise KeyboardInterrupt
    except LockedError as error:
        result.exit_code, result.message = EXIT_LOCKED, f"nothing was changed: {error}"
        fill_serving(servers, inventory, result.outcomes)
    except ConnectError as error:
        result.exit_code, result.message = EXIT_CONNECT, f"nothing was changed: {error}"
    except OPERATION_ERRORS as error:
        # Taking the locks (the only step not contained per server) failed otherwise: e.g.
        # the login cannot write remote_dir.
        result.exit_code, result.message = EXIT_DEPLOY_FAILED, f"nothing was changed: {error}"
        fill_serving(servers, inventory, result.outcomes)
    except Exception as error:  # unforeseen: still one line, the summary, --json and hooks
        result.exit_code = EXIT_DEPLOY_FAILED
        result.message = f"{task} stopped: {describe_error(error)}"
        fill_serving(servers, inventory, result.outcomes)
    except KeyboardInterrupt:
        result.exit_code = EXIT_INTERRUPTED
        result.message = f"{task} interrupted; each server serves what the summary says"
        if interrupts.stopping_now():
            result.message = f"{task} stopped at once; each server serves what the summary says"
            for outcome in result.outcomes:  # the swap cut short, whatever error it then saw
                if outcome.outcome == "failed":
                    outcome.outcome = "interrupted"
            fill_serving_quickly(servers, inventory, result.outcomes)
        else:
            fill_serving(servers, inventory, result.outcomes)
    finally:
        result.timings.end()
        close_all(servers)
    return result


def fill_serving_quickly(servers: list[Server], inventory: Inventory,
                         outcomes: list[ServerOutcome]) -> None:
    """After a second Ctrl-C: every server at once, over a new connection, a short deadline."""
    seconds = interrupts.REPORT_AFTER_STOP_SECONDS
    found: dict[str, str] = {}

    def read(server: Server) -> None:
        server.resume()
        found[server.name] = serving_now(server, inventory)

    run_within(servers, read, seconds)
    for outcome in outcomes:
        outcome.serving = found.get(outcome.name, f"unknown (no answer within {seconds:g}s)")


def roll_back_moved(result: RolloutResult, servers: list[Server], inventory: Inventory,
                    app_env: AppEnv) -> None:
    """--on-failure=rollback: every server that serves the new version after this run goes
    back to what it served, last moved first, with the same swap, so that the fleet ends on
    one version. That is each server done, and also one that failed after its switch (it
    still serves the new version); one whose watch switched back serves the old one already."""
    moved = [(server, outcome) for server, outcome in zip(servers, result.outcomes, strict=True)
             if outcome.old_tag and outcome.old_tag != outcome.new_tag
             and serves_new_version(server, inventory, outcome)]
    if moved:
        say(f"rolling back the {len(moved)} servers that serve {result.tag}")
    failed_back = []
    for server, outcome in reversed(moved):
        back = ServerOutcome(server.name, server.host.address, new_tag=outcome.old_tag)
        interrupts.checkpoint()
        if swap_one(server, inventory, outcome.old_tag or "", back, app_env):
            outcome.outcome, outcome.serving = "rolled back", back.serving
            # Recorded as "rolled back", not "deployed": `fab rollback` then looks past it,
            # never back to the version that failed.
            back.outcome = "rolled back"
        else:
            outcome.outcome, outcome.serving = "rollback failed", back.serving
            failed_back.append(f"{server.name}: {back.error}")
        record_history(server, inventory, "rollback", back)
    in_window = [o.name for o in result.outcomes
                 if o.outcome == "rolled back" and "--on-failure=rollback" in o.error]
    if in_window:
        result.message += ("; the servers in the watch window were switched back: "
                           + ", ".join(in_window))
    if failed_back:
        result.message += "; rolling back failed on " + "; ".join(failed_back)
    elif moved:
        result.message += ("; the servers that served it were rolled back: "
                           + ", ".join(server.name for server, _ in moved))
    elif not in_window:
        result.message += "; no server served the new version, none was rolled back"
    result.message += "; each server serves now: " + ", ".join(
        f"{outcome.name} {outcome.serving or 'unknown'}" for outcome in result.outcomes)


def serves_new_version(server: Server, inventory: Inventory, outcome: ServerOutcome) -> bool:
    """A server done serves the new version; one that failed might still (after its switch):
    ask it. One not started, or whose watch switched back, does not."""
    if outcome.outcome == "deployed":
        return True
    if outcome.outcome != "failed":
        return False
    try:
        views = read_slots(server, inventory)
    except OPERATION_ERRORS as error:
        outcome.serving = f"unknown ({error})"
        return False
    outcome.serving = describe_serving(views)
    return any(view.serving and view.version == outcome.new_tag for view in views.values())


def leave_alone_what_already_serves(result: RolloutResult, servers: list[Server],
                                    inventory: Inventory, tag_of: dict[str, str],
                                    app_env: AppEnv) -> None:
    """Every server at once: one whose live slot already runs its tag from the same image,
    with the same environment and settings, is "unchanged" and left out of the rollout."""

    def check(pair: tuple[Server, ServerOutcome]) -> None:
        server, outcome = pair
        try:
            with server.timings.step("unchanged?"):
                serving = already_serving(server, inventory, tag_of[server.name], app_env)
        except OPERATION_ERRORS:
            return  # the swap finds out, and says so
        if serving is not None:
            outcome.old_tag, outcome.outcome, outcome.serving = (
                tag_of[server.name], "unchanged", serving)
            progress_for(server.name)(f"already serving {tag_of[server.name]} ({serving}; "
                                      "same image, environment and settings): left alone")

    with ThreadPoolExecutor(max_workers=min(16, len(servers))) as pool:
        list(pool.map(check, zip(servers, result.outcomes, strict=True)))


def stop_before_any_swap(result: RolloutResult, servers: list[Server], inventory: Inventory,
                         failures: dict[str, Exception]) -> None:
    for outcome in result.outcomes:
        outcome.outcome = "failed" if outcome.name in failures else "not started"
        outcome.error = str(failures.get(outcome.name, ""))
    connect_only = all(isinstance(e, ConnectError) for e in failures.values())
    result.exit_code = EXIT_CONNECT if connect_only else EXIT_DEPLOY_FAILED
    result.message = ("nothing was changed: the image could not be put on every server: "
                      + "; ".join(str(e) for e in failures.values()))
    fill_serving(servers, inventory, result.outcomes)


def swap_in_turn(result: RolloutResult, servers: list[Server], inventory: Inventory,
                 tag_of: dict[str, str], task: str, app_env: AppEnv,
                 window: WatchWindow | None) -> None:
    """One server after another; with a window, the next one starts as soon as this one
    switched (its watch goes on meanwhile), else once it is over. Stops at the first
    failure, a failure seen by a watch in the window included."""
    pending = [(s, o) for s, o in zip(servers, result.outcomes, strict=True)
               if o.outcome == "not started"]
    for server, outcome in pending:
        interrupts.checkpoint()
        if window is not None and window.failure():
            break
        if window is None:
            ok = swap_and_record(server, inventory, tag_of[server.name], outcome, task, app_env)
        else:
            ok = switch_in_window(server, inventory, tag_of[server.name], outcome, task,
                                  app_env, window)
        if not ok:
            if window is None:  # else the window has it, and judge_window says it
                result.exit_code = EXIT_DEPLOY_FAILED
                result.message = (f"{task} of {outcome.new_tag} stopped at {server.name}: "
                                  f"{outcome.error}")
            break


def swap_in_batches(result: RolloutResult, servers: list[Server], inventory: Inventory,
                    tag_of: dict[str, str], task: str, app_env: AppEnv, size: int,
                    window: WatchWindow | None) -> None:
    """--batch: `size` servers swap in parallel; the next batch starts only when the whole
    batch succeeded (with a window: switched, and no watch failed)."""
    indexes = [i for i, o in enumerate(result.outcomes) if o.outcome == "not started"]

    def announce(number: int, members: range) -> None:
        interrupts.checkpoint()
        if window is not None and window.failure():
            raise StopRollout
        say(f"batch {number}: {', '.join(servers[indexes[i]].name for i in members)}")

    def swap_index(position: int) -> bool:
        index = indexes[position]
        server, outcome = servers[index], result.outcomes[index]
        if window is None:
            return swap_and_record(server, inventory, tag_of[server.name], outcome, task,
                                   app_env)
        return switch_in_window(server, inventory, tag_of[server.name], outcome, task,
                                app_env, window)

    try:
        _, failed = run_in_batches(len(indexes), size, swap_index, announce)
        if failed:
            result.exit_code = EXIT_DEPLOY_FAILED
            reasons = "; ".join(f"{servers[indexes[i]].name}: "
                                f"{result.outcomes[indexes[i]].error}" for i in failed)
            result.message = (f"{task} of {result.outcomes[indexes[failed[0]]].new_tag} "
                              f"stopped after its batch failed on {reasons}")
    except StopRollout:
        pass  # a watch failed: its server says why (judge_window)


class StopRollout(Exception):
    """A watch in the window failed: no further batch starts."""


def judge_window(result: RolloutResult, task: str, window: WatchWindow) -> None:
    """After the window closed: the run failed if a server did, before its switch or in
    its watch; the first failure is the one named."""
    failure = window.failure()
    if failure is None or not result.ok:  # none, or a failed batch: said already
        return
    result.exit_code = EXIT_DEPLOY_FAILED
    result.message = f"{task} of {result.tag} stopped at {failure}"


def swap_and_record(server: Server, inventory: Inventory, tag: str, outcome: ServerOutcome,
                    task: str, app_env: AppEnv) -> bool:
    """swap_one, with the server's history told what happened, an interrupt included."""
    try:
        return swap_one(server, inventory, tag, outcome, app_env)
    except KeyboardInterrupt:
        outcome.outcome = "interrupted"
        raise
    finally:
        record_unless_stopping_now(server, inventory, task, outcome)


def record_history(server: Server, inventory: Inventory, task: str,
                   outcome: ServerOutcome) -> None:
    entry = history.new_entry(task, outcome.old_tag, outcome.new_tag or "", outcome.outcome,
                              outcome.seconds, outcome.error)
    try:
        with server.timings.step("history"):
            history.append(server, inventory, entry)
    except Exception as error:  # the run's own outcome stands
        progress_for(server.name)(f"WARNING: could not record this in its history: "
                                  f"{describe_error(error)}")


class ServerRun:
    """One server's swap with its outcome kept up to date: each step's errors are contained
    (one line in the outcome, what the server serves now), never raised."""

    def __init__(self, server: Server, inventory: Inventory, tag: str,
                 outcome: ServerOutcome, app_env: AppEnv | None = None):
        self.server, self.inventory, self.outcome = server, inventory, outcome
        self.shown = progress_for(server.name)
        self.step = ""  # the last step announced: named when the server stops answering
        self.started = time.monotonic()
        self.swap = SlotSwap(server, inventory, tag, self.progress, app_env)

    def progress(self, message: str) -> None:
        # Recovery and news in the watch are not steps: a failure names the step it was in.
        if not message.startswith(("could not", "WARNING")) and " drained in " not in message:
            self.step = message
        self.shown(message)

    def attempt(self, action: Callable[[], object]) -> bool:
        """Run one part of the swap; False (and the outcome says why) when it failed."""
        outcome, swap = self.outcome, self.swap
        try:
            action()
        except SwapError as error:
            outcome.outcome = ("rolled back" if isinstance(error, SwapRolledBack)
                               else "not switched" if isinstance(error, SwapStopped)
                               else "failed")
            outcome.error = str(error) + during(error, self.step)
            outcome.serving = error.serving
            if isinstance(error.__cause__, CommandDeadlineError) and outcome.serving.startswith(
                    "unknown"):
                outcome.serving = haproxy_view(self.server, self.inventory) or outcome.serving
            self.progress(f"FAILED: {error}" if outcome.outcome != "not switched"
                          else str(error))
            return False
        except Exception as error:  # OPERATION_ERRORS, or anything unforeseen: contained
            outcome.outcome = "failed"
            outcome.error = describe_error(error) + during(error, self.step)
            outcome.serving = serving_now(self.server, self.inventory)
            self.progress(f"FAILED: {outcome.error}")
            return False
        finally:
            self.server.timings.end()
            outcome.seconds = time.monotonic() - self.started
            outcome.switch_seconds = swap.switch_seconds
            outcome.old_tag = swap.old_version
            if swap.window_traffic is not None:
                outcome.watched_requests = swap.window_traffic.requests
                outcome.watched_errors = swap.window_traffic.errors
        return True

    def finished(self) -> bool:
        """The swap is over and the new version serves: record it, prune old images."""
        outcome = self.outcome
        outcome.outcome, outcome.serving = "deployed", self.swap.serving
        self.progress(f"done in {outcome.seconds:.1f}s: serves {outcome.serving}")
        try:
            with self.server.timings.step("prune images"):
                prune_images(self.server, self.inventory, self.progress,
                             self.swap.images_in_use)
        except OPERATION_ERRORS as error:
            self.progress(f"WARNING: could not remove old images: {error}")
        return True


def swap_one(server: Server, inventory: Inventory, tag: str, outcome: ServerOutcome,
             app_env: AppEnv | None = None) -> bool:
    """The whole swap on one server, its watch included, before anything else moves."""
    run = ServerRun(server, inventory, tag, outcome, app_env)
    return run.attempt(run.swap.run) and run.finished()


def switch_in_window(server: Server, inventory: Inventory, tag: str, outcome: ServerOutcome,
                     task: str, app_env: AppEnv, window: WatchWindow) -> bool:
    """Swap up to the switch now; the watch and the old slot's stop go on in the window's
    thread while the rollout moves on. False when this server failed (recorded, and told
    to the window: the rollout stops)."""
    run = ServerRun(server, inventory, tag, outcome, app_env)
    switched: list[bool] = []
    try:
        ok = run.attempt(lambda: switched.append(run.swap.switch_in(window.failure)))
    except KeyboardInterrupt:
        outcome.outcome = "interrupted"
        record_unless_stopping_now(server, inventory, task, outcome)
        raise
    if not ok or not switched[0]:  # failed, or over (a first deploy)
        if ok:
            run.finished()
        else:
            window.fail(f"{server.name}: {outcome.error}")
        record_unless_stopping_now(server, inventory, task, outcome)
        return ok
    window.switched(run.swap.switched_at)
    run.swap.on_failure = lambda reason: window.failing(f"{server.name}: {reason}")

    def watch() -> None:
        try:
            done = run.attempt(lambda: run.swap.watch_and_retire(
                window.closes_at, window.revert_reason)) and run.finished()
        except BaseException:  # Ctrl-C (a checkpoint in this thread): the new slot serves
            outcome.outcome, done = "interrupted", False
        record_unless_stopping_now(server, inventory, task, outcome)
        if not done and outcome.outcome != "interrupted":
            window.fail(f"{server.name}: {outcome.error}")  # the first one is kept

    window.watch(server.name, watch)
    return True


def record_unless_stopping_now(server: Server, inventory: Inventory, task: str,
                               outcome: ServerOutcome) -> None:
    if not interrupts.stopping_now():  # else: stopped at once, the connection is cut
        record_history(server, inventory, task, outcome)


def haproxy_view(server: Server, inventory: Inventory) -> str:
    """What HAProxy alone says, for a server whose Docker engine does not answer (its
    containers keep running, so the slots HAProxy sends traffic to still serve)."""
    try:
        stats = haproxy.parse_show_stat(
            server.runtime_api(haproxy.command_show_stat(inventory.app)))
    except OPERATION_ERRORS:
        return ""
    live = [slot for slot in SLOTS if slot in stats and stats[slot].takes_new_traffic]
    return (f"{' and '.join(live) or 'NO slot'} in rotation (HAProxy; Docker did not answer, "
            "so the version is unknown)")


def during(error: BaseException, step: str) -> str:
    """When the server stopped answering (connection lost, command past its deadline), the
    step it was in: the error itself names the server and the command only."""
    cause = error.__cause__ if isinstance(error, SwapError) else error
    if step and isinstance(cause, ConnectError | RemoteCommandError):
        return f" (during: {step})"
    return ""


def rollback_targets(inventory: Inventory) -> tuple[dict[str, str], dict[str, str]]:
    """Per server, the version it served before its last successful change; and, for the
    servers where none is known, why."""
    targets, problems = {}, {}
    for server in servers_of(inventory):
        try:
            views = read_slots(server, inventory)
            serving = [v.version for v in views.values() if v.serving]
            current = serving[0] if len(serving) == 1 else None
            target = history.rollback_target(history.read(server, inventory), current)
            if target:
                targets[server.name] = target
            else:
                problems[server.name] = (f"no earlier version in its history for what it serves "
                                         f"({describe_serving(views)})")
        except Exception as error:
            problems[server.name] = describe_error(error)
        finally:
            server.close()
    return targets, problems


def serving_now(server: Server, inventory: Inventory) -> str:
    try:
        return describe_serving(read_slots(server, inventory))
    except CommandDeadlineError as error:  # Docker stuck: HAProxy still says what serves
        return haproxy_view(server, inventory) or f"unknown ({describe_error(error)})"
    except Exception as error:
        return f"unknown ({describe_error(error)})"


def fill_serving(servers: list[Server], inventory: Inventory,
                 outcomes: list[ServerOutcome]) -> None:
    for server, outcome in zip(servers, outcomes, strict=True):
        if not outcome.serving:
            outcome.serving = serving_now(server, inventory)


def summary_table(outcomes: list[ServerOutcome]) -> str:
    rows = [(o.name, o.address, o.old_tag or "-", o.new_tag or "-", f"{o.seconds:.1f}",
             watched(o), o.outcome, o.serving) for o in outcomes]
    return format_table(("server", "address", "old", "new", "seconds", "watched (errors)",
                         "outcome", "serving now"), rows)


def timings_tables(result: RolloutResult) -> str:
    """--timings: the run's phases (wall time; parallel work counted once), then per server
    each step's seconds and round trips (`seconds (round trips)`)."""
    phases = format_table(("phase", "seconds"), [(name, f"{seconds:.2f}") for name, seconds
                                                  in result.timings.seconds.items()])
    header, rows = timings.table([(o.name, o.timings) for o in result.outcomes
                                  if o.timings is not None])
    return f"{phases}\n\n{format_table(header, rows)}"


def watched(outcome: ServerOutcome) -> str:
    """The new slot's requests during its watch, with the failed ones."""
    if outcome.watched_requests is None:
        return "-"
    return f"{outcome.watched_requests} ({outcome.watched_errors})"


@dataclass
class ServerStatus:
    name: str
    address: str
    live: str
    version: str
    slots: list[str]
    error: str = ""
    maintenance: bool | None = None  # None: could not be read (a HAProxy older than the kit's)
    haproxy: str = ""  # HAProxy's image and version, e.g. `haproxy:2.8 (HAProxy 2.8.5)`


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
                maintenance=maintenance_state(server),
                haproxy=running_haproxy(server, inventory),
            ))
        except Exception as error:
            reports.append(ServerStatus(server.name, server.host.address, "?", "?", [],
                                        error=describe_error(error)))
        finally:
            server.close()
    return reports


def maintenance_state(server: Server) -> bool | None:
    """On or off; None when the running config has no maintenance map (`up` adds it)."""
    try:
        return maintenance.is_on(server)
    except RuntimeApiError:
        return None


@dataclass(frozen=True)
class ServerResult:
    name: str
    text: str  # what was done, or why it failed
    ok: bool
    exit_code: int = EXIT_OK


def on_every_server(inventory: Inventory,
                    action: Callable[[Server, Inventory, Callable[[str], None]], str],
                    task: str) -> list[ServerResult]:
    """Lock every server, then run `action` on each in order; stop at the first failure."""
    servers = servers_of(inventory)
    results: list[ServerResult] = []
    fleet_lock = FleetLock(servers, inventory, new_owner(task))
    try:
        with interrupts.guarded(), fleet_lock:
            for server in servers:
                interrupts.checkpoint()
                progress = progress_for(server.name)
                try:
                    # The inventory with this login's folders on this server.
                    done = action(server, server.with_folders(inventory), progress)
                except OPERATION_ERRORS as error:
                    progress(f"FAILED: {error}")
                    results.append(ServerResult(server.name, str(error), False,
                                                exit_code_for(error)))
                    break
                progress(done)
                results.append(ServerResult(server.name, done, True))
    except OPERATION_ERRORS as error:  # taking the locks failed: nothing was changed
        results.append(ServerResult(fleet_lock.failed_on or "?", f"nothing was changed: {error}",
                                    False, exit_code_for(error)))
    finally:
        close_all(servers)
    return results


def describe_error(error: BaseException) -> str:
    """One line for any error: its message, or its kind when it has none; an error the kit
    does not know is named as such."""
    if isinstance(error, OPERATION_ERRORS):
        return str(error) or type(error).__name__
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def exit_code_for(error: Exception) -> int:
    if isinstance(error, LockedError):
        return EXIT_LOCKED
    if isinstance(error, ConnectError):
        return EXIT_CONNECT
    return EXIT_DEPLOY_FAILED
