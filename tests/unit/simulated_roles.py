"""The simulated Docker engine's side for role containers (the app's workers: slotswap/
commands/role_containers.py, slotswap/server/role_steps.py), a part of SimulatedServer:

- a worker's job in progress (`Container.busy_until`, or every worker busy back to back with
  jobs of `job_seconds`): `docker stop` waits for it, at most the stop timeout (`--time T`,
  else the container's own), then Docker kills it (exit 137, the job is in `jobs_cut`);
  several containers of one `docker stop` stop side by side. A stop that outlasts the
  call's deadline goes on (Docker does not cancel it): the container exits when its job ends;
- its check (`timeout --kill-after=K S docker exec NAME CMD...`): `role_checks` says per
  container name, else per version, "pass" (the default), "fail" (exit 1) or "hang"
  (`timeout` ends it after S seconds: 124); Docker's error when it does not run;
- a crashing version (`crashes_after`: seconds after each start): the worker exits (code 1)
  and Docker starts it again after its restart delay (100 ms, doubled at each crash, at
  most a minute, back to 100 ms after 10 s of running): RestartCount + 1, a new StartedAt;
- `sh -c INSPECT_ROLES_SCRIPT sh APP`: `docker container inspect` of every container of the
  app with a generation label, newest first (as `docker ps` lists them); nothing when none;
  `sh -c INSPECT_WITH_ROLES_SCRIPT sh APP NAME...`: one `docker container inspect` of the
  names and those containers;
- an engine restart: containers Docker's restart policy brings back start again (RestartCount
  0, as the daemon's restore starts them); a worker's job in progress is cut.
"""

from __future__ import annotations

import json

from slotswap.commands import docker
from slotswap.commands.role_containers import INSPECT_ROLES_SCRIPT, INSPECT_WITH_ROLES_SCRIPT
from slotswap.remote.server import CommandResult
from tests.unit.simulated_docker import Container, DockerEngine, inspect_item
from tests.unit.simulated_haproxy import UnknownCommand

CHECK_OUTCOMES = ("pass", "fail", "hang")
# Docker's restart manager (moby restartmanager): the first delay, the longest, and how long
# a container must have run for the delay to start again from the first.
RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 60.0
RAN_LONG_ENOUGH = 10.0
EXIT_STOPPED, EXIT_KILLED, EXIT_CRASHED = 143, 137, 1


def is_role_container(container: Container) -> bool:
    return docker.LABEL_GENERATION in container.labels


def is_exec_check(argv: list[str]) -> bool:
    """A role's check: `docker exec`, bounded on the server by coreutils' `timeout`."""
    return argv[:1] == ["timeout"] and argv[3:5] == ["docker", "exec"]


