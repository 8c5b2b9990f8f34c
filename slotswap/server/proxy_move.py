"""A server moved from today's layout (the app's own HAProxy, `<app>-haproxy`) to the shared
HAProxy by the app's `up` with `haproxy.shared: true` (several apps on one server,
docs/apps-design.md, decisions 6 and 7), run while the app's own lock is held.

Under the shared HAProxy's lock: the app's maintenance map, certificate (and where it came
from) and its backend's slot state (`show servers state <app>` from the old HAProxy) copied
into its folder of the shared one; its backend, registration and the generation written and
checked, as the shared `up` does. Then the shared HAProxy starts beside the old one (both
listen on the public ports, SO_REUSEPORT) with an instance token, or, where it serves other
apps already, reloads with the app in (under their locks); the move waits until the shared
admin socket answers from that HAProxy with its frontend open and the app's backend in the
states read. Until then any failure takes back what started and leaves the old HAProxy
serving. Then the point of no return, as in today's hand-over: the old HAProxy's restart
policy off, its soft stop (SIGUSR1), up to `timeouts.drain` for its open connections, its
container and folder removed (the app's env files stay), and an entry in the app's history.

A move cut short is ended by the next `up`: before the shared HAProxy started, done again
from the start; after, with the old HAProxy not yet told to stop, the shared one it started
removed (where it serves no other app, whatever its image) and the move done again; after
the old one was told to stop (its restart policy `no`), finished where the shared HAProxy has
the app (registered, its backend answering), else refused. A shared image hand-over cut
short is ended first, as the shared `up` ends it. Until then the other tasks refuse the server
(`half-moved: run up`, slotswap.server.slots).
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Sequence

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.proxy_commands import run_shared_proxy
from slotswap.commands.runtime_api import ServerState
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    ADMIN_FOLDER,
    GENERATION_PREFIX,
    PROXY_CONTAINER,
    STATE_NAME,
    ProxyError,
    app_files,
    cert_path_on_server,
    map_path_on_server,
    own_haproxy_dir,
    own_next_container,
    proxy_admin_dir,
    proxy_haproxy_dir,
    proxy_running_path,
    socket_in,
    source_path_on_server,
)
from slotswap.core.version import kit_version
from slotswap.https.files import CertificateBundle
from slotswap.remote.protocol import ServerLike
from slotswap.server import history
from slotswap.server.half_moved import registered_on_shared
from slotswap.server.haproxy import ensure_network
from slotswap.server.haproxy_handover import (
    RELOAD_TIMEOUT,
    on_host_network,
    one_line,
    soft_stop,
    soft_stop_seconds,
    wait_for_new_haproxy,
    warn_without_request_migration,
)
from slotswap.server.images import log_in_to_registry
from slotswap.server.locking import LockOwner
from slotswap.server.proxy_assembly import Generation, render_fragment
from slotswap.server.proxy_certs import place, running_lists_certificate
from slotswap.server.proxy_files import Registry, read_current, read_registry, switch_command
from slotswap.server.proxy_generation import (
    ProxyState,
    apply_generation,
    prepare_folders,
    read_state,
    reload,
    save_backend_states,
    write_and_check,
)
from slotswap.server.proxy_handover import (
    NEXT_PROXY,
    end_interrupted_hand_over,
    hand_over_lease,
)
from slotswap.server.proxy_locks import holding, other_apps_locks, shared_lock
from slotswap.server.proxy_registry import assembled, others_present, present
from slotswap.server.proxy_up import (
    FetchImage,
    generation_with,
    planned,
    pull_image,
    put_back,
    record_settings,
    register,
    up_shared,
    went_in,
)

Progress = Callable[[str], None]
MOVED = "moved to the shared HAProxy"

# Old folder -> the app's folder of the shared HAProxy, each copied when it is there
# (mode kept: the certificate is the login's alone). Paths come as arguments, in pairs.
COPY_SCRIPT = ('while [ "$#" -gt 1 ]; do if [ -f "$1" ]; then cp -pf -- "$1" "$2" || exit 1; '
               'fi; shift 2; done')


def up_moving(server: ServerLike, inventory: Inventory, progress: Progress, owner: LockOwner,
              certificate: CertificateBundle | None = None,
              fetch_image: FetchImage = pull_image) -> str:
    """`up` of an app with `haproxy.shared` on one server: the move where the app runs its own
    HAProxy there (or a move was cut short), else proxy_up.up_shared. `fetch_image` puts the
    shared HAProxy's image on the server (pulled, or sent with delivery: ssh)."""
    inventory = server.with_folders(inventory)
    name = inventory.haproxy_container
    found = inspect_for_move(server, inventory)
    refusal = move_refusal(server.name, inventory, found)
    if refusal is not None:
        raise ProxyError(refusal)
    old = found.get(name)
    if old is None:
        if not server.run(["test", "-d", own_haproxy_dir(inventory)], check=False).ok:
            return up_shared(server, inventory, progress, owner, certificate, fetch_image)
        if read_registry(server, inventory).of(inventory.app) is not None:
            # Cut after the old HAProxy's container went: only its folder is left.
            done = up_shared(server, inventory, progress, owner, certificate, fetch_image)
            remove_old_folder(server, inventory, progress, time.monotonic())
            return f"{done}; {MOVED} (the old HAProxy's folder removed)"
        # Its container gone, never moved: its files and state are the ones to take over.
    started = time.monotonic()
    shared = found.get(PROXY_CONTAINER)
    if old is not None and old.restart_policy == "no":
        if NEXT_PROXY in found:  # a shared image hand-over cut short: ended first
            shared = end_cut_hand_over(server, inventory, progress, owner)
        if shared is None or not shared.running:
            raise ProxyError(told_to_stop_alone(server.name, inventory))
        require_served(server, inventory)
        progress(f"finishing an interrupted move: {name} was told to stop; "
                 f"{PROXY_CONTAINER} serves")
        return finish_move(server, inventory, progress, started)
    move(server, inventory, progress, owner, certificate, old, fetch_image)
    return finish_move(server, inventory, progress, started)


