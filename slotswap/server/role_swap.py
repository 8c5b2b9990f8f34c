"""The swap of a worker-only server (`hosts[].web: false`: no web slots, no HAProxy): its role
containers moved to the new version with the same steps and the same watch window as a web
server's, through the same interface as slotswap.server.swap.SlotSwap (what
slotswap.fleet.server_run uses of a swap).

The new version's role containers start beside the old ones (in the generation
role_plan.worker_only_generation picks) and must pass their checks; the old ones run on
until the window closes, then get their stop signal and stop timeout. A new container that
stops or restarts in the window, a rollout that goes back (`--on-failure=rollback`), or an
interrupt before the version had its full watch stops the new ones: the old ones, never
stopped, run on. What a worker-only server "serves" is the version of its running role
containers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands.runtime_api import Traffic
from slotswap.config.app_env import AppEnv, resolve_app_env
from slotswap.config.inventory import Inventory
from slotswap.core.interrupts import checkpoint
from slotswap.remote.protocol import ServerLike
from slotswap.server.role_plan import other_generation, worker_only_generation
from slotswap.server.role_run import RoleCheckFailed, RoleRun, role_containers_on
from slotswap.server.swap_errors import SwapError, SwapRolledBack, SwapStopped

Progress = Callable[[str], None]
WATCH_INTERVAL = 1.0  # one `docker inspect` of the new role containers a second


def running_versions(containers: Iterable[docker.ContainerInfo]) -> list[str]:
    return sorted({info.version or "?" for info in containers if info.running})


def describe_roles(containers: Iterable[docker.ContainerInfo]) -> str:
    """Pure: what a worker-only server runs, e.g. `v2 (worker x2, mailer x1)`."""
    counts: dict[str, dict[str, int]] = {}
    for info in containers:
        if info.running:
            of_version = counts.setdefault(info.version or "?", {})
            role = info.labels.get(docker.LABEL_ROLE, "?")
            of_version[role] = of_version.get(role, 0) + 1
    if not counts:
        return "no role container running"
    return "; ".join(f"{version} ({', '.join(f'{role} x{n}' for role, n in roles.items())})"
                     for version, roles in sorted(counts.items()))


@dataclass
class RoleOnlySwap:
    """One worker-only server's swap. Raises SwapError (its `serving`: what runs now)."""

    server: ServerLike
    inventory: Inventory
    tag: str
    progress: Progress
    app_env: AppEnv | None = None

    def __post_init__(self) -> None:
        self.old_version: str | None = None
        self.switch_seconds: float | None = None
        self.switched_at = 0.0
        self.watch_from = 0.0  # the window counts from here (as SlotSwap's)
        self.new_slot = ""  # the generation the version goes into
        self.serving = ""
        self.window_traffic: Traffic | None = None  # no HAProxy: no traffic counted
        self.images_in_use: set[str] = set()
        self.on_failure: Callable[[str], None] = lambda reason: None
        # The new version's containers were stopped again: the old ones run as before.
        self.traffic_back = False
        self.back_unsure = False
        self.roles: RoleRun | None = None

    def run(self) -> tuple[str | None, str]:
        if self.switch_in():
            self.watch_and_retire(lambda: self.switched_at + self.inventory.timeouts.watch)
        return self.old_version, self.serving

    def switch_in(self, stop_requested: Callable[[], str | None] = lambda: None) -> bool:
        """The new role containers started and checked beside the old ones. True when old
        ones run on, for watch_and_retire; False when the swap is over."""
        started = time.monotonic()
        self.server.timings.begin("read slots")  # the role containers: a web server's step
        found = role_containers_on(self.server, self.inventory.app)
        old = running_versions(found)
        self.old_version = old[0] if len(old) == 1 else None  # several: not one version
        generation = self.new_slot = worker_only_generation(
            found, app=self.inventory.app, version=self.tag)
        self.progress(f"role containers: {describe_roles(found)}; {self.tag} goes into "
                      f"{generation}")
        checkpoint()
        if old and (reason := stop_requested()):
            raise SwapStopped(f"not switched to {self.tag}: {reason}", describe_roles(found))
        self.roles = RoleRun(self.server, self.server.with_folders(self.inventory), self.tag,
                             generation, self.app_env or resolve_app_env(self.inventory,
                                                                         os.environ),
                             self.progress)
        self.server.timings.begin("roles")
        try:
            self.roles.start(found)
            if self.roles.plan is not None and self.roles.plan.unchanged and found:
                # They run as this run would leave them: a run asked for all the same
                # (--force) makes new ones in the other generation, as a web host's new slot.
                generation = self.new_slot = other_generation(generation)
                self.progress(f"the role containers run {self.tag} already; new ones go into "
                              f"{generation}")
                self.roles = RoleRun(self.server, self.roles.inventory, self.tag, generation,
                                     self.roles.app_env, self.progress)
                self.roles.start(found)
        except BaseException as error:
            undone = self.undo_quietly()  # the old ones run on
            if not isinstance(error, Exception):
                raise
            output = error.output if isinstance(error, RoleCheckFailed) else ""
            message = ((str(error) if isinstance(error, SwapError)
                        else f"{type(error).__name__}: {error}")
                       + (f"; the old workers ({', '.join(old)}) run on" if undone and old
                          else "")
                       + (f"; the last output of the role container:\n{output}"
                          if output else ""))
            # The new workers ran beside the old ones and stopped again: rolled back.
            kind = SwapRolledBack if undone and old else SwapError
            raise kind(message, self.describe_now()) from error
        self.switched_at = self.watch_from = time.monotonic()
        self.switch_seconds = self.switched_at - started
        if self.roles.plan is None or not self.roles.plan.stop:
            self.serving = self.describe_now()
            return False
        return True

    def watch_and_retire(self, window_closes: Callable[[], float | None],
                         revert: Callable[[], str | None] = lambda: None) -> str:
        """Until the window closes: the new containers looked at each second; then the old
        ones stopped. Raises SwapRolledBack when the new ones failed or the rollout goes
        back (their containers stopped, the old ones running on)."""
        assert self.roles is not None
        self.server.timings.begin("watch")
        try:
            while True:
                checkpoint()
                trouble = self.roles.trouble()
                reason = trouble or revert()
                if reason:
                    self.go_back(reason, failed=trouble is not None)
                closes = window_closes()
                if closes is not None and time.monotonic() >= closes:
                    break
                time.sleep(WATCH_INTERVAL)
        except SwapError:
            raise
        except BaseException:
            # Interrupted or cut off in the window: a version not watched for its whole
            # window (or failing at a last look) is not proven: its containers stop, the old
            # ones run on; a proven one stays alone.
            watched = time.monotonic() - self.watch_from
            proven = watched >= self.inventory.timeouts.watch
            if not proven or self.trouble_quietly():
                self.traffic_back = self.undo_quietly()
            else:
                with contextlib.suppress(Exception):
                    self.roles.retire()
            raise
        self.server.timings.begin("verify, stop old")
        try:
            self.roles.retire()
        except Exception as error:  # proven: the new ones serve on; said, stopped next time
            self.progress(f"WARNING: could not stop the old role containers: {error}; the "
                          "next deploy stops them")
        self.serving = self.describe_now()
        return self.serving

    def go_back(self, reason: str, *, failed: bool) -> None:
        assert self.roles is not None
        after = time.monotonic() - self.switched_at
        what = (f"{self.tag} ran {after:.1f}s, then {reason}; its role containers stopped, "
                f"{self.old_version or 'the old ones'} run on")
        if failed:
            self.on_failure(what)
        self.traffic_back = self.undo_quietly()
        if not self.traffic_back:
            self.back_unsure = True  # both versions run: neither rolled back nor left switched
            raise SwapError(f"{self.tag} ran {after:.1f}s, then {reason}; its role containers "
                            "could not be stopped: the next run stops them",
                            self.describe_now())
        self.progress(("FAILED: " if failed else "") + what)
        troubled = self.roles.trouble_output() if failed else None
        raise SwapRolledBack(what + (f"; the last output of {troubled[0]}:\n{troubled[1]}"
                                     if troubled else ""), self.describe_now())

    def undo_quietly(self) -> bool:
        """The new role containers stopped (RoleRun.undo); False, and said, when the server
        did not let them be (the next run's plan stops them)."""
        assert self.roles is not None
        try:
            self.roles.undo()
        except Exception as error:
            self.progress(f"could not stop the new role containers: {error}; the next run "
                          "stops them")
            return False
        return True

    def trouble_quietly(self) -> str | None:
        assert self.roles is not None
        try:
            return self.roles.trouble()
        except Exception:
            return None

    def describe_now(self) -> str:
        try:
            found = role_containers_on(self.server, self.inventory.app)
        except Exception as error:
            return f"unknown ({type(error).__name__}: {error})"
        self.images_in_use = {info.image_id for info in found}
        return describe_roles(found)


