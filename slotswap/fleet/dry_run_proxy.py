"""--dry-run of `up` and `down` for an app on a server's shared HAProxy (several apps on one
server, docs/apps-design.md, decisions 1, 2 and 5): the plan of server/proxy_up.py and
server/proxy_down.py, printed as fleet/dry_run.py prints today's.

Read-only: the registry (one round trip), the locks, `readlink current`, `.running`, the
running generation's checksums, `docker inspect`. The generation is assembled in memory by
the run's own functions (`planned`, `render_fragment`, `assemble`): a contradiction is
refused here in the same one line (exit 2), and the name printed is the one the run writes.
Nothing is written, no lock taken, no container touched.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Sequence

from slotswap.commands import docker
from slotswap.commands.proxy_commands import check_generation, run_shared_proxy
from slotswap.commands.runtime_api import command_show_servers_state
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    PROXY_CONTAINER,
    app_files,
    proxy_admin_dir,
    proxy_config_dir,
    proxy_haproxy_dir,
    proxy_lock_dir,
    proxy_running_path,
    proxy_settings_path,
    registration_path,
)
from slotswap.core.version import kit_version
from slotswap.fleet.dry_run import ServerPlan, lock_steps, remove_app_steps, unlock_steps
from slotswap.fleet.dry_run_handover import hand_over_steps, interrupted_steps
from slotswap.fleet.dry_run_proxy_certs import certificate_steps
from slotswap.https.files import CertificateBundle
from slotswap.remote.protocol import ServerLike
from slotswap.server.locking import (
    new_owner,
    parse_read_answer,
    read_lock_at_command,
)
from slotswap.server.proxy_assembly import Generation, render_fragment
from slotswap.server.proxy_certs import running_lists_certificate
from slotswap.server.proxy_down import generation_without, running_image
from slotswap.server.proxy_files import Registry, read_registry
from slotswap.server.proxy_generation import ProxyState, read_state, shared_container
from slotswap.server.proxy_handover import drain_seconds, image_changes
from slotswap.server.proxy_locks import app_lock_place
from slotswap.server.proxy_registry import (
    Registration,
    SharedSettings,
    assembled,
    others_present,
)
from slotswap.server.proxy_up import generation_with, planned

# An HTTPS app's certificate steps, given whether the running generation lists it.
PlaceCertificate = Callable[[bool], None]

# The running generation's files and their SHA-256, a line each (`<sha>  ./<path>`).
CHECKSUMS_SCRIPT = 'cd "$1" 2>/dev/null || exit 0; find . -type f -exec sha256sum {} +'


def generation_checksums_command(inventory: Inventory, name: str) -> list[str]:
    return ["sh", "-c", CHECKSUMS_SCRIPT, "sh", f"{proxy_haproxy_dir(inventory)}/{name}"]


def parse_checksums(stdout: str) -> dict[str, str]:
    found = {}
    for line in stdout.splitlines():
        sha, _, path = line.partition("  ")
        if path:
            found[path.removeprefix("./")] = sha.strip()
    return found


def differing_files(generation: Generation, running: dict[str, str]) -> list[str]:
    """Pure: the generation's files that differ from the running one's, by name (`+` only in
    the new one, `-` only in the running one, `~` changed)."""
    new = {path: hashlib.sha256(text.encode()).hexdigest()
           for path, text in generation.files.items()}
    return sorted([f"+{path}" for path in new if path not in running]
                  + [f"~{path}" for path in new if path in running and running[path] != new[path]]
                  + [f"-{path}" for path in running if path not in new], key=lambda s: s[1:])


def other_lock_steps(plan: ServerPlan, server: ServerLike, inventory: Inventory,
                     locks: Sequence[tuple[str, str]]) -> None:
    """The locks besides the app's own (`locks`: what, its folder): each taken in one round
    trip with the others; one held by another run stops the run on this server (exit 4)."""
    for what, folder in locks:
        held = parse_read_answer(server.run(
            read_lock_at_command(folder, inventory.timeouts.lease)).stdout)
        if held is not None and not held.stale:
            plan.locked_by = plan.locked_by or f"{what} held by {held.owner.describe()}"
            plan.steps.append(f"STOP: {what} is held by {held.owner.describe()}: the run would "
                              "change nothing on this server and exit 4")
        else:
            stale = " (stale: taken over)" if held is not None else ""
            plan.steps.append(f"take {what}{stale}: mkdir {folder}, as the app's lock")


def generation_steps(plan: ServerPlan, server: ServerLike, inventory: Inventory,
                     state: ProxyState, generation: Generation, image: str,
                     others: Sequence[Registration], under_locks: Callable[[], None],
                     seconds: int = 1, certificate: PlaceCertificate | None = None) -> None:
    """What the run does with the generation it assembled: written and checked (unless its
    folder is there and the image stays), then nothing (HAProxy runs it), or under every
    other app's lock `under_locks` (the run's writes of its own files) and a new container,
    a reload, or a hand-over to a new image (`seconds`: its soft stop at most).
    `certificate`: the HTTPS app's certificate steps (dry_run_proxy_certs), given whether
    the running generation lists it: where it does not, before the check (which loads it);
    where it does, through the runtime API under the other apps' locks (proxy_up.up_shared)."""
    apps = sorted(path.removeprefix("backends/").removesuffix(".cfg")
                  for path in generation.files if path.startswith("backends/"))
    current, container = state.current, state.container
    plan.steps.append(f"generation {generation.name}: {', '.join(apps)}")
    if current is not None:
        changed = differing_files(generation, parse_checksums(server.run(
            generation_checksums_command(inventory, current), check=False).stdout))
        plan.steps.append(f"  files that differ from the running {current}: "
                          f"{', '.join(changed) or 'none'}")
    new_image = image_changes(state, image)
    if state.runs(generation) and not new_image:
        plan.summary += "; unchanged: the shared HAProxy runs this generation already"
        if certificate is not None:
            certificate(running_lists_certificate(server, inventory, running=True))
        return
    listed = certificate is not None and running_lists_certificate(
        server, inventory, running=container is not None and container.running)
    if certificate is not None and not listed:
        certificate(False)
    folder = f"{proxy_haproxy_dir(inventory)}/{generation.name}"
    there = server.run(["test", "-d", folder], check=False).ok
    if not there:
        plan.steps.append(f"write {folder}/ whole (as .{generation.name}.partial, then "
                          f"mv -T): {', '.join(sorted(generation.files))}")
    if not there or new_image:
        plan.shell(check_generation(image_ref=image, haproxy_dir=proxy_haproxy_dir(inventory),
                                    generation=generation.name))
        plan.steps[-1] += "  (HAProxy refusing it ends the run here: nothing changed)"
    other_lock_steps(plan, server, inventory, [
        (f"{item.app}'s lock", app_lock_place(inventory, item.app).lock_dir)
        for item in others])
    if certificate is not None and listed:
        certificate(True)
    under_locks()
    if container is not None and container.running and new_image:
        hand_over_steps(plan, inventory, image, apps, current, generation.name, seconds)
    elif container is None or new_image:
        if container is not None:
            plan.summary += f"; the stopped slotswap-proxy ({container.image}) is replaced"
            plan.shell(docker.remove(PROXY_CONTAINER))
        plan.summary += "; a new container: slotswap-proxy"
        plan.steps.append(f"current -> {generation.name}")
        plan.shell(run_shared_proxy(image_ref=image, haproxy_dir=proxy_haproxy_dir(inventory),
                                    admin_dir=proxy_admin_dir(inventory)))
    else:
        plan.summary += ("; a reload" if container.running
                         else "; a restart of the stopped slotswap-proxy")
        if container.running:
            plan.api(*(command_show_servers_state(app) for app in apps))
            plan.steps[-1] += "  (each saved to apps/<app>/server-state)"
        plan.steps.append(f"current -> {generation.name}, previous -> "
                          f"{current or 'none'} (when it ran)")
        plan.shell(docker.signal_container(PROXY_CONTAINER, "HUP") if container.running
                   else docker.start(PROXY_CONTAINER))
        if container.running:
            plan.wait("a new worker (the old ones finish their connections); one that does "
                      "not start puts `current` back")
    plan.write(proxy_running_path(inventory), 0o644, generation.sha12)


