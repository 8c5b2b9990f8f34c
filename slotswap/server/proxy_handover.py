"""A new image for a server's shared HAProxy with no connection refused (several apps on one
server, docs/apps-design.md, decisions 2 and 7, "shared image hand-over"): today's hand-over
(server/haproxy_handover.py) with the shared container's names, run by the `up` that changes
the image, under the shared HAProxy's lock and every present app's.

Each present backend's state is saved in its own file first, and `current` names the
generation that `up` assembled; `slotswap-proxy-next` (the new image, an instance token in
its environment) starts beside `slotswap-proxy` on the server's network (both listen on the
public ports, SO_REUSEPORT) and loads `current`, each backend from its file. Once the shared
admin socket answers with that token and the frontend is OPEN, the point of no return: the
old container's restart policy off, SIGUSR1 (it finishes its open connections, up to the
longest timeouts.drain of the present apps), removed, the new one renamed. Before that point
any failure (an interrupt included) removes the new container, puts `current` back and
reloads the old one, whose admin socket is made anew. A run cut anywhere leaves the next
`up` to end it first, as today's rules say (finish past the point of no return, else undo);
deploys and `status` refuse the server meanwhile (`slots.read_slots` looks for
`layout.next_container`, `slotswap-proxy-next` with haproxy.shared).
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from collections.abc import Callable, Iterable, Sequence

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.proxy_commands import run_shared_proxy
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    NEXT_SUFFIX,
    PROXY_CONTAINER,
    ProxyError,
    proxy_admin_dir,
    proxy_haproxy_dir,
)
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import RemoteCommandError
from slotswap.server.haproxy_handover import (
    HandOverNames,
    back_to_old_haproxy,
    cut_hand_over,
    finish_hand_over,
    finish_interrupted_handover,
    one_line,
    wait_for_new_haproxy,
    warn_without_request_migration,
)
from slotswap.server.locking import LockOwner
from slotswap.server.proxy_assembly import Generation
from slotswap.server.proxy_files import switch_command
from slotswap.server.proxy_generation import (
    ProxyState,
    apply_generation,
    read_state,
    record_running,
    save_backend_states,
)
from slotswap.server.proxy_locks import holding, other_apps_locks, shared_lock_lease
from slotswap.server.proxy_registry import Registration, longest_drain, present

Progress = Callable[[str], None]

# The new shared HAProxy's name while both run (layout.next_container with haproxy.shared).
NEXT_PROXY = f"{PROXY_CONTAINER}{NEXT_SUFFIX}"


def drain_seconds(registrations: Iterable[Registration]) -> int:
    """Pure: how long the old shared HAProxy may take to finish its open connections: the
    longest timeouts.drain of the present apps, whole seconds, at least 1."""
    return max(1, math.ceil(longest_drain(registrations) or 0))


def hand_over_lease(inventory: Inventory, registrations: Iterable[Registration]) -> int:
    """The lease of the locks a hand-over holds: what a shared change takes, and its soft
    stop."""
    return shared_lock_lease(inventory) + drain_seconds(registrations)


def shared_names(image: str, seconds: int) -> HandOverNames:
    return HandOverNames(PROXY_CONTAINER, NEXT_PROXY, seconds, image)


def image_changes(state: ProxyState, image: str) -> bool:
    """Pure: the shared HAProxy's container is of another image than `image`."""
    return state.container is not None and state.container.image != image


def put_in(server: ServerLike, inventory: Inventory, progress: Progress,
           generation: Generation, image: str, apps: Sequence[str], state: ProxyState,
           seconds: int) -> str:
    """The generation (written and checked by `image`) run by `image`, under every app's
    lock: as proxy_generation.apply_generation does, or, where the container is of another
    image, by a new container: a running one hands over to it, a stopped one (nothing
    serves from it) is replaced. What was done, in words."""
    container = state.container
    if container is None or container.image == image:
        return apply_generation(server, inventory, generation, image, apps, state)
    done = f"shared HAProxy replaced ({container.image} -> {image})"
    if not container.running:
        server.run(docker.remove(PROXY_CONTAINER), timeout=60)
        apply_generation(server, inventory, generation, image, apps,
                         dataclasses.replace(state, container=None))
        return done
    hand_over(server, inventory, progress, generation, image, apps, state, seconds)
    return done