def inspect_for_move(server: ServerLike, inventory: Inventory
                     ) -> dict[str, docker.ContainerInfo]:
    """The app's own HAProxy, its cut upgrade's, the shared HAProxy and its cut hand-over's
    containers: one `docker inspect` (what move_refusal judges)."""
    names = (inventory.haproxy_container, own_next_container(inventory), PROXY_CONTAINER,
             NEXT_PROXY)
    return docker.parse_inspect(server.run(docker.inspect_containers(*names),
                                           check=False).stdout)


def move_refusal(server_name: str, inventory: Inventory,
                 found: dict[str, docker.ContainerInfo]) -> str | None:
    """Pure: what refuses the app's `up` with haproxy.shared on a server before any change
    (`found`: inspect_for_move), in one line; None: none. Also the shared `up`'s first pass
    (fleet.shared_checks)."""
    name, temporary = inventory.haproxy_container, own_next_container(inventory)
    old, shared = found.get(name), found.get(PROXY_CONTAINER)
    if temporary in found:
        return (f"{server_name}: {temporary} is left from an upgrade of {inventory.app}'s own "
                "HAProxy that was cut short: run `up` once without haproxy.shared to end it, "
                "then with it; nothing was changed")
    if old is None:
        return None
    if not on_host_network(old):
        return (f"{server_name}: {name} runs on {inventory.app}'s network (set up by an older "
                "slotswap): run `up` once without haproxy.shared (it moves it to the server's "
                "network), then with it; nothing was changed")
    if (old.restart_policy == "no" and NEXT_PROXY not in found
            and (shared is None or not shared.running)):
        return told_to_stop_alone(server_name, inventory)
    return None


def told_to_stop_alone(server_name: str, inventory: Inventory) -> str:
    return (f"{server_name}: {inventory.haproxy_container} was told to stop, and no shared "
            "HAProxy runs: run `up` once without haproxy.shared (it starts the app's own "
            "again), then with it; nothing was changed")


def require_served(server: ServerLike, inventory: Inventory) -> None:
    """The old HAProxy was told to stop (the move's point of no return): finished only where
    the shared HAProxy has the app, its registration there and its backend's slots answering
    on the shared admin socket; else refused in one line (nothing changed), so that a move
    cut otherwise is never finished into an HAProxy that does not serve the app."""
    told = f"{server.name}: {inventory.haproxy_container} was told to stop, but"
    if not registered_on_shared(server, inventory):
        raise ProxyError(f"{told} {inventory.app} is not registered on the shared HAProxy: "
                         "run `up` once without haproxy.shared (it starts the app's own "
                         "again), then with it; nothing was changed")
    server.use_admin_socket(None)
    try:
        states = haproxy.parse_servers_state(server.runtime_api(
            haproxy.command_show_servers_state(inventory.app)))
        haproxy.require_servers(states, inventory.app, SLOTS)
    except haproxy.RuntimeApiError as error:
        raise ProxyError(f"{told} the shared HAProxy does not answer for {inventory.app}'s "
                         f"backend ({one_line(error)}): see `docker logs {PROXY_CONTAINER}` "
                         "on the server, then run `up` again; nothing was changed") from error
    finally:
        server.close_runtime_api()