def folder_steps(plan: ServerPlan, inventory: Inventory) -> None:
    """What the run makes before the check (proxy_generation.prepare_folders)."""
    files = app_files(inventory, inventory.app)
    plan.shell(["mkdir", "-p", files.folder])
    plan.steps.append(f"touch {files.maintenance_map} (kept as it is); the Lua service and "
                      "the stand-in fallback.pem where they are not there yet")


def registration_steps(plan: ServerPlan, inventory: Inventory, registry: Registry,
                       mine: Registration, fragment: str) -> None:
    files = app_files(inventory, inventory.app)
    if registry.fragments.get(inventory.app) != fragment:
        plan.write(files.fragment, 0o644, f"{inventory.app}'s backend, rendered now")
    old = registry.of(inventory.app)
    if old is None or dataclasses.replace(old, by=mine.by, at=mine.at) != mine:
        plan.write(registration_path(inventory, inventory.app), 0o644,
                   f"{inventory.app}'s registration: names {', '.join(mine.names) or '-'}"
                   f"{', default app' if mine.default else ''}, slot ports "
                   f"{mine.slot_ports[0]}, {mine.slot_ports[1]}")


def register_steps(plan: ServerPlan, inventory: Inventory, registry: Registry,
                   record: SharedSettings, mine: Registration, fragment: str) -> None:
    """What `up` writes under the other apps' locks (proxy_up.record_settings, register): the
    settings record as the generation it assembles leaves it (`record`: its shared settings,
    the app's `up` named as what assembled it), the app's backend and registration."""
    after = assembled(record, kit_version(), inventory.app, "up")
    if after != registry.settings:
        plan.write(proxy_settings_path(inventory), 0o644,
                   f"the shared settings, from {record.owner or 'the kit'}; assembled by "
                   f"{inventory.app}'s up")
    registration_steps(plan, inventory, registry, mine, fragment)


