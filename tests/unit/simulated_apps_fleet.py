"""Two apps (a, b) on the shared HAProxy of a few simulated servers (simulated_shared_server.py),
for the fault sweep on several apps (test_fault_sweep_apps.py): `AppsFleet` runs the kit's
own shared `up` and `down` (as `fab up` and `fab down` run them), deploy and rollback of one
app, and checks after every call of every server docs/apps-design.md's decision 7, per app:

- some HAProxy listens, and it runs a generation that passed its check;
- the run's app answers with the version it served before the run or the one the run moves
  it to (never a foreign one, never a 503 while it served), and HAProxy sends its new
  requests to the version the kit last said serves there; an app being added has no
  version yet; an app being removed serves its version, or nothing (404, 503);
- every other app is answered by the very container that answered it before the run, and
  its lines keep their admin states."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slotswap.cli.tasks import down_shared_action
from slotswap.config.inventory import Inventory
from slotswap.config.layout import registration_path
from slotswap.core import interrupts
from slotswap.fleet import delivery, every_server, rollout, server_run
from slotswap.fleet import rollback_targets as rollback_targets_module
from slotswap.fleet.outcomes import RolloutResult
from slotswap.server import proxy_down, proxy_up
from slotswap.server.proxy_assembly import assemble, render_fragment
from slotswap.server.proxy_files import kit_defaults
from slotswap.server.proxy_registry import parse_registration
from tests.unit.fake_server import make_inventory
from tests.unit.simulated_fleet import REPORTS, rollout_targets, run_rollback, task_result
from tests.unit.simulated_haproxy import SimClock, SimHaproxy, patch_time
from tests.unit.simulated_shared_proxy import routes_by_host, serve_host
from tests.unit.simulated_shared_server import SharedSimServer, runs_checked

APPS = ("a", "b")
TAGS = ("v1", "v2", "v3")
HAPROXY_IMAGE = "haproxy:2.8"
NEW_HAPROXY_IMAGE = "haproxy:3.0"  # `up a3`: a, the shared settings' owner, upgrades it


# What one run watches (AppsFleet.run sets it); kept across a run made inside it.
RUN_STATE = ("app", "verb", "before", "lines_before", "leaving", "allowed", "reported",
             "last_routed")


def host_of(app: str) -> str:
    return f"{app}.test"


def own_inventory(root: Path, app: str, index: int, hosts: int, **haproxy: Any) -> Inventory:
    """The app in today's layout (its own HAProxy, `<app>-haproxy`), which its `up` with
    haproxy.shared moves to the shared one (`a0`; `a8`: its own HAProxy on port 8080, beside
    a shared one on the default port)."""
    return make_inventory(root / f"{app}-own", app=app, image=f"acme/{app}",
                          hosts=[f"203.0.113.{10 + i}" for i in range(hosts)],
                          timeouts={"watch": 0.5, "healthy": 5, "drain": 2},
                          haproxy={"image": HAPROXY_IMAGE, **haproxy,
                                   "slot_ports": [18081 + 2 * index, 18082 + 2 * index]})


def app_inventory(root: Path, app: str, index: int, hosts: int, image: str = HAPROXY_IMAGE,
                  **changed: Any) -> Inventory:
    """`changed`: settings on top (a's changed inventory, `a2`: a new health check interval,
    which changes its backend and so the generation); `image`: the shared HAProxy's, which
    a's inventory sets (a owns the shared settings; `a3`: a new one, a hand-over)."""
    return make_inventory(root / app, app=app, image=f"acme/{app}", names=[host_of(app)],
                          hosts=[f"203.0.113.{10 + i}" for i in range(hosts)], **changed,
                          timeouts={"watch": 0.5, "healthy": 5, "drain": 2},
                          haproxy={"shared": True, "image": image,
                                   "slot_ports": [18081 + 2 * index, 18082 + 2 * index]}
                          if index == 0 else
                          {"shared": True, "slot_ports": [18081 + 2 * index, 18082 + 2 * index]})


def stand_in(inventory: Inventory) -> str:
    """What the simulated HAProxy holds before the first `up` starts the shared one (never
    served: no HAProxy container runs): the app's backend."""
    return render_fragment(inventory, kit_defaults())


