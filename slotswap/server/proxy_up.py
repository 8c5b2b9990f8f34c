"""`up` of one app on a server whose HAProxy is shared (several apps on one server,
docs/apps-design.md, decisions 1, 2 and 5), run while the app's own lock is held.

With the shared HAProxy's lock too (taken in one round trip): every app's registration read;
the app's inventory refused where it contradicts another's (exit 2, nothing changed); its own
files written (its backend, its maintenance map, its registration); the generation assembled
from every present app's stored backend, written whole and checked by HAProxy. When it is
not the one running, every other present app's lock is taken (refused at once when one is
held: that app's run is going on) and each backend's slot state saved to its own file before
`current` points at the new generation and HAProxy reloads: no slot of any app moves
meanwhile, and a restarted HAProxy comes back where each app was.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.proxy_commands import check_generation, run_shared_proxy
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    GENERATION_PREFIX,
    PROXY_CONTAINER,
    ProxyError,
    app_files,
    fallback_cert_path,
    previous_link,
    proxy_admin_dir,
    proxy_haproxy_dir,
    proxy_lock_dir,
    proxy_running_path,
    proxy_service_path,
    proxy_settings_path,
    proxy_state_dir,
    registration_path,
)
from slotswap.core.version import kit_version
from slotswap.https.files import CertificateBundle, placeholder
from slotswap.remote.protocol import ServerLike
from slotswap.server import maintenance
from slotswap.server.haproxy import ensure_network, wait_for_runtime_api
from slotswap.server.haproxy_config import login_ids
from slotswap.server.haproxy_handover import wait_for_new_worker
from slotswap.server.images import ensure_image, log_in_to_registry
from slotswap.server.lock_sets import LockPlace, LocksTaken, release_command, take_locks
from slotswap.server.locking import LockedError, LockOwner
from slotswap.server.proxy_assembly import Generation, assemble, render_fragment
from slotswap.server.proxy_certs import place, running_lists_certificate
from slotswap.server.proxy_contradictions import check_contradictions
from slotswap.server.proxy_files import (
    Registry,
    kit_defaults,
    prune_generations_command,
    read_current,
    read_link,
    read_registry,
    registration_for,
    switch_command,
    write_generation,
)
from slotswap.server.proxy_registry import (
    EffectiveSettings,
    Registration,
    assembled,
    effective_settings,
    others_present,
    registration_json,
    settings_json,
)

Progress = Callable[[str], None]


def proxy_lock_place(inventory: Inventory) -> LockPlace:
    return LockPlace(proxy_state_dir(inventory), proxy_lock_dir(inventory))


def app_lock_place(inventory: Inventory, app: str) -> LockPlace:
    """Another app's lock on this server (the same login and folders as this app's)."""
    other = dataclasses.replace(inventory, app=app)
    return LockPlace(other.state_dir, f"{other.state_dir}/lock")


def refusal(server: ServerLike, taken: LocksTaken, what: Callable[[str], str]) -> Exception:
    """The one line for a lock set that was refused (`what`: the lock's name from its dir)."""
    assert taken.refused is not None
    lock, result = taken.refused
    if taken.cannot_write is not None:
        return server.cannot_write(taken.cannot_write, "")
    holder = (f"{result.previous.owner.describe()}, renewed {result.previous.age}s ago"
              if result.previous is not None else "another run, taking it right now")
    return LockedError(f"{server.name}: {what(lock)} is held by {holder}; the shared HAProxy "
                       "changes only while no other app's run is on the server; nothing was "
                       f"changed on {server.name}")


@contextlib.contextmanager
def holding(server: ServerLike, places: Sequence[LockPlace], owner: LockOwner, lease: int,
            what: Callable[[str], str]) -> Iterator[None]:
    """Every lock of `places` held for the block (none taken: nothing to do)."""
    if not places:
        yield
        return
    taken = take_locks(server, places, owner, lease)
    if taken.refused is not None:
        raise refusal(server, taken, what)
    try:
        yield
    finally:
        for place in reversed(places):
            with contextlib.suppress(Exception):  # the lease ends it otherwise
                server.run(release_command(place, owner), check=False)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def up_shared(server: ServerLike, inventory: Inventory, progress: Progress,
              owner: LockOwner, certificate: CertificateBundle | None = None) -> str:
    """The app's part of the server's shared HAProxy in place, and that HAProxy running the
    generation with every present app; what was done, in words. `certificate`: with HTTPS,
    the one to put in place (fleet.certs.material_for_up; server/proxy_certs.py)."""
    inventory = server.with_folders(inventory)
    changes: list[str] = []
    refuse_own_haproxy(server, inventory)
    # Refused before any change where the inventory contradicts another app's, and HAProxy's
    # image pulled before any lock is taken: a pull may take long, the locks' leases not.
    image = planned(server, inventory, read_registry(server, inventory), owner, None)[2]
    if ensure_network(server, inventory, progress):
        changes.append("network created")
    log_in_to_registry(server, inventory, progress)
    ensure_image(server, image, progress)
    with holding(server, [proxy_lock_place(inventory)], owner, inventory.timeouts.lease,
                 lambda _: "the shared HAProxy's lock"):
        registry = read_registry(server, inventory)
        mine, effective, image = planned(server, inventory, registry, owner, progress)
        others = others_present(registry.registrations, inventory.app)
        ensure_image(server, image, progress)  # the same, unless another run changed it
        refuse_image_change(server, image)
        fragment = render_fragment(inventory, effective.values)
        generation = assemble([mine, *others], {
            inventory.app: fragment, **{item.app: registry.fragments.get(item.app) or ""
                                        for item in others}},
            effective.values, login_ids(server))
        # Checked by HAProxy before the app registers: a backend it refuses never reaches
        # another app's next `up`.
        prepare_folders(server, inventory)
        container = shared_container(server)
        listed = running_lists_certificate(server, inventory, running=bool(
            container is not None and container.running))
        # The check loads the crt-list, so a certificate it lists is there before it. One
        # that HAProxy serves already is replaced after the check (nothing changed when it
        # fails), through the runtime API.
        if not listed and place(server, inventory, certificate, progress, listed=False):
            changes.append("certificate installed")
        write_and_check(server, inventory, generation, image)
        if listed and place(server, inventory, certificate, progress, listed=True):
            changes.append("certificate installed with no reload")
        if register(server, inventory, mine, registry, fragment):
            changes.append(f"{inventory.app}'s backend written")
        applied = apply_generation(server, inventory, generation, image, others, owner)
        if applied:
            changes.append(applied)
        record = assembled(effective.record, kit_version(), inventory.app, "up") \
            if applied else effective.record
        if record != registry.settings:
            server.write_file(proxy_settings_path(inventory), settings_json(record))
    progress(f"the shared HAProxy routes {', '.join(mine.names) or 'every other name'} to "
             f"{inventory.app}")
    return ", ".join(changes) if changes else "unchanged"


def planned(server: ServerLike, inventory: Inventory, registry: Registry, owner: LockOwner,
            progress: Progress | None) -> tuple[Registration, EffectiveSettings, str]:
    """The app's registration, the shared settings it uses and HAProxy's image, once its
    inventory is found to contradict no other app's (else ProxyContradiction, one line;
    `progress` gets the notices)."""
    mine = registration_for(inventory, kit_version=kit_version(), by=owner.who, at=now())
    notices = check_contradictions(server.name, mine, registry.registrations,
                                   registry.settings, names_key=inventory.route_names_key,
                                   inventory_file=inventory.path.name)
    for notice in notices if progress is not None else ():
        progress(notice)
    effective = effective_settings(inventory.app, mine.shared_settings, kit_defaults(),
                                   registry.settings, registry.registrations, by=owner.who,
                                   at=now())
    return mine, effective, str(effective.values["haproxy.image"])


def shared_container(server: ServerLike) -> docker.ContainerInfo | None:
    return docker.parse_inspect(server.run(docker.inspect_containers(PROXY_CONTAINER),
                                           check=False).stdout).get(PROXY_CONTAINER)


def refuse_image_change(server: ServerLike, image: str) -> None:
    """A new image for a running shared HAProxy needs a hand-over, which is a later step."""
    container = shared_container(server)
    if container is not None and container.image != image:
        raise ProxyError(f"{server.name}: the shared HAProxy runs {container.image}; changing "
                         f"its image ({image}) is not available yet; nothing was changed")


def refuse_own_haproxy(server: ServerLike, inventory: Inventory) -> None:
    """A server where the app runs its own HAProxy (today's layout) is moved by a later
    release's `up`; until then it is refused, nothing changed."""
    own = inventory.haproxy_container
    found = docker.parse_inspect(
        server.run(docker.inspect_containers(own), check=False).stdout)
    if own in found:
        raise ProxyError(f"{server.name}: {inventory.app} runs its own HAProxy ({own}); moving "
                         "it to the shared HAProxy is not available yet: remove "
                         "haproxy.shared, or `down` the app first; nothing was changed")


def prepare_folders(server: ServerLike, inventory: Inventory) -> None:
    """What a generation refers to, in place before HAProxy checks it: the app's folder and
    its maintenance map (kept as it is), the Lua service, the stand-in certificate, and the
    admin socket's folder (the login's alone)."""
    files = app_files(inventory, inventory.app)
    server.run_chain(["mkdir", "-p", files.folder],
                     ["mkdir", "-p", "-m", "700", proxy_admin_dir(inventory)],
                     ["chmod", "700", proxy_admin_dir(inventory)],
                     ["touch", files.maintenance_map])
    service = proxy_service_path(inventory)
    if server.read_file(service) != maintenance.shared_service_script():
        server.write_file(service, maintenance.shared_service_script())
    if not server.run(["test", "-f", fallback_cert_path(inventory)], check=False).ok:
        stand_in = placeholder(("invalid",), days=3650)
        server.write_private_file(fallback_cert_path(inventory),
                                  stand_in.chain_pem + stand_in.key_pem)


def register(server: ServerLike, inventory: Inventory, mine: Registration, registry: Registry,
             fragment: str) -> bool:
    """The app's backend as rendered now, then its registration: a registration always names
    a stored backend that is complete. True when either changed."""
    changed = registry.fragments.get(inventory.app) != fragment
    if changed:
        server.write_file(app_files(inventory, inventory.app).fragment, fragment)
    old = registry.of(inventory.app)
    if old is None or dataclasses.replace(old, by=mine.by, at=mine.at) != mine:
        server.write_file(registration_path(inventory, inventory.app), registration_json(mine))
        changed = True
    return changed


def write_and_check(server: ServerLike, inventory: Inventory, generation: Generation,
                    image: str) -> None:
    """The generation's folder written whole and checked by HAProxy (the image that will run
    it), once: a folder named by its hash that is there passed its check before."""
    if not write_generation(server, inventory, generation):
        return
    check = server.run(check_generation(image_ref=image,
                                        haproxy_dir=proxy_haproxy_dir(inventory),
                                        generation=generation.name), check=False)
    if check.ok:
        return
    server.run(["rm", "-rf", f"{proxy_haproxy_dir(inventory)}/{generation.name}"],
               check=False)
    alerts = [line for line in (check.stdout + check.stderr).splitlines() if "ALERT" in line]
    detail = (alerts or (check.stderr + check.stdout).strip().splitlines()
              or [f"exit {check.exit_code}"])[0]
    raise ProxyError(f"{server.name}: HAProxy refuses the shared config ({detail.strip()}); "
                     "nothing was changed")


def apply_generation(server: ServerLike, inventory: Inventory, generation: Generation,
                     image: str, others: Sequence[Registration], owner: LockOwner) -> str:
    """The generation (written and checked) run: by a new container where none runs, else by
    a reload once every other app's lock is held and each backend's state saved. "" when
    HAProxy runs it already."""
    name = PROXY_CONTAINER
    container = shared_container(server)
    current = read_current(server, inventory)
    running = (server.read_file(proxy_running_path(inventory)) or "").strip()
    if (container is not None and container.running and current == generation.name
            and running == generation.sha12):
        return ""
    places = {app_lock_place(inventory, item.app).lock_dir: item.app for item in others}
    with holding(server, [app_lock_place(inventory, app) for app in places.values()], owner,
                 inventory.timeouts.lease, lambda lock: f"{places[lock]}'s lock"):
        if container is not None and container.running:
            save_backend_states(server, inventory, [inventory.app, *(i.app for i in others)])
        # `previous`: only a generation that ran (.running names it) is one to go back to.
        ran = current if running and current == f"{GENERATION_PREFIX}{running}" else None
        server.run(switch_command(inventory, generation.name, ran))
        if container is None:
            server.run(run_shared_proxy(image_ref=image, haproxy_dir=proxy_haproxy_dir(inventory),
                                        admin_dir=proxy_admin_dir(inventory)))
            wait_for_runtime_api(server)
            done = "shared HAProxy started"
        elif not container.running:
            server.run(docker.start(name))
            wait_for_runtime_api(server)
            done = "shared HAProxy restarted"
        else:
            reload(server, inventory, current)
            done = "shared HAProxy reloaded"
        server.write_file(proxy_running_path(inventory), generation.sha12 + "\n")
    kept = [generation.name, current, read_link(server, previous_link(inventory))]
    server.run(prune_generations_command(inventory, dict.fromkeys(filter(None, kept))),
               check=False)
    return done


def save_backend_states(server: ServerLike, inventory: Inventory, apps: Sequence[str]) -> None:
    """Each running backend's slot state in its own file (a backend the running generation
    does not have yet has none to save)."""
    for app in apps:
        try:
            state = server.runtime_api(haproxy.command_show_servers_state(app))
        except haproxy.RuntimeApiError:
            continue
        if "Can't find backend" in state or not state.strip():
            continue
        server.write_file(app_files(inventory, app).server_state, state.lstrip("\n"))


def reload(server: ServerLike, inventory: Inventory, previous: str | None) -> None:
    """HUP to the master: new workers with the generation `current` names now, the old ones
    finish their connections. One that does not start leaves the old workers serving, and
    `current` goes back to the generation they run."""
    before = haproxy.parse_info(server.runtime_api("show info")).get("Pid")
    server.run(docker.signal_container(PROXY_CONTAINER, "HUP"))
    if wait_for_new_worker(server, before):
        return
    if previous is not None:
        server.run(switch_command(inventory, previous, None), check=False)
    raise ProxyError(f"{server.name}: the shared HAProxy accepted the new config but did not "
                     f"start with it; the old workers keep running; see `docker logs "
                     f"{PROXY_CONTAINER}` on the server")