class RoleEngine(DockerEngine):
    """Role containers' commands and faults on the engine of a SimulatedServer."""

    # Set by SimulatedServer.__init__ (they are per server, copied by its clone).
    role_checks: dict[str, str]  # a container's name or a version -> CHECK_OUTCOMES
    crashes_after: dict[str, float]  # version -> seconds after each start its workers crash
    job_seconds: float | None  # every worker always holds a job of that length
    jobs_cut: list[str]  # workers whose job in progress was cut (killed, removed, crashed)
    frozen: bool  # the engine answers nothing (SimulatedServer's fault)
    # The deadline of the call in hand, and whether its command went on past it (a stop
    # waiting for a long job): SimulatedServer.run then raises the deadline's error.
    call_deadline = float("inf")
    overran_deadline = False

    # -- jobs ---------------------------------------------------------------------------
    def give_job(self, name: str, seconds: float) -> None:
        """The worker `name` takes a job that takes `seconds` from now."""
        self.containers[name].busy_until = self.clock.now + seconds

    def job_left(self, container: Container) -> float:
        """Seconds until the job the worker `container` holds now ends (0: none; a slot or
        HAProxy holds no job: SIGTERM ends them at once)."""
        if not (container.running and is_role_container(container)) \
                or container.restarting_until is not None:
            return 0.0
        if container.stopping_until is not None:
            return container.stopping_until - self.clock.now
        left = 0.0
        if container.busy_until is not None:
            left = max(0.0, container.busy_until - self.clock.now)
        if self.job_seconds:
            ran = self.clock.now - container.started_at
            left = max(left, self.job_seconds - ran % self.job_seconds)
        return left

    def cut_job(self, container: Container) -> None:
        if self.job_left(container) > 0:
            self.jobs_cut.append(container.name)
        container.busy_until = None

    # -- docker stop, rm --force ------------------------------------------------------
    def stop(self, names: list[str], seconds: int | None) -> CommandResult:
        """Each container gets its stop signal at once and `seconds` (else its own stop
        timeout) to exit; the command returns once the last has exited."""
        out, errors, longest = "", "", 0.0
        for name in names:
            container = self.containers.get(name)
            if container is None:
                errors += f"Error response from daemon: No such container: {name}\n"
                continue
            out += f"{name}\n"
            container.stopped_by_user = True
            if not container.running:
                continue
            if container.restarting_until is not None:  # between two crashes: no process
                container.running, container.restarting_until = False, None
                continue
            grace = container.stop_timeout if seconds is None else seconds
            left = self.job_left(container)
            if left > grace:
                self.cut_job(container)
            container.stopping_until = self.clock.now + min(left, grace)
            container.stop_exit = EXIT_KILLED if left > grace else EXIT_STOPPED
            container.busy_until = None
            longest = max(longest, min(left, grace))
        if longest > self.call_deadline:  # the kit stops waiting; Docker goes on
            self.clock.advance(self.call_deadline)
            self.overran_deadline = True
        else:
            self.clock.advance(longest)
        self.settle()
        return CommandResult(out, errors, 1 if errors else 0)

    def remove(self, names: list[str]) -> CommandResult:
        for name in names:
            container = self.containers.pop(name, None)
            if container is not None:
                self.cut_job(container)
        return CommandResult("".join(f"{name}\n" for name in names), "", 0)

    # -- a role's check ---------------------------------------------------------------
    def exec_check(self, argv: list[str]) -> CommandResult:
        """`timeout --kill-after=K S docker exec NAME CMD...` (role_containers.exec_check)."""
        if not (argv[1].startswith("--kill-after=") and argv[3:5] == ["docker", "exec"]
                and len(argv) > 6 and not argv[5].startswith("-")):
            raise UnknownCommand(f"command {argv}")
        seconds, name = float(argv[2]), argv[5]
        if self.frozen:  # the docker client hangs until `timeout` ends it
            self.clock.advance(seconds)
            return CommandResult("", "", 124)
        self.settle()
        container = self.containers.get(name)
        if container is None:
            return CommandResult("", f"Error response from daemon: No such container: {name}\n",
                                 1)
        if not container.running:
            return CommandResult("", f"Error response from daemon: container "
                                 f"{container.serial:064x} is not running\n", 1)
        if container.restarting_until is not None:
            return CommandResult("", f"Error response from daemon: container "
                                 f"{container.serial:064x} is restarting, wait until the "
                                 "container is running\n", 1)
        outcome = self.role_checks.get(name, self.role_checks.get(container.version or "",
                                                                  "pass"))
        if outcome not in CHECK_OUTCOMES:
            raise ValueError(f"role_checks: {outcome!r} is not one of {CHECK_OUTCOMES}")
        if outcome == "hang":
            self.clock.advance(seconds)
            return CommandResult("", "", 124)
        return CommandResult("", "", 0 if outcome == "pass" else 1)

    # -- docker inspect of them all ---------------------------------------------------
    def role_containers_of(self, app: str) -> list[Container]:
        """The app's role containers, newest first (as `docker ps` lists them)."""
        return sorted((c for c in self.containers.values()
                       if c.labels.get(docker.LABEL_APP) == app and is_role_container(c)),
                      key=lambda c: c.serial, reverse=True)

    def inspect_with_roles(self, argv: list[str]) -> CommandResult:
        """`sh -c INSPECT_WITH_ROLES_SCRIPT sh APP NAME...` (role_containers.inspect_with_roles)."""
        if argv[2] != INSPECT_WITH_ROLES_SCRIPT or len(argv) < 5:
            raise UnknownCommand(f"a script that runs docker: {argv}")
        self.settle()
        return self.inspect([*argv[5:], *(c.name for c in self.role_containers_of(argv[4]))])

    def inspect_roles(self, argv: list[str]) -> CommandResult:
        """`sh -c INSPECT_ROLES_SCRIPT sh APP` (role_containers.inspect_roles)."""
        if argv[2] != INSPECT_ROLES_SCRIPT or len(argv) != 5:
            raise UnknownCommand(f"a script that runs docker: {argv}")
        self.settle()
        found = self.role_containers_of(argv[4])
        if not found:  # xargs -r: no `docker container inspect` at all
            return CommandResult("", "", 0)
        return CommandResult(json.dumps([inspect_item(c, self.wall) for c in found]) + "\n",
                             "", 0)

    # -- what happens by itself -------------------------------------------------------
    def settle(self) -> None:
        super().settle()
        for container in self.containers.values():
            seconds = self.crashes_after.get(container.version or "")
            if seconds is not None and is_role_container(container):
                self.crash_and_restart(container, seconds)

    def crash_and_restart(self, container: Container, seconds: float) -> None:
        """Every crash of a running worker until now, each followed by Docker's restart
        after its delay (the container restarting meanwhile)."""
        now = self.clock.now
        while container.running and container.stopping_until is None:
            if container.restarting_until is not None:
                if container.restarting_until > now:
                    return
                container.started_at = container.restarting_until
                container.restarting_until, container.exit_code = None, 0
            crash = container.started_at + seconds
            if crash > now:
                return
            if self.job_seconds or (container.busy_until or 0) > crash:
                self.jobs_cut.append(container.name)
            container.busy_until = None
            container.backoff = RESTART_DELAY if (
                seconds >= RAN_LONG_ENOUGH or not container.backoff) else min(
                    container.backoff * 2, MAX_RESTART_DELAY)
            container.restart_count += 1
            container.exit_code = EXIT_CRASHED
            container.restarting_until = crash + container.backoff

    def engine_restarted(self) -> None:
        """The engine came back: containers its restart policy brings back start again (the
        daemon's restore starts them with a new restart manager: RestartCount 0), the others
        stay down; every process was killed (a job in progress is cut)."""
        self.settle()
        for container in self.containers.values():
            if container.running:
                self.cut_job(container)
            comes_back = container.restart == "always" or (
                container.restart == "unless-stopped" and not container.stopped_by_user)
            if container.running and not comes_back:
                container.running, container.exit_code = False, 255
            elif comes_back:
                container.running, container.started_at = True, self.clock.now
                container.stopping_until = container.restarting_until = None
                container.restart_count, container.backoff = 0, 0.0
                if self.is_haproxy(container):
                    self.admin_owner = container.serial