def move(server: ServerLike, inventory: Inventory, progress: Progress, owner: LockOwner,
         certificate: CertificateBundle | None, old: docker.ContainerInfo | None,
         fetch_image: FetchImage = pull_image) -> None:
    """Steps 1-3 of the move: up to the shared HAProxy serving the app's backend in the
    states the old one had, the old one still serving. Any failure before that takes back
    what this run started and leaves the old HAProxy serving (ProxyError)."""
    name = inventory.haproxy_container
    serves = f"{name} serves" if old is not None and old.running else f"{name} is not running"
    registry = read_registry(server, inventory)
    mine, _, image = planned(server, inventory, registry, owner, None, moving=True)
    ensure_network(server, inventory, progress)
    log_in_to_registry(server, inventory, progress)
    fetch_image(server, image, progress)
    # The move may send an image, soft-stop a shared HAProxy left by a cut move or end a cut
    # hand-over under these locks: each held for that long (as up_shared's hand-over).
    lease = hand_over_lease(inventory, [mine, *others_present(registry.registrations,
                                                              inventory.app)])
    with holding(server, inventory, owner, shared_lock(inventory), lease=lease):
        registry = read_registry(server, inventory)
        mine, effective, image = planned(server, inventory, registry, owner, progress,
                                         moving=True)
        others = others_present(registry.registrations, inventory.app)
        lease = hand_over_lease(inventory, [mine, *others])
        fetch_image(server, image, progress)  # the same, unless another run changed it
        end_interrupted_hand_over(server, inventory, progress, owner, [mine, *others])
        state = read_state(server, inventory)
        # A leftover of a cut move goes first, whatever its image (the image it was started
        # with may have changed since): only one that serves other apps keeps its image.
        if state.container is not None and not others:
            # Started by a move cut before the old HAProxy was told to stop: it goes, and
            # the move starts again from the old HAProxy's state.
            progress(f"removing {PROXY_CONTAINER}, left by an interrupted move ({serves})")
            stop_softly(server, inventory, PROXY_CONTAINER, progress,
                        running=state.container.running)
            server.use_admin_socket(None)
            state = ProxyState(None, state.current, state.running)
        if state.container is not None and state.container.image != image:
            raise ProxyError(f"{server.name}: the shared HAProxy runs "
                             f"{state.container.image}, its settings name {image}: a move "
                             "does not change its image; run `up` of an app already on it "
                             f"first; nothing was changed ({serves})")
        fragment = render_fragment(inventory, effective.values)
        generation = generation_with(server, mine, fragment, registry, effective.values)
        prepare_folders(server, inventory)
        expected = copy_from_old(server, inventory, old)
        running = state.container is not None and state.container.running
        listed = running_lists_certificate(server, inventory, running=running)
        if not listed:
            place(server, inventory, certificate, progress, listed=False)
        write_and_check(server, inventory, generation, image,
                        f"nothing was changed ({serves})")
        warn_without_request_migration(server, progress)
        with holding(server, inventory, owner,
                     other_apps_locks(inventory, [item.app for item in others]), lease=lease):
            if listed:
                place(server, inventory, certificate, progress, listed=True)
            record_settings(server, inventory, registry,
                            assembled(effective.record, kit_version(), inventory.app,
                                      "up"))
            register(server, inventory, mine, registry, fragment)
            try:
                if state.runs(generation):
                    pass  # a move cut with the app in already (beside other apps)
                elif running:
                    apply_generation(server, inventory, generation, image,
                                     [inventory.app, *(item.app for item in others)], state)
                else:
                    start_beside(server, inventory, generation.name, image, state, progress)
                wait_for_backend(server, inventory, expected)
            except BaseException as error:
                take_back(server, inventory, state, registry, started=not running,
                          generation=generation, others=[item.app for item in others])
                if isinstance(error, ProxyError | haproxy.RuntimeApiError):
                    raise ProxyError(f"{server.name}: the shared HAProxy did not take over "
                                     f"from {name} ({one_line(error)}); {serves}; see "
                                     f"`docker logs {PROXY_CONTAINER}` on the server"
                                     ) from error
                raise


