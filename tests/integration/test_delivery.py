"""`delivery: ssh` and `--batch` on the sandbox's 3 servers, in order: each test starts from
where the previous one left the fleet. Traffic goes only to the sandbox's own addresses,
bounded in time and count by the load generator."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox

NO_REGISTRY_TABLE = "slotswap_test_no_registry"


@pytest.fixture(scope="module")
def ssh_inventory(fleet_on_v1: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fleet_on_v1.inventory_copy(tmp_path_factory.mktemp("ssh-delivery"),
                                      delivery={"mode": "ssh", "concurrency": 2})


def in_netns(server: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", server, *argv], text=True,
                          capture_output=True, timeout=30, check=False)


@contextmanager
def no_registry(server: str) -> Iterator[None]:
    """Inside the server's network namespace (its sshd and dockerd), every packet to the
    registry is rejected: the server has no registry at all."""
    host, port = sandbox.REGISTRY.split(":")
    ruleset = (f"table inet {NO_REGISTRY_TABLE} {{\n chain out {{\n"
               f"  type filter hook output priority 0;\n"
               f"  ip daddr {host} tcp dport {port} reject with tcp reset\n }}\n}}\n")
    added = subprocess.run(["ip", "netns", "exec", server, "nft", "-f", "-"], input=ruleset,
                           text=True, capture_output=True, timeout=30, check=False)
    assert added.returncode == 0, added.stderr
    try:
        yield
    finally:
        in_netns(server, "nft", "delete", "table", "inet", NO_REGISTRY_TABLE)


def serves(box: Sandbox, address: str, version: str) -> bool:
    try:
        return box.served_versions(address) == {version}
    except OSError:  # not answering yet (urllib's HTTPError is an OSError too)
        return False


def lines_of(output: str, server: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(f"[{server} ")]


def test_ssh_delivery_reaches_a_server_without_registry_access(
        fleet_on_v1: Sandbox, ssh_inventory: Path) -> None:
    box = fleet_on_v1
    image = f"{sandbox.APP_IMAGE}:v2"
    first = box.addresses[0]
    # Earlier tests may have brought v2 to the servers: none of them has it here.
    for address in box.addresses:
        box.ssh(address, f"docker ps --all --quiet --filter ancestor={image} | xargs -r "
                f"docker rm --force >/dev/null; docker image rm {image} >/dev/null 2>&1; true")
    with no_registry(sandbox.server_nodes(1)[0].name):
        cut_off = box.ssh(first, f"docker pull {image} >/dev/null 2>&1; echo $?")
        assert cut_off.strip() != "0"  # the server really cannot reach the registry
        # s1 starts without HAProxy and its image: `fab up` brings them over SSH too.
        box.ssh(first, f"docker rm -f webapp-haproxy && docker image rm {sandbox.HAPROXY_IMAGE}")
        up = box.fab("up", inventory=ssh_inventory)
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"sending {sandbox.HAPROXY_IMAGE}" in "\n".join(lines_of(up.stdout, "s1"))
        assert wait_for(lambda: serves(box, first, "v1"))
        with box.load() as load:
            result = box.fab("deploy", "--tag", "v2", inventory=ssh_inventory)
        report = load.stop()
    print(report.summary())
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    assert report.sent > 100
    for server in ("s1", "s2", "s3"):
        lines = "\n".join(lines_of(result.stdout, server))
        assert f"sending {image}" in lines and f"loaded {image}" in lines
        # v2's two layers (the app's binary, its data folder) are v1's: only the image's
        # config travels.
        assert "2 of 2 layers already there" in lines
    assert set(box.live_versions().values()) == {"v2"}


def test_ssh_delivery_skips_servers_with_the_same_image_id(
        fleet_on_v1: Sandbox, ssh_inventory: Path) -> None:
    box = fleet_on_v1
    # v1 came from the registry in the module's set-up: the same image ID as the local one.
    result = box.fab("deploy", "--tag", "v1", inventory=ssh_inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "sending" not in result.stdout
    for server in ("s1", "s2", "s3"):
        assert any("already there" in line and "nothing sent" in line
                   for line in lines_of(result.stdout, server))
    assert set(box.live_versions().values()) == {"v1"}


def test_ssh_delivery_sends_only_the_layers_a_server_lacks(
        fleet_on_v1: Sandbox, ssh_inventory: Path, tmp_path: Path) -> None:
    box = fleet_on_v1
    image = f"{sandbox.APP_IMAGE}:v4"
    # v4 is v1 with one more layer on top, of 1 MB that no server has.
    (tmp_path / "extra.bin").write_bytes(os.urandom(1_000_000))
    (tmp_path / "Dockerfile").write_text(f"FROM {sandbox.APP_IMAGE}:v1\n"
                                         "COPY extra.bin /extra.bin\nENV APP_VERSION=v4\n")
    built = subprocess.run(["docker", "build", "--quiet", "--tag", image, str(tmp_path)],
                           env=box.env, text=True, capture_output=True, timeout=120,
                           check=False)
    assert built.returncode == 0, built.stderr
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v4", inventory=ssh_inventory)
    report = load.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    for server in ("s1", "s2", "s3"):
        lines = "\n".join(lines_of(result.stdout, server))
        assert re.search(rf"sending {re.escape(image)} \(image \w+, 1\.0 MB of [\d.]+ MB: "
                         r"2 of 3 layers already there\) over SSH", lines), lines
        assert f"loaded {image}" in lines
    assert set(box.live_versions().values()) == {"v4"}
    assert all(box.served_versions(address) == {"v4"} for address in box.addresses)


def test_batch_swaps_two_servers_at_a_time_under_load(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v2", "--batch", "2")
    report = load.stop()
    print(report.summary())
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    out = result.stdout.splitlines()

    def first(pattern: str) -> int:
        return next(i for i, line in enumerate(out) if re.search(pattern, line))

    batch_2 = first(r"^batch 2: s3$")
    assert first(r"^batch 1: s1, s2$") < batch_2
    # s1 and s2 swap at the same time: each starts before the other switches...
    assert first(r"^\[s1 .*live slot") < first(r"^\[s2 .*is taking traffic")
    assert first(r"^\[s2 .*live slot") < first(r"^\[s1 .*is taking traffic")
    # ...and s3 only once both have switched (their watch goes on in the window).
    assert max(first(r"^\[s1 .*is taking traffic"),
               first(r"^\[s2 .*is taking traffic")) < batch_2
    assert batch_2 < first(r"^\[s3 .*live slot")
    assert set(box.live_versions().values()) == {"v2"}


def test_a_failed_batch_stops_the_run_after_it(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    third = box.containers(box.addresses[2])
    with box.load() as load:
        result = box.fab("deploy", "--tag", "bad1", "--batch=50%")  # 2 of 3 servers
    report = load.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    assert "batch 2" not in result.stdout
    assert re.search(r"^s3\s.*not started\s+v2 in web[12]$", result.stdout, re.MULTILINE)
    assert "stopped after its batch failed on s1: " in result.stderr
    assert box.containers(box.addresses[2]) == third
    assert box.live_versions() == {"s1": "v2", "s2": "v2", "s3": "v2"}


def test_a_delivery_failure_on_one_server_stops_the_run_before_any_swap(
        fleet_on_v1: Sandbox, ssh_inventory: Path) -> None:
    box = fleet_on_v1
    image = f"{sandbox.APP_IMAGE}:v3"
    # v3 is on s1 and s3 only, and no longer in the operator's Docker: s2 cannot get it.
    assert box.fab("build", "--tag", "v3").returncode == 0
    for address in (box.addresses[0], box.addresses[2]):
        box.ssh(address, f"docker pull --quiet {image}")
    subprocess.run(["docker", "image", "rm", image], env=box.env, check=True,
                   capture_output=True, timeout=60)
    before = {a: box.containers(a) for a in box.addresses}
    result = box.fab("deploy", "--tag", "v3", inventory=ssh_inventory)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"s2: {image} is not in this machine's Docker" in result.stderr
    assert "nothing was changed" in result.stderr
    assert {a: box.containers(a) for a in box.addresses} == before
    assert set(box.live_versions().values()) == {"v2"}
