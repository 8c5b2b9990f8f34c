"""`exec`: a command beside the live version on one server, in a one-off container of the
live slot's image with the app's network and environment (removed afterwards, and killed
when the run is interrupted or loses its connection: see slotswap.server.one_off_container),
or with --live inside the live slot's container itself. Its exit code is the task's. With a
role (`exec --role`), beside the role's running containers: a one-off container of their
image with the role's options and env file, or --live inside the first of them (the
live slot's generation first on a web host)."""

from __future__ import annotations

import shlex
from collections.abc import Callable

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.layout import env_file_path, role_env_file_path
from slotswap.config.roles import RoleSettings, role_container
from slotswap.core.validation import InputError
from slotswap.remote.protocol import ServerLike
from slotswap.server.one_off_container import container_name, to_its_end
from slotswap.server.role_status import read_role_containers, running_of_role
from slotswap.server.role_steps import role_env_is_empty
from slotswap.server.slots import read_slots, read_slots_quietly
from slotswap.server.swap import SwapError
from slotswap.server.swap_plan import plan_slots

PURPOSE = "exec"  # the middle of its one-off container's name


def parse_command(text: str) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError as error:
        raise InputError(f"--command: {error}") from None
    if not words:
        raise InputError("--command is required: the command to run, e.g. "
                         "--command='bin/rails db:migrate:status'")
    return words


def command_for(server: ServerLike, inventory: Inventory, command: list[str], *, live: bool,
                tty: bool, name: str) -> tuple[list[str], str]:
    """The docker command that runs `command` beside (or in) the live version, and what it
    runs in; `name`: the one-off container's."""
    inventory = server.with_folders(inventory)
    views = read_slots(server, inventory)
    plan = plan_slots(views)
    if plan.live is None:
        raise SwapError(f"{server.name}: no slot serves; deploy a version first",
                        "NOTHING")
    view = views[plan.live]
    assert view.container is not None  # a serving slot has a running container
    if live:
        return (docker.exec_in(view.container.name, command, tty=tty),
                f"the live container {view.container.name} ({view.version})")
    env_file = None if inventory.env.empty else env_file_path(inventory, plan.live)
    return (docker.run_one_off(image=view.container.image_id, network=inventory.network,
                               app=inventory.app, command=command, app_port=inventory.app_port,
                               env_file=env_file, tty=tty, name=name,
                               options=inventory.container),
            f"a one-off container of {view.version} (the image of {plan.live}), {name}")


def role_command_for(server: ServerLike, inventory: Inventory, role: RoleSettings,
                     command: list[str], *, live: bool, tty: bool, name: str
                     ) -> tuple[list[str], str]:
    """As command_for, beside the role's running containers: the first of them (by name) is
    the one used, or whose image, generation (its env file) a one-off container gets; on a
    web host, the first of the live slot's generation, if one runs (in a watch window, or
    after a cut run, the outgoing version's may run too)."""
    inventory = server.with_folders(inventory)
    running = running_of_role(read_role_containers(server, inventory), role.name)
    if not running:
        raise SwapError(f"{server.name}: no container of role {role.name} runs; deploy a "
                        "version first", "NOTHING")
    first = running[0]
    if server.host.web and len({c.generation for c in running}) > 1:
        views = read_slots_quietly(server, inventory)  # none: HAProxy cannot be asked
        live_slot = plan_slots(views).live if views else None
        first = next((c for c in running if c.generation == live_slot), first)
    if live:
        return (docker.exec_in(first.name, command, tty=tty),
                f"the {role.name} container {first.name} ({first.version})")
    env_file = (None if role_env_is_empty(inventory, role)
                else role_env_file_path(inventory, role.name, first.generation))
    return (docker.run_one_off(image=first.image_id, network=inventory.network,
                               app=inventory.app, command=command, app_port=inventory.app_port,
                               env_file=env_file, tty=tty, name=name,
                               options=role_container(inventory.container, role)),
            f"a one-off container of {first.version} (the image of {first.name}), {name}")


def run(server: ServerLike, inventory: Inventory, command: list[str], *, live: bool,
        interactive: bool, say: Callable[[str], None], on_line: Callable[[str], None],
        role: RoleSettings | None = None) -> int:
    name = container_name(inventory.app, PURPOSE)
    if role is not None:
        argv, where = role_command_for(server, inventory, role, command, live=live,
                                       tty=interactive, name=name)
    else:
        argv, where = command_for(server, inventory, command, live=live, tty=interactive,
                                  name=name)
    say(f"{server.name}: running {shlex.join(command)} in {where}")

    def call() -> int:
        if interactive:
            return server.run_interactive(argv)
        return server.stream_lines(argv, on_line, follow=True)  # a person decides when it ends

    if live:  # docker exec: no container of its own to kill
        return call()
    return to_its_end(server, name, call, say=lambda text: say(f"{server.name}: {text}"))
