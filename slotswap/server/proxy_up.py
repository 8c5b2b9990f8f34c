"""`up` of one app on a server whose HAProxy is shared (several apps on one server,
docs/apps-design.md, decisions 1, 2 and 5), run while the app's own lock is held.

Refused before any change where its inventory contradicts another app's (exit 2), where the
app still runs its own HAProxy (`up` moves it instead: server/proxy_move.py), another app's
own HAProxy is on the server, or the shared HAProxy runs from another login's folders.
HAProxy's image pulled (or sent, with delivery: ssh) before any lock is taken. Then, with the
shared HAProxy's lock: a hand-over a cut run left ended first (proxy_handover); every app's
registration read; the generation assembled
from the app's backend rendered now and every other present app's stored one, written and
checked by HAProxy before anything else changes. When HAProxy runs it already, only the app's
registration is brought up to date. Else every other present app's lock is taken (refused at
once when one is held: that app's run is going on, and nothing is changed), and only then the
settings record, the app's backend and registration, and the generation go in (by a reload,
or for a new image by a hand-over to a new container); a generation that does not go in puts
the app's backend and registration back as they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from slotswap.commands import docker
from slotswap.commands.proxy_commands import list_haproxies
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    CONFIG_NAME,
    PROXY_CONTAINER,
    ProxyError,
    app_files,
    own_haproxy_dir,
    proxy_settings_path,
    registration_path,
)
from slotswap.core.validation import validate_app_name
from slotswap.core.version import kit_version
from slotswap.https.files import CertificateBundle
from slotswap.remote.protocol import ServerLike
from slotswap.server.haproxy import ensure_network, observe_engine
from slotswap.server.haproxy_config import login_ids
from slotswap.server.images import ensure_image, log_in_to_registry
from slotswap.server.locking import LockOwner
from slotswap.server.proxy_assembly import Generation, assemble, render_fragment
from slotswap.server.proxy_certs import place, running_lists_certificate
from slotswap.server.proxy_contradictions import check_contradictions
from slotswap.server.proxy_files import (
    Registry,
    kit_defaults,
    read_current,
    read_registry,
    registration_for,
)
from slotswap.server.proxy_generation import (
    prepare_folders,
    read_state,
    shared_container,
    write_and_check,
)
from slotswap.server.proxy_handover import (
    NEXT_PROXY,
    drain_seconds,
    end_interrupted_hand_over,
    hand_over_lease,
    image_changes,
    put_in,
)
from slotswap.server.proxy_locks import holding, other_apps_locks, shared_lock
from slotswap.server.proxy_registry import (
    EffectiveSettings,
    Registration,
    SharedSettings,
    assembled,
    effective_settings,
    others_present,
    registration_json,
    settings_json,
)

Progress = Callable[[str], None]
# What puts HAProxy's image on a server: (server, image, progress).
FetchImage = Callable[[ServerLike, str, Progress], None]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def pull_image(server: ServerLike, image: str, progress: Progress) -> None:
    ensure_image(server, image, progress)


def up_shared(server: ServerLike, inventory: Inventory, progress: Progress,
              owner: LockOwner, certificate: CertificateBundle | None = None,
              fetch_image: FetchImage = pull_image) -> str:
    """The app's part of the server's shared HAProxy in place, and that HAProxy running the
    generation with every present app, of the image the shared settings name (a new one
    takes over with no connection refused: proxy_handover); what was done, in words.
    `certificate`: with HTTPS, the one to put in place (fleet.certs.material_for_up;
    server/proxy_certs.py); `fetch_image`: what puts HAProxy's image on the server (pulled
    by the server, or with delivery: ssh sent from the operator's Docker)."""
    inventory = server.with_folders(inventory)
    changes: list[str] = []
    registry = read_registry(server, inventory)
    mine, _, image = planned(server, inventory, registry, owner, None)
    if ensure_network(server, inventory, progress):
        changes.append("network created")
    log_in_to_registry(server, inventory, progress)
    fetch_image(server, image, progress)
    # A new image (or a hand-over a cut run left) keeps the locks through a soft stop.
    everyone = [mine, *others_present(registry.registrations, inventory.app)]
    lease = hand_over_lease(inventory, everyone) if handing_over(server, image) else None
    with holding(server, inventory, owner, shared_lock(inventory), lease=lease):
        registry = read_registry(server, inventory)
        mine, effective, image = planned(server, inventory, registry, owner, progress)
        others = others_present(registry.registrations, inventory.app)
        fetch_image(server, image, progress)  # the same, unless another run changed it
        if end_interrupted_hand_over(server, inventory, progress, owner, [mine, *others]):
            changes.append("interrupted hand-over ended")
        fragment = render_fragment(inventory, effective.values)
        generation = generation_with(server, mine, fragment, registry, effective.values)
        state = read_state(server, inventory)
        new_image = image_changes(state, image)
        if state.runs(generation) and not new_image:
            # A new certificate for a routing that stays (https.files renewed): no reload.
            listed = running_lists_certificate(server, inventory, running=True)
            if place(server, inventory, certificate, progress, listed=listed):
                changes.append("certificate installed with no reload" if listed
                               else "certificate installed")
            if register(server, inventory, mine, registry, fragment):
                changes.append(f"{inventory.app}'s registration updated")
            record_settings(server, inventory, registry, effective.record)
            return ", ".join(changes) if changes else "unchanged"
        # Checked by HAProxy before anything of the app changes: a backend it refuses never
        # reaches another app's next `up`.
        prepare_folders(server, inventory)
        running = state.container is not None and state.container.running
        listed = running_lists_certificate(server, inventory, running=running)
        # The check loads the crt-list: a certificate it lists is there before it. One that
        # HAProxy serves already is replaced once the check passed and every lock is held,
        # through the runtime API (no reload; nothing changed when either refuses).
        if not listed and place(server, inventory, certificate, progress, listed=False):
            changes.append("certificate installed")
        write_and_check(server, inventory, generation, image, "nothing was changed",
                        named_too=new_image)
        with holding(server, inventory, owner,
                     other_apps_locks(inventory, [item.app for item in others]),
                     lease=hand_over_lease(inventory, [mine, *others]) if new_image else None):
            if listed and place(server, inventory, certificate, progress, listed=True):
                changes.append("certificate installed with no reload")
            record_settings(server, inventory, registry,
                            assembled(effective.record, kit_version(), inventory.app, "up"))
            if register(server, inventory, mine, registry, fragment):
                changes.append(f"{inventory.app}'s backend written")
            try:
                changes.append(put_in(
                    server, inventory, progress, generation, image,
                    [inventory.app, *(item.app for item in others)], state,
                    drain_seconds([mine, *others])))
            except BaseException:
                if not went_in(server, inventory, generation):
                    put_back(server, inventory, registry)
                raise
    progress(f"the shared HAProxy routes {', '.join(mine.names) or 'every other name'} to "
             f"{inventory.app}")
    return ", ".join(changes)


