"""One server's swap in a rolling run, its outcome kept up to date and told to the server's
history: each step's errors contained (one line in the outcome, and what the server serves
now), never raised; with a watch window, the swap up to the switch, its watch on in the
window's thread."""

from __future__ import annotations

import time
from collections.abc import Callable

from slotswap.commands import runtime_api as haproxy
from slotswap.config.app_env import AppEnv
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.core import interrupts
from slotswap.core.output import progress_for
from slotswap.fleet.errors import OPERATION_ERRORS, describe_error
from slotswap.fleet.outcomes import Outcome, ServerOutcome
from slotswap.fleet.runner import run_within
from slotswap.fleet.watch_window import WatchWindow
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandDeadlineError, ConnectError, RemoteCommandError
from slotswap.server import history
from slotswap.server.pruning import prune_images
from slotswap.server.role_swap import RoleOnlySwap, role_serving
from slotswap.server.swap import (
    SlotSwap,
    SwapError,
    SwapRolledBack,
    SwapStopped,
    describe_serving,
    read_slots,
)


def swap_and_record(server: ServerLike, inventory: Inventory, tag: str, outcome: ServerOutcome,
                    task: str, app_env: AppEnv) -> bool:
    """swap_one, with the server's history told what happened, an interrupt included."""
    try:
        return swap_one(server, inventory, tag, outcome, app_env)
    except KeyboardInterrupt:
        outcome.outcome = Outcome.INTERRUPTED
        raise
    finally:
        record_unless_stopping_now(server, inventory, task, outcome)


def history_outcome(task: str, outcome: Outcome, *, automatic: bool = False) -> str:
    """Pure: the outcome word a history entry keeps. In a rollback's entry, "rolled back" is
    the rollback --on-failure=rollback made (`automatic`), which returned the server to the
    entry's version (history.served_after reads it so). A rollback whose own watch sent the
    traffic back ("rolled back" in its summary) left the version it started from: it is kept
    as "failed", never as that."""
    if task == "rollback" and outcome == Outcome.ROLLED_BACK and not automatic:
        return Outcome.FAILED
    return outcome


def record_history(server: ServerLike, inventory: Inventory, task: str,
                   outcome: ServerOutcome, *, automatic: bool = False) -> None:
    entry = history.new_entry(task, outcome.old_tag, outcome.new_tag or "",
                              history_outcome(task, outcome.outcome, automatic=automatic),
                              outcome.seconds, outcome.error, run=outcome.run)
    try:
        with server.timings.step("history"):
            history.append(server, inventory, entry)
        outcome.recorded = True
    except Exception as error:  # the run's own outcome stands
        progress_for(server.name)(f"WARNING: could not record this in its history: "
                                  f"{describe_error(error)}")


RECOVERY = ("could not", "WARNING", "stopped early", "stopped the new container",
            "stopped the new role containers", "stopped the old role containers")


class ServerRun:
    """One server's swap with its outcome kept up to date: each step's errors are contained
    (one line in the outcome, what the server serves now), never raised."""

    def __init__(self, server: ServerLike, inventory: Inventory, tag: str,
                 outcome: ServerOutcome, app_env: AppEnv | None = None):
        self.server, self.inventory, self.outcome = server, inventory, outcome
        self.shown = progress_for(server.name)
        self.step = ""  # the last step announced: named when the server stops answering
        self.started = time.monotonic()
        self.swap: SlotSwap | RoleOnlySwap = (
            SlotSwap if server.host.web else RoleOnlySwap)(server, inventory, tag,
                                                           self.progress, app_env)

    def progress(self, message: str) -> None:
        # Recovery and news in the watch are not steps: a failure names the step it was in
        # (a watch stopped early by a lost server failed in the watch, not in its recovery).
        if not message.startswith(RECOVERY) and " drained in " not in message:
            self.step = message
        self.shown(message)

    def attempt(self, action: Callable[[], object]) -> bool:
        """Run one part of the swap; False (and the outcome says why) when it failed."""
        outcome, swap = self.outcome, self.swap
        try:
            action()
        except SwapError as error:
            outcome.outcome = (Outcome.ROLLED_BACK if isinstance(error, SwapRolledBack)
                               else Outcome.NOT_SWITCHED if isinstance(error, SwapStopped)
                               else Outcome.FAILED)
            outcome.error = str(error) + during(error, self.step)
            outcome.serving = error.serving
            if isinstance(error.__cause__, CommandDeadlineError) and outcome.serving.startswith(
                    "unknown"):
                outcome.serving = haproxy_view(self.server, self.inventory) or outcome.serving
            self.progress(f"FAILED: {error}" if outcome.outcome != Outcome.NOT_SWITCHED
                          else str(error))
            return False
        except Exception as error:  # OPERATION_ERRORS, or anything unforeseen: contained
            outcome.outcome = Outcome.FAILED
            outcome.error = describe_error(error) + during(error, self.step)
            outcome.serving = serving_now(self.server, self.inventory)
            self.progress(f"FAILED: {outcome.error}")
            return False
        finally:
            if outcome.outcome == Outcome.FAILED and self.left_switched():
                outcome.outcome = Outcome.LEFT_SWITCHED
            self.server.timings.end()
            outcome.seconds = time.monotonic() - self.started
            outcome.switch_seconds = swap.switch_seconds
            outcome.old_tag = swap.old_version
            if swap.window_traffic is not None:
                outcome.watched_requests = swap.window_traffic.requests
                outcome.watched_errors = swap.window_traffic.errors
        return True

    def left_switched(self) -> bool:
        """The swap switched (HAProxy answered the switch line) and never sent the traffic
        back: what serves is the new version, not the old one, whatever failed after. Not
        when the line back went unanswered twice (HAProxy may have run it) unless the
        server, read after, shows the new version alone in its slot; else `failed`, and
        `serving now` says what could be read."""
        swap = self.swap
        return swap.switched_at > 0 and not swap.traffic_back and (
            not swap.back_unsure
            or self.outcome.serving == f"{swap.tag} in {swap.new_slot}")

    def finished(self) -> bool:
        """The swap is over and the new version serves: record it, prune old images."""
        outcome = self.outcome
        outcome.outcome, outcome.serving = Outcome.DEPLOYED, self.swap.serving
        self.progress(f"done in {outcome.seconds:.1f}s: serves {outcome.serving}")
        try:
            with self.server.timings.step("prune images"):
                prune_images(self.server, self.inventory, self.progress,
                             self.swap.images_in_use)
        except OPERATION_ERRORS as error:
            self.progress(f"WARNING: could not remove old images: {error}")
        return True


