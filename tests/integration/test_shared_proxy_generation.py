"""The shared HAProxy's mechanics on a real server (several apps on one server, issue 23,
docs/apps-design.md decision 1), before any task drives them: the kit's assembled generation
for two apps, checked by HAProxy in a throwaway container while the server has no `current`
yet (a server's first generation), run by the shared container's `docker run`, routing each
Host to its app; then a generation without one app goes in by switching `current` and a
reload, under load on the other app: none of its requests fails.

Everything runs on s1 beside the fleet, on ports of its own (the shared HAProxy on 8090, the
apps' slots on 1818x), from a folder under /var/tmp that the server's Docker sees as this
machine does; all of it is removed at the end."""

from __future__ import annotations

import http.client
import shlex
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slotswap.commands.docker import LOOPBACK
from slotswap.commands.proxy_commands import check_generation, run_shared_proxy
from slotswap.config.inventory import Inventory
from slotswap.config.loader import load_inventory, parse_inventory
from slotswap.https.files import placeholder
from slotswap.server import maintenance
from slotswap.server.haproxy_config import Login
from slotswap.server.proxy_assembly import (
    Generation,
    assemble,
    generation_hash,
    inventory_shared_values,
    render_fragment,
)
from slotswap.server.proxy_registry import Registration
from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
HTTP_PORT = 8090
APPS = {"shop": ("v1", (18181, 18182)), "admin": ("v2", (18183, 18184))}
PREFIX = "sptest"  # this test's containers: sptest-proxy, sptest-shop-web1, ...


@dataclass
class Layout:
    box: Sandbox
    server: str
    folder: Path  # the shared HAProxy's folder (the container's /usr/local/etc/haproxy)
    image: str  # HAProxy's
    inventories: dict[str, Inventory]

    def ssh(self, command: list[str] | str) -> str:
        return self.box.ssh(self.server, command if isinstance(command, str)
                            else shlex.join(command))

    def generation(self, apps: list[str]) -> Generation:
        inventories = [self.inventories[app] for app in apps]
        shared = inventory_shared_values(inventories[0])
        fragments = {inv.app: render_fragment(inv, shared) for inv in inventories}
        registrations = [Registration(
            app=inv.app, names=inv.route_names, default=False, https=False,
            slot_ports=inv.haproxy.slot_ports, check_ports=None, shared_settings={},
            drain=5.0, kit_version="test", by="test@sandbox", at="2026-12-04T00:00:00Z")
            for inv in inventories]
        return assemble(registrations, fragments, shared, Login(0, 0))

    def write(self, generation: Generation) -> None:
        for path, text in generation.files.items():
            target = self.folder / generation.name / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            target.chmod(0o644)
        for directory in (self.folder / generation.name).rglob("*"):
            if directory.is_dir():
                directory.chmod(0o755)

    def check(self, generation: Generation) -> str:
        """HAProxy's words on the generation (its check's exit code aside)."""
        argv = check_generation(image_ref=self.image, haproxy_dir=str(self.folder),
                                generation=generation.name)
        return self.ssh(f"{shlex.join(argv)} 2>&1; true")

    def switch(self, generation: Generation) -> None:
        """`current` replaced in one rename (ln -s to a temporary name, mv -T)."""
        temporary = self.folder / ".current.tmp"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(generation.name)
        temporary.rename(self.folder / "current")


