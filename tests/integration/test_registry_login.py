"""A registry that wants a login: the servers log in with the inventory's user and the
password from the operator's environment, over stdin; a pull without it says so."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import FAB, ROOT

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
USER, PASSWORD = "deployer", "s3cret-registry-pass"
VARIABLE = "SANDBOX_REGISTRY_PASSWORD"


@pytest.fixture(scope="module")
def private_image(fleet_on_v1: Sandbox) -> Iterator[str]:
    registry = sandbox.start_auth_registry(USER, PASSWORD)
    builder = ["docker", "-H", sandbox.BUILDER_NODE.docker_host]
    private = f"{registry}/demo/webapp"
    for tag in ("v1", "v2"):
        sandbox.run([*builder, "tag", f"{sandbox.APP_IMAGE}:{tag}", f"{private}:{tag}"])
        sandbox.run([*builder, "push", "--quiet", f"{private}:{tag}"], capture=True)
    yield private
    for address in fleet_on_v1.addresses:
        fleet_on_v1.ssh(address, f"docker logout {registry} >/dev/null 2>&1 || true")
    sandbox.stop_auth_registry()


def test_a_pull_without_a_login_says_so_and_changes_nothing(
        fleet_on_v1: Sandbox, private_image: str, tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, image=private_image)
    before = {a: box.containers(a) for a in box.addresses}
    result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert result.returncode == 1
    assert f"the server is not logged in to {sandbox.AUTH_REGISTRY}" in result.stderr
    assert {a: box.containers(a) for a in box.addresses} == before


def test_the_password_must_be_in_the_environment(fleet_on_v1: Sandbox, private_image: str,
                                                 tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, image=private_image, registry={
        "user": USER, "password_secret": VARIABLE})
    result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert result.returncode == 2
    assert f"registry.password_secret: {VARIABLE} is not set" in result.stderr


def test_the_servers_log_in_and_deploy_under_load(fleet_on_v1: Sandbox, private_image: str,
                                                  tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, image=private_image, registry={
        "user": USER, "password_secret": VARIABLE})
    env = {**box.env, VARIABLE: "wrong"}
    denied = subprocess_fab(box, env, "deploy", "--tag", "v2", "--inventory", str(inventory))
    assert denied.returncode == 1
    assert f"docker login to {sandbox.AUTH_REGISTRY} as {USER} failed" in denied.stderr
    env = {**box.env, VARIABLE: PASSWORD}
    with box.load() as load:
        result = subprocess_fab(box, env, "deploy", "--tag", "v2", "--inventory",
                                str(inventory))
    report = load.stop()
    assert result.returncode == 0, result.stderr
    assert report.failed == 0, report.failures
    assert f"logged in to {sandbox.AUTH_REGISTRY} as {USER}" in result.stdout + result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert set(box.live_versions().values()) == {"v2"}


def subprocess_fab(box: Sandbox, env: dict[str, str], *args: str
                   ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([FAB, *args], cwd=ROOT, env=env, text=True, capture_output=True,
                            timeout=300, check=False)
    print(f"$ fab {' '.join(args)} -> exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result



def test_up_logs_the_servers_in_so_the_first_pull_finds_the_login(
        fleet_on_v1: Sandbox, private_image: str, tmp_path: Path) -> None:
    box = fleet_on_v1
    for address in box.addresses:
        box.ssh(address, f"docker logout {sandbox.AUTH_REGISTRY} >/dev/null 2>&1 || true")
    inventory = box.inventory_copy(tmp_path, image=private_image, registry={
        "user": USER, "password_secret": VARIABLE})
    env = {**box.env, VARIABLE: PASSWORD}
    # HAProxy's image comes from the sandbox's other registry: nothing of up pulls from it.
    result = subprocess_fab(box, env, "up", "--inventory", str(inventory))
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert output.count(f"logged in to {sandbox.AUTH_REGISTRY} as {USER}") == \
        len(box.addresses)
    assert PASSWORD not in output
    for address in box.addresses:
        box.ssh(address, f"docker pull --quiet {private_image}:v1")  # fails without a login
