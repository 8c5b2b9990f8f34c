"""A server's role containers (the app's queue workers, schedulers) through one swap: the plan
of slotswap.server.role_plan made from what runs there, each step's command from
slotswap.server.role_steps (what the dry run prints), done here.

Its part in the swap (slotswap.server.swap.SlotSwap): once the web slot has switched, the
new version's role containers start and must pass their checks (`start`); in the watch
window they are looked at with the web slot (`trouble`); the old ones keep running until
the new version is proven, and are stopped with their role's stop signal and stop timeout
when the old web slot is (`retire`). When the version fails on the server, the new ones
stop (`undo`, with their stop timeout: a job they took is finished) and the old ones,
never stopped, run on. At no instant does a role that had a running container have none.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from slotswap.commands import docker
from slotswap.commands.role_containers import (
    CHECK_KILL_AFTER,
    exec_check,
    inspect_roles,
    stop_deadline,
)
from slotswap.config.app_env import AppEnv
from slotswap.config.inventory import Inventory
from slotswap.config.layout import role_env_file_path
from slotswap.config.roles import CommandCheck, RoleSettings, roles_on
from slotswap.core.interrupts import checkpoint
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import ConnectError, RemoteCommandError
from slotswap.server.role_plan import (
    RolePlan,
    Step,
    judge_running,
    plan_roles,
    role_trouble,
)
from slotswap.server.role_steps import (
    RolePlanLines,
    plan_lines,
    role_env_is_empty,
    role_named,
    role_targets,
    step_command,
    stop_commands,
)
from slotswap.server.slots import containers_inspected
from slotswap.server.swap_errors import SwapError

Progress = Callable[[str], None]
CHECK_POLL_INTERVAL = 0.5


class RoleCheckFailed(SwapError):
    """A new role container did not pass its check: the version fails on this server, its
    new role containers were stopped. `output`: that container's last lines."""

    def __init__(self, message: str, serving: str, output: str = "") -> None:
        super().__init__(message, serving)
        self.output = output


def role_containers_on(server: ServerLike, app: str) -> list[docker.ContainerInfo]:
    """Every role container of the app on the server (one round trip)."""
    answer = server.run(inspect_roles(app)).stdout.strip()
    return list(docker.parse_inspect(answer).values()) if answer else []


def env_file_text(inventory: Inventory, role: RoleSettings, env: AppEnv) -> str | None:
    """What the role's env file holds (None: no file, no variable at all)."""
    return None if role_env_is_empty(inventory, role) else env.text