def end_cut_hand_over(server: ServerLike, inventory: Inventory, progress: Progress,
                      owner: LockOwner) -> docker.ContainerInfo | None:
    """A shared image hand-over cut short (`slotswap-proxy-next` there) ended under the
    shared HAProxy's lock, as up_shared ends it; the shared HAProxy's container after."""
    registry = read_registry(server, inventory)
    present_apps = list(present(registry.registrations))
    with holding(server, inventory, owner, shared_lock(inventory),
                 lease=hand_over_lease(inventory, present_apps)):
        present_apps = list(present(read_registry(server, inventory).registrations))
        end_interrupted_hand_over(server, inventory, progress, owner, present_apps)
    return docker.parse_inspect(server.run(docker.inspect_containers(PROXY_CONTAINER),
                                           check=False).stdout).get(PROXY_CONTAINER)


def copy_from_old(server: ServerLike, inventory: Inventory,
                  old: docker.ContainerInfo | None) -> dict[str, ServerState]:
    """The old HAProxy's maintenance map, certificate and its source into the app's folder
    of the shared one, then its backend's slot state (read from it where it runs, else its
    file): what the shared HAProxy's backend must show once it serves (the states read)."""
    folder, files = own_haproxy_dir(inventory), app_files(inventory, inventory.app)
    pairs = [(map_path_on_server(folder), files.maintenance_map),
             (cert_path_on_server(folder), files.cert),
             (source_path_on_server(folder), files.source)]
    server.run(["sh", "-c", COPY_SCRIPT, "sh", *(path for pair in pairs for path in pair)])
    if old is not None and old.running:
        server.use_admin_socket(socket_in(f"{folder}/{ADMIN_FOLDER}"))
        try:
            text = server.runtime_api(haproxy.command_show_servers_state(inventory.app))
        finally:
            server.use_admin_socket(None)
    else:
        text = server.read_file(f"{folder}/{STATE_NAME}") or ""
    text = text.lstrip("\n")
    if not text.strip():
        return {}
    server.write_file(files.server_state, text)
    return haproxy.parse_servers_state(text)


def start_beside(server: ServerLike, inventory: Inventory, generation: str, image: str,
                 state: ProxyState, progress: Progress) -> None:
    """The shared HAProxy started with the generation, beside the app's own (both listen on
    the public ports), until its admin socket answers with its instance token and its
    frontend is open."""
    progress(f"starting {PROXY_CONTAINER} beside {inventory.haproxy_container}")
    instance = secrets.token_hex(8)
    server.run(switch_command(inventory, generation, state.ran))
    server.run(docker.remove(PROXY_CONTAINER), check=False, timeout=60)  # a stopped one
    server.run(run_shared_proxy(image_ref=image, haproxy_dir=proxy_haproxy_dir(inventory),
                                admin_dir=proxy_admin_dir(inventory), instance=instance),
               timeout=60)
    server.use_admin_socket(None)
    wait_for_new_haproxy(server, PROXY_CONTAINER, instance)
    server.write_file(proxy_running_path(inventory),
                      generation.removeprefix(GENERATION_PREFIX) + "\n")


def wait_for_backend(server: ServerLike, inventory: Inventory,
                     expected: dict[str, ServerState]) -> None:
    """Until the shared HAProxy's backend of the app shows its lines in the states read from
    the old one (states_differ); ProxyError after RELOAD_TIMEOUT."""
    timeout = RELOAD_TIMEOUT
    deadline = time.monotonic() + timeout
    differences: list[str] = ["no answer"]
    while time.monotonic() <= deadline:
        server.close_runtime_api()
        try:
            found = haproxy.parse_servers_state(
                server.runtime_api(haproxy.command_show_servers_state(inventory.app)))
            differences = states_differ(expected, found)
        except haproxy.RuntimeApiError as error:
            differences = [one_line(error)]
        if not differences:
            return
        time.sleep(0.2)
    raise ProxyError(f"{inventory.app}'s backend on the shared HAProxy is not as it was on "
                     f"{inventory.haproxy_container} within {timeout:g}s: "
                     f"{'; '.join(differences)}")


MAINT_OR_DRAIN = haproxy.ADMIN_FORCED_MAINT | haproxy.ADMIN_FORCED_DRAIN
ANY_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40


def states_differ(expected: dict[str, ServerState], found: dict[str, ServerState]) -> list[str]:
    """Pure: how each line of the backend differs from the state read from the old HAProxy:
    missing, put in maintenance or drain (or out of it), or, for a line in no maintenance,
    its operational state (a slot in rotation must be up in both). Empty: the same."""
    differences = []
    for name, want in expected.items():
        have = found.get(name)
        if have is None:
            differences.append(f"{name} missing")
        elif want.admin_state & MAINT_OR_DRAIN != have.admin_state & MAINT_OR_DRAIN:
            differences.append(f"{name} admin state {have.admin_state}, was "
                               f"{want.admin_state}")
        elif not want.admin_state & ANY_MAINT and want.op_state != have.op_state:
            differences.append(f"{name} operational state {have.op_state}, was "
                               f"{want.op_state}")
    return differences


