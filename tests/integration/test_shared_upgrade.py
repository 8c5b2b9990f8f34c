"""A new image for the shared HAProxy of two apps (several apps on one server, issue 23),
under load on both: the owner's `up` with another
`haproxy.image` hands each server's `slotswap-proxy` over to a container of that image
(both listen for a moment, the old one finishes its connections), with 0 failed requests
of either app and neither app's version changed; with `delivery: ssh` the image is sent from
this machine's Docker (the servers never pull it); a deploy works after it; going back to
the first image is the same hand-over; an image whose HAProxy does not start leaves the
running one serving, with 0 failed requests, and deploys of both apps work after it.

The shared HAProxy listens on port 8088, away from the fleet's own HAProxy on port 80.
Traffic goes only to the sandbox's own addresses, bounded by the load generator."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from testbed import sandbox
from testbed.loadgen import LoadGenerator, LoadReport
from tests.integration.shared_fleet import apps_inventories, apps_serving
from tests.integration.test_haproxy_upgrade import push_broken_haproxy

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
PORT = 8088
APPS = {"shop": [18181, 18182], "admin": [18183, 18184]}
FIRST = {"shop": "v1", "admin": "v2"}
# The same HAProxy under two more tags: one in the registry, one only in this machine's
# Docker (the builder's engine: DOCKER_HOST), which only delivery: ssh can bring.
PUSHED = f"{sandbox.HAPROXY_IMAGE}-shared-next"
LOCAL_ONLY = f"{sandbox.HAPROXY_IMAGE}-shared-sent"


@dataclasses.dataclass
class Apps:
    box: Sandbox
    inventories: dict[str, Path]

    def fab(self, app: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.box.fab(*args, inventory=self.inventories[app], timeout=600)

    def load(self, app: str) -> LoadGenerator:
        return LoadGenerator(self.box.addresses, port=PORT, host=f"{app}.test", clients=2,
                             max_seconds=400, max_requests=200_000)

    def owner_sets(self, image: str, **changes: object) -> None:
        """shop's inventory (the shared settings' owner) with another HAProxy image."""
        path = self.inventories["shop"]
        data = yaml.safe_load(path.read_text())
        data["haproxy"]["image"] = image
        data.update(changes)
        path.write_text(yaml.safe_dump(data))

    def serves(self, app: str) -> str:
        """The one version every server serves the app (its status, as JSON)."""
        document = json.loads(self.fab(app, "status", "--json").stdout)
        versions = {server["version"] for server in document["servers"]}
        assert len(versions) == 1, versions
        return versions.pop()

    def proxies(self, address: str) -> list[str]:
        """The shared HAProxy's containers on a server, with their images."""
        return sorted(line for line in self.box.ssh(
            address, "docker ps -a --format '{{.Names}} {{.Image}}'").splitlines()
            if line.startswith("slotswap-proxy"))

    def up_under_load(self, image: str, serving: dict[str, str] = FIRST
                      ) -> tuple[str, dict[str, LoadReport]]:
        """shop's `up` under load on both apps: it succeeds, no request of either fails,
        each app serves only its version (`serving`); then one shared HAProxy of `image` per
        server."""
        with self.load("shop") as shop, self.load("admin") as admin:
            result = self.fab("shop", "up")
        reports = {"shop": shop.stop(), "admin": admin.stop()}
        for app, report in reports.items():
            print(app, report.summary(), report.failures)
        assert result.returncode == 0, result.stdout + result.stderr
        for app, report in reports.items():
            assert report.sent > 0 and report.failed == 0, (app, report.failures)
            assert set(report.versions) == {serving[app]}, (app, report.versions)
        for address in self.box.addresses:
            assert self.proxies(address) == [f"slotswap-proxy {image}"]
        return result.stdout, reports


