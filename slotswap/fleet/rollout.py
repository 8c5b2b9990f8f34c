"""The rolling deploy (and a rollback, the same run to earlier tags): every server locked, the
image on every server, then one swap at a time (or a batch), stopping at the first failure,
one watch window, and with --on-failure=rollback every moved server back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from slotswap.config.app_env import AppEnv, resolve_app_env
from slotswap.config.inventory import Inventory
from slotswap.core import interrupts
from slotswap.core.output import progress_for, say
from slotswap.fleet.batches import run_in_batches
from slotswap.fleet.delivery import image_deliverer
from slotswap.fleet.errors import (
    EXIT_CONNECT,
    EXIT_DEPLOY_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    OPERATION_ERRORS,
    describe_error,
    nothing_changed,
)
from slotswap.fleet.fleet_lock import FleetLock
from slotswap.fleet.outcomes import Outcome, RolloutResult, ServerOutcome
from slotswap.fleet.runner import CONCURRENCY, at_once, close_all, servers_of
from slotswap.fleet.server_run import (
    fill_serving,
    fill_serving_quickly,
    record_history,
    record_unless_stopping_now,
    swap_and_record,
    swap_one,
    switch_in_window,
)
from slotswap.fleet.watch_window import WatchWindow
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import ConnectError
from slotswap.server import release, web_removal
from slotswap.server.locking import LockedError, new_owner
from slotswap.server.redeploy import already_serving
from slotswap.server.role_swap import role_serving
from slotswap.server.swap import describe_serving, read_slots
from slotswap.server.swap_errors import SwapError

ON_FAILURE_STOP = "stop"
ON_FAILURE_ROLLBACK = "rollback"
ON_FAILURE_POLICIES = (ON_FAILURE_STOP, ON_FAILURE_ROLLBACK)


def prepare(servers: list[ServerLike], inventory: Inventory, tags: dict[str, str], *,
            refresh: bool, allow_stale: bool = False) -> dict[str, Exception]:
    """Put each server's IMAGE:TAG on it, in parallel (inventory `delivery`: how, and how many
    at a time), before any traffic moves anywhere. Returns the servers that failed, with why."""

    def prepare_one(server: ServerLike) -> None:
        with server.timings.step("image"):
            deliver(server, inventory.image_ref(tags[server.name]),
                    progress_for(server.name), refresh=refresh)

    workers = min(inventory.delivery.concurrency, len(servers))
    with image_deliverer(inventory, allow_stale=allow_stale) as deliver:
        results = at_once(servers, prepare_one, workers=workers)
    return {done.server.name: done.error for done in results if done.error}


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
    run = uuid.uuid4().hex[:12]  # in each server's history: what a plain rollback undoes
    result.outcomes = [ServerOutcome(s.name, s.host.address, new_tag=tag_of[s.name],
                                     timings=s.timings, run=run) for s in servers]
    phase = result.timings.begin
    owner = new_owner(task, tag)
    fleet_lock = FleetLock(servers, inventory, owner, result.timings, in_rotation=True)
    try:
        at_a_time = "one" if batch == 1 else f"{batch}"
        say(f"{task} {inventory.image_ref(tag)} to {len(servers)} servers, {at_a_time} at a time")
        phase("connect, lock")
        with interrupts.guarded(), fleet_lock, recorded_if_no_swap(servers, inventory, task,
                                                                 result, fleet_lock):
            phase("image")
            failures = prepare(servers, inventory, tag_of, refresh=pull,
                               allow_stale=allow_stale)
            if failures:
                stop_before_any_swap(result, servers, inventory, failures)
                return result
            phase("unchanged?")
            if refused := web_left_on_worker_only_hosts(servers, inventory):
                stop_before_any_swap(result, servers, inventory, refused,
                                     why="the web's containers run on a worker-only host")
                return result
            if not force:
                leave_alone_what_already_serves(result, servers, inventory, tag_of, app_env)
            if all(o.outcome == Outcome.UNCHANGED for o in result.outcomes):
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
                           if outcome.outcome == Outcome.NOT_STARTED]
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
        # the login cannot write remote_dir, or with haproxy.shared the app is not (or no
        # longer wholly) on a server's shared HAProxy.
        result.exit_code, result.message = EXIT_DEPLOY_FAILED, nothing_changed(error)
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
                if outcome.outcome in (Outcome.FAILED, Outcome.LEFT_SWITCHED):
                    outcome.outcome = Outcome.INTERRUPTED
            fill_serving_quickly(servers, inventory, result.outcomes)
        else:
            fill_serving(servers, inventory, result.outcomes)
    finally:
        if fleet_lock.lost and result.exit_code != EXIT_INTERRUPTED:
            # Lost after a swap (its checks, pruning, the history) no error was raised: the
            # message of a run that had succeeded is no error either.
            if result.exit_code == EXIT_OK or not result.message:
                result.message = fleet_lock.why_lost()
            result.exit_code = EXIT_LOCKED  # another run holds them now; this one stopped
        result.timings.end()
        close_all(servers)
    return result



@contextmanager
def recorded_if_no_swap(servers: list[ServerLike], inventory: Inventory, task: str,
                        result: RolloutResult, fleet_lock: FleetLock) -> Iterator[None]:
    """A run that took the locks and stopped before any server's swap wrote an entry (an
    image it could not put everywhere, the release command, Ctrl-C, an unforeseen error)
    writes each server's outcome (`not started` mostly) in its history: the run is then the
    fleet's last, and a plain `rollback` after it finds it moved no server (nothing left to
    undo) instead of undoing the run before it. A run with nothing to do (every server
    unchanged), or that lost a lock to another run, writes none."""
    try:
        yield
    finally:
        if not (any(o.recorded for o in result.outcomes) or fleet_lock.lost
                or all(o.outcome == Outcome.UNCHANGED for o in result.outcomes)):
            for server, outcome in zip(servers, result.outcomes, strict=True):
                record_unless_stopping_now(server, inventory, task, outcome)


def roll_back_moved(result: RolloutResult, servers: list[ServerLike], inventory: Inventory,
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
        back = ServerOutcome(server.name, server.host.address, new_tag=outcome.old_tag,
                             run=outcome.run)
        interrupts.checkpoint()
        done = swap_one(server, inventory, outcome.old_tag or "", back, app_env)
        if done:
            outcome.outcome, outcome.serving = Outcome.ROLLED_BACK, back.serving
            # Recorded as "rolled back", not "deployed": `fab rollback` then looks past it,
            # never back to the version that failed.
            back.outcome = Outcome.ROLLED_BACK
        else:
            outcome.outcome, outcome.serving = Outcome.ROLLBACK_FAILED, back.serving
            failed_back.append(f"{server.name}: {back.error}")
        record_history(server, inventory, "rollback", back, automatic=done)
    in_window = [o.name for o in result.outcomes
                 if o.outcome == Outcome.ROLLED_BACK and "--on-failure=rollback" in o.error]
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


def serves_new_version(server: ServerLike, inventory: Inventory, outcome: ServerOutcome) -> bool:
    """A server done serves the new version; one that failed might still (after its switch,
    "left switched" for sure, unless it was changed since): ask it. One not started, or
    whose watch switched back, does not."""
    if outcome.outcome == Outcome.DEPLOYED:
        return True
    if outcome.outcome not in (Outcome.FAILED, Outcome.LEFT_SWITCHED):
        return False
    try:
        if not server.host.web:
            version, outcome.serving = role_serving(server, inventory)
            return version == outcome.new_tag
        views = read_slots(server, inventory)
    except OPERATION_ERRORS as error:
        outcome.serving = f"unknown ({error})"
        return False
    outcome.serving = describe_serving(views)
    return any(view.serving and view.version == outcome.new_tag for view in views.values())


def leave_alone_what_already_serves(result: RolloutResult, servers: list[ServerLike],
                                    inventory: Inventory, tag_of: dict[str, str],
                                    app_env: AppEnv) -> None:
    """Every server at once: one whose live slot already runs its tag from the same image,
    with the same environment and settings, is "unchanged" and left out of the rollout."""

    outcome_of = {outcome.name: outcome for outcome in result.outcomes}

    def check(server: ServerLike) -> None:
        outcome = outcome_of[server.name]
        try:
            with server.timings.step("unchanged?"):
                serving = already_serving(server, inventory, tag_of[server.name], app_env)
        except OPERATION_ERRORS:
            return  # the swap finds out, and says so
        if serving is not None:
            outcome.old_tag, outcome.outcome, outcome.serving = (
                tag_of[server.name], Outcome.UNCHANGED, serving)
            progress_for(server.name)(f"already serving {tag_of[server.name]} ({serving}; "
                                      "same image, environment and settings): left alone")

    at_once(servers, check, workers=min(CONCURRENCY, len(servers)))


def web_left_on_worker_only_hosts(servers: list[ServerLike],
                                  inventory: Inventory) -> dict[str, Exception]:
    """Every worker-only host at once, before any server changes: one turned `web: false`
    whose HAProxy or web slots still run (`up` takes them off) is refused; moving its
    workers would leave its HAProxy serving the old version, unseen by the summary."""
    hosts = [server for server in servers if not server.host.web]
    done = at_once(hosts, lambda server: web_removal.web_containers_on(server, inventory),
                   workers=min(CONCURRENCY, len(hosts) or 1))
    # A server that cannot be read now fails in its swap, and says so there.
    return {d.server.name: SwapError(why, "") for d in done if d.error is None and (
        why := web_removal.web_left_on_worker_only(d.server.name, d.value or {}))}


def stop_before_any_swap(result: RolloutResult, servers: list[ServerLike], inventory: Inventory,
                         failures: dict[str, Exception], *,
                         why: str = "the image could not be put on every server") -> None:
    for outcome in result.outcomes:
        outcome.outcome = Outcome.FAILED if outcome.name in failures else Outcome.NOT_STARTED
        outcome.error = str(failures.get(outcome.name, ""))
    connect_only = all(isinstance(e, ConnectError) for e in failures.values())
    result.exit_code = EXIT_CONNECT if connect_only else EXIT_DEPLOY_FAILED
    result.message = (f"nothing was changed: {why}: "
                      + "; ".join(str(e) for e in failures.values()))
    fill_serving(servers, inventory, result.outcomes)


def swap_in_turn(result: RolloutResult, servers: list[ServerLike], inventory: Inventory,
                 tag_of: dict[str, str], task: str, app_env: AppEnv,
                 window: WatchWindow | None) -> None:
    """One server after another; with a window, the next one starts as soon as this one
    switched (its watch goes on meanwhile), else once it is over. Stops at the first
    failure, a failure seen by a watch in the window included."""
    pending = [(s, o) for s, o in zip(servers, result.outcomes, strict=True)
               if o.outcome == Outcome.NOT_STARTED]
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


def swap_in_batches(result: RolloutResult, servers: list[ServerLike], inventory: Inventory,
                    tag_of: dict[str, str], task: str, app_env: AppEnv, size: int,
                    window: WatchWindow | None) -> None:
    """--batch: `size` servers swap in parallel; the next batch starts only when the whole
    batch succeeded (with a window: switched, and no watch failed)."""
    indexes = [i for i, o in enumerate(result.outcomes) if o.outcome == Outcome.NOT_STARTED]

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