def swap_one(server: ServerLike, inventory: Inventory, tag: str, outcome: ServerOutcome,
             app_env: AppEnv | None = None) -> bool:
    """The whole swap on one server, its watch included, before anything else moves."""
    run = ServerRun(server, inventory, tag, outcome, app_env)
    return run.attempt(run.swap.run) and run.finished()


def switch_in_window(server: ServerLike, inventory: Inventory, tag: str, outcome: ServerOutcome,
                     task: str, app_env: AppEnv, window: WatchWindow) -> bool:
    """Swap up to the switch now; the watch and the old slot's stop go on in the window's
    thread while the rollout moves on. False when this server failed (recorded, and told
    to the window: the rollout stops)."""
    run = ServerRun(server, inventory, tag, outcome, app_env)
    switched: list[bool] = []
    try:
        ok = run.attempt(lambda: switched.append(run.swap.switch_in(window.failure)))
    except KeyboardInterrupt:
        outcome.outcome = Outcome.INTERRUPTED
        record_unless_stopping_now(server, inventory, task, outcome)
        raise
    if not ok or not switched[0]:  # failed, or over (a first deploy)
        if ok:
            run.finished()
        else:
            window.fail(f"{server.name}: {outcome.error}")
        record_unless_stopping_now(server, inventory, task, outcome)
        return ok
    window.switched(run.swap.watch_from)
    run.swap.on_failure = lambda reason: window.failing(f"{server.name}: {reason}")

    def watch() -> None:
        try:
            done = run.attempt(lambda: run.swap.watch_and_retire(
                window.closes_at, window.revert_reason)) and run.finished()
        except BaseException:  # Ctrl-C (a checkpoint in this thread): the new slot serves
            outcome.outcome, done = Outcome.INTERRUPTED, False
        record_unless_stopping_now(server, inventory, task, outcome)
        if not done and outcome.outcome != Outcome.INTERRUPTED:
            window.fail(f"{server.name}: {outcome.error}")  # the first one is kept

    window.watch(server.name, watch)
    return True


def record_unless_stopping_now(server: ServerLike, inventory: Inventory, task: str,
                               outcome: ServerOutcome) -> None:
    if not interrupts.stopping_now():  # else: stopped at once, the connection is cut
        record_history(server, inventory, task, outcome)


def haproxy_view(server: ServerLike, inventory: Inventory) -> str:
    """What HAProxy alone says, for a server whose Docker engine does not answer (its
    containers keep running, so the slots HAProxy sends traffic to still serve); "" on a
    worker-only server (no HAProxy)."""
    if not server.host.web:
        return ""
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



def serving_now(server: ServerLike, inventory: Inventory) -> str:
    try:
        if not server.host.web:
            return role_serving(server, inventory)[1]
        return describe_serving(read_slots(server, inventory))
    except CommandDeadlineError as error:  # Docker stuck: HAProxy still says what serves
        return haproxy_view(server, inventory) or f"unknown ({describe_error(error)})"
    except Exception as error:
        return f"unknown ({describe_error(error)})"


def fill_serving(servers: list[ServerLike], inventory: Inventory,
                 outcomes: list[ServerOutcome]) -> None:
    for server, outcome in zip(servers, outcomes, strict=True):
        if not outcome.serving:
            outcome.serving = serving_now(server, inventory)



def fill_serving_quickly(servers: list[ServerLike], inventory: Inventory,
                         outcomes: list[ServerOutcome]) -> None:
    """After a second Ctrl-C: every server at once, over a new connection, a short deadline."""
    seconds = interrupts.REPORT_AFTER_STOP_SECONDS
    found: dict[str, str] = {}

    def read(server: ServerLike) -> None:
        server.resume()
        found[server.name] = serving_now(server, inventory)

    run_within(servers, read, seconds)
    for outcome in outcomes:
        outcome.serving = found.get(outcome.name, f"unknown (no answer within {seconds:g}s)")