def handing_over(server: ServerLike, image: str) -> bool:
    """The shared HAProxy runs another image than `image`, or a hand-over a cut run left is
    there (one `docker inspect`)."""
    found = docker.parse_inspect(server.run(
        docker.inspect_containers(PROXY_CONTAINER, NEXT_PROXY), check=False).stdout)
    running = found.get(PROXY_CONTAINER)
    return NEXT_PROXY in found or (running is not None and running.image != image)


def generation_with(server: ServerLike, mine: Registration, fragment: str, registry: Registry,
                    values: Mapping[str, object]) -> Generation:
    """The generation of the app's `up` (its backend rendered now) and every other present
    app (its stored backend)."""
    others = others_present(registry.registrations, mine.app)
    return assemble([mine, *others], {
        mine.app: fragment, **{item.app: registry.fragments.get(item.app) or ""
                               for item in others}}, values, login_ids(server))


def up_worker_only_shared(server: ServerLike, inventory: Inventory, progress: Progress) -> str:
    """`up` of a shared app on a worker-only host (`web: false`): the app's network, which its
    role containers join, and nothing of the shared HAProxy. A host where the app is on the
    shared HAProxy (it ran the web before) is refused: taking an app off it there is its
    `down`'s work, and `up` does not do it yet."""
    inventory = server.with_folders(inventory)
    mine = read_registry(server, inventory).of(inventory.app)
    if mine is not None:
        raise ProxyError(f"{server.name}: web: false, but {inventory.app} is on this server's "
                         "shared HAProxy: taking it off a host turned worker-only is not "
                         "available yet (`down` removes it from every server); nothing was "
                         "changed")
    created = ensure_network(server, inventory, progress)
    observe_engine(server)  # the image runs here too: its platform counts for `build`
    return ("network created" if created else "unchanged") + " (worker-only: no HAProxy)"


