"""--dry-run of `up` for an app on a server's shared HAProxy where the app still runs its own
(the move, server/proxy_move.py, docs/apps-design.md decision 6), else fleet/dry_run_proxy's
plan of the shared `up`.

Read-only, as dry_run_proxy: `docker inspect` of the app's own HAProxy, the registry, the
locks, the shared HAProxy's `current` and `.running`; the generation assembled in memory by
the run's own functions. Nothing is written, no lock taken, no container touched.
"""

from __future__ import annotations

import functools
import shlex

from slotswap.commands import docker
from slotswap.commands.proxy_commands import run_shared_proxy
from slotswap.commands.runtime_api import command_show_servers_state
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    ADMIN_FOLDER,
    PROXY_CONTAINER,
    app_files,
    cert_path_on_server,
    history_path,
    map_path_on_server,
    own_haproxy_dir,
    proxy_admin_dir,
    proxy_haproxy_dir,
    proxy_lock_dir,
)
from slotswap.fleet.dry_run import ServerPlan, lock_steps, unlock_steps
from slotswap.fleet.dry_run_proxy import (
    folder_steps,
    generation_steps,
    other_lock_steps,
    register_steps,
    up_plan_shared,
)
from slotswap.fleet.dry_run_proxy_certs import certificate_steps
from slotswap.https.files import CertificateBundle
from slotswap.remote.protocol import ServerLike
from slotswap.server.haproxy_handover import soft_stop_commands, soft_stop_seconds
from slotswap.server.locking import new_owner
from slotswap.server.proxy_assembly import render_fragment
from slotswap.server.proxy_files import read_registry
from slotswap.server.proxy_generation import ProxyState, read_state
from slotswap.server.proxy_move import inspect_for_move, move_refusal
from slotswap.server.proxy_registry import others_present
from slotswap.server.proxy_up import generation_with, planned


def up_plan_moving(server: ServerLike, inventory: Inventory,
                   certificate: CertificateBundle | None = None) -> ServerPlan:
    """The plan of `up` on one server with haproxy.shared (proxy_move.up_moving);
    `certificate`: with HTTPS, the run's (fleet.certs.material_for_up)."""
    inventory = server.with_folders(inventory)
    name = inventory.haproxy_container
    found = inspect_for_move(server, inventory)
    old = found.get(name)
    folder = own_haproxy_dir(inventory)
    if not server.host.web or (old is None and not server.run(
            ["test", "-d", folder], check=False).ok):
        return up_plan_shared(server, inventory, certificate)
    registry = read_registry(server, inventory)
    if old is None and registry.of(inventory.app) is not None:
        plan = up_plan_shared(server, inventory, certificate)
        plan.shell(["rm", "-rf", folder])
        plan.steps[-1] += "  (left by a move cut after the old HAProxy's container went)"
        return plan
    plan = ServerPlan(server.name, server.host.address)
    plan.summary = f"{inventory.app} moves from {name} to the shared HAProxy"
    refusal = move_refusal(server.name, inventory, found)
    if refusal is not None:
        plan.steps.append(f"STOP: {refusal}")
        return plan
    if old is not None and old.restart_policy == "no":
        plan.summary = f"{inventory.app}: finishing an interrupted move ({name} was told to stop)"
        finish_steps(plan, inventory, old.running)
        return plan
    notices: list[str] = []
    mine, effective, image = planned(server, inventory, registry, new_owner("up"),
                                     notices.append, moving=True)
    others = others_present(registry.registrations, inventory.app)
    plan.steps += [f"note: {notice}" for notice in notices]
    lock_steps(plan, server, inventory)
    other_lock_steps(plan, server, inventory,
                     [("the shared HAProxy's lock", proxy_lock_dir(inventory))])
    state = read_state(server, inventory)
    if state.container is not None and not others:
        plan.steps.append(f"{PROXY_CONTAINER} was left by an interrupted move: it goes")
        soft_stop_steps(plan, inventory, PROXY_CONTAINER, state.container.running)
        state = ProxyState(None, state.current, state.running)
    if state.container is not None and state.container.image != image:
        plan.steps.append(f"STOP: the shared HAProxy runs {state.container.image}, its "
                          f"settings name {image}: a move does not change its image; run "
                          "`up` of an app already on it first: the run fails here")
        return plan
    if not server.run(docker.image_id(image), check=False).ok:
        plan.shell(docker.pull(image))
    fragment = render_fragment(inventory, effective.values)
    generation = generation_with(server, mine, fragment, registry, effective.values)
    folder_steps(plan, inventory)
    files = app_files(inventory, inventory.app)
    plan.steps.append(f"copy (where there) {map_path_on_server(folder)} -> "
                      f"{files.maintenance_map}, {cert_path_on_server(folder)} and its source "
                      f"-> {files.cert}, {files.source}")
    if old is not None and old.running:
        plan.api(command_show_servers_state(inventory.app))
        plan.steps[-1] += (f"  (on {name}'s socket, {folder}/{ADMIN_FOLDER}: saved to "
                           f"{files.server_state})")
    else:
        plan.steps.append(f"copy {folder}/server-state -> {files.server_state} ({name} is "
                          "not running)")

    def register() -> None:
        register_steps(plan, inventory, registry, effective.record, mine, fragment)

    running = state.container is not None and state.container.running
    generation_steps(plan, server, inventory, state, generation, image, others, register,
                     certificate=functools.partial(
                         certificate_steps, plan, server, inventory, certificate,
                         copied_from=cert_path_on_server(folder)))
    if not running:  # generation_steps showed the start; the move's has an instance token
        start = {"image_ref": image, "haproxy_dir": proxy_haproxy_dir(inventory),
                 "admin_dir": proxy_admin_dir(inventory)}
        plain = "$ " + shlex.join(run_shared_proxy(**start))
        plan.steps = ["$ " + shlex.join(run_shared_proxy(**start, instance="<token>"))
                      if step == plain else step for step in plan.steps]
    plan.wait(f"the shared admin socket answers from {PROXY_CONTAINER} (its token), its "
              f"frontend OPEN, {inventory.app}'s backend in the states read; else "
              f"{PROXY_CONTAINER} is removed and {name} serves on")
    finish_steps(plan, inventory, old is not None and old.running)
    unlock_steps(plan, inventory)
    return plan


def finish_steps(plan: ServerPlan, inventory: Inventory, running: bool) -> None:
    """The point of no return and after (proxy_move.finish_move)."""
    soft_stop_steps(plan, inventory, inventory.haproxy_container, running)
    plan.shell(["rm", "-rf", own_haproxy_dir(inventory)])
    plan.steps[-1] += "  (the app's env files beside it stay)"
    plan.steps.append(f"append to {history_path(inventory)}: up, moved to the shared HAProxy")


def soft_stop_steps(plan: ServerPlan, inventory: Inventory, name: str, running: bool) -> None:
    """proxy_move.stop_softly."""
    if running:
        plan.shell(*soft_stop_commands(name))
        plan.shell(docker.wait_exit(name, soft_stop_seconds(inventory)))
        plan.steps[-1] += "  (its open connections finish)"
    plan.shell(docker.remove(name))