class Answered:
    """What one app's request got on one server: the backend (None: 404), the container's
    name and version (None: no container answered, 503)."""

    __slots__ = ("backend", "container", "version")

    def __init__(self, backend: str | None, container: str | None,
                 version: str | None) -> None:
        self.backend, self.container, self.version = backend, container, version

    def key(self) -> tuple[str | None, str | None, str | None]:
        return self.backend, self.container, self.version

    def __repr__(self) -> str:
        if self.backend is None:
            return "404"
        return f"{self.container} ({self.version})" if self.container else "503"


def admin_states(server: SharedSimServer, app: str) -> tuple[tuple[str, str], ...] | None:
    """Each of the app's lines with its admin state (READY, DRAIN, MAINT); None: HAProxy
    runs no backend of the app."""
    process = process_of(server, app) if server.haproxy_containers() else None
    backend = process.backends.get(app) if process is not None else None
    if backend is None:
        return None
    return tuple((name, line.admin_name) for name, line in backend.lines.items())


def is_present(server: SharedSimServer, app: str) -> bool:
    """The app's registration on the server says it is present (not leaving)."""
    text = server.read_local(registration_path(server.inventory, app))
    return text is not None and parse_registration(text, app).state == "present"


def is_leaving(server: SharedSimServer, app: str) -> bool:
    """The app's registration on the server says it is leaving (its `down` was cut)."""
    text = server.read_local(registration_path(server.inventory, app))
    return text is not None and parse_registration(text, app).state == "leaving"


def listening(server: SharedSimServer) -> list[SimHaproxy]:
    """Each HAProxy process that takes connections, the one started last first (before
    the first `up`: the one the simulator made)."""
    if not server.haproxy_containers():
        return [server.haproxy]
    processes = [process for _, process in server.processes()]
    return sorted(processes, key=lambda process: process is not server.haproxy)


def answer_in(server: SharedSimServer, process: SimHaproxy, app: str) -> Answered:
    """What a request with the app's Host gets from this HAProxy: the shared one routes by
    Host; an app's own (today's layout, a move's old one) serves its backend (an app it
    does not have: 404)."""
    if not routes_by_host(process.config):
        backend = process.backends.get(app)
        if backend is None:
            return Answered(None, None, None)
        own = server.maintenance if process is server.haproxy else False
        container = None if own else backend.serve(server.container_at, server.answers)
        return Answered(app, container.name if container else None,
                        container.version if container else None)
    got = serve_host(process, host_of(app), server.container_at, server.answers)
    container = got.container
    return Answered(got.backend, container.name if container else None,
                    container.version if container else None)


def answers(server: SharedSimServer, app: str) -> list[Answered]:
    """The app's answer from each HAProxy that listens and has its backend."""
    return [found for process in listening(server)
            for found in [answer_in(server, process, app)] if found.backend is not None]


def process_of(server: SharedSimServer, app: str) -> SimHaproxy | None:
    """The HAProxy that answers the app (the one started last that has its backend)."""
    processes = listening(server)
    return next((process for process in processes
                 if answer_in(server, process, app).backend is not None),
                processes[0] if processes else None)


def answered(server: SharedSimServer, app: str) -> Answered | None:
    """What a request with the app's Host gets now (None: no HAProxy listens); where two
    HAProxys listen (a hand-over, a move), the one started last that has its backend
    (`disagree` holds them to the same answer)."""
    return answered_and_disagree(server, app)[0]


def disagree(server: SharedSimServer, app: str) -> list[Answered]:
    """Two HAProxys listen and answer the app with different versions (empty: they
    agree)."""
    return answered_and_disagree(server, app)[1]


def answered_and_disagree(server: SharedSimServer, app: str
                          ) -> tuple[Answered | None, list[Answered]]:
    """answered and disagree from one look at each HAProxy (the sweep asks both after every
    call)."""
    if not server.haproxy_containers():
        return None, []
    found = answers(server, app)
    split = found if len({item.version for item in found}) > 1 else []
    if not server.haproxy_listens():
        return None, split
    if found:
        return found[0], split
    processes = listening(server)
    return (answer_in(server, processes[0], app) if processes else None), split