def up_plan_shared(server: ServerLike, inventory: Inventory,
                   certificate: CertificateBundle | None = None) -> ServerPlan:
    """The plan of the shared `up` on one server (proxy_up.up_shared); `certificate`: with
    HTTPS, the run's (fleet.certs.material_for_up)."""
    inventory = server.with_folders(inventory)
    plan = ServerPlan(server.name, server.host.address)
    if not server.host.web:
        plan.summary = "worker-only host (web: false): the app's network only"
        if not server.run(docker.network_inspect(inventory.network), check=False).ok:
            plan.shell(docker.network_create(inventory.network, inventory.app))
        return plan
    registry = read_registry(server, inventory)
    notices: list[str] = []
    mine, effective, image = planned(server, inventory, registry, new_owner("up"),
                                     notices.append)
    others = others_present(registry.registrations, inventory.app)
    plan.summary = (f"{inventory.app} on the shared HAProxy"
                    + (f" with {', '.join(item.app for item in others)}" if others else ""))
    plan.steps += [f"note: {notice}" for notice in notices]
    lock_steps(plan, server, inventory)
    other_lock_steps(plan, server, inventory,
                     [("the shared HAProxy's lock", proxy_lock_dir(inventory))])
    state = read_state(server, inventory)
    if not server.run(docker.image_id(image), check=False).ok:
        if inventory.delivery.mode == "ssh":
            plan.steps.append(f"send {image} from this machine's Docker into `docker image "
                              "load` over SSH")
        else:
            plan.shell(docker.pull(image))
    if interrupted_steps(plan, server, drain_seconds([mine, *others])):
        plan.summary = ("an interrupted hand-over of the shared HAProxy is ended first; `up "
                        "--dry-run` again shows what follows it")
        unlock_steps(plan, inventory)
        return plan
    fragment = render_fragment(inventory, effective.values)
    generation = generation_with(server, mine, fragment, registry, effective.values)
    folder_steps(plan, inventory)

    def register() -> None:
        register_steps(plan, inventory, registry, effective.record, mine, fragment)

    generation_steps(plan, server, inventory, state, generation, image, others, register,
                     drain_seconds([mine, *others]), certificate=functools.partial(
                         certificate_steps, plan, server, inventory, certificate))
    unlock_steps(plan, inventory)
    return plan


def down_plan_shared(server: ServerLike, inventory: Inventory) -> ServerPlan:
    """The plan of the shared `down` on one server (proxy_down.down_shared)."""
    inventory = server.with_folders(inventory)
    plan = ServerPlan(server.name, server.host.address)
    registry = read_registry(server, inventory)
    mine = registry.of(inventory.app)
    others = others_present(registry.registrations, inventory.app)
    lock_steps(plan, server, inventory)
    other_lock_steps(plan, server, inventory,
                     [("the shared HAProxy's lock", proxy_lock_dir(inventory))])
    def mark_leaving() -> None:
        if mine is not None and mine.state != "leaving":
            plan.write(registration_path(inventory, inventory.app), 0o644,
                       f"{inventory.app}'s registration, state leaving (no generation "
                       "includes it again)")

    if others:
        plan.summary = (f"{inventory.app} leaves the shared HAProxy; "
                        f"{' and '.join(item.app for item in others)} "
                        f"{'stays' if len(others) == 1 else 'stay'} on it")
        settings, image, generation = generation_without(server, inventory, registry,
                                                         new_owner("down").who)

        def leave() -> None:
            mark_leaving()
            if settings != registry.settings:
                plan.write(proxy_settings_path(inventory), 0o644,
                           f"the shared settings, from {settings.owner or 'the kit'}")

        if interrupted_steps(plan, server, drain_seconds(registry.registrations)):
            plan.steps[-1] += "  (then `down --dry-run` again shows what follows)"
            unlock_steps(plan, inventory)
            return plan
        state = read_state(server, inventory)
        generation_steps(plan, server, inventory, state, generation,
                         running_image(state, image), others, leave)
    else:
        mark_leaving()
        plan.summary = f"{inventory.app} is the last app: the shared HAProxy is removed"
        if shared_container(server, inventory) is not None:
            plan.shell(docker.remove(PROXY_CONTAINER))
        plan.shell(["rm", "-rf", proxy_config_dir(inventory)])
        plan.shell(["rm", "-f", proxy_settings_path(inventory)])
    remove_app_steps(plan, server, inventory, [inventory.container_name(s) for s in SLOTS])
    plan.shell(["rm", "-rf", app_files(inventory, inventory.app).folder])
    plan.shell(["rm", "-f", registration_path(inventory, inventory.app)])
    unlock_steps(plan, inventory)
    return plan