@dataclass
class RoleRun:
    """The role containers of one server, moved to `tag` in `generation` along with its web
    slot. A server that runs no role and has no role container sends no command after the
    switch: with an inventory without roles, the swap reads the role containers before it
    (`found_before`), and those of roles gone (the whole section removed) stop as any role
    gone from the inventory does."""

    server: ServerLike
    inventory: Inventory  # with this login's folders
    tag: str
    generation: str
    app_env: AppEnv
    progress: Progress
    plan: RolePlan | None = None
    # New container -> its StartedAt and Docker's restart count as its check saw them (the
    # watch compares).
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The old ones were stopped (the version proven), or the new ones (it failed): once
    # one is done, the other never is.
    retired: bool = False
    undone: bool = False
    troubled: str | None = None  # the container the watch last found in trouble
    # The role containers, read before the switch (an inventory without roles).
    found_before: list[docker.ContainerInfo] | None = None

    @property
    def roles(self) -> tuple[RoleSettings, ...]:
        return roles_on(self.inventory.roles, self.server.host)

    def start(self, found: Sequence[docker.ContainerInfo] | None = None) -> None:
        """The new version's role containers started (or kept ones started again) and
        checked; the old ones still run. Raises RoleCheckFailed when a check fails or times
        out (and whatever cut the run): the caller sends the web traffic back first, then
        stops the new ones (undo); a server that no longer answers keeps them, and the next
        run's plan stops them (every state a cut leaves is one plan_roles takes). `found`:
        the role containers, when the caller has just read them."""
        if found is None:
            found = self.found_before
        if found is None:
            found = role_containers_on(self.server, self.inventory.app)
        if not self.roles and not found:
            return
        changed = self.write_env_files()
        self.plan = plan = self.plan_for(found, changed)
        if plan.unchanged:
            return
        for step in (*plan.remove, *plan.rename, *plan.start):
            checkpoint()
            self.server.run(self.command(step))
        self.check(plan.check)
        if plan.check:
            self.progress(f"role containers of {self.tag} passed their checks: "
                          + ", ".join(step.container for step in plan.check)
                          + (f"; the old ones ({', '.join(s.container for s in plan.stop)}) "
                             "run until the version is proven" if plan.stop else ""))

    def command(self, step: Step) -> list[str]:
        return step_command(self.inventory, step, tag=self.tag, version=self.tag,
                            generation=self.generation)

    def write_env_files(self) -> set[str]:
        """Each role's env file of this generation (0600), written when it differs; returns
        the roles whose file changed (their kept containers are made again)."""
        changed = self.env_files_changed()
        for role in self.roles:
            env = self.app_env.of_role(role.name)
            wanted = env_file_text(self.inventory, role, env)
            if role.name not in changed:
                continue
            path = role_env_file_path(self.inventory, role.name, self.generation)
            if wanted is None:  # no variable any more: the file goes, as a slot's does
                self.server.run(["rm", "-f", "--", path])
            else:
                self.server.write_private_file(path, wanted)
                self.progress(f"wrote {path} (mode 0600): {env.masked()}")
        return changed

    def env_files_changed(self) -> set[str]:
        """The roles whose env file of this generation is not what the run would write."""
        return {role.name for role in self.roles
                if self.server.read_file(role_env_file_path(
                    self.inventory, role.name, self.generation)) != env_file_text(
                    self.inventory, role, self.app_env.of_role(role.name))}

    def planned(self) -> RolePlanLines | None:
        """What start, retire and undo would do, read now (the dry run prints it); None
        when the server runs no role and has no role container."""
        found = role_containers_on(self.server, self.inventory.app)
        if not self.roles and not found:
            return None
        changed = self.env_files_changed()
        plan = self.plan_for(found, changed)
        env_files = [(role_env_file_path(self.inventory, role.name, self.generation),
                      self.app_env.of_role(role.name).masked())
                     for role in self.roles if role.name in changed
                     and not role_env_is_empty(self.inventory, role)]
        return plan_lines(self.inventory, plan, tag=self.tag, env_files=env_files)

    def unchanged(self, found: Sequence[docker.ContainerInfo],
                  image_id: str | None = None) -> bool:
        """The server runs this version's role containers as the run would leave them (read
        only): what a deploy that leaves a server alone (`unchanged`) asks too."""
        return self.plan_for(found, self.env_files_changed(), image_id).unchanged

    def plan_for(self, found: Sequence[docker.ContainerInfo], env_changed: set[str],
                 image_id: str | None = None) -> RolePlan:
        """role_plan.plan_roles from what was read, with the image ID the tag names on the
        server now (a container of a tag pushed again since is made again), read here
        unless the caller read it (and not at all when no role runs here: only containers
        of roles gone, which stop)."""
        if image_id is None and self.roles:
            image = self.server.run(docker.image_id(self.inventory.image_ref(self.tag)),
                                    check=False)
            image_id = image.stdout.strip() if image.ok and image.stdout.strip() else None
        return plan_roles(found, app=self.inventory.app, version=self.tag,
                          generation=self.generation,
                          targets=role_targets(self.inventory, self.server.host, env_changed,
                                               image_id))

    def check(self, steps: Sequence[Step]) -> None:
        """Every new container passes its role's check before the deadline of the longest
        one; a container that dies or restarts fails at once."""
        pending = {step.container: role_named(self.inventory, step.role) for step in steps}
        first: dict[str, docker.ContainerInfo] = {}
        seen_at: dict[str, float] = {}
        started = time.monotonic()
        while pending:
            found = self.inspect(list(pending))
            for name, role in list(pending.items()):
                now = time.monotonic()
                info = found.get(name)
                if info is not None and name not in first and info.running:
                    first[name], seen_at[name] = info, now
                left = started + check_seconds(role) - now
                verdict = self.verdict(name, role, info, first.get(name), now - seen_at.get(
                    name, now), left)
                now = time.monotonic()
                if verdict == "passed":
                    self.seen[name] = (first[name].started_ns, first[name].restart_count)
                    del pending[name]
                elif verdict == "failed" or now - started > check_seconds(role):
                    raise RoleCheckFailed(self.check_failure(name, role, info, verdict), "",
                                          self.last_output(name, role))
            if pending:
                checkpoint()
                time.sleep(CHECK_POLL_INTERVAL)

    def verdict(self, name: str, role: RoleSettings, info: docker.ContainerInfo | None,
                first: docker.ContainerInfo | None, watched: float, left: float) -> str:
        """passed, waiting or failed; `left`: the seconds its check has left (a check
        command's try is bounded by them)."""
        if first is not None and info is not None and info.started_ns != first.started_ns:
            return "failed"  # Docker started it again: it crashed
        # Restarts before the first look that found it running (one running for days
        # since a restart long ago) are no crash now; one not yet running had none.
        restarts = first.restart_count if first is not None else 0
        if isinstance(role.check, CommandCheck):
            if info is None or not info.running or info.restart_count > restarts:
                return "failed"
            seconds = max(1.0, left)
            tried = self.server.run(
                exec_check(name, role.check.cmd, seconds), check=False,
                timeout=seconds + CHECK_KILL_AFTER + 10)
            return "passed" if tried.ok else "waiting"
        if first is None:
            return "failed" if info is None or info.restart_count > 0 else "waiting"
        # Seconds run, by this machine's clock from the first look that found it running:
        # never more than it really ran (no clock of the server compared with ours).
        return judge_running(info, seconds=role.check.running,
                             now_ns=first.started_ns + int(watched * 1e9), restarts=restarts)

    def check_failure(self, name: str, role: RoleSettings, info: docker.ContainerInfo | None,
                      verdict: str) -> str:
        what = (f"its check `{' '.join(role.check.cmd)}` did not pass within "
                f"{role.check.timeout:g}s" if isinstance(role.check, CommandCheck)
                else f"it did not run {role.check.running:g}s without a restart")
        if verdict == "failed":
            what = role_trouble(info, -1) or "it failed"
        return f"role {role.name}: {name} ({self.tag}): {what}"

    def last_output(self, name: str, role: RoleSettings) -> str:
        """The container's last lines, its role's secret values masked ("" when they cannot
        be read)."""
        try:
            output = self.server.run(docker.logs_tail(name), check=False)
        except Exception:
            return ""
        if not output.ok:  # Docker's own error (a container gone) is no output of it
            return ""
        return self.app_env.of_role(role.name).mask((output.stdout + output.stderr).strip())

    def inspect(self, names: Sequence[str]) -> dict[str, docker.ContainerInfo]:
        """The containers that exist of `names`; a Docker that does not answer raises (it
        is no container gone)."""
        argv = docker.inspect_containers(*names)
        return containers_inspected(self.server, shlex.join(argv),
                                    self.server.run(argv, check=False))

    def trouble(self) -> str | None:
        """In the watch window: why a new role container fails the version (gone, stopped,
        restarted since its check), or None."""
        if not self.seen:
            return None
        found = self.inspect(list(self.seen))
        for name, (started_ns, restarts) in self.seen.items():
            problem = role_trouble(found.get(name), started_ns, restarts)
            if problem is not None:
                self.troubled = name
                return f"role container {name}: {problem}"
        return None

    def trouble_output(self) -> tuple[str, str] | None:
        """The container the watch found in trouble and its last lines (its role's secret
        values masked), for the error; None when none was, or they cannot be read."""
        step = next((step for step in (self.plan.check if self.plan else ())
                     if step.container == self.troubled), None)
        role = next((role for role in self.roles if step and role.name == step.role), None)
        output = self.last_output(step.container, role) if step and role else ""
        return (step.container, output) if step and output else None

    def retire(self) -> None:
        """The version is proven: the old role containers get their stop signal and their
        role's stop timeout (kept, stopped, for a rollback)."""
        if self.plan is None or self.retired or self.undone:
            return
        self.stop_all(self.plan.stop, "stopped the old role containers")
        self.retired = True

    def undo(self) -> None:
        """The version failed here: its role containers stop (RolePlan.undo: their job
        finished), kept for `logs`; the old ones never stopped."""
        if self.plan is None or self.retired or self.undone:
            return
        self.stop_all(self.plan.undo(), "stopped the new role containers")
        self.undone = True

    def stop_all(self, steps: Sequence[Step], done: str) -> None:
        """One `docker stop` per stop timeout (Docker stops the containers of one command in
        parallel), its deadline the timeout and a margin (a role gone from the inventory:
        the container's own timeout, at most MAX_STOP_TIMEOUT); sent again once over a new
        connection when the connection was lost."""
        for argv, timeout in stop_commands(steps):
            deadline = stop_deadline(timeout)
            try:
                result = self.server.run(argv, check=False, timeout=deadline)
            except ConnectError:  # never ran, or did: a stop sent again is as one
                result = self.server.run(argv, check=False, timeout=deadline)
            if not result.ok and not docker.only_missing_containers(result.stderr):
                raise RemoteCommandError(self.server.name, shlex.join(argv), result.exit_code,
                                         result.stderr)
        if steps:
            self.progress(f"{done}: {', '.join(step.container for step in steps)}")


def check_seconds(role: RoleSettings) -> float:
    """How long a new container of `role` has to pass its check."""
    if isinstance(role.check, CommandCheck):
        return role.check.timeout
    return role.check.running + 30.0