def routed(server: SharedSimServer, app: str) -> str | None:
    """The version HAProxy sends the app's new requests to first (balance first): the
    first line in rotation with a running container."""
    process = process_of(server, app)
    backend = process.backends.get(app) if process is not None else None
    if backend is None or not server.haproxy_listens():
        return None
    for line in backend.usable():
        container = server.container_at(line.port)
        if container is not None:
            return container.version
    return None


class AppsFleet:
    """Simulated servers with two apps' inventories, on one clock, watched after every call."""

    def __init__(self, root: Path, hosts: int, monkeypatch: Any) -> None:
        self.inventories = {app: app_inventory(root, app, index, hosts)
                            for index, app in enumerate(APPS)}
        # `up a2`: a's `up` with a changed setting (a reload with a's new backend).
        self.inventories["a2"] = app_inventory(root, "a", 0, hosts,
                                               healthcheck={"interval": 3})
        self.inventories["a3"] = app_inventory(root, "a", 0, hosts, NEW_HAPROXY_IMAGE)
        self.inventories["a0"] = own_inventory(root, "a", 0, hosts)
        self.inventories["a8"] = own_inventory(root, "a", 0, hosts, http_port=8080)
        # The apps whose last deploy or rollback exited 0 with no `down` since: the kit
        # said they serve.
        self.said_serving: set[str] = set()
        self.clock = SimClock()
        patch_time(monkeypatch, self.clock)
        first = self.inventories["a"]
        self.servers = [SharedSimServer(host.name, first, self.clock, root / "servers",
                                        config=stand_in(first)) for host in first.hosts]
        for server in self.servers:
            server.registry[HAPROXY_IMAGE] = "sha256:" + "ab" * 32
            server.registry[NEW_HAPROXY_IMAGE] = "sha256:" + "cd" * 32
            for inventory in self.inventories.values():
                for tag in TAGS:
                    ref = inventory.image_ref(tag)
                    server.registry[ref] = "sha256:" + f"{abs(hash(ref)) % 16**16:016x}" * 4
        self.watch(monkeypatch)

    def watch(self, monkeypatch: Any) -> None:
        for server in self.servers:
            server.after_call, server.before_call = self.after_call, self.before_call
        self.problems: list[str] = []
        # Another run made between two calls of this one: at that call of the first server
        # (before it), the command; and what each such run returned.
        self.meanwhile: tuple[int, str] | None = None
        self.inside: list[tuple[str, RolloutResult]] = []
        self.also: tuple[str, dict[str, set[str | None]]] | None = None
        # Runs at once: their progress lines name a slot and a version, not the app; what
        # the kit last said is not told apart, and not held.
        self.runs_at_once = False
        self.app = ""  # the run's app
        self.verb = ""  # up, down, deploy, rollback
        self.before: dict[tuple[str, str], Answered | None] = {}
        self.lines_before: dict[tuple[str, str], tuple[tuple[str, str], ...] | None] = {}
        self.leaving: dict[tuple[str, str], bool] = {}
        self.allowed: dict[str, set[str | None]] = {}
        self.reported: dict[str, str | None] = {}
        self.last_routed: dict[str, tuple[str | None, str]] = {}
        monkeypatch.setattr(rollout, "servers_of", lambda inventory: self.servers)
        monkeypatch.setattr(every_server, "servers_of", lambda inventory: self.servers)
        monkeypatch.setattr(rollback_targets_module, "servers_of",
                            lambda inventory: self.servers)
        monkeypatch.setattr(every_server, "progress_for", self.progress_for)
        monkeypatch.setattr(server_run, "progress_for", self.progress_for)
        for module in (proxy_up, proxy_down):
            if hasattr(module, "assemble"):
                monkeypatch.setattr(module, "assemble", cached_assemble)
        monkeypatch.setattr(proxy_up, "render_fragment", cached_fragment)

    # -- what the kit says ------------------------------------------------------------------
    def progress_for(self, name: str) -> Callable[[str], None]:
        def progress(message: str) -> None:
            if message.startswith(("FAILED", "not switched")):
                return
            for pattern in REPORTS:
                if found := pattern.search(message):
                    self.reported[name] = found[1]
        return progress

    def before_call(self, server: SharedSimServer) -> None:
        self.check_reported(server)
        # The rollout's threads call at once: one of them makes it, not a watch of the
        # window (the rollout does not wait for those), at that call or the next it makes.
        with server.guard:
            due = self.meanwhile is not None and server is self.servers[0] \
                and server.calls + 1 >= self.meanwhile[0] \
                and not threading.current_thread().name.startswith("watch-")
            command = self.meanwhile[1] if due and self.meanwhile else ""
            if due:
                self.meanwhile = None
        if command:
            self.run_inside(command)

    def run_inside(self, command: str) -> None:
        """Another app's whole run between two calls of this one (two runs at once, seen at
        one interleaving); then this run goes on, the other app now as that run left it."""
        saved = {name: copy.copy(getattr(self, name)) for name in RUN_STATE}
        inventories = [server.inventory for server in self.servers]
        self.also = (self.app, copy.deepcopy(self.allowed))
        try:
            self.inside.append((command, self.run(command)))
        finally:
            self.also = None
        for name, value in saved.items():
            setattr(self, name, value)
        app = command.split()[1]
        for server, inventory in zip(self.servers, inventories, strict=True):
            server.inventory = inventory
            self.before[(server.name, app)] = answered(server, app)
            self.lines_before[(server.name, app)] = admin_states(server, app)
            self.leaving[(server.name, app)] = is_leaving(server, app)

    def check_reported(self, server: SharedSimServer) -> None:
        """Before each call: the version HAProxy sent the run's app's new requests to after
        the last call is the one the kit last said serves there."""
        version, what = self.last_routed.pop(server.name, (None, ""))
        said = self.reported.get(server.name)
        if server.lease_taken or self.verb not in ("deploy", "rollback") or self.runs_at_once:
            return
        if version is not None and said is not None and version != said:
            self.problems.append(f"{server.name}: {self.app} {version} takes the traffic, "
                                 f"the kit said {said} serves, after `{what[:80]}`")

    def after_call(self, server: SharedSimServer, what: str) -> None:
        if not self.app:
            return  # the setup
        if not server.haproxy_listens():
            self.problems.append(f"{server.name}: no HAProxy listens after `{what[:80]}`")
            return
        if server.haproxy_containers() and not runs_checked(server):
            self.problems.append(f"{server.name}: HAProxy runs a config that never passed "
                                 f"its check, after `{what[:80]}`")
        for app in APPS:
            (now, split), before = answered_and_disagree(server, app), \
                self.before.get((server.name, app))
            if split:
                self.problems.append(f"{server.name}: two HAProxys answer {app} with "
                                     f"{split}, after `{what[:80]}`")
            if self.also is not None and app == self.also[0]:
                # The run this one was made in goes on meanwhile on the other servers.
                if now is None or now.version not in self.also[1][server.name]:
                    self.problems.append(f"{server.name}: {app} answered by {now} after "
                                         f"`{what[:80]}`")
                continue
            if app != self.app and self.leaving[(server.name, app)] \
                    and app not in self.said_serving:
                # Leaving (its `down` cut short, and no deploy since said it serves): its
                # names route to its slots or nowhere.
                if now is not None and now.version not in (None, before and before.version):
                    self.problems.append(f"{server.name}: {app} (leaving) answered by {now}, "
                                         f"was {before}, after `{what[:80]}`")
                continue
            if app != self.app:
                if before is not None and before.version is None:
                    # No version in rotation (added, not deployed yet): none appears. Its
                    # backend may come in (a cut `up`'s registration, decision 7).
                    if now is not None and now.version is not None:
                        self.problems.append(f"{server.name}: {app} answered by {now}, was "
                                             f"{before}, after `{what[:80]}`")
                elif before is not None and (now is None or now.key() != before.key()):
                    self.problems.append(f"{server.name}: {app} answered by {now}, was "
                                         f"{before}, after `{what[:80]}`")
                lines = self.lines_before.get((server.name, app))
                if lines is not None and admin_states(server, app) != lines:
                    self.problems.append(f"{server.name}: {app}'s lines are "
                                         f"{admin_states(server, app)}, were {lines}, after "
                                         f"`{what[:80]}`")
                continue
            self.problems += self.run_app_problems(server, now, before, what)
        if self.verb in ("deploy", "rollback"):
            self.last_routed[server.name] = (routed(server, self.app), what)

    def run_app_problems(self, server: SharedSimServer, now: Answered | None,
                         before: Answered | None, what: str) -> list[str]:
        if self.verb == "up" or now is None:
            # An app being added has no slot yet; one whose names route is held below
            # once it serves.
            if before is not None and before.version is not None and (
                    now is None or now.version != before.version):
                return [f"{server.name}: {self.app} answered by {now}, was {before}, "
                        f"after `{what[:80]}`"]
            return []
        if self.verb == "down":
            if now.version is not None and now.version not in self.allowed[server.name]:
                return [f"{server.name}: {self.app} foreign version {now} after "
                        f"`{what[:80]}`"]
            return []
        if now.version is None and before is not None and before.version is not None:
            return [f"{server.name}: {self.app} answered {now} after `{what[:80]}`"]
        if now.version not in self.allowed[server.name]:
            return [f"{server.name}: {self.app} foreign version {now.version} in rotation "
                    f"after `{what[:80]}`"]
        return []

    # -- runs -------------------------------------------------------------------------------
    def run(self, command: str) -> RolloutResult:
        """One plain run: `up APP`, `down APP`, `deploy APP TAG`, `rollback APP [TAG]`."""
        result = self.run_plain(command)
        verb, app = command.split()[:2]
        if verb == "down":
            self.said_serving.discard(app)
        elif verb in ("deploy", "rollback") and result.exit_code == 0:
            self.said_serving.add(app)
        return result

    def run_plain(self, command: str) -> RolloutResult:
        verb, name, *rest = command.split()
        inventory = self.inventories[name]
        app = inventory.app
        for server in self.servers:
            server.inventory = inventory  # a lease taken over is the run's app's lock
        targets = rollout_targets(inventory, [verb, *rest]) \
            if verb in ("deploy", "rollback") else {}
        for server in self.servers:
            for each in APPS:
                self.before[(server.name, each)] = answered(server, each)
                self.lines_before[(server.name, each)] = admin_states(server, each)
                self.leaving[(server.name, each)] = is_leaving(server, each)
            mine = self.before[(server.name, app)]
            version = mine.version if mine is not None else None
            self.allowed[server.name] = {version, targets.get(server.name)}
            self.reported[server.name] = version
        self.app, self.verb = app, verb
        interrupts._requested.clear()
        try:
            if verb == "up":
                with delivery.up_action(inventory) as up_one:
                    return task_result(every_server.on_every_server(inventory, up_one, "up"))
            if verb == "down":
                return task_result(every_server.on_every_server(inventory, down_shared_action,
                                                                "down"))
            if verb == "deploy":
                return rollout.deploy(inventory, rest[0])
            return run_rollback(inventory, rest[0] if rest else None, targets)
        finally:
            interrupts._requested.clear()
            for server in self.servers:
                self.check_reported(server)
            self.app = ""

    def clone(self, root: Path, monkeypatch: Any) -> AppsFleet:
        twin = AppsFleet.__new__(AppsFleet)
        twin.inventories = self.inventories
        twin.said_serving = set(self.said_serving)
        twin.clock = SimClock()
        twin.clock.now = self.clock.now
        patch_time(monkeypatch, twin.clock)
        twin.servers = [server.clone(twin.clock, root) for server in self.servers]
        twin.watch(monkeypatch)
        return twin


# Rendering is most of a shared `up`'s time: each fragment and generation made once.
_FRAGMENTS: dict[tuple[int, str], tuple[Inventory, str]] = {}
_GENERATIONS: dict[str, Any] = {}


def cached_fragment(inventory: Inventory, values: Any) -> str:
    key = (id(inventory), repr(sorted(values.items())))  # the entry keeps its id taken
    if key not in _FRAGMENTS:
        _FRAGMENTS[key] = (inventory, render_fragment(inventory, values))
    return _FRAGMENTS[key][1]


def cached_assemble(registrations: Any, fragments: Any, values: Any, login: Any) -> Any:
    # Who registered an app and when is not in a generation.
    key = re.sub(r"at='[^']*'", "", repr((registrations, sorted(fragments.items()),
                                          sorted(values.items()), login)))
    if key not in _GENERATIONS:
        _GENERATIONS[key] = assemble(registrations, fragments, values, login)
    return _GENERATIONS[key]