def take_back(server: ServerLike, inventory: Inventory, state: ProxyState,
              registry: Registry, *, started: bool, generation: Generation,
              others: Sequence[str] = ()) -> None:
    """A move that did not reach its point of no return: the shared HAProxy it started
    stopped softly (it may listen already) and removed, or the one that serves other apps
    reloaded back to the generation it ran before (reload_back); `current` back where it
    was, the app's backend and registration as they were; the old HAProxy, never touched,
    serves on. The registration stays while `current` names the app's generation (went_in:
    HAProxy may serve the app's backend; the other tasks refuse the server as half-moved
    until the next `up` ends the move). Best effort (the next `up` ends it)."""
    server.close_runtime_api()
    server.use_admin_socket(None)
    if started:
        try:
            found = docker.parse_inspect(server.run(docker.inspect_containers(PROXY_CONTAINER),
                                                    check=False).stdout).get(PROXY_CONTAINER)
            stop_softly(server, inventory, PROXY_CONTAINER, lambda line: None,
                        running=found is not None and found.running)
        except Exception:
            server.run(docker.remove(PROXY_CONTAINER), check=False, timeout=60)
        if state.ran is not None:
            server.run(switch_command(inventory, state.ran, None), check=False)
    else:
        with contextlib.suppress(Exception):
            reload_back(server, inventory, state, generation, others)
        if went_in(server, inventory, generation):
            return
    put_back(server, inventory, registry)


def reload_back(server: ServerLike, inventory: Inventory, state: ProxyState,
                generation: Generation, others: Sequence[str]) -> None:
    """The shared HAProxy serving other apps, reloaded with the app's generation in (current
    and `.running` name it), back to the generation it ran before: the other apps' backend
    states saved, `current` switched back, HUP; seen running it, `.running` says so. A reload
    that does not start leaves `current` at the app's generation (what the workers run)."""
    if state.ran in (None, generation.name) or read_current(server, inventory) != (
            generation.name):
        return  # not switched (or switched back by the reload), or nothing known to go to
    save_backend_states(server, inventory, others)
    server.run(switch_command(inventory, state.ran, None))
    reload(server, inventory, generation.name)
    server.write_file(proxy_running_path(inventory),
                      state.ran.removeprefix(GENERATION_PREFIX) + "\n")


def finish_move(server: ServerLike, inventory: Inventory, progress: Progress,
                started: float) -> str:
    """Past the point of no return (the shared HAProxy serves the app): the old HAProxy told
    to stop (restart policy off, SIGUSR1) and given `timeouts.drain` for its open
    connections, then removed with its folder. Each step may have been done already (a
    run cut in here)."""
    name = inventory.haproxy_container
    found = docker.parse_inspect(server.run(docker.inspect_containers(name),
                                            check=False).stdout).get(name)
    if found is not None:
        if found.running:
            progress(f"{PROXY_CONTAINER} serves {inventory.app}; soft stop of {name} (it "
                     f"finishes its open connections, up to {soft_stop_seconds(inventory)}s)")
        stop_softly(server, inventory, name, progress, running=found.running)
    remove_old_folder(server, inventory, progress, started)
    return MOVED


def stop_softly(server: ServerLike, inventory: Inventory, name: str, progress: Progress, *,
                running: bool) -> None:
    """An HAProxy container that listens beside another on the same ports removed without
    resetting a connection: restart policy off, soft stop (SIGUSR1: it closes its listeners
    and finishes its open connections, up to `timeouts.drain`), then removed."""
    if running and soft_stop(server, name):
        seconds = soft_stop_seconds(inventory)
        waited = server.run(docker.wait_exit(name, seconds), check=False, timeout=seconds + 30)
        if not waited.ok:
            progress(f"{name} still had connections after {seconds}s: removed anyway")
    server.run(docker.remove(name), timeout=60)


def remove_old_folder(server: ServerLike, inventory: Inventory, progress: Progress,
                      started: float) -> None:
    """The old HAProxy's folder removed (the app's env files beside it stay), and the move
    in the app's history."""
    server.run(["rm", "-rf", own_haproxy_dir(inventory)])
    entry = history.new_entry("up", None, "", MOVED, time.monotonic() - started)
    try:
        history.append(server, inventory, entry)
    except Exception as error:  # the move is done: the history says less, nothing more
        progress(f"WARNING: could not record the move in its history: {one_line(error)}")
    progress(f"{inventory.app} {MOVED}")