def get(address: str, host: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(address, HTTP_PORT, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def answers(address: str, host: str) -> tuple[int, str] | None:
    try:
        return get(address, host)
    except OSError:
        return None


@pytest.fixture
def layout(fleet_on_v1: Sandbox) -> Iterator[Layout]:
    box = fleet_on_v1
    server = box.addresses[0]
    fleet = load_inventory(box.inventory)
    folder = Path("/var/tmp") / f"slotswap-shared-{uuid.uuid4().hex[:8]}" / "haproxy"
    inventories = {app: parse_inventory({
        "app": app, "image": fleet.image, "hosts": [server], "app_port": fleet.app_port,
        "haproxy": {"shared": True, "image": fleet.haproxy.image, "http_port": HTTP_PORT,
                    "slot_ports": list(ports)},
        "names": [f"{app}.test"], "timeouts": {"drain": 5}},
        folder.parent / f"{app}.yaml") for app, (_, ports) in APPS.items()}
    (folder / "admin").mkdir(parents=True, mode=0o700)
    folder.parent.chmod(0o755)
    folder.chmod(0o755)
    for app in APPS:
        (folder / "apps" / app).mkdir(parents=True)
        (folder / "apps" / app / "maintenance.map").write_text("")
    for path in (folder / "apps").rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (folder / "apps").chmod(0o755)
    (folder / "maintenance.lua").write_text(maintenance.shared_service_script())
    stand_in = placeholder(("invalid",))
    (folder / "fallback.pem").write_text(stand_in.chain_pem + stand_in.key_pem)
    (folder / "fallback.pem").chmod(0o600)
    (folder / "maintenance.lua").chmod(0o644)
    here = Layout(box, server, folder, fleet.haproxy.image, inventories)
    try:
        for app, (tag, ports) in APPS.items():  # web1 of each app: its version serves
            here.ssh(["docker", "run", "--detach", "--name", f"{PREFIX}-{app}-web1",
                      "--hostname", f"{app}-web1", "--publish",
                      f"{LOOPBACK}:{ports[0]}:{fleet.app_port}",
                      "--env", f"PORT={fleet.app_port}", fleet.image_ref(tag)])
        yield here
    finally:
        here.ssh(f"docker rm --force $(docker ps --all --quiet --filter name=^{PREFIX}-) "
                 ">/dev/null 2>&1; true")
        for path in sorted(folder.parent.rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
        folder.parent.rmdir()


def test_a_generation_is_checked_run_and_replaced_by_a_reload_without_a_failed_request(
        layout: Layout) -> None:
    both = layout.generation(["admin", "shop"])
    layout.write(both)
    # A server's first generation: no `current` yet, and the check leaves none behind.
    assert "Configuration file is valid" in layout.check(both)
    assert not (layout.folder / "current").exists()
    files = {**both.files,
             "backends/shop.cfg": both.files["backends/shop.cfg"] + "    no-such-keyword\n"}
    broken = Generation(files, generation_hash(files))
    layout.write(broken)
    assert "unknown keyword 'no-such-keyword'" in layout.check(broken)

    layout.switch(both)
    layout.ssh(run_shared_proxy(image_ref=layout.image, haproxy_dir=str(layout.folder),
                                admin_dir=str(layout.folder / "admin"),
                                container=f"{PREFIX}-proxy"))
    address = layout.server
    assert wait_for(lambda: (answers(address, "shop.test") or (0, ""))[0] == 200, 20)
    assert wait_for(lambda: (answers(address, "admin.test") or (0, ""))[0] == 200, 20)
    assert "version=v1 host=shop-web1" in get(address, "SHOP.test:8090")[1]
    assert "version=v2 host=admin-web1" in get(address, "admin.test")[1]
    assert get(address, "other.test")[0] == 404

    # admin leaves: a generation without it goes in while shop is under load.
    alone = layout.generation(["shop"])
    layout.write(alone)
    assert "Configuration file is valid" in layout.check(alone)
    failures: list[str] = []
    sent = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal sent
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline and sent < 20_000:
            sent += 1
            try:
                status, body = get(address, "shop.test")
                if status != 200 or "version=v1" not in body:
                    failures.append(f"{status} {body[:60]}")
            except OSError as error:
                failures.append(repr(error))

    clients = [threading.Thread(target=load) for _ in range(4)]
    for client in clients:
        client.start()
    try:
        time.sleep(1)
        layout.switch(alone)
        layout.ssh(["docker", "kill", "--signal", "HUP", f"{PREFIX}-proxy"])
        assert wait_for(lambda: get(address, "admin.test")[0] == 404, 20)
        time.sleep(1)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=30)
    print(f"{sent} requests to shop through the reload, {len(failures)} failed")
    assert sent > 100 and failures == [], (sent, failures[:5])
    assert "version=v1" in get(address, "shop.test")[1]
