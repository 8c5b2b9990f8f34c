"""The end of a swap on one server (part of slotswap.server.swap.SlotSwap): the check that the
new slot serves, the old slot's retirement once the new version had its full watch, and the
stop of a failed new container. From the watch's end on, the new version is proven: a server
that stops answering here (a lost connection, a deadline, a Docker engine that no longer
answers) never brings the old version back into rotation, and what cannot be done is said
and left to the next deploy.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from slotswap.commands import docker
from slotswap.commands.runtime_api import AdminState, ServerStat
from slotswap.config.app_env import AppEnv
from slotswap.config.inventory import Inventory
from slotswap.config.timeouts import Timeouts
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandDeadlineError
from slotswap.server.role_run import RoleRun
from slotswap.server.slots import describe_serving, read_slots
from slotswap.server.swap_errors import SwapError
from slotswap.server.swap_plan import (
    WatchFailure,
    container_failure,
    out_of_rotation_line,
    watch_failure,
)


class RetireSteps:
    """SlotSwap's steps that stop a slot. What they use of the swap, which SlotSwap has."""

    server: ServerLike
    inventory: Inventory
    backend: str
    timeouts: Timeouts
    tag: str
    old_version: str | None
    progress: Callable[[str], None]
    fallback: bool
    switched_at: float
    new_started_ns: int | None
    images_in_use: set[str]
    stats: Callable[[], dict[str, ServerStat]]
    set_state: Callable[[str, AdminState], None]
    send_settled: Callable[[str, str], bool]
    save_state: Callable[[], None]
    resolved_env: Callable[[], AppEnv]
    failure: Callable[[BaseException], BaseException]
    switch_back: Callable[..., None]
    roles: RoleRun | None
    roles_failing_now: Callable[[], WatchFailure | None]

    def retire_old(self, new: str, old: str) -> str:
        """After the new version's full watch: the check that it serves (else the traffic
        goes back: switch_back raises), then the old slot out of rotation and its container
        stopped; returns what serves. When the check cannot read the server, HAProxy's view
        decides (serving_as_haproxy_sees_it). An old container that cannot be stopped is out
        of rotation: said, and the next deploy removes it. Raises SwapError when the old
        slot cannot be taken out (it stays as the window left it: its fallback line takes
        only what the new slot cannot)."""
        try:
            serving = self.verify_before_retiring(new, old)
            docker_answers = True
        except SwapError:
            raise
        except Exception as error:
            serving = self.serving_as_haproxy_sees_it(new, old, error)
            docker_answers = not isinstance(error, CommandDeadlineError)
        if not self.take_out_of_rotation(old):
            raise self.failure(SwapError(
                f"{new} ({self.tag}) had its full watch and serves, but {old} "
                f"({self.old_version}) could not be taken out of rotation: its fallback line "
                f"may still take what {new} cannot; the next deploy takes it out", ""))
        name = self.inventory.container_name(old)
        if not docker_answers:
            roles = self.roles is not None and self.roles.plan is not None \
                and bool(self.roles.plan.stop)
            self.progress(f"WARNING: {name} ({self.old_version}) is out of rotation but still "
                          "runs (Docker did not answer)" + (
                              ", and so do the old role containers; the next deploy removes "
                              "it and stops them" if roles else "; the next deploy removes it"))
            return serving
        try:
            self.progress(f"stopped {self.stop_container(old)}")
        except Exception as error:
            self.progress(f"WARNING: could not stop {name}: {error}; it is out of rotation, "
                          "and the next deploy removes it")
        self.retire_roles()
        return serving

    def retire_roles(self) -> None:
        """The old role containers stop once the new version is proven; one that cannot be
        stopped is said, and the next deploy stops it."""
        if self.roles is None:
            return
        try:
            self.roles.retire()
        except Exception as error:
            self.progress(f"WARNING: could not stop the old role containers: {error}; the "
                          "next deploy stops them")

    def serving_as_haproxy_sees_it(self, new: str, old: str, error: Exception) -> str:
        """The check before retiring could not read the server (`error`). HAProxy's view of
        the new slot decides, as in the watch: passing, it serves (its container is the one
        the watch saw; Docker is not asked again), and that is what is returned; else the
        traffic goes back (switch_back raises). Raises SwapError when HAProxy does not answer
        either: the slots stay as the window left them."""
        self.progress(f"could not check {new} ({self.tag}) after its watch ({error}); "
                      "HAProxy's view decides")
        try:
            stats = self.stats()
        except Exception as again:
            raise self.failure(SwapError(
                f"{new} ({self.tag}) had its full watch, then the server stopped answering "
                f"({again}); {old} ({self.old_version}) is left as the window left it (its "
                f"fallback line takes only what {new} cannot); the next deploy takes it out",
                "")) from again
        failure = watch_failure(stats[new]) or self.roles_failing_now()
        if failure is not None:
            self.switch_back(new, old, stats, time.monotonic() - self.switched_at, failure)
        return f"{self.tag} in {new} (as HAProxy sees it: {stats[new].status})"

    def take_out_of_rotation(self, slot: str) -> bool:
        """The slot and its fallback line out of rotation, the line sent again once when its
        answer is lost (send_settled); True once HAProxy took it, its state then kept for a
        restarted HAProxy. False (and said) when the server did not answer twice."""
        if not self.send_settled(out_of_rotation_line(self.backend, slot,
                                                      fallback=self.fallback),
                                 f"could not take {slot} out of rotation"):
            return False
        self.save_state()
        return True

    def clean_up_failed(self, slot: str, *, with_output: bool) -> str:
        """After the traffic went back to the old slot: the failed new container's last
        output (with_output) and its stop. The swap's outcome is settled by then: a server
        that stops answering here (a deadline, a lost connection) is said in one line, and
        the container, out of rotation, is left for the next deploy to remove. Returns the
        output read."""
        name = self.inventory.container_name(slot)
        output = ""
        try:
            output = self.last_output(slot) if with_output else ""
            self.progress(f"stopped the new container {self.stop_container(slot, check=False)}")
        except Exception as error:
            self.progress(f"could not stop {name}: {error}; it gets no traffic, and the "
                          "next deploy removes it")
        try:
            if self.roles is not None:
                self.roles.undo()
        except Exception as error:
            self.progress(f"could not stop the new role containers: {error}; the next "
                          "deploy stops them")
        return output

    def stop_container(self, slot: str, *, check: bool = True) -> str:
        """`docker stop` of the slot's container; returns its name. Kept (stopped): its logs
        stay readable; the next deploy into this slot removes it."""
        name = self.inventory.container_name(slot)
        self.server.run(docker.stop(name, self.timeouts.stop), check=check,
                        timeout=self.timeouts.stop + 30)
        return name

    def verify(self, slot: str) -> str:
        views = read_slots(self.server, self.inventory)
        self.images_in_use = {view.container.image_id for view in views.values()
                              if view.container is not None}
        view = views[slot]
        if not view.serving or view.version != self.tag:
            raise SwapError(f"after the switch {slot} is not serving {self.tag}: "
                            f"{view.describe()}", describe_serving(views))
        return describe_serving(views)

    def verify_before_retiring(self, new: str, old: str) -> str:
        """After the watch, before the old slot goes: the new slot must serve the new version
        from the container the swap started; if not, the traffic goes back (switch_back)."""
        started = time.monotonic()
        views = read_slots(self.server, self.inventory)
        self.images_in_use = {view.container.image_id for view in views.values()
                              if view.container is not None}
        view = views[new]
        failure = (watch_failure(view.stat)
                   or container_failure(view.container, self.new_started_ns))
        if failure is None and view.version != self.tag:
            failure = WatchFailure("no longer held it", view.describe())
        if failure is None and self.roles is not None and (why := self.roles.trouble()):
            failure = WatchFailure("lost a role container", why)
        if failure is not None:
            stats = {slot: slot_view.stat for slot, slot_view in views.items()}
            self.switch_back(new, old, stats, started - self.switched_at, failure)
        return describe_serving(views)

    def contain_failure(self, slot: str) -> None:
        """The new slot never took traffic: keep it out (and the state file saying so: it may
        have been written ahead of a switch that did not happen), stop its container."""
        try:
            self.set_state(slot, AdminState.MAINT)
            self.save_state()
        finally:
            name = self.stop_container(slot, check=False)
            self.progress(f"stopped the new container {name}; the old version keeps serving")

    def last_output(self, slot: str) -> str:
        """The last lines the slot's container wrote (stdout and stderr), for an error; the
        app's secret values in them masked."""
        logs = self.server.run(docker.logs_tail(self.inventory.container_name(slot)),
                               check=False)
        return self.resolved_env().mask((logs.stdout + logs.stderr).strip())
