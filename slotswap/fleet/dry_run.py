"""--dry-run: per server, every command a deploy, rollback, up or down would run, and
nothing changed.

A plan is built from the same command builders the real run uses, after the same
read-only queries (HAProxy's `show stat`/`show servers state`, `docker inspect`, `docker
image inspect`, `docker network inspect`, `cat` of the installed config, the history), so
that it names the slots and steps the real run would take now. Nothing that writes runs:
no lock is taken, no file written, no container touched. Secret values are never read:
the env file is shown as NAME=<secret>.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slotswap.commands import docker
from slotswap.commands.runtime_api import command_show_servers_state
from slotswap.config.app_env import AppEnv, resolve_app_env
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    CARRIER_CONFIG,
    CONFIG_NAME,
    NEW_CONFIG_NAME,
    PREVIOUS_NAME,
    RELEASE_ENV_NAME,
    RUNNING_NAME,
    admin_dir,
    carrier_name,
    cert_in,
    cert_in_haproxy,
    cert_path_in_haproxy,
    cert_path_on_server,
    cert_source_in,
    env_file_path,
    haproxy_dir,
    lock_dir,
    maintenance_map_in_haproxy,
    maintenance_map_on_server,
    map_path_on_server,
    own_next_container,
    refuse_shared,
    service_path_on_server,
    state_file_path,
)
from slotswap.fleet.certs import Renewal
from slotswap.fleet.runner import in_turn
from slotswap.https import install as tls
from slotswap.https.files import acme_source
from slotswap.remote.protocol import ServerLike
from slotswap.server import carry_over, maintenance, web_removal
from slotswap.server import release as release_command
from slotswap.server.haproxy_config import login_ids, render_config
from slotswap.server.haproxy_handover import (
    haproxy_run_command,
    inspect_hand_over,
    keep_config_that_ran_command,
    soft_stop_commands,
    soft_stop_seconds,
)
from slotswap.server.haproxy_plan import plan_haproxy
from slotswap.server.history import append_command
from slotswap.server.locking import read_lock, take_lock_command
from slotswap.server.pruning import images_to_prune
from slotswap.server.redeploy import already_serving, keeps_stopped_container_of
from slotswap.server.registry_login import RegistryLogin, login_command, login_registry
from slotswap.server.role_plan import other_generation, worker_only_generation
from slotswap.server.role_run import RoleRun, role_containers_on
from slotswap.server.role_status import read_role_containers, role_stops
from slotswap.server.role_steps import RolePlanLines
from slotswap.server.role_swap import describe_roles, running_versions
from slotswap.server.slots import SlotView, read_slots
from slotswap.server.swap_errors import SwapError
from slotswap.server.swap_plan import plan_slots
from slotswap.server.swap_steps import (
    Step,
    back_steps,
    chain_text,
    plan_swap,
    start_command,
    swap_steps,
)
from slotswap.server.web_removal import describe_removal, web_left_on_worker_only

PLACEHOLDER = "placeholder"  # stands for a secret's value; never shown (masked)


@dataclass
class ServerPlan:
    name: str
    address: str
    summary: str = ""
    steps: list[str] = field(default_factory=list)
    error: str = ""
    locked_by: str = ""  # another run holds the server's lock: the run would exit 4

    def shell(self, *argv: Sequence[str]) -> None:
        self.steps.append("$ " + " && ".join(shlex.join(a) for a in argv))

    def api(self, *commands: str) -> None:
        self.steps.append("runtime API> " + "; ".join(commands))

    def write(self, path: str, mode: int, what: str) -> None:
        self.steps.append(f"write {path} (mode {mode:04o}): {what}")

    def wait(self, what: str) -> None:
        self.steps.append(f"wait: {what}")


def masked_env(inventory: Inventory) -> str:
    """What the env file would hold, secrets as <secret>, without reading their values."""
    return stand_in_env(inventory).masked()


def stand_in_env(inventory: Inventory) -> AppEnv:
    """The app's and the roles' environment with every secret a stand-in (never read)."""
    return resolve_app_env(inventory, {name: PLACEHOLDER for name in inventory.env_secrets})


def lock_steps(plan: ServerPlan, server: ServerLike, inventory: Inventory) -> None:
    holder = read_lock(server, inventory)
    if holder is not None and holder.stale:
        plan.steps.append(f"take over the stale lock of {holder.describe()}")
    elif holder is not None:
        plan.locked_by = holder.describe()
        plan.steps.append(f"STOP: locked by {holder.describe()}: the run would change "
                          "nothing and exit 4 (`fab lock`, `fab unlock`)")
    lease = inventory.timeouts.lease
    plan.steps.append(f"$ sh -c '<take the lock>' {shlex.join(take_lock_command(inventory)[3:])}"
                      f"  (mkdir {lock_dir(inventory)}, atomic; or take over a lock not renewed "
                      f"for its lease; README: Locks are leases)")
    plan.write(f"{lock_dir(inventory)}/owner.json", 0o644,
               "who, since, task, tag (that command's stdin); and lease")
    plan.steps.append(f"while the run goes on: touch {lock_dir(inventory)} every {lease / 3:g}s "
                      f"(the lease, {lease}s)")


def unlock_steps(plan: ServerPlan, inventory: Inventory) -> None:
    plan.steps.append(f"$ {shlex.join(['rm', '-rf', lock_dir(inventory)])}  (if its "
                      "owner.json still holds this run's token)")


def rollout_steps(inventory: Inventory, tag: str, *, batch: int, watch_each: bool,
                  release: bool, force: bool) -> list[str]:
    """What a deploy or rollback does fleet-wide, in its order (slotswap.fleet.rollout):
    the locks and the image first, the servers already serving the tag left alone (unless
    `force`), the release command once (`release`), then the swaps `batch` at a time."""
    first = inventory.hosts[0].name if inventory.hosts else "?"
    steps = ["every server's lock is taken and the image put on every server before the "
             "first swap" + ("" if force else "; a server that already serves it (same "
                             "image, environment and settings) is left alone: unchanged")]
    if release and inventory.release.command:
        name = f"{inventory.app}-{release_command.ROLE}-ID"
        env_file = None if inventory.env.empty else env_file_path(
            inventory, RELEASE_ENV_NAME)
        steps.append(f"then the release command, once, on {first}, before any traffic "
                     f"moves (killed after {inventory.release.timeout:g}s; it failing "
                     "stops the deploy, nothing changed): $ " + shlex.join(
                         release_command.command(inventory, tag, env_file, name)))
    at_a_time = "one server at a time" if batch == 1 else f"{batch} servers at a time"
    watched = ("each server watched before the next starts" if watch_each else
               f"in one watch window that closes {inventory.timeouts.watch:g}s after the "
               "last switch")
    steps.append(f"the swaps then run {at_a_time}, in this order, {watched}; the first "
                 "failure stops the rollout; every lock is released at the end")
    return steps


def deploy_plan(server: ServerLike, inventory: Inventory, tag: str, *, pull: bool,
                task: str, app_env: AppEnv | None = None, env: AppEnv | None = None
                ) -> ServerPlan:
    """The plan of a deploy (or rollback) of `tag` on one server. With `app_env` (not
    --force), a server that already serves the tag as today's inventory makes it is
    `unchanged`, as the deploy finds (its env files compared in memory, never shown).
    `env`: the environment the run writes (the role containers' env files are compared
    with it; default `app_env`, else the inventory's with secrets as stand-ins)."""
    inventory = server.with_folders(inventory)
    plan = ServerPlan(server.name, server.host.address)
    if app_env is not None and (serving := already_serving(server, inventory, tag, app_env)):
        plan.summary = (f"unchanged: already serves {tag} ({serving}; same image, "
                        "environment and settings): left alone (--force redeploys)")
        lock_steps(plan, server, inventory)
        unlock_steps(plan, inventory)
        return plan
    env = env or app_env or stand_in_env(inventory)
    if not server.host.web:
        return role_only_plan(plan, server, inventory, tag, pull=pull, task=task, env=env)
    views = read_slots(server, inventory)
    slots = plan_slots(views)
    live, idle = slots.live, slots.idle
    old = views[live].version if live else None
    plan.summary = (f"live slot {live or 'none'} ({old or 'nothing serving'}); {tag} goes "
                    f"into {idle}")
    lock_steps(plan, server, inventory)
    image_steps(plan, server, inventory, tag, pull=pull)
    roles = RoleRun(server, inventory, tag, idle, env, lambda message: None).planned()
    plan.steps.extend(swap_plan_steps(server, inventory, views, tag, roles))
    plan.steps.append(f"$ {shlex.join(append_command(inventory))} <<< "
                      f"{json.dumps({'task': task, 'from_tag': old or '', 'to_tag': tag})}")
    prune_steps(plan, server, inventory, views, live, tag)
    unlock_steps(plan, inventory)
    return plan


def image_steps(plan: ServerPlan, server: ServerLike, inventory: Inventory, tag: str, *,
                pull: bool) -> None:
    image_ref = inventory.image_ref(tag)
    if inventory.delivery.mode == "ssh":
        plan.steps.append(f"send {image_ref} from this machine's Docker (docker image save) "
                          "into `docker image load` over SSH, without the layers the server "
                          "has, unless it has the same image ID")
    elif pull or not server.run(docker.image_id(image_ref), check=False).ok:
        plan.shell(docker.pull(image_ref))


def role_only_plan(plan: ServerPlan, server: ServerLike, inventory: Inventory, tag: str, *,
                   pull: bool, task: str, env: AppEnv) -> ServerPlan:
    """A worker-only server (web: false): its role containers alone
    (slotswap.server.role_swap)."""
    found = role_containers_on(server, inventory.app)
    if why := web_left_on_worker_only(server.name, web_removal.web_containers_on(server,
                                                                                  inventory)):
        raise SwapError(why, describe_roles(found))  # as the run refuses it (rollout)
    generation = worker_only_generation(found, app=inventory.app, version=tag)
    if found and RoleRun(server, inventory, tag, generation, env,
                         lambda message: None).unchanged(found):
        generation = other_generation(generation)  # --force: new ones, as the run makes
    versions = running_versions(found)
    old = versions[0] if len(versions) == 1 else ""  # as the run records it
    plan.summary = (f"worker-only: {describe_roles(found)}; {tag} goes into {generation}")
    lock_steps(plan, server, inventory)
    image_steps(plan, server, inventory, tag, pull=pull)
    roles = RoleRun(server, inventory, tag, generation, env, lambda message: None).planned()
    if roles is not None:
        plan.steps += roles.start
    if roles is not None and roles.retire:  # old ones run: the window watches the new ones
        plan.steps.append("wait: the new role containers keep running, without a restart, "
                          "until the watch window closes (docker inspect each second)")
        plan.steps += [f"  if it fails: {line}" for line in roles.undo]
        plan.steps += roles.retire
    plan.steps.append(f"$ {shlex.join(append_command(inventory))} <<< "
                      f"{json.dumps({'task': task, 'from_tag': old, 'to_tag': tag})}")
    unlock_steps(plan, inventory)
    return plan


def swap_plan_steps(server: ServerLike, inventory: Inventory, views: dict[str, SlotView],
                    tag: str, roles: RolePlanLines | None = None) -> list[str]:
    """The swap's own plan (slotswap.server.swap_steps), as the run builds it, printed: its
    steps, and after the watch's wait those it takes if the new version fails there; the
    role containers' (`roles`) after the switch, if it fails, and with the old slot's stop.
    Whether the idle slot's kept container would start again is read as the run reads it,
    but for the env file when the app has an environment: its secrets' values are never
    read here, so both ways are shown."""
    idle = plan_slots(views).idle
    env_path = env_file_path(inventory, idle)
    keeps = keeps_stopped_container_of(server, inventory, views[idle], tag)
    restart = keeps and inventory.env.empty and server.read_file(env_path) is None
    swap = plan_swap(views, inventory, tag, restart=restart)
    steps = swap_steps(swap, inventory, masked_env=masked_env(inventory))
    if keeps and not inventory.env.empty:
        kept = start_command(inventory, views[idle], tag, restart=True)
        at = next(i for i, step in enumerate(steps) if step.phase == "start new")
        steps.insert(at, Step("start new", "if", f"{env_path} holds the env below: $ "
                              f"{chain_text(kept.chain)}; else:"))
    shown = []
    for at, step in enumerate(steps):
        shown.append(step.render())
        phase_ends = at + 1 == len(steps) or steps[at + 1].phase != step.phase
        if step.phase == "switch" and phase_ends and roles is not None:
            shown += roles.start
        if step.phase == "watch":
            shown += [f"  if it fails: {back.render()}" for back in back_steps(swap, inventory)]
            shown += [f"  if it fails: {line}" for line in (roles.undo if roles else ())]
        if step.phase == "verify, stop old" and phase_ends and roles is not None:
            shown += roles.retire
    if roles is not None and not any(step.phase == "verify, stop old" for step in steps):
        shown += roles.retire  # nothing served: no watch, old role containers stop at once
    return shown


def prune_steps(plan: ServerPlan, server: ServerLike, inventory: Inventory,
                views: dict[str, SlotView], live: str | None, tag: str) -> None:
    """The images the deploy would remove after it: those beyond keep_images, never the
    ones the slots would use then (the old live one, kept stopped, and the new one)."""
    listed = docker.parse_image_list(server.run(docker.list_images(inventory.image)).stdout)
    in_use = {image.image_id for image in listed if image.tag == tag}
    if live is not None and views[live].container is not None:
        in_use.add(views[live].container.image_id)
    doomed = images_to_prune(listed, in_use, inventory.keep_images)
    if doomed:
        plan.shell(docker.remove_images(*(image.ref for image in doomed)))


def up_plan(server: ServerLike, inventory: Inventory) -> ServerPlan:
    refuse_shared(inventory, "up --dry-run")  # the shared up's plan: dry_run_proxy
    inventory = server.with_folders(inventory)
    if not server.host.web:
        return worker_only_up_plan(server, inventory)
    plan = ServerPlan(server.name, server.host.address)
    directory = haproxy_dir(inventory)
    config_path = f"{directory}/{CONFIG_NAME}"
    lock_steps(plan, server, inventory)
    if not server.run(docker.network_inspect(inventory.network), check=False).ok:
        plan.shell(docker.network_create(inventory.network, inventory.app))
    if inventory.registry is not None:
        plan.shell(login_command(RegistryLogin(login_registry(inventory), inventory.registry.user,
                                               password="")))
        plan.steps[-1] += f"  (the password of ${inventory.registry.password_secret} on stdin)"
    if not server.run(docker.image_id(inventory.haproxy.image), check=False).ok:
        if inventory.delivery.mode == "ssh":
            plan.steps.append(f"send {inventory.haproxy.image} from this machine's Docker "
                              "into `docker image load` over SSH")
        else:
            plan.shell(docker.pull(inventory.haproxy.image))
    name = inventory.haproxy_container
    if interrupted_handover_steps(plan, server, inventory):
        plan.summary = ("an interrupted hand-over is finished first; `up --dry-run` again "
                        "shows what follows it")
        unlock_steps(plan, inventory)
        return plan
    container = docker.parse_inspect(
        server.run(docker.inspect_containers(name), check=False).stdout).get(name)
    previous = (carry_over.previous_folders(container, inventory, directory)
                if container is not None else None)
    admin = admin_dir(inventory)
    if previous is not None:
        carrier = docker.run_carrier(
            container=carrier_name(inventory), image_ref=inventory.haproxy.image,
            app=inventory.app, config_dir=directory, config=CARRIER_CONFIG,
            admin_dir=admin, previous_admin_dir=previous.admin,
            previous_config_dir=previous.config, previous_state_dir=previous.state)
        plan.steps.append(
            f"carry the server over from {previous.config} (HAProxy runs from another "
            f"login's folders, or another remote_dir): $ {shlex.join(carrier)}; the old "
            f"history merged into {inventory.state_dir}; the maintenance map, certificate "
            f"and env files copied (docker cp) into {inventory.config_dir}; the old admin "
            f"socket relayed for the hand-over; at the end {previous.state} locked for good "
            "and the carrier removed")
    plan.shell(["mkdir", "-p", "-m", "700", admin], ["chmod", "700", admin])
    plan.shell(["mkdir", "-p", directory], ["touch", map_path_on_server(directory)])
    service = service_path_on_server(directory)
    if server.read_file(service) != maintenance.service_script():
        plan.write(service, 0o644, "the Lua service that sends the maintenance page")
    if inventory.https is not None:
        source = "the files of https.files" if inventory.https.files is not None else (
            "a stand-in until the ACME CA issues one after every server's `up`")
        plan.steps.append(
            f"HTTPS: where the server has no certificate or another, {source} goes in: "
            f"runtime API> set ssl cert {cert_path_in_haproxy()} <<(certificate and key, "
            f"not shown); commit ssl cert {cert_path_in_haproxy()} (when HAProxy runs), "
            f"then write {cert_path_on_server(directory)} (mode 0600)")
    # As `up` decides (one decision for both): HAProxy must run the config, not only have
    # it on disk.
    decided = plan_haproxy(container, inventory, carried=previous is not None,
                           current=server.read_file(config_path),
                           running=server.read_file(f"{directory}/{RUNNING_NAME}"),
                           wanted=render_config(inventory, login_ids(server)))
    recreate, hand_over, changed = decided.replace, decided.hand_over, decided.config_changed
    state_file = state_file_path(inventory)
    running_file = f"{directory}/{RUNNING_NAME}"
    installed = False
    if decided.new_config:
        plan.write(f"{directory}/{NEW_CONFIG_NAME}", 0o644,
                   "the config rendered from the templates")
        plan.shell(docker.check_haproxy_config(image_ref=inventory.haproxy.image,
                                               config_dir=directory,
                                               filename=NEW_CONFIG_NAME))
        # The config HAProxy last ran kept as .prev (put back if the new one does not start),
        # and the new one in place.
        keep_and_move = (keep_config_that_ran_command(server, directory),
                         ["mv", "-f", f"{directory}/{NEW_CONFIG_NAME}", config_path])
        if decided.reload:
            plan.api("show info")
            plan.api(command_show_servers_state(inventory.app))
            plan.write(state_file, 0o644, "that answer (the new workers start from it)")
            plan.shell(*keep_and_move)
            plan.shell(docker.signal_container(name, "HUP"))
            plan.wait("HAProxy's master has a new worker (show info); else the previous "
                      "config back in place, and the run stops here")
            plan.write(running_file, 0o644, "the hash of the config HAProxy runs")
            plan.shell(["rm", "-f", f"{directory}/{NEW_CONFIG_NAME}"])
        else:
            plan.shell(*keep_and_move)
            installed = True
    if hand_over:
        temporary = own_next_container(inventory)
        plan.steps.append("HAProxy's container changes: a new one takes over with no gap")
        plan.api(command_show_servers_state(inventory.app))
        plan.write(state_file, 0o644, "that answer (the new HAProxy starts from it)")
        plan.shell(docker.remove(temporary))
        plan.shell(haproxy_run_command(inventory, temporary, "TOKEN"))
        plan.wait(f"{temporary} answers on the admin socket (show env) with its frontends "
                  f"OPEN; else it is removed, {name} serves on, and the run stops here")
        finish_hand_over_steps(plan, inventory)
        plan.write(running_file, 0o644, "the hash of the config HAProxy runs")
    else:
        if recreate:
            temporary = own_next_container(inventory)
            plan.steps.append("HAProxy's container is recreated (on the server's network: a "
                              "short interruption, this once)")
            if container is not None and container.running:
                plan.api(command_show_servers_state(inventory.app))
                plan.write(state_file, 0o644, "that answer (the new HAProxy starts from it)")
            plan.shell(docker.remove(temporary))
            plan.shell(haproxy_run_command(inventory, temporary, create_only=True))
            plan.shell(docker.remove(name), docker.start(temporary),
                       docker.rename(temporary, name))
            installed = True
        elif decided.start == "run":
            plan.shell(haproxy_run_command(inventory))
        elif decided.start == "start":
            plan.shell(docker.start(name))
        if installed or decided.start:
            plan.wait("HAProxy answers on its admin socket (show info)")
            plan.write(running_file, 0o644, "the hash of the config HAProxy runs")
    if decided.new_config or installed:
        plan.shell(["rm", "-f", f"{directory}/{PREVIOUS_NAME}"])
    plan.api(command_show_servers_state(inventory.app))
    plan.write(state_file, 0o644, "that answer (where a restarted HAProxy starts from)")
    unlock_steps(plan, inventory)
    plan.summary = ", ".join(
        [*(["HAProxy's container replaced"] if recreate else []),
         "changes: config" if changed else "config unchanged"])
    return plan


def worker_only_up_plan(server: ServerLike, inventory: Inventory) -> ServerPlan:
    """`up` on a worker-only host (web: false): the app's network alone."""
    plan = ServerPlan(server.name, server.host.address, summary="worker-only (web: false): "
                      "the app's network only; no HAProxy, no config, no certificate")
    lock_steps(plan, server, inventory)
    if not server.run(docker.network_inspect(inventory.network), check=False).ok:
        plan.shell(docker.network_create(inventory.network, inventory.app))
    else:
        plan.steps.append(f"network {inventory.network} is there: unchanged")
    found = web_removal.web_containers_on(server, inventory)
    if found:
        plan.steps.append(f"the web's containers are here ({describe_removal(found)}): "
                          "taken off, HAProxy's open connections finishing first")
        for step in web_removal.removal_steps(server.with_folders(inventory), found):
            plan.shell(step.argv)
    unlock_steps(plan, inventory)
    return plan


def finish_hand_over_steps(plan: ServerPlan, inventory: Inventory) -> None:
    """As haproxy_handover.finish_hand_over: the old HAProxy told to stop, its soft stop
    waited for, the new one given its name."""
    name, temporary = inventory.haproxy_container, own_next_container(inventory)
    plan.shell(*soft_stop_commands(name))
    plan.shell(docker.wait_exit(name, soft_stop_seconds(inventory)))
    plan.shell(docker.remove(name), docker.rename(temporary, name))


def interrupted_handover_steps(plan: ServerPlan, server: ServerLike,
                               inventory: Inventory) -> bool:
    """As haproxy_handover.finish_interrupted_handover ends a hand-over cut short (the new
    HAProxy left under its temporary name): its steps. False when there was none."""
    cut = inspect_hand_over(server, inventory)
    if cut is None:
        return False
    name, temporary = inventory.haproxy_container, own_next_container(inventory)
    if cut.how == "finish":
        plan.steps.append(f"{name} was told to stop: the hand-over is finished, {temporary} "
                          "takes its place")
        if not cut.temporary_running:
            plan.shell(docker.start(temporary))
        finish_hand_over_steps(plan, inventory)
    elif cut.how == "undo":
        plan.steps.append(f"{temporary} is removed; {name}, which serves, gets its admin "
                          "socket back by a reload")
        plan.shell(docker.remove(temporary))
        plan.shell(docker.signal_container(name, "USR2"))
    else:
        plan.steps.append(f"{temporary}, left by an interrupted hand-over, becomes {name}")
        plan.shell(docker.remove(name), docker.rename(temporary, name))
    return True


def down_plan(server: ServerLike, inventory: Inventory) -> ServerPlan:
    refuse_shared(inventory, "down --dry-run")  # the shared down's: dry_run_proxy
    inventory = server.with_folders(inventory)
    plan = ServerPlan(server.name, server.host.address, summary="remove everything of "
                      f"{inventory.app}")
    lock_steps(plan, server, inventory)
    names = [inventory.haproxy_container, *(inventory.container_name(s) for s in SLOTS)]
    remove_app_steps(plan, server, inventory, names)
    unlock_steps(plan, inventory)
    return plan


def remove_app_steps(plan: ServerPlan, server: ServerLike, inventory: Inventory,
                     names: list[str]) -> None:
    """`down`'s last steps in either layout: role stops, containers, network, config."""
    for stop in role_stops(inventory, read_role_containers(server, inventory)):
        plan.shell(stop.argv)
        plan.steps[-1] += f"  (the {stop.role} containers: {stop.time_to_finish})"
    existing = sorted(docker.parse_inspect(
        server.run(docker.inspect_containers(*names), check=False).stdout))
    labelled = server.run(docker.list_app_containers(inventory.app)).stdout.split()
    for found in (existing, labelled):
        if found:
            plan.shell(docker.remove(*found))
    if server.run(docker.network_inspect(inventory.network), check=False).ok:
        plan.shell(docker.network_remove(inventory.network))
    plan.shell(["rm", "-rf", inventory.config_dir])
    plan.steps[-1] += "  (the config, the slots' and the roles' env files)"


def maintenance_plan(server: ServerLike, inventory: Inventory,
                     entries: list[tuple[str, str]] | None) -> ServerPlan:
    """maintenance.on (`entries`: the map's, the page last) or .off (None) on one server:
    the map file first (a restarted HAProxy agrees with what was asked), then one
    runtime-API line. The page is shown by its size (it is base64 in the map)."""
    inventory = server.with_folders(inventory)
    now = "on" if maintenance.is_on(server) else "off"
    plan = ServerPlan(server.name, server.host.address,
                      summary=f"maintenance {'on' if entries is not None else 'off'} (now {now})")
    lock_steps(plan, server, inventory)
    path, in_haproxy = maintenance_map_on_server(inventory), maintenance_map_in_haproxy(inventory)
    if entries is None:
        plan.write(path, 0o644, "empty")
        plan.api(maintenance.off_command(in_haproxy))
    else:
        plan.write(path, 0o644, ", ".join(f"{key} ({len(value)} characters)"
                                          if key == "page" else f"{key} {value}"
                                          for key, value in entries))
        plan.api(maintenance.on_commands(
            [(key, "<the page, base64>" if key == "page" else value)
             for key, value in entries], in_haproxy))
    unlock_steps(plan, inventory)
    return plan


def certs_plan(server: ServerLike, inventory: Inventory, renewal: Renewal) -> ServerPlan:
    """certs.renew on one server (slotswap.https.install.install): the certificate given to
    the running HAProxy through the runtime API (no reload) unless it serves it already,
    then the file a restart loads unless it holds it already. With ACME the certificate is
    issued by the run, so every server gets it."""
    inventory = server.with_folders(inventory)
    if renewal.ends is not None:
        return ServerPlan(server.name, server.host.address, summary="unchanged: nothing to do")
    config_dir = haproxy_dir(inventory)
    same_file, same_served = tls.in_place_on(server, config_dir, renewal.bundle, running=True)
    plan = ServerPlan(server.name, server.host.address,
                      summary="unchanged: it has this certificate" if same_file and same_served
                      else "certificate installed with no reload")
    lock_steps(plan, server, inventory)
    if not same_served:
        plan.api(tls.set_line(cert_in_haproxy(inventory), "<the new certificate and its key "
                              "(PEM), never shown>").replace("\n", ""))
        plan.api(tls.commit_line(cert_in_haproxy(inventory)))
    if not same_file:
        plan.write(cert_in(config_dir, inventory), 0o600,
                   "the new certificate and its key (PEM), what a restarted HAProxy loads")
        source = renewal.bundle.source if renewal.bundle is not None else acme_source(
            inventory.https.acme.directory)  # type: ignore[union-attr]
        if source:
            plan.write(cert_source_in(config_dir, inventory), 0o600,
                       f"where it came from: {source}")
    unlock_steps(plan, inventory)
    return plan


def hook_steps(inventory: Inventory) -> list[str]:
    hooks = inventory.hooks
    named = [("pre_deploy", hooks.pre_deploy, "before anything is contacted"),
             ("post_success", hooks.post_success, "after a run that succeeded"),
             ("post_failure", hooks.post_failure, "after a run that failed")]
    return [f"on this machine, {when}: {hook} hook {program}"
            for hook, program, when in named if isinstance(program, Path)]


def render(plans: list[ServerPlan], preamble: list[str]) -> str:
    lines = ["DRY RUN: nothing is changed; the commands below are what would run.", *preamble]
    for plan in plans:
        head = f"{plan.name} ({plan.address})"
        if plan.error:
            lines.append(f"{head}: cannot plan: {plan.error}")
            continue
        lines.append(f"{head}: {plan.summary}")
        lines += [f"    {step}" for step in plan.steps]
    return "\n".join(lines)


def plan_each(servers: list[ServerLike], build: Callable[[ServerLike], ServerPlan]
              ) -> tuple[list[ServerPlan], Exception | None]:
    """A plan per server (read-only queries only); the first error, if any."""
    plans, first_error = [], None
    for done in in_turn(servers, build):
        server, error = done.server, done.error
        plans.append(done.value if error is None else ServerPlan(  # type: ignore[arg-type]
            server.name, server.host.address, error=str(error)))
        first_error = first_error or error
    return plans, first_error
