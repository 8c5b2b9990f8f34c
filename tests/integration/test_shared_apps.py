"""Two apps on the same three servers behind each server's shared HAProxy (several apps on one
server, issue 23), under load on both: deploying one
never fails a request of either, nor changes what the other serves or its containers; both
deploy at the same time; maintenance of one leaves the other answering; an `up` that
contradicts another app on one server changes no server; `down` of one leaves the other
serving, and the last `down` removes the shared HAProxy.

The shared HAProxy listens on port 8088, so that it never shares port 80 with the fleet's own
HAProxy that other modules run (two HAProxys on one port would split its connections)."""

from __future__ import annotations

import dataclasses
import http.client
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from testbed.loadgen import LoadGenerator
from tests.integration.conftest import FAB, ROOT
from tests.integration.shared_fleet import apps_serving, shared_inventory

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
PORT = 8088
APPS = {"shop": [18181, 18182], "admin": [18183, 18184]}
# What each app serves from the start: its version tells the apps' answers apart.
FIRST = {"shop": "v1", "admin": "v2"}


@dataclasses.dataclass
class Apps:
    box: Sandbox
    inventories: dict[str, Path]

    def fab(self, app: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.box.fab(*args, inventory=self.inventories[app])

    def load(self, app: str) -> LoadGenerator:
        return LoadGenerator(self.box.addresses, port=PORT, host=f"{app}.test", clients=2,
                             max_seconds=240, max_requests=200_000)

    def answer(self, address: str, app: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection(address, PORT, timeout=5)
        try:
            connection.request("GET", "/", headers={"Host": f"{app}.test"})
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def containers(self, app: str) -> list[str]:
        """The app's containers on every server, with their ids and start times."""
        return [line for address in self.box.addresses
                for line in self.box.containers(address).splitlines()
                if line.startswith(f"/{app}-")]


@pytest.fixture(scope="module")
def apps(sandbox_env: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    box = sandbox_env
    folder = tmp_path_factory.mktemp("apps")
    # shop's inventory sets the shared HAProxy's settings; admin's leaves them out.
    here = Apps(box, {app: shared_inventory(box, folder, app, names=[f"{app}.test"],
                                            slot_ports=ports, port=PORT, owner=app == "shop")
                      for app, ports in APPS.items()})
    with apps_serving(here.fab, FIRST):
        yield here


def test_each_host_name_reaches_its_app(apps: Apps) -> None:
    for address in apps.box.addresses:
        for app in APPS:
            status, body = apps.answer(address, app)
            assert status == 200 and f"version={FIRST[app]}" in body, body
    assert apps.answer(apps.box.addresses[0], "nobody")[0] == 404


def test_deploying_one_app_fails_no_request_of_either_and_leaves_the_other_as_it_was(
        apps: Apps) -> None:
    before = apps.containers("admin")
    with apps.load("shop") as shop_load, apps.load("admin") as admin_load:
        result = apps.fab("shop", "deploy", "--tag", "v2")
    shop, admin = shop_load.stop(), admin_load.stop()
    print(shop.summary(), admin.summary())
    assert result.returncode == 0
    assert shop.sent > 0 and shop.failed == 0, shop.failures
    assert admin.sent > 0 and admin.failed == 0, admin.failures
    assert set(shop.versions) <= {"v1", "v2"} and set(admin.versions) == {"v2"}
    assert apps.containers("admin") == before
    assert "version=v2" in apps.answer(apps.box.addresses[0], "shop")[1]


def test_two_apps_deploy_at_the_same_time(apps: Apps) -> None:
    runs = {app: subprocess.Popen(
        [FAB, "deploy", "--tag", tag, "--inventory", str(apps.inventories[app])], cwd=ROOT,
        env=apps.box.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for app, tag in (("shop", "v1"), ("admin", "v1"))}
    outcomes = {app: run.communicate(timeout=300) for app, run in runs.items()}
    for app, run in runs.items():
        assert run.returncode == 0, outcomes[app]
    for address in apps.box.addresses:
        assert "version=v1" in apps.answer(address, "shop")[1]
        assert "version=v1" in apps.answer(address, "admin")[1]


def test_rolling_one_app_back_fails_no_request_of_either(apps: Apps) -> None:
    before = apps.containers("admin")
    with apps.load("shop") as shop_load, apps.load("admin") as admin_load:
        result = apps.fab("shop", "rollback")
    shop, admin = shop_load.stop(), admin_load.stop()
    assert result.returncode == 0
    assert shop.sent > 0 and shop.failed == 0, shop.failures
    assert admin.sent > 0 and admin.failed == 0 and set(admin.versions) == {"v1"}
    assert apps.containers("admin") == before
    for address in apps.box.addresses:  # shop's version before v1 came back: v2
        assert "version=v2" in apps.answer(address, "shop")[1]


def test_maintenance_of_one_app_leaves_the_other_answering(apps: Apps) -> None:
    with apps.load("admin") as admin_load:
        assert apps.fab("shop", "maintenance.on").returncode == 0
        for address in apps.box.addresses:
            assert apps.answer(address, "shop")[0] == 503
        assert apps.fab("shop", "maintenance.off").returncode == 0
    admin = admin_load.stop()
    assert admin.sent > 0 and admin.failed == 0, admin.failures
    assert apps.answer(apps.box.addresses[0], "shop")[0] == 200


def test_a_change_of_the_shared_haproxy_waits_for_no_other_apps_run(apps: Apps) -> None:
    """admin's `up` that must reload the shared HAProxy, while a run of shop holds shop's lock
    on s1: refused there (exit 4), nothing changed; once shop's run is over, it goes in."""
    s1 = apps.box.addresses[0]
    lock = "/var/lib/slotswap/shop/lock"
    owner = '{"who": "bob@ci", "since": "2026-12-04T09:00:00+00:00", "task": "deploy", ' \
            '"tag": "v9", "token": "someone-else"}'
    data = yaml.safe_load(apps.inventories["admin"].read_text())
    changed = apps.inventories["admin"].with_name("changed.yaml")
    changed.write_text(yaml.safe_dump({**data, "names": ["admin.test", "admin2.test"]}))
    current = apps.box.ssh(s1, "readlink /etc/slotswap/_proxy/haproxy/current")
    apps.box.ssh(s1, f"mkdir {lock} && echo 90 > {lock}/lease && echo '{owner}' > "
                     f"{lock}/owner.json")
    try:
        result = apps.box.fab("up", inventory=changed)
        assert result.returncode == 4
        assert "shop's lock is held by bob@ci" in result.stderr
        assert apps.box.ssh(s1, "readlink /etc/slotswap/_proxy/haproxy/current") == current
        assert apps.answer(s1, "admin2")[0] == 404
    finally:
        apps.box.ssh(s1, f"rm -rf {lock}")
    assert apps.box.fab("up", inventory=changed).returncode == 0
    assert apps.answer(s1, "admin2")[0] == 200
    assert apps.fab("admin", "up").returncode == 0
    assert apps.answer(s1, "admin2")[0] == 404


def test_a_contradiction_on_one_server_changes_no_server(apps: Apps) -> None:
    """admin claims extra.test on s2 alone (its `up` from an inventory of s2 only); `up` of a
    new app claiming extra.test on every server is refused before any server changes: exit
    2, the line names s2, and s1 (first in the inventory) has no trace of it either."""
    data = yaml.safe_load(apps.inventories["admin"].read_text())
    s2_host = data["hosts"][1]
    on_s2 = apps.inventories["admin"].with_name("admin-on-s2.yaml")
    on_s2.write_text(yaml.safe_dump({**data, "names": ["admin.test", "extra.test"],
                                     "hosts": [s2_host]}))
    news = apps.inventories["admin"].with_name("news.yaml")
    news.write_text(yaml.safe_dump({**data, "app": "news", "names": ["extra.test"],
                                    "haproxy": {**data["haproxy"],
                                                "slot_ports": [18185, 18186]}}))
    current = "readlink /etc/slotswap/_proxy/haproxy/current"
    try:
        assert apps.box.fab("up", inventory=on_s2).returncode == 0
        before = {address: (apps.box.containers(address), apps.box.ssh(address, current))
                  for address in apps.box.addresses}
        result = apps.box.fab("up", inventory=news)
        assert result.returncode == 2
        line = result.stderr.strip()
        assert line.startswith(f"error: {s2_host['name']}: ") and "\n" not in line
        assert "extra.test" in line and line.endswith("nothing was changed")
        for address in apps.box.addresses:
            assert (apps.box.containers(address), apps.box.ssh(address, current)) == \
                before[address]
            assert apps.box.ssh(address, "docker network ls --format '{{.Name}}' | "
                                         "grep -c '^news' || true").strip() == "0"
            assert apps.box.ssh(address, "ls /var/lib/slotswap/_proxy/apps/ "
                                         "2>/dev/null | grep -c news || true").strip() == "0"
    finally:
        assert apps.fab("admin", "up").returncode == 0  # extra.test off s2 again
    assert apps.answer(apps.box.addresses[1], "extra")[0] == 404


def test_down_of_one_app_leaves_the_other_serving(apps: Apps) -> None:
    with apps.load("admin") as admin_load:
        assert apps.fab("shop", "down").returncode == 0
    admin = admin_load.stop()
    assert admin.sent > 0 and admin.failed == 0, admin.failures
    for address in apps.box.addresses:
        assert apps.answer(address, "shop")[0] == 404
        assert "version=v1" in apps.answer(address, "admin")[1]
    assert apps.fab("admin", "down").returncode == 0
    for address in apps.box.addresses:
        assert "slotswap-proxy" not in apps.box.containers(address)


def test_the_shared_haproxy_never_shares_a_port_with_an_apps_own(
        apps: Apps, fleet_on_v1: Sandbox) -> None:
    """webapp runs its own HAProxy on port 80 (today's layout): a shared app whose HAProxy
    would listen on 80 too is refused (two HAProxys on one port split its connections)."""
    data = yaml.safe_load(apps.inventories["admin"].read_text())
    blog = apps.inventories["admin"].with_name("blog.yaml")
    blog.write_text(yaml.safe_dump({**data, "app": "blog", "names": ["blog.test"],
                                    "haproxy": {**data["haproxy"], "http_port": 80,
                                                "image": yaml.safe_load(
                                                    fleet_on_v1.inventory.read_text())[
                                                    "haproxy"]["image"]}}))
    s1 = apps.box.addresses[0]
    before = apps.box.containers(s1)
    result = apps.box.fab("up", inventory=blog)
    assert result.returncode == 2
    assert ("haproxy.http_port: 80 is bound by webapp's own HAProxy" in result.stderr
            and result.stderr.strip().endswith("nothing was changed"))
    assert apps.box.containers(s1) == before
    assert fleet_on_v1.served_versions(s1) == {"v1"}
