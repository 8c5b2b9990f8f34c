"""A simulated server running the shared HAProxy for two apps (docs/apps-design.md, build
step 5), for the tests of several apps on one server (step 6 on: deploy A, B's lines never
change). `AppsServer` lays out what a shared `up` leaves on a server: a generation
assembled by the kit's own `proxy_assembly` from each app's fragment, `current` pointing to
it, each app's files (`apps/<app>/`: its empty maintenance map, its certificate, its state
file once saved), and the slots' containers; HAProxy started from it as the shared
container runs it (simulated_shared_proxy.start_shared)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    app_files,
    app_files_in_haproxy,
    current_link,
    fallback_cert_path,
    proxy_haproxy_dir,
    proxy_service_path,
)
from slotswap.https.files import placeholder
from slotswap.server import maintenance
from slotswap.server.haproxy_config import Login
from slotswap.server.proxy_assembly import (
    Generation,
    assemble,
    inventory_shared_values,
    render_fragment,
)
from slotswap.server.proxy_registry import Registration
from tests.unit.fake_server import make_inventory
from tests.unit.simulated_docker import Container
from tests.unit.simulated_files import SimFiles
from tests.unit.simulated_haproxy import SimClock, patch_time
from tests.unit.simulated_server import SimulatedServer
from tests.unit.simulated_shared_proxy import (
    Answer,
    Mount,
    load_generation,
    serve_host,
    start_shared,
)

APPS = ("a", "b")
ADDRESS = "203.0.113.10"
FILES = {"chain": "certs/fullchain.pem", "key": "certs/privkey.pem"}


def names_of(app: str) -> list[str]:
    return [f"{app}.test", f"*.{app}.test"]


def registration(inventory: Inventory, default: bool = False) -> Registration:
    """The app's registration as its `up` writes it (what `assemble` reads of it)."""
    return Registration(
        app=inventory.app, names=inventory.route_names, default=default,
        https=inventory.https is not None, slot_ports=inventory.haproxy.slot_ports,
        check_ports=None, shared_settings={}, drain=2.0, kit_version="test",
        by="test@local", at="2026-01-01T00:00:00Z")


class AppsServer:
    """One server, its shared HAProxy serving apps A and B (HTTPS, by name), each with its
    two slots: web1 (v1) in rotation, web2 (v2) running in maint, as a deploy leaves them;
    each backend's state saved in its own file. `server` is A's view of it (its inventory
    is A's): runtime-API lines, files, containers, faults as any simulated server."""

    def __init__(self, root: Path, monkeypatch: Any | None = None,
                 apps: tuple[str, ...] = APPS, default: str | None = None) -> None:
        self.default = default
        self.clock = SimClock()
        if monkeypatch is not None:
            patch_time(monkeypatch, self.clock)
        self.inventories = {app: make_inventory(
            root / app, app=app, image=f"acme/{app}", hosts=[ADDRESS],
            healthcheck={"path": "/health"}, timeouts={"watch": 0.5, "healthy": 5, "drain": 2},
            haproxy={"shared": True, "slot_ports": [18081 + 2 * index, 18082 + 2 * index]},
            https={"names": names_of(app), "files": FILES})
            for index, app in enumerate(apps)}
        first = self.inventories[apps[0]]
        self.shared = inventory_shared_values(first)
        self.fragments = {app: render_fragment(inventory, self.shared)
                          for app, inventory in self.inventories.items()}
        self.generation = self.assemble(apps)
        self.certs = {app: placeholder(tuple(names_of(app))).haproxy_pem() for app in apps}
        self.server = SimulatedServer(ADDRESS, first, self.clock, root / "servers",
                                      config=self.config_text(self.generation))
        self.folder = proxy_haproxy_dir(first)
        files = self.server.files
        files.write(fallback_cert_path(first), placeholder(("invalid",), days=3650).haproxy_pem())
        files.write(proxy_service_path(first), maintenance.shared_service_script())
        for app in apps:
            own = app_files(first, app)
            files.write(own.fragment, self.fragments[app])
            files.write(own.maintenance_map, "")
            files.write(own.cert, self.certs[app])
        self.switch(self.generation)
        start_shared(self.server.haproxy, files, self.folder)
        for app in apps:
            for index, slot in enumerate(("web1", "web2")):
                self.run_slot(app, slot, f"v{index + 1}")
            self.server.haproxy.answer(f"set server {app}/web2 state maint")
        self.clock.advance(1.0)  # every line's checks have passed
        for app in apps:
            self.save_state(app)

    # -- the server's files -------------------------------------------------------------
    def assemble(self, apps: tuple[str, ...]) -> Generation:
        return assemble([registration(self.inventories[app], app == self.default)
                         for app in apps],
                        {app: self.fragments[app] for app in apps}, self.shared, Login(0, 0))

    def switch(self, generation: Generation) -> None:
        """The generation written beside `current` and `current` pointed at it (as a shared
        change does; HAProxy loads it at its next start or reload)."""
        for path, text in generation.files.items():
            self.server.files.write(f"{self.folder}/{generation.name}/{path}", text)
        self.server.files.symlink(generation.name, current_link(self.server.inventory))

    def config_text(self, generation: Generation) -> str:
        """What `-f current/haproxy.cfg -f current/backends` loads of this generation."""
        files = SimFiles()
        for path, text in generation.files.items():
            files.write(f"/generation/{generation.name}/{path}", text)
        files.symlink(generation.name, "/generation/current")
        return load_generation(Mount(files, "/generation"))

    def save_state(self, app: str) -> None:
        """`show servers state <app>` into the app's own file, as the app's runs save it
        (no call of the server's: its calls and faults are the run's)."""
        text = self.server.haproxy.answer(haproxy.command_show_servers_state(app))
        self.server.files.write(app_files(self.server.inventory, app).server_state, text)

    # -- the slots ----------------------------------------------------------------------
    def run_slot(self, app: str, slot: str, version: str) -> Container:
        inventory = self.inventories[app]
        server = self.server
        server.serial += 1
        ref = inventory.image_ref(version)
        container = Container(
            inventory.container_name(slot), ref, server.add_image(version),
            {docker.LABEL_APP: app, docker.LABEL_SLOT: slot, docker.LABEL_VERSION: version},
            restart="unless-stopped", started_at=self.clock.now,
            published=inventory.slot_published_ports(slot), serial=server.serial)
        server.containers[container.name] = container
        return container

    # -- what HAProxy does and answers --------------------------------------------------
    def api(self, command: str) -> str:
        return self.server.runtime_api(command)

    def request(self, host: str) -> Answer:
        """One request with this Host, as the shared frontend routes it."""
        return serve_host(self.server.haproxy, host, self.server.container_at,
                          self.server.answers)

    def map_in_haproxy(self, app: str) -> str:
        return app_files_in_haproxy(app).maintenance_map

    def cert_in_haproxy(self, app: str) -> str:
        return app_files_in_haproxy(app).cert