def hand_over(server: ServerLike, inventory: Inventory, progress: Progress,
              generation: Generation, image: str, apps: Sequence[str], state: ProxyState,
              seconds: int) -> None:
    """The running shared HAProxy replaced by a container of `image` running `generation`
    (see the module's docstring); `apps`: the present backends, each saved first."""
    old = state.container
    assert old is not None and old.running
    progress(f"the shared HAProxy's image changes ({old.image} -> {image}): starting "
             f"{NEXT_PROXY} beside {PROXY_CONTAINER}")
    warn_without_request_migration(server, progress)
    instance = secrets.token_hex(8)
    # Each backend of the new HAProxy starts from its own file: saved under every app's
    # lock, so no slot moves before the new one has loaded it.
    save_backend_states(server, inventory, apps)
    server.run(switch_command(inventory, generation.name, state.ran))
    try:
        server.run(docker.remove(NEXT_PROXY), check=False, timeout=60)
        server.run(run_shared_proxy(image_ref=image, haproxy_dir=proxy_haproxy_dir(inventory),
                                    admin_dir=proxy_admin_dir(inventory),
                                    container=NEXT_PROXY, instance=instance), timeout=60)
        # The new master makes the shared admin socket anew.
        server.use_admin_socket(None)
        wait_for_new_haproxy(server, NEXT_PROXY, instance)
    except BaseException as error:
        server.close_runtime_api()
        try:
            # Back to what the old HAProxy was seen running (`current` may name this
            # generation already: a retry after a run cut once it switched).
            current_back(server, inventory, generation.name, state.running)
            back_to_old_haproxy(server, inventory, NEXT_PROXY, restore=False,
                                name=PROXY_CONTAINER)
        except Exception as cleanup:
            progress(f"could not undo the hand-over: {cleanup}")
        if isinstance(error, ProxyError | haproxy.RuntimeApiError | RemoteCommandError):
            raise ProxyError(f"{server.name}: the shared HAProxy's new image ({image}) did "
                             f"not take over ({one_line(error)}); {PROXY_CONTAINER} keeps "
                             f"serving with its image {old.image}") from error
        raise
    progress(f"{NEXT_PROXY} accepts connections; soft stop of {PROXY_CONTAINER} (it finishes "
             f"its open connections, up to {seconds}s)")
    finish_hand_over(server, inventory, progress, shared_names(image, seconds))
    record_running(server, inventory, generation, state)


def current_back(server: ServerLike, inventory: Inventory, now: str | None,
                 before: str | None) -> None:
    """`current` back at `before` (the generation the old HAProxy runs) where a hand-over
    moved it to `now`, so that the old one's reload loads what it ran; left as it is when
    that generation is gone."""
    if before is None or before == now:
        return
    if server.run(["test", "-d", f"{proxy_haproxy_dir(inventory)}/{before}"], check=False).ok:
        server.run(switch_command(inventory, before, None), check=False)


def end_interrupted_hand_over(server: ServerLike, inventory: Inventory, progress: Progress,
                              owner: LockOwner, registrations: Sequence[Registration]) -> bool:
    """A shared hand-over a run cut short (`slotswap-proxy-next` there) ended as today's
    rules say (haproxy_handover.cut_hand_over), under every other present app's lock (one
    held: refused in one line, nothing changed); run under the shared HAProxy's lock. False
    when there was none."""
    found = docker.parse_inspect(server.run(
        docker.inspect_containers(PROXY_CONTAINER, NEXT_PROXY), check=False).stdout)
    if cut_hand_over(found, PROXY_CONTAINER, NEXT_PROXY) is None:
        return False
    names = shared_names(found[NEXT_PROXY].image, drain_seconds(registrations))
    others = [item.app for item in present(registrations) if item.app != inventory.app]
    with holding(server, inventory, owner, other_apps_locks(inventory, others),
                 lease=hand_over_lease(inventory, registrations)):
        state = read_state(server, inventory)
        # An undo reloads the old HAProxy: with the generation it was seen running.
        finish_interrupted_handover(
            server, inventory, progress, names,
            before_undo=lambda: current_back(server, inventory, state.current, state.running))
    return True
