"""Whether a deploy would change anything on one server: the live slot already runs the tag
as today's inventory would make it (the no-op check), or the idle slot keeps a stopped
container of it that a rollback can start again without a pull.
"""

from __future__ import annotations

import secrets
import shlex
from collections.abc import Callable

from slotswap.commands import docker
from slotswap.config.app_env import AppEnv
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import env_file_path
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandResult
from slotswap.server.role_swap import role_serving, roles_already_run
from slotswap.server.slots import (
    SlotView,
    containers_inspected,
    containers_to_read,
    describe_serving,
    other_slot,
    read_slots_with,
    slot_published_ports,
)


def keeps_stopped_container_of(server: ServerLike, inventory: Inventory, view: SlotView,
                               tag: str) -> bool:
    """The slot holds a stopped container of `tag`, made with today's container settings
    from the image `tag` names on the server now (one `docker image inspect`). What
    SlotSwap.can_restart and the dry run's plan both ask first."""
    return (view.container is not None and not view.container.running
            and made_as_today(server, inventory, view, tag))


def made_as_today(server: ServerLike, inventory: Inventory, view: SlotView, tag: str) -> bool:
    """The slot's container is of `tag`, made with today's container settings from the
    image `tag` names on the server now (one `docker image inspect`)."""
    if not made_with_settings_of(inventory, view, tag):
        return False
    image = server.run(docker.image_id(inventory.image_ref(tag)), check=False)
    return image.ok and image.stdout.strip() == view.container.image_id  # type: ignore[union-attr]


def made_with_settings_of(inventory: Inventory, view: SlotView, tag: str) -> bool:
    """Pure: the slot's container is of `tag`, with today's container settings."""
    container = view.container
    return (container is not None and container.version == tag
            and container.labels.get(docker.LABEL_SETTINGS) == expected_settings(inventory,
                                                                                  view.slot))


def has_env_file_of(server: ServerLike, inventory: Inventory, slot: str, app_env: AppEnv) -> bool:
    """The slot's env file holds today's environment (none, with no environment): the file
    is always the one its container was created with (see write_env_file)."""
    text = server.read_file(env_file_path(server.with_folders(inventory), slot))
    return env_file_holds(inventory, app_env, text)


def env_file_holds(inventory: Inventory, app_env: AppEnv, text: str | None) -> bool:
    """Pure: an env file's text (None: no file) is today's environment."""
    return text == (app_env.text if not inventory.env.empty else None)


def expected_settings(inventory: Inventory, slot: str) -> str:
    """The settings label the slot's container gets from today's inventory."""
    return docker.settings_digest(network=inventory.network, app_port=inventory.app_port,
                                  stop_timeout=inventory.timeouts.stop,
                                  options=inventory.container,
                                  published=slot_published_ports(inventory, slot))


def already_serving(server: ServerLike, inventory: Inventory, tag: str,
                    app_env: AppEnv) -> str | None:
    """What the server serves, when its one live slot already runs `tag` from the image the
    tag names on the server now, with today's environment and container settings (a deploy
    would change nothing), its role containers too; else None. Docker's side (the
    containers, the image ID the tag names, the env files) is read in one round trip,
    HAProxy's in one line (the role containers in one more, when the inventory has roles;
    without roles, any running role container is one to stop: not unchanged).
    A worker-only server: its role containers alone."""
    if not server.host.web:
        version, described = role_serving(server, inventory)
        return described if version == tag and roles_already_run(
            server, inventory, tag, app_env) else None
    mark = secrets.token_hex(8)
    names = containers_to_read(inventory)
    folders = server.with_folders(inventory)  # the env files are in this login's folder
    facts: list[str | None] = []

    def docker_facts() -> dict[str, docker.ContainerInfo]:
        answer = server.run(docker.redeploy_facts(
            mark, inventory.image_ref(tag), inventory.app,
            (env_file_path(folders, SLOTS[0]), env_file_path(folders, SLOTS[1])), names),
            check=False)
        found, containers_json = docker.split_redeploy_facts(answer.stdout, mark)
        facts.extend(found)
        inspected = CommandResult(containers_json, answer.stderr, answer.exit_code)
        return containers_inspected(server, shlex.join(docker.inspect_containers(*names)),
                                    inspected)

    views = read_slots_with(server, inventory, docker_facts)
    image_id, *env_files, running_roles = facts
    serving = [view for view in views.values() if view.serving]
    if len(serving) != 1:
        return None
    live = serving[0]
    if views[other_slot(live.slot)].running:
        return None  # an interrupted run left the old slot up: a swap puts that in order
    env_text = env_files[SLOTS.index(live.slot)]
    if not (made_with_settings_of(inventory, live, tag) and image_id is not None
            and live.container is not None and image_id == live.container.image_id
            and env_file_holds(inventory, app_env, env_text)):
        return None
    if inventory.roles:
        if not roles_already_run(server, inventory, tag, app_env, live.slot, image_id):
            return None
    elif running_roles is None or running_roles.strip():
        return None  # role containers run with no role left in the inventory: a swap stops them
    return describe_serving(views)


def write_env_file(server: ServerLike, inventory: Inventory, slot: str, app_env: AppEnv,
                   progress: Callable[[str], None]) -> str | None:
    """The app's environment, secrets included, reaches it only through a 0600 file; returns
    its path. With no environment, None: the slot's file from an earlier deploy goes with
    its container (SlotSwap.start_new removes it), so a slot's env file is always the one
    its container was created with."""
    if inventory.env.empty:
        return None
    path = env_file_path(server.with_folders(inventory), slot)
    server.write_private_file(path, app_env.text)
    progress(f"wrote {path} (mode 0600): {app_env.masked()}")
    return path