def role_serving(server: ServerLike, inventory: Inventory) -> tuple[str | None, str]:
    """A worker-only server: the one version its role containers run (None: none, or
    several) and what runs, described."""
    versions, described = role_versions(server, inventory)
    return (versions[0] if len(versions) == 1 else None), described


def role_versions(server: ServerLike, inventory: Inventory) -> tuple[list[str], str]:
    """A worker-only server: every version its running role containers run, and what
    runs, described."""
    found = role_containers_on(server, inventory.app)
    return running_versions(found), describe_roles(found)


def roles_already_run(server: ServerLike, inventory: Inventory, tag: str, app_env: AppEnv,
                      generation: str | None = None, image_id: str | None = None) -> bool:
    """The server runs `tag`'s role containers as a deploy would leave them (read only); on
    a web server `generation` is its live slot, on a worker-only one where they are;
    `image_id`: the one the tag names there, when the caller read it."""
    if not inventory.roles:
        return True  # a web server's caller reads its role containers (already_serving)
    found = role_containers_on(server, inventory.app)
    if generation is None:
        generation = worker_only_generation(found, app=inventory.app, version=tag)
    run = RoleRun(server, server.with_folders(inventory), tag, generation, app_env,
                  lambda message: None)
    return run.unchanged(found, image_id)
