"""The blue/green swap on one server: start the new version in the idle slot, let traffic reach
it only once HAProxy's own health checks pass, drain the old slot, stop it. What is on the
server is read by slotswap.server.slots; what to do is decided by slotswap.server.swap_steps
(the plan of steps, which the dry run prints) and slotswap.server.swap_plan (the pure
decisions and lines); this module does it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.runtime_api import AdminState, ServerStat
from slotswap.config.app_env import AppEnv, resolve_app_env
from slotswap.config.inventory import Inventory
from slotswap.core.interrupts import checkpoint
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import ConnectError
from slotswap.server import haproxy_state as state_file
from slotswap.server.polling import POLL_INTERVAL, wait_for
from slotswap.server.redeploy import (
    has_env_file_of,
    keeps_stopped_container_of,
    write_env_file,
)
from slotswap.server.role_run import RoleRun
from slotswap.server.slots import (
    SlotView,
    describe_serving,
    inspect_slots,
    read_slots,
    read_slots_and_roles,
    read_slots_quietly,
)
from slotswap.server.swap_errors import SwapError, SwapRolledBack, SwapStopped
from slotswap.server.swap_plan import (
    WatchFailure,
    container_failure,
    new_slot_traffic,
    old_sessions,
    plan_slots,
    states_line,
    switch_back_states,
    watch_failure,
)
from slotswap.server.swap_retire import RetireSteps
from slotswap.server.swap_roles import RoleSteps
from slotswap.server.swap_steps import (
    StartCommand,
    States,
    SwapPlan,
    address_line,
    check_line,
    plan_swap,
    switch_read_line,
)

# After the switch, one `show stat` every 250 ms per watched server (every switched server of
# a rollout's window at once, each look a round trip over SSH and a parse on the operator's
# CPU, which the swaps still to come need). The watch need not beat HAProxy: a request the
# new slot cannot take goes to the old slot's fallback line (balance first), and HAProxy
# marks a failing slot DOWN 200 ms after its first failed check (fastinter 100ms, fall 3),
# which sends it every request. A DOWN slot stays out for at least 400 ms (two more checks at
# fastinter, two passes at downinter 100ms, rise 2): every look in 250 ms sees it. A check
# that failed once between two looks is counted by HAProxy (`chkfail`), see watch_failure.
WATCH_POLL_INTERVAL = 0.25
# The watch's look at the container itself (`docker inspect` over SSH, a Docker CLI start on
# the server): a backup for HAProxy's checks, which see a crashed app first.
WATCH_CONTAINER_CHECK_INTERVAL = 2.0
Progress = Callable[[str], None]


@dataclass
class SlotSwap(RoleSteps, RetireSteps):
    """One swap on one server, as named steps with one recovery path (the steps that stop a
    slot: slotswap.server.swap_retire)."""

    server: ServerLike
    inventory: Inventory
    tag: str
    progress: Progress
    app_env: AppEnv | None = None  # resolved when the deploy started (slotswap.config.app_env)

    def __post_init__(self) -> None:
        self.backend = self.inventory.app
        self.timeouts = self.inventory.timeouts
        self.old_version: str | None = None  # known once the live slot is found
        self.switch_seconds: float | None = None  # from the start to traffic on the new slot
        self.images_in_use: set[str] = set()  # image IDs of both slots' containers (verify)
        self.new_started_ns: int | None = None  # when Docker started the new container
        self.switched_at = 0.0  # monotonic time the new slot took the traffic
        # ... and when its role containers passed their checks: the watch window counts
        # from here, so that they too are watched `timeouts.watch` seconds.
        self.watch_from = 0.0
        self.passed_at = 0.0  # monotonic time of the watch's last look that found it passing
        self.new_slot, self.old_slot = "", None  # known once switch_in read the server
        self.serving = ""  # what the server serves once the swap is over
        self.stats_before: dict[str, ServerStat] = {}  # both slots when the swap started
        self.last_stats: dict[str, ServerStat] = {}  # the latest `show stat` reading
        self.at_switch: dict[str, ServerStat] = {}  # the reading right before the switch
        self.window_traffic: haproxy.Traffic | None = None  # the new slot's, after the switch
        self.fallback = False  # the backend has the slots' fallback lines (read_slots)
        # Told as soon as switch_back sent a failed new slot's traffic back (the rollout's
        # watch window stops other switches at once), before the container's clean-up.
        self.on_failure: Callable[[str], None] = lambda reason: None
        # Set once HAProxy took the switch back's line: the old slot serves again, and from
        # then on nothing may take it out of rotation (a failed clean-up included).
        self.traffic_back = False
        # The line back sent and unanswered twice: HAProxy may or may not have run it.
        self.back_unsure = False
        # The server's role containers (queue workers...), moved with the web slot.
        self.roles: RoleRun | None = None

    # -- runtime API helpers --------------------------------------------------------------
    def set_state(self, slot: str, state: AdminState) -> None:
        self.server.runtime_api(haproxy.command_set_state(self.backend, slot, state))

    def save_state(self, ahead: States | None = None, up: str | None = None) -> None:
        """Where a restarted HAProxy starts from (slotswap.server.haproxy_state): before a
        line that moves traffic, the state it moves to (`ahead`); else, after a change, the
        state now (a failure only said)."""
        if ahead is None:
            return state_file.remember_slot_state(self.server, self.inventory, self.progress)
        state_file.save_slot_state_ahead(self.server, self.inventory, self.backend, ahead, up=up)

    def stat(self, slot: str) -> ServerStat:
        return self.stats()[slot]

    def stats(self) -> dict[str, ServerStat]:
        answer = self.server.runtime_api(haproxy.command_show_stat(self.backend))
        self.last_stats = haproxy.parse_show_stat(answer)
        return self.last_stats

    def address(self, slot: str) -> str | None:
        answer = self.server.runtime_api(haproxy.command_show_servers_state(self.backend))
        return haproxy.parse_servers_state(answer)[slot].resolved_address

    def container(self, slot: str) -> docker.ContainerInfo | None:
        name = self.inventory.container_name(slot)
        return inspect_slots(self.server, [name]).get(name)

    # -- the steps --------------------------------------------------------------------------
    def run(self) -> tuple[str | None, str]:
        """Swap, watch and retire on this server alone; return (version served before, what
        serves now). Raises SwapError."""
        if self.switch_in():
            self.watch_and_retire(lambda: self.watch_from + self.timeouts.watch)
        return self.old_version, self.serving

    def switch_in(self, stop_requested: Callable[[], str | None] = lambda: None) -> bool:
        """Everything up to the switch: the new version started, checked, taking the traffic.
        True when an old slot is left running, drained, for watch_and_retire; False when the
        swap is over (a first deploy: nothing to watch against). `stop_requested` is asked
        right before the switch: a reason there (the rollout failed elsewhere meanwhile)
        stops the new container instead. Raises SwapError."""
        started = time.monotonic()
        self.server.timings.begin("read slots")
        # With no roles in the inventory, the role containers too, in the same round trip:
        # those of roles gone stop with the old version (with roles, RoleRun reads them).
        role_containers = None
        if self.inventory.roles:
            views = read_slots(self.server, self.inventory)
        else:
            views, role_containers = read_slots_and_roles(self.server, self.inventory)
        slots = plan_slots(views)
        self.new_slot, self.old_slot = slots.idle, slots.live
        old_version = self.old_version = views[slots.live].version if slots.live else None
        if slots.live is not None:
            self.stats_before = {slot: view.stat for slot, view in views.items()}
        self.progress(
            f"live slot {slots.live or 'none'} ({old_version or 'nothing serving'}); "
            f"{self.tag} goes into {slots.idle}"
        )
        checkpoint()
        try:
            plan = self.plan_for(views)
        except Exception as error:  # nothing changed yet: no clean-up
            raise self.failure(error) from error
        self.fallback = plan.fallback
        self.roles = RoleRun(self.server, self.server.with_folders(self.inventory), self.tag,
                             plan.idle, self.resolved_env(), self.progress,
                             # Role containers left with no roles in the inventory: read
                             # before any change, when a stuck Docker engine has changed
                             # nothing yet.
                             found_before=role_containers)
        self.server.timings.begin("idle slot out")
        self.retire(plan)
        try:
            checkpoint()
            self.server.timings.begin("start new")
            address = self.start_new(plan.idle, views[plan.idle], plan.start)
            checkpoint()
            self.server.timings.begin("health checks")
            self.wait_healthy(plan.idle, address)
            checkpoint()
            if plan.live is not None and (reason := stop_requested()):
                raise SwapStopped(f"not switched to {self.tag}: {reason}", "")
            self.save_state(plan.moving, up=plan.idle)
            # Nothing serves: the new slot in, the other out, in one line sent again if its
            # answer is lost (both states settled whichever way it went).
            if plan.live is None and not self.send_settled(
                    plan.in_line, f"could not put {plan.idle} in rotation"):
                raise SwapError(f"HAProxy did not answer the line that puts {plan.idle} in "
                                "rotation, twice", "")
        except BaseException as error:
            try:
                self.contain_failure(plan.idle)
            except Exception as cleanup:
                # The server no longer answers (a lost connection, a stuck Docker engine):
                # the new slot never took traffic, so the old one still serves. The error
                # that stopped the swap is the one to report.
                self.progress(f"could not stop the new container of {plan.idle}: {cleanup}")
            raise self.failure(error) from error
        if plan.live is None:
            self.switch_seconds = time.monotonic() - started
            self.progress(f"{plan.idle} ({self.tag}) is taking traffic")
            self.serving = self.verify(plan.idle)
            self.server.timings.begin("roles")
            try:  # nothing served before: a failure leaves the web slot as it is
                self.roles.start()
            except BaseException as error:
                with contextlib.suppress(Exception):
                    self.roles.undo()  # the old ones, if any, run on
                if not isinstance(error, Exception):
                    raise
                raise self.failure(error) from error
            self.retire_roles()  # old ones, if any: a failure is said, the next run stops them
            return False
        at_switch = self.last_stats
        self.server.timings.begin("switch")
        self.switch_over(plan.idle, plan.live)
        self.at_switch = at_switch
        self.switch_seconds = time.monotonic() - started
        self.progress(f"{plan.idle} ({self.tag}) is taking traffic (switched after "
                      f"{self.switch_seconds:.1f}s); {plan.live} drains and stays up "
                      f"in case {self.tag} fails")
        self.server.timings.begin("roles")
        self.start_roles(plan.idle, plan.live)
        self.watch_from = time.monotonic()
        return True

    def watch_and_retire(self, window_closes: Callable[[], float | None],
                         revert: Callable[[], str | None] = lambda: None) -> str:
        """After switch_in: watch the new slot until `window_closes()` (a monotonic time;
        None while it is not known yet) and the old slot has drained, then stop the old
        slot; return what serves. A failure of the new slot, or a reason from `revert()`
        (the rollout goes back everywhere), switches back. Raises SwapError."""
        new, old = self.new_slot, self.old_slot
        assert old is not None
        self.server.timings.begin("watch")
        try:
            checkpoint()
            self.watch_and_drain(new, old, window_closes, revert)
        except SwapError:
            raise  # switched back, or could not: the old slot is left as it is
        except BaseException:
            # Interrupted, or the server stopped answering, in the window. Once the traffic
            # is back on the old slot nothing may take it out again.
            if not self.traffic_back:
                self.stop_early(new, old)
            raise
        # The old slot is stopped only once the new one is seen serving: if it is not, the
        # old one, still running, takes the traffic back.
        self.server.timings.begin("verify, stop old")
        self.serving = self.retire_old(new, old)
        return self.serving

    def plan_for(self, views: dict[str, SlotView]) -> SwapPlan:
        """The swap's plan (slotswap.server.swap_steps) from the slots just read: the one
        the dry run shows. Whether the idle slot's kept container can start again is read
        on the server first (an image inspect, the env file) when it keeps one."""
        idle = plan_slots(views).idle
        return plan_swap(views, self.server.with_folders(self.inventory), self.tag,
                         restart=self.can_restart(idle, views[idle]))

    def failure(self, error: BaseException) -> BaseException:
        """The error to raise after a failed step, with what the server serves now."""
        if not isinstance(error, Exception):
            return error  # KeyboardInterrupt: the caller reports it
        serving = describe_serving(read_slots_quietly(self.server, self.inventory))
        if isinstance(error, SwapError):
            return type(error)(str(error), serving)
        return SwapError(f"{type(error).__name__}: {error}", serving)

    def switch(self, new: str, old: str) -> None:
        """Traffic to the new slot, none to the old one, in one line: a connection lost or an
        interrupt can never leave both or neither in rotation. Until the window closes the
        old slot takes what the new one cannot, through its fallback line (switch_line).
        HAProxy's servers' state comes back in the same round trip: a new slot it no longer
        counts up (restarted since its checks passed, before the state file was written
        ahead) raises SlotNotUp, and the traffic is still on the old slot's lines."""
        answer = self.server.runtime_api(
            switch_read_line(self.backend, new, old, fallback=self.fallback))
        state_file.require_up(self.server.name, answer, self.backend, new)

    def switch_over(self, new: str, old: str) -> None:
        """The switch; when its answer is lost (a lost connection, no answer in time) HAProxy
        ran the line or not: the switch back's line is right either way (the old slot, still
        running and checked, in rotation; the new one out), and the new container stops.
        Raises SwapError."""
        try:
            self.switch(new, old)
            self.switched_at = time.monotonic()
        except Exception as error:
            # Its answer lost, HAProxy may have switched: the line back first (the new
            # version passed its checks), then the state file.
            what = "found it down" if isinstance(error, state_file.SlotNotUp) \
                else "got no answer"
            if self.send_back(new, old, ahead=False, say=f"the switch to {new} ({self.tag}) "
                              f"{what}; traffic is on {old} ({self.old_version})"):
                self.clean_up_failed(new, with_output=False)
            raise self.failure(error) from error

    def send_back(self, new: str, old: str, *, say: str, ahead: bool = True) -> bool:
        """The switch back's line (old slot in rotation, new one and the old one's fallback
        out), sent again once when its answer is lost: it sets states, so twice is as once.
        True once HAProxy took it, and `say` said at once; False (and said) when the server
        did not answer twice. The state file goes first (`ahead`); one that cannot be
        written then, after the line and what is said."""
        back = switch_back_states(new, old, fallback=self.fallback)
        try:
            if ahead:
                self.save_state(back)
        except Exception:  # the traffic goes back all the same
            ahead = False
        self.traffic_back = self.send_settled(states_line(self.backend, back),
                                              f"could not send the traffic back to {old}")
        self.back_unsure = not self.traffic_back
        if self.traffic_back:
            self.progress(say)
        if not (self.traffic_back and ahead):  # behind, or ahead of a line that never ran
            self.save_state()
        return self.traffic_back

    def send_settled(self, line: str, failed: str) -> bool:
        """A line that only sets states, sent again once when its answer is lost (a lost
        connection, no answer in time): twice is as once. False, and `failed` said with the
        error, when the server did not answer twice."""
        for attempt in (1, 2):
            try:
                self.server.runtime_api(line)
                return True
            except (ConnectError, haproxy.RuntimeApiError) as error:
                if attempt == 2:
                    self.progress(f"{failed}: {error}")
        return False

    def stop_early(self, new: str, old: str) -> None:
        """Interrupted (Ctrl-C, SIGTERM), or the server stopped answering, in the window.
        A new version that has not had its full watch (`timeouts.watch` since its switch) is
        not proven: the old slot, still running and up, takes the traffic back, and the new
        container stops. A proven one keeps it; the old slot leaves rotation, its container
        still running (the next run removes it). Whatever stopped the watch is the caller's
        to raise."""
        # Watched: until the last look that found it passing (a look cut off at the window's
        # end, the one that would have seen it fail, proves nothing), from the moment its
        # role containers passed their checks (the window counts from there).
        watched = max(0.0, self.passed_at - max(self.switched_at, self.watch_from))
        proven = watched >= self.timeouts.watch
        # A proven version is looked at once more before the old slot goes: it may have
        # failed since the last look (up to a poll interval ago), its workers too.
        failing = (self.failing_now(new) or self.roles_failing_now()) if proven else None
        old_stat = self.last_stats.get(old)
        if (not proven or failing) and old_stat is not None and old_stat.is_up:
            why = (f"{new} ({self.tag}) {failing.what} ({failing.detail})" if failing else
                   f"{new} ({self.tag}) had been watched for {watched:.1f}s of "
                   f"{self.timeouts.watch:g}s")
            if self.send_back(new, old, say=f"stopped early: traffic is back on {old} "
                              f"({self.old_version}), which kept running; {why}"):
                self.serving = f"{self.old_version} in {old}"
                self.clean_up_failed(new, with_output=False)
            return
        if failing:
            return  # neither passes its checks: both stay as the window left them
        with contextlib.suppress(Exception):
            if self.take_out_of_rotation(old):
                self.progress(f"stopped early: {new} ({self.tag}) serves; {old} "
                              "is out of rotation, its container still runs")
                if self.roles is not None:
                    self.roles.retire()  # proven: one version of each role runs on

    def failing_now(self, new: str) -> WatchFailure | None:
        """A fresh look at the new slot (HAProxy's view; it updates last_stats): why it no
        longer counts as serving, or None (also when the server does not answer: the last
        look found it passing)."""
        try:
            stats = self.stats()
        except Exception:
            return None
        return watch_failure(stats[new], self.at_switch.get(new))

    def watch_and_drain(self, new: str, old: str,
                        window_closes: Callable[[], float | None],
                        revert: Callable[[], str | None] = lambda: None) -> None:
        """Until the watch window closes and the old slot's sessions are done (or the drain
        timeout is reached): as soon as the new slot fails a check, drops out of rotation,
        loses its container or answers too many errors (HAProxy's counters), switch back."""
        started = time.monotonic()
        drain_until = started + self.timeouts.drain
        drained_after: float | None = None
        next_container_check = started + WATCH_CONTAINER_CHECK_INTERVAL
        watch = self.inventory.watch
        old_before = haproxy.traffic_between(self.stats_before.get(old, self.at_switch[old]),
                                             self.at_switch[old])
        while True:
            stats = self.stats()
            now = time.monotonic()
            self.window_traffic = new_slot_traffic(self.at_switch, stats, new, old)
            failure = watch_failure(stats[new], self.at_switch[new])
            if failure is None and (why := haproxy.error_rate_failure(
                    self.window_traffic, old_before, watch.max_error_rate,
                    watch.min_requests)):
                failure = WatchFailure("answered too many errors", why)
            if failure is None and now >= next_container_check:
                # HAProxy may still count a crashed slot as up for a moment: look at the
                # container itself too, now and then (a command over SSH: not cheap).
                failure = container_failure(self.container(new), self.new_started_ns)
                if failure is None and self.roles and (why := self.roles.trouble()):
                    failure = WatchFailure("lost a role container", why)
                next_container_check = time.monotonic() + WATCH_CONTAINER_CHECK_INTERVAL
            if failure is None and (reason := revert()):
                failure = WatchFailure("was switched back with the rest of the rollout",
                                       reason, failed=False)
            if failure is not None:
                self.switch_back(new, old, stats, now - self.switched_at, failure)
            self.passed_at = now  # switch_back raises: the new slot passed this look
            sessions = old_sessions(stats, old)
            if drained_after is None and sessions == 0:
                drained_after = now - started
                self.progress(f"{old} drained in {drained_after:.1f}s")
            closes = window_closes()
            if closes is not None and now >= closes:
                if drained_after is not None:
                    break
                if now >= drain_until:
                    self.progress(f"{old} still has {sessions} sessions after "
                                  f"{self.timeouts.drain:g}s; stopping it anyway (the app gets "
                                  f"SIGTERM and {self.timeouts.stop}s to finish them)")
                    break
            checkpoint()
            time.sleep(WATCH_POLL_INTERVAL)
        if self.timeouts.watch:
            self.progress(f"watched {new} ({self.tag}) for {now - self.switched_at:.1f}s: "
                          f"{stats[new].status}, {stats[new].check_summary}; "
                          f"{self.window_traffic.describe()}")

    def switch_back(self, new: str, old: str, stats: dict[str, ServerStat], after: float,
                    failure: WatchFailure | None = None) -> None:
        """The new slot failed after taking traffic (by default: HAProxy's view of it in
        `stats`): the old one, still running and checked all along, takes it back at once,
        in one line. Nothing is stopped unless the traffic is back on the old slot."""
        failure = failure or watch_failure(stats[new]) or WatchFailure("failed", "")
        what = f"{failure.what} {after:.1f}s after the switch ({failure.detail})"
        if not stats[old].is_up:
            raise SwapError(f"{new} ({self.tag}) {what}, and {old} "
                            f"({self.old_version}) does not pass HAProxy's health checks "
                            f"either ({stats[old].check_summary}); both were left as they "
                            "are, nothing was stopped",
                            describe_serving(read_slots_quietly(self.server, self.inventory)))
        verdict = "FAILED: " if failure.failed else ""
        if not self.send_back(new, old, say=f"{new} ({self.tag}) {verdict}{failure.what} "
                              f"{after:.1f}s after taking traffic ({failure.detail}); traffic "
                              f"is back on {old} ({self.old_version})"):
            raise SwapError(f"{new} ({self.tag}) {what}, and sending the traffic back to "
                            f"{old} failed; run `fab status`, then deploy the version you "
                            "want", describe_serving(read_slots_quietly(self.server,
                                                                         self.inventory)))
        rolled_back = (f"{self.tag} took traffic in {new}, then {failure.what} {after:.1f}s "
                       f"later ({failure.detail}); rolled back to {self.old_version} in {old}")
        if failure.failed:
            self.on_failure(rolled_back)
        # A role container that failed the version: its last output, not the web slot's,
        # read once the failed version is stopped (a stopped container keeps its logs).
        role_failed = failure.failed and self.roles is not None \
            and self.roles.troubled is not None
        output = self.clean_up_failed(new, with_output=failure.failed and not role_failed)
        troubled = self.roles.trouble_output() if self.roles is not None and role_failed \
            else None
        name, output = troubled or (self.inventory.container_name(new), output)
        views = read_slots_quietly(self.server, self.inventory)
        raise SwapRolledBack(
            rolled_back + (f"; the last output of {name}:\n{output}" if output else ""),
            # The server may no longer answer: HAProxy took the line, and the old slot was
            # up and running when it did.
            describe_serving(views) if views else f"{self.old_version} in {old}")

    def retire(self, plan: SwapPlan) -> None:
        """Take the idle slot out of rotation (its container goes when the new one starts)."""
        if plan.drain_idle:
            self.drain(plan.idle)  # only after an interrupted run: never cut its requests
        # Its fallback line too: one left ready by a run cut off in its window would send
        # requests to the version about to start here. The state read in the same round
        # trip goes to the file: one a cut run left ahead of a line that never ran is mended.
        answer = self.server.runtime_api(plan.idle_out_line)
        state_file.remember_slot_state(self.server, self.inventory, self.progress, answer)

    def start_new(self, slot: str, view: SlotView, start: StartCommand) -> str:
        """Start the new version while its slot is in maint: HAProxy sends it nothing, as the
        plan says (`start`: SwapPlan.start)."""
        name = self.inventory.container_name(slot)
        if start.restart:
            # A rollback to the version kept in this slot: no pull, no new container.
            self.progress(f"restarting the kept container {name} ({self.tag})")
        else:
            if view.container is not None:
                self.progress(f"replacing the old container of {slot}")
            write_env_file(self.server, self.inventory, slot, self.resolved_env(),
                           self.progress)
        # One round trip: what is left in the slot removed, the new container run (or the
        # kept one started), and inspected for what Docker made of it.
        started = self.server.run_chain(*start.chain)
        info = docker.parse_inspect(started.stdout[started.stdout.index("["):]).get(name)
        self.new_started_ns = info.started_ns if info else None
        if info is None or info.labels.get(docker.LABEL_PUBLISHED) != "loopback":
            raise SwapError(f"container {name} is not published on the server's loopback "
                            f"(port {self.inventory.slot_port(slot)})", "")
        # The slot's own port of the loopback (address_line).
        address, port = docker.LOOPBACK, self.inventory.slot_port(slot)
        self.server.runtime_api(address_line(self.inventory, slot, view))
        self.progress(f"started {name} ({self.tag}) at {address}:{port}")
        what = f"HAProxy to use {address}:{port} for {name}"
        wait_for(lambda: self.address(slot) == address, self.timeouts.healthy, what,
                 look=lambda: self.fail_if_container_died(slot, what))
        return address

    def can_restart(self, slot: str, view: SlotView) -> bool:
        """The slot keeps a stopped container of this very tag, made from the image the tag
        names on the server now, with the environment the inventory gives now."""
        return (keeps_stopped_container_of(self.server, self.inventory, view, self.tag)
                and has_env_file_of(self.server, self.inventory, slot, self.resolved_env()))

    def resolved_env(self) -> AppEnv:
        # Resolved here only for a caller that did not resolve it when the deploy started.
        return self.app_env or resolve_app_env(self.inventory, os.environ)

    def wait_healthy(self, slot: str, address: str) -> None:
        self.server.runtime_api(check_line(self.backend, slot))
        self.progress(f"waiting for HAProxy's health checks of {slot} "
                      f"(GET {self.inventory.healthcheck.path}, up to "
                      f"{self.timeouts.healthy:g}s)")
        last: list[ServerStat] = []

        def healthy() -> bool:
            stat = self.stat(slot)
            if not (stat.check_running and last):  # the error names a finished check's code
                last[:] = [stat]
            return stat.status == "DRAIN" and stat.check_passed

        what = f"{slot} to pass HAProxy's health checks"
        wait_for(healthy, self.timeouts.healthy, what,
                 look=lambda: self.fail_if_container_died(slot, what),
                 detail=lambda: f"last check: {last[0].check_summary}" if last else "")
        if self.address(slot) != address:
            raise SwapError(f"HAProxy's address for {slot} moved away from the new container "
                            f"({address}); not switching", "")
        self.progress(f"{slot} passed HAProxy's health checks")

    def drain(self, slot: str) -> None:
        self.set_state(slot, AdminState.DRAIN)
        started = time.monotonic()
        deadline = started + self.timeouts.drain
        while (sessions := self.stat(slot).sessions) > 0:
            checkpoint()
            if time.monotonic() > deadline:
                self.progress(f"{slot} still has {sessions} sessions after "
                              f"{self.timeouts.drain:g}s; stopping it anyway (the app gets "
                              f"SIGTERM and {self.timeouts.stop}s to finish them)")
                return
            time.sleep(POLL_INTERVAL)
        self.progress(f"{slot} drained in {time.monotonic() - started:.1f}s")


    def fail_if_container_died(self, slot: str, what: str) -> None:
        container = self.container(slot)
        if container is not None and container.running:
            return
        output = self.last_output(slot)
        status = f"exited with code {container.exit_code}" if container else "vanished"
        raise SwapError(f"the new container of {slot} {status} while waiting for {what}"
                        + (f"; its last output:\n{output}" if output else ""), "")