@pytest.fixture(scope="module")
def apps(sandbox_env: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    box = sandbox_env
    here = Apps(box, apps_inventories(box, tmp_path_factory.mktemp("upgrade"), APPS, port=PORT,
                                      owner="shop"))
    with apps_serving(here.fab, FIRST):
        yield here


def test_a_new_shared_haproxy_image_fails_no_request_of_either_app(apps: Apps) -> None:
    sandbox.docker(sandbox.BUILDER_NODE, "tag", sandbox.HAPROXY_IMAGE, PUSHED)
    sandbox.docker(sandbox.BUILDER_NODE, "push", "-q", PUSHED)
    before = {app: [line for address in apps.box.addresses
                    for line in apps.box.containers(address).splitlines()
                    if line.startswith(f"/{app}-")] for app in APPS}

    apps.owner_sets(PUSHED)
    output, _ = apps.up_under_load(PUSHED)
    for server in ("s1", "s2", "s3"):
        replaced = f"shared HAProxy replaced ({sandbox.HAPROXY_IMAGE} -> {PUSHED})"
        assert re.search(rf"^{server}\s+.*{re.escape(replaced)}", output, re.MULTILINE), output
    # Neither app's slots were touched.
    for app in APPS:
        assert [line for address in apps.box.addresses
                for line in apps.box.containers(address).splitlines()
                if line.startswith(f"/{app}-")] == before[app]
    # Nothing changes the second time.
    again = apps.fab("shop", "up")
    assert again.returncode == 0
    for server in ("s1", "s2", "s3"):
        assert re.search(rf"^{server}\s+unchanged$", again.stdout, re.MULTILINE), again.stdout
    # admin's up leaves the image its owner set.
    assert apps.fab("admin", "up").returncode == 0
    for address in apps.box.addresses:
        assert apps.proxies(address) == [f"slotswap-proxy {PUSHED}"]


def test_with_delivery_ssh_the_image_is_sent_and_handed_over_to(apps: Apps) -> None:
    sandbox.docker(sandbox.BUILDER_NODE, "tag", sandbox.HAPROXY_IMAGE, LOCAL_ONLY)
    apps.owner_sets(LOCAL_ONLY, delivery={"mode": "ssh"})
    try:
        # The registry has no such tag: only what this machine sends can run.
        apps.up_under_load(LOCAL_ONLY)
    finally:
        data = yaml.safe_load(apps.inventories["shop"].read_text())
        data.pop("delivery", None)
        apps.inventories["shop"].write_text(yaml.safe_dump(data))


# shop's version from here on: deployed on the new HAProxy.
SHOP_NEXT = "v2"


def test_a_deploy_works_on_the_new_haproxy_and_the_first_image_comes_back(apps: Apps) -> None:
    with apps.load("shop") as shop, apps.load("admin") as admin:
        deployed = apps.fab("shop", "deploy", "--tag", SHOP_NEXT)
    for report in (shop.stop(), admin.stop()):
        assert report.sent > 0 and report.failed == 0, report.failures
    assert deployed.returncode == 0
    apps.owner_sets(sandbox.HAPROXY_IMAGE)
    apps.up_under_load(sandbox.HAPROXY_IMAGE, {**FIRST, "shop": SHOP_NEXT})


def test_a_new_image_that_cannot_start_leaves_the_shared_haproxy_serving(
        apps: Apps, tmp_path: Path) -> None:
    """An image whose HAProxy exits at once: the new container goes, `slotswap-proxy` serves
    on (its admin socket made anew, `current` back), no request of either app fails, and
    the first server only was tried; deploys of both apps work after it."""
    broken = push_broken_haproxy(tmp_path, "shared-broken")
    before = {address: apps.box.containers(address) for address in apps.box.addresses}
    apps.owner_sets(broken)
    with apps.load("shop") as shop, apps.load("admin") as admin:
        result = apps.fab("shop", "up")
    reports = {"shop": shop.stop(), "admin": admin.stop()}
    assert result.returncode == 1
    assert "the shared HAProxy's new image" in result.stderr
    assert "did not take over" in result.stderr
    for app, report in reports.items():
        assert report.sent > 0 and report.failed == 0, (app, report.failures)
    for address in apps.box.addresses:
        assert apps.box.containers(address) == before[address]
        assert apps.proxies(address) == [f"slotswap-proxy {sandbox.HAPROXY_IMAGE}"]
    apps.owner_sets(sandbox.HAPROXY_IMAGE)
    assert apps.fab("shop", "up").returncode == 0
    with apps.load("shop") as shop, apps.load("admin") as admin:
        for app in APPS:  # each to the version it does not serve
            tag = "v1" if apps.serves(app) == "v2" else "v2"
            deployed = apps.fab(app, "deploy", "--tag", tag)
            assert deployed.returncode == 0, deployed.stdout + deployed.stderr
            assert apps.serves(app) == tag
    for report in (shop.stop(), admin.stop()):
        assert report.sent > 0 and report.failed == 0, report.failures
