"""The role containers of one server, from the inventory to commands (pure): what each role
this host runs must be (`role_targets`, for slotswap.server.role_plan.plan_roles) and the
docker command of each step of the plan (`step_command`), which the run will send and the
dry run print. A check step's command is one try of a `{cmd: ...}` check, or the inspect a
`{running: S}` check reads (role_plan.judge_running). Design: docs/roles-design.md.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands.role_containers import (
    exec_check,
    role_digest,
    run_role,
    stop_role,
    stop_roles,
)
from slotswap.config.hosts import Host
from slotswap.config.inventory import Inventory
from slotswap.config.layout import role_env_file_path
from slotswap.config.roles import CommandCheck, RoleSettings, role_container, roles_on
from slotswap.server.role_plan import RolePlan, RoleTarget, Step


def role_digest_of(inventory: Inventory, role: RoleSettings) -> str:
    return role_digest(network=inventory.network, app_port=inventory.app_port,
                       stop_timeout=role.stop_timeout,
                       options=role_container(inventory.container, role))


def role_targets(inventory: Inventory, host: Host, env_changed: Collection[str] = (),
                 image_id: str | None = None) -> tuple[RoleTarget, ...]:
    """What each role `host` runs must be after the run; `env_changed`: the roles whose env
    file for the generation differs from what the run writes (their containers of this
    version are made again); `image_id`: the one the tag names on the server now (a
    container of another is made again)."""
    return tuple(RoleTarget(role.name, role.count, role_digest_of(inventory, role),
                            role.stop_timeout, reuse=role.name not in env_changed,
                            image_id=image_id)
                 for role in roles_on(inventory.roles, host))


def role_named(inventory: Inventory, name: str) -> RoleSettings:
    found = [role for role in inventory.roles if role.name == name]
    if not found:
        raise ValueError(f"no role {name!r} in the inventory")
    return found[0]


def step_command(inventory: Inventory, step: Step, *, tag: str, version: str,
                 generation: str) -> list[str]:
    """The docker command of one step of a plan made for `version` (image tag `tag`) in
    `generation`."""
    if step.action == "remove":
        return docker.remove(step.container)
    if step.action == "rename":
        assert step.new_name is not None
        return docker.rename(step.container, step.new_name)
    if step.action == "start":
        return docker.start(step.container)
    if step.action == "stop":
        return stop_role(step.container, step.stop_timeout)
    role = role_named(inventory, step.role)
    if step.action == "run":
        env_file = (None if role_env_is_empty(inventory, role)
                    else role_env_file_path(inventory, role.name, generation))
        return run_role(container=step.container, image_ref=inventory.image_ref(tag),
                        network=inventory.network, app=inventory.app, role=role.name,
                        generation=generation, version=version,
                        app_port=inventory.app_port, stop_timeout=role.stop_timeout,
                        options=role_container(inventory.container, role),
                        env_file=env_file)
    if isinstance(role.check, CommandCheck):
        return exec_check(step.container, role.check.cmd, role.check.timeout)
    return docker.inspect_containers(step.container)


def role_env_is_empty(inventory: Inventory, role: RoleSettings) -> bool:
    """No variable at all (the app's or the role's): the container gets no env file, as a
    slot of an app without env gets none."""
    return inventory.env.empty and role.env.empty


@dataclass(frozen=True)
class RolePlanLines:
    """A role plan as the dry run prints it: what runs after the web switch (`start`: env
    files, removals, renames, starts, checks), at the end of the watch (`retire`: the old
    ones stopped) and if the version fails (`undo`: the new ones stopped)."""

    start: tuple[str, ...]
    retire: tuple[str, ...]
    undo: tuple[str, ...]


def plan_lines(inventory: Inventory, plan: RolePlan, *, tag: str,
               env_files: Collection[tuple[str, str]]) -> RolePlanLines:
    """Pure: `env_files`: (path, masked variables) of each env file the run writes."""
    if plan.unchanged:
        return RolePlanLines(("role containers: unchanged (they run " + tag + ")",), (), ())

    def shell(step: Step) -> str:
        return "$ " + shlex.join(step_command(inventory, step, tag=tag, version=tag,
                                              generation=plan.generation))

    start = [f"write {path} (mode 0600): {masked}" for path, masked in env_files]
    start += [shell(step) for step in (*plan.remove, *plan.rename, *plan.start)]
    for step in plan.check:
        role = role_named(inventory, step.role)
        start.append(f"wait: {step.container} passes its check: " + (
            f"$ {shlex.join(shell_check(step, role))} exits 0 (up to {role.check.timeout:g}s)"
            if isinstance(role.check, CommandCheck) else
            f"runs {role.check.running:g}s without a restart (docker inspect)"))
    return RolePlanLines(tuple(start), stop_lines(plan.stop), stop_lines(plan.undo()))


def shell_check(step: Step, role: RoleSettings) -> list[str]:
    assert isinstance(role.check, CommandCheck)
    return exec_check(step.container, role.check.cmd, role.check.timeout)


def stop_lines(steps: Sequence[Step]) -> tuple[str, ...]:
    return tuple("$ " + shlex.join(argv) for argv, _ in stop_commands(steps))


def stop_commands(steps: Sequence[Step]) -> list[tuple[list[str], int | None]]:
    """The stop steps as one `docker stop` per stop timeout (Docker stops the containers of
    one command in parallel), each with its timeout (None: the containers' own)."""
    by_timeout: dict[int | None, list[str]] = {}
    for step in steps:
        by_timeout.setdefault(step.stop_timeout, []).append(step.container)
    return [(stop_roles(names, timeout), timeout) for timeout, names in by_timeout.items()]
