"""`down` of one app on a server whose HAProxy is shared (several apps on one server,
docs/apps-design.md, decision 1), run while the app's own lock is held.

With the shared HAProxy's lock: the app's registration marked `leaving` first (no generation
includes it again, whoever assembles the next one); then, while other apps are present, a
generation without it goes in by a reload under every other app's lock (its names answer
404, or go to the default app), or, for the last app, the shared HAProxy and its folder go;
then the app's containers, network and files, as `down` removes them in an app's own layout.
A run cut anywhere leaves a state the next `down` (or the app's `up`, which makes it present
again) finishes from.
"""

from __future__ import annotations

from collections.abc import Callable

from slotswap.commands import docker
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    PROXY_CONTAINER,
    ProxyError,
    app_files,
    proxy_config_dir,
    proxy_settings_path,
    registration_path,
)
from slotswap.remote.protocol import ServerLike
from slotswap.server.haproxy import remove_app_containers
from slotswap.server.haproxy_config import login_ids
from slotswap.server.locking import LockOwner
from slotswap.server.proxy_assembly import Generation, assemble
from slotswap.server.proxy_files import Registry, leaving, read_registry
from slotswap.server.proxy_generation import (
    ProxyState,
    apply_generation,
    read_state,
    write_and_check,
)
from slotswap.server.proxy_handover import NEXT_PROXY, end_interrupted_hand_over
from slotswap.server.proxy_locks import holding, other_apps_locks, shared_lock
from slotswap.server.proxy_registry import (
    SharedSettings,
    others_present,
    registration_json,
    settings_after_down,
    settings_json,
)
from slotswap.server.proxy_up import now
from slotswap.server.role_status import read_role_containers, role_stops

Progress = Callable[[str], None]


def down_shared(server: ServerLike, inventory: Inventory, progress: Progress,
                owner: LockOwner) -> str:
    """The app out of the server's shared HAProxy, then its containers, network and files
    (its history stays); what was done, in words."""
    inventory = server.with_folders(inventory)
    if not server.host.web and read_registry(server, inventory).of(inventory.app) is None:
        return remove_app(server, inventory, progress)  # a worker-only host: no HAProxy
    parts = []
    with holding(server, inventory, owner, shared_lock(inventory)):
        registry = read_registry(server, inventory)
        state = read_state(server, inventory)
        others = others_present(registry.registrations, inventory.app)
        if others:
            # A hand-over a cut `up` left is ended first, as the next `up` would.
            if end_interrupted_hand_over(server, inventory, progress, owner,
                                         registry.registrations):
                parts.append("interrupted hand-over ended")
                state = read_state(server, inventory)
            parts.append(without_it(server, inventory, registry, state, owner))
        else:
            mark_leaving(server, inventory, registry)
            found = docker.parse_inspect(server.run(docker.inspect_containers(
                PROXY_CONTAINER, NEXT_PROXY), check=False).stdout)
            if found:  # with the new one a cut hand-over left, if any
                server.close_runtime_api()
                server.run(docker.remove(*found), timeout=120)
                parts.append("shared HAProxy removed (no other app on it)")
            server.run(["rm", "-rf", proxy_config_dir(inventory)])
            server.run(["rm", "-f", proxy_settings_path(inventory)])
    # The app's own things, under its own lock alone: no other app's run waits for them.
    parts.append(remove_app(server, inventory, progress))
    server.run(["rm", "-rf", app_files(inventory, inventory.app).folder])
    server.run(["rm", "-f", registration_path(inventory, inventory.app)])
    return ", ".join(part for part in parts if part)


def without_it(server: ServerLike, inventory: Inventory, registry: Registry,
               state: ProxyState, owner: LockOwner) -> str:
    """The generation of the other present apps, checked, then (under their locks) the app
    marked leaving and that generation run."""
    others = others_present(registry.registrations, inventory.app)
    settings, image, generation = generation_without(server, inventory, registry, owner.who)
    image = running_image(state, image)
    write_and_check(server, inventory, generation, image, "nothing was changed")
    with holding(server, inventory, owner,
                 other_apps_locks(inventory, [item.app for item in others])):
        mark_leaving(server, inventory, registry)
        if settings != registry.settings:
            server.write_file(proxy_settings_path(inventory), settings_json(settings))
        if state.runs(generation):
            return ""
        done = apply_generation(server, inventory, generation, image,
                                [item.app for item in others], state)
        return f"{done} without {inventory.app}"


def running_image(state: ProxyState, image: str) -> str:
    """Pure: the image a `down` checks its generation with: the running container's (a down
    reloads it, never changes its image; an `up` does), else the shared settings'."""
    return state.container.image if state.container is not None else image


def generation_without(server: ServerLike, inventory: Inventory, registry: Registry,
                       by: str) -> tuple[SharedSettings, str, Generation]:
    """What the app's `down` puts in while other apps are present: the shared settings
    record after it (its ownership ends), HAProxy's image, and the generation of the other
    present apps (their stored backends)."""
    others = others_present(registry.registrations, inventory.app)
    settings = settings_after_down(inventory.app, registry.settings, registry.registrations,
                                   by=by, at=now()) or registry.settings
    if settings is None:
        raise ProxyError(f"{server.name}: the shared HAProxy's settings record "
                         f"({proxy_settings_path(inventory)}) is missing: run `up` of "
                         f"{others[0].app} first; nothing was changed")
    generation = assemble(list(others), {item.app: registry.fragments.get(item.app) or ""
                                         for item in others},
                          settings.values, login_ids(server))
    return settings, str(settings.values["haproxy.image"]), generation


def mark_leaving(server: ServerLike, inventory: Inventory, registry: Registry) -> None:
    """The app's registration marked leaving: no generation includes it again, whoever
    assembles the next one, and its next `down` finishes what this one leaves."""
    mine = registry.of(inventory.app)
    if mine is not None and mine.state != "leaving":
        server.write_file(registration_path(inventory, inventory.app),
                          registration_json(leaving(mine)))


def remove_app(server: ServerLike, inventory: Inventory, progress: Progress) -> str:
    """The app's role containers (stopped with their stop signal and timeout first), its
    slots and every container labelled as its own (never the shared HAProxy: it has no app
    label), its network and its config folder (the env files)."""
    for stop in role_stops(inventory, read_role_containers(server, inventory)):
        progress(f"stopping the {stop.role} containers: {stop.time_to_finish}")
        server.run(stop.argv, timeout=stop.deadline)
    removed = len(remove_app_containers(
        server, inventory, [inventory.container_name(slot) for slot in SLOTS]))
    if server.run(docker.network_inspect(inventory.network), check=False).ok:
        server.run(docker.network_remove(inventory.network))
    server.run(["rm", "-rf", inventory.config_dir])
    return f"{removed} containers removed"