def planned(server: ServerLike, inventory: Inventory, registry: Registry, owner: LockOwner,
            progress: Progress | None, *, moving: bool = False
            ) -> tuple[Registration, EffectiveSettings, str]:
    """The app's registration, the shared settings it uses and HAProxy's image, once nothing
    on the server forbids its `up`: its inventory contradicts no other app's
    (ProxyContradiction, one line, exit 2; `progress` gets the notices), no HAProxy of an
    app's own runs there (`moving`: but this app's, which the move replaces:
    server/proxy_move.py), and the shared one runs from this login's folders."""
    shared_container(server, inventory)
    own = own_haproxies(server, inventory)
    if moving:
        own.pop(inventory.app, None)
    elif inventory.app in own:
        raise ProxyError(f"{server.name}: {inventory.app} runs its own HAProxy "
                         f"({inventory.haproxy_container}) since this run began: run `up` "
                         "again to move it to the shared HAProxy; nothing was changed")
    mine = registration_for(inventory, kit_version=kit_version(), by=owner.who, at=now())
    # The public ports as they would be (a contradiction on them is found below).
    values = {**kit_defaults(), **(registry.settings.values if registry.settings else {}),
              **mine.shared_settings}
    tls = mine.https or any(item.https for item in others_present(registry.registrations,
                                                                   inventory.app))
    ports = {key: int(str(values[key])) for key in ("haproxy.http_port", "https.port")
             if key != "https.port" or tls}
    notices = check_contradictions(server.name, mine, registry.registrations,
                                   registry.settings, names_key=inventory.route_names_key,
                                   shared_ports=ports, own_haproxys=list(own.items()),
                                   inventory_file=inventory.path.name)
    for notice in notices if progress is not None else ():
        progress(notice)
    effective = effective_settings(inventory.app, mine.shared_settings, kit_defaults(),
                                   registry.settings, registry.registrations, by=owner.who,
                                   at=now())
    return mine, effective, str(effective.values["haproxy.image"])


def own_haproxies(server: ServerLike, inventory: Inventory) -> dict[str, tuple[int, ...]]:
    """The apps whose own HAProxy (not the shared one) has a container on the server, with
    the ports its config binds (unreadable: every port, as far as a refusal goes): a port
    both bind would split its connections between them."""
    answer = server.run(list_haproxies(), check=False)
    found: dict[str, tuple[int, ...]] = {}
    for line in answer.stdout.splitlines():
        app, _, shared = line.partition(" ")
        if not app or shared.strip() == "1":
            continue
        other = dataclasses.replace(inventory, app=validate_app_name(app))
        config = server.read_file(f"{own_haproxy_dir(other)}/{CONFIG_NAME}")
        found[app] = bound_ports(config) if config is not None else tuple(range(1, 65536))
    return found


def bound_ports(config: str) -> tuple[int, ...]:
    """Pure: the ports of a config's `bind` lines."""
    ports = []
    for line in config.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "bind":
            for endpoint in words[1].split(","):
                port = endpoint.rpartition(":")[2]
                if port.isdigit():
                    ports.append(int(port))
    return tuple(ports)


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


def went_in(server: ServerLike, inventory: Inventory, generation: Generation) -> bool:
    """`current` names the generation, or cannot be read (it may): a restart of HAProxy
    loads it, and HAProxy may run it already (a run cut after the switch, the reload or
    `.running`), so the app's backend and registration stay as they are in it. Were they
    put back, the app could be deployed into the running backend and then dropped by
    another app's next `up`."""
    try:
        return read_current(server, inventory) == generation.name
    except Exception:
        return True


def put_back(server: ServerLike, inventory: Inventory, registry: Registry) -> None:
    """The app's backend and registration as they were before this `up` (none: removed),
    when its generation did not go in (`current` names another: not switched, or put back
    after HAProxy did not start with it): another app's next `up` must not bring in what
    HAProxy did not start with. Best effort: a server that no longer answers keeps them."""
    old = registry.of(inventory.app)
    fragment = registry.fragments.get(inventory.app)
    files = app_files(inventory, inventory.app)
    with contextlib.suppress(Exception):
        if old is None:
            server.run(["rm", "-f", registration_path(inventory, inventory.app)])
        else:
            server.write_file(registration_path(inventory, inventory.app),
                              registration_json(old))
        if fragment is None:
            server.run(["rm", "-f", files.fragment])
        else:
            server.write_file(files.fragment, fragment)


def record_settings(server: ServerLike, inventory: Inventory, registry: Registry,
                    record: SharedSettings) -> None:
    """The shared settings record, written when it changed (before the generation that uses
    it goes in: a run cut after it leaves the next app no first app's defaults)."""
    if record != registry.settings:
        server.write_file(proxy_settings_path(inventory), settings_json(record))

