"""The end of a swap on one server (part of slotswap.server.swap.SlotSwap): the check that the
new slot serves, the old slot's retirement once the new version had its full watch, and the
stop of a failed new container.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from slotswap.commands import docker
from slotswap.commands.runtime_api import AdminState
from slotswap.config.app_env import AppEnv
from slotswap.config.inventory import Inventory
from slotswap.config.timeouts import Timeouts
from slotswap.remote.protocol import ServerLike
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
    set_state: Callable[[str, AdminState], None]
    remember_slot_state: Callable[[], None]
    resolved_env: Callable[[], AppEnv]
    switch_back: Callable[..., None]

    def take_out_of_rotation(self, slot: str) -> None:
        self.server.runtime_api(out_of_rotation_line(self.backend, slot,
                                                     fallback=self.fallback))
        self.remember_slot_state()

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
        if failure is not None:
            stats = {slot: slot_view.stat for slot, slot_view in views.items()}
            self.switch_back(new, old, stats, started - self.switched_at, failure)
        return describe_serving(views)

    def contain_failure(self, slot: str) -> None:
        """The new slot never took traffic: keep it out, stop its container."""
        try:
            self.set_state(slot, AdminState.MAINT)
        finally:
            name = self.stop_container(slot, check=False)
            self.progress(f"stopped the new container {name}; the old version keeps serving")

    def last_output(self, slot: str) -> str:
        """The last lines the slot's container wrote (stdout and stderr), for an error; the
        app's secret values in them masked."""
        logs = self.server.run(docker.logs_tail(self.inventory.container_name(slot)),
                               check=False)
        return self.resolved_env().mask((logs.stdout + logs.stderr).strip())
