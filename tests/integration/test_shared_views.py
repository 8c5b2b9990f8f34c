"""What an operator sees of the shared HAProxy (several apps on one server, issue 23), with
two apps on the sandbox's servers: `status` shows both apps and the routes as HAProxy has
them; `up --dry-run` of a changed second app names the reload and the other app's lock, and
changes nothing (every container and `current` as they were)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.shared_fleet import apps_serving, shared_inventory

if TYPE_CHECKING:
    import subprocess

    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
PORT = 8088
APPS = {"shop": ([18191, 18192], ["shop.test"]),
        "admin": ([18193, 18194], ["admin.test", "*.admin.test"])}
FIRST = {"shop": "v1", "admin": "v2"}


@dataclasses.dataclass
class Apps:
    box: Sandbox
    inventories: dict[str, Path]

    def fab(self, app: str, *args: str, inventory: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        return self.box.fab(*args, inventory=inventory or self.inventories[app])

    def current(self, address: str) -> str:
        """The generation the shared HAProxy's `current` names (its folder found from the
        container's mount: the login's folders)."""
        folder = ("$(docker inspect slotswap-proxy --format '{{range .Mounts}}{{if eq "
                  ".Destination \"/usr/local/etc/haproxy\"}}{{.Source}}{{end}}{{end}}')")
        return self.box.ssh(address, f'readlink "{folder}/current"').strip()


def write_inventory(box: Sandbox, folder: Path, app: str, names: list[str]) -> Path:
    # shop's inventory sets the shared HAProxy's settings; admin's leaves them out.
    return shared_inventory(box, folder, app, names=names, slot_ports=APPS[app][0], port=PORT,
                            owner=app == "shop")


@pytest.fixture(scope="module")
def apps(sandbox_env: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    box = sandbox_env
    folder = tmp_path_factory.mktemp("views")
    here = Apps(box, {app: write_inventory(box, folder, app, names)
                      for app, (_, names) in APPS.items()})
    with apps_serving(here.fab, FIRST):
        yield here


def test_status_shows_both_apps_and_the_routes(apps: Apps) -> None:
    result = apps.fab("shop", "status")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.count("shared HAProxy slotswap-proxy") == len(apps.box.addresses), text
    assert "settings from shop's inventory" in text
    assert text.count("app shop         present, live web") == len(apps.box.addresses)
    assert text.count("app admin        present, live web") == len(apps.box.addresses)
    assert "serving v1" in text and "serving v2" in text
    for route in ("route shop.test -> shop", "route admin.test -> admin",
                  "route *.admin.test -> admin", "route other names -> 404"):
        assert text.count(route) == len(apps.box.addresses), (route, text)
    document = json.loads(apps.fab("admin", "status", "--json").stdout)
    for server in document["servers"]:
        proxy = server["proxy"]
        assert proxy["version"] not in ("?", None) and proxy["owner"] == "shop"
        assert {(a["app"], a["version"]) for a in proxy["apps"]} == {("shop", "v1"),
                                                                     ("admin", "v2")}
        assert {"name": "*.admin.test", "app": "admin"} in proxy["routes"]


def test_up_dry_run_of_a_changed_second_app_names_the_reload_and_changes_nothing(
        apps: Apps, tmp_path: Path) -> None:
    before = {address: (apps.box.containers(address), apps.current(address))
              for address in apps.box.addresses}
    changed = write_inventory(apps.box, tmp_path, "admin",
                              ["admin.test", "*.admin.test", "admin2.test"])
    result = apps.fab("admin", "up", "--dry-run", inventory=changed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("; a reload") == len(apps.box.addresses), result.stdout
    assert "take shop's lock" in result.stdout and "~hosts.map" in result.stdout
    assert "HUP slotswap-proxy" in result.stdout
    after = {address: (apps.box.containers(address), apps.current(address))
             for address in apps.box.addresses}
    assert after == before
    unchanged = apps.fab("admin", "up", "--dry-run")
    assert unchanged.returncode == 0
    assert unchanged.stdout.count("unchanged") == len(apps.box.addresses), unchanged.stdout
