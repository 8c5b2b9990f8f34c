"""Upgrading HAProxy itself under load: `fab up` with a new `haproxy.image` hands over, server
by server, from the running HAProxy to a new container of the new image (both listen on the
public port for a moment, the old one finishes its connections), with 0 failed requests;
deploys go on with the new HAProxy; going back to the first image is the same hand-over.
Traffic goes only to the sandbox's own addresses, bounded by the load generator."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import FAB, ROOT

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
SECOND_IMAGE = f"{sandbox.HAPROXY_IMAGE}-next-release"  # the same HAProxy under a second tag


def haproxy_images(box: Sandbox, inventory: Path) -> dict[str, str]:
    """Per server, the HAProxy image `fab status` shows."""
    result = box.fab("status", inventory=inventory)
    assert result.returncode == 0, result.stdout + result.stderr
    found: dict[str, str] = {}
    server = None
    for line in result.stdout.splitlines():
        match = re.match(r"^(\S+) \(\S+\): live", line)
        if match:
            server = match.group(1)
        match = re.match(r"^\s+haproxy\s+(\S+) \(HAProxy \S+\)$", line)
        if match and server:
            found[server] = match.group(1)
    return found


def fab_under_load(box: Sandbox, *args: str, inventory: Path) -> str:
    """`fab ARGS` under load: it succeeds and no request fails; returns its output."""
    with box.load() as load:
        result = box.fab(*args, inventory=inventory)
    report = load.stop()
    print(f"fab {' '.join(args)}: {report.summary()}", report.failures)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.sent > 0 and report.failed == 0, report.failures
    return result.stdout


def containers_of(box: Sandbox, address: str) -> list[str]:
    return sorted(box.ssh(address, "docker ps -a --format '{{.Names}} {{.Image}}'").splitlines())


def test_haproxy_image_changes_and_back_under_load_fail_no_request(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    sandbox.docker(sandbox.BUILDER_NODE, "tag", sandbox.HAPROXY_IMAGE, SECOND_IMAGE)
    sandbox.docker(sandbox.BUILDER_NODE, "push", "-q", SECOND_IMAGE)
    first = box.inventory
    second = box.inventory_copy(tmp_path, haproxy={"image": SECOND_IMAGE})
    servers = [f"s{index + 1}" for index in range(len(box.addresses))]
    assert haproxy_images(box, first) == dict.fromkeys(servers, sandbox.HAPROXY_IMAGE)

    output = fab_under_load(box, "up", inventory=second)
    for server in servers:
        assert re.search(rf"^{server}\s+HAProxy replaced", output, re.MULTILINE)
    assert haproxy_images(box, second) == dict.fromkeys(servers, SECOND_IMAGE)
    for address in box.addresses:
        # One HAProxy, under its usual name; the slots as the deploy left them.
        assert [line for line in containers_of(box, address) if "haproxy" in line] == [
            f"webapp-haproxy {SECOND_IMAGE}"]
        assert box.served_versions(address) == {"v1"}
    # Nothing changes the second time.
    result = box.fab("up", inventory=second)
    assert result.returncode == 0
    for server in servers:
        assert re.search(rf"^{server}\s+unchanged$", result.stdout, re.MULTILINE)

    fab_under_load(box, "deploy", "--tag", "v2", inventory=second)
    assert set(box.live_versions().values()) == {"v2"}

    fab_under_load(box, "up", inventory=first)
    assert haproxy_images(box, first) == dict.fromkeys(servers, sandbox.HAPROXY_IMAGE)
    # The live slot and the idle one kept their states through both hand-overs.
    assert set(box.live_versions().values()) == {"v2"}
    for address in box.addresses:
        assert box.served_versions(address) == {"v2"}


def push_broken_haproxy(folder: Path, tag: str) -> str:
    """An HAProxy image that accepts any config (`-c` passes), then exits instead of serving,
    pushed to the sandbox's registry as sandbox/haproxy:TAG; its name."""
    broken = f"{sandbox.REGISTRY}/sandbox/haproxy:{tag}"
    context = folder / tag
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {sandbox.HAPROXY_IMAGE}\n"
        'ENTRYPOINT ["/usr/sbin/haproxy", "-W", "-db", "-c"]\n')
    sandbox.docker(sandbox.BUILDER_NODE, "build", "-q", "-t", broken, str(context))
    sandbox.docker(sandbox.BUILDER_NODE, "push", "-q", broken)
    return broken


def test_a_new_haproxy_that_cannot_start_leaves_the_old_one_serving(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """An image whose HAProxy exits at once: the temporary container goes, the old HAProxy
    serves on (its admin socket made anew), and the next deploy works."""
    box = fleet_on_v1
    broken = push_broken_haproxy(tmp_path, "broken")
    inventory = box.inventory_copy(tmp_path, haproxy={"image": broken})
    before = {address: containers_of(box, address) for address in box.addresses}
    with box.load() as load:
        result = box.fab("up", inventory=inventory)
    report = load.stop()
    print(report.summary(), report.failures)
    assert result.returncode == 1
    assert "did not take over" in result.stderr
    assert report.sent > 0 and report.failed == 0, report.failures
    # The first server was tried and put back, the others untouched.
    for address in box.addresses:
        assert containers_of(box, address) == before[address]
    served = set(box.live_versions().values())
    other = "v1" if served == {"v2"} else "v2"
    with box.load() as load:
        assert box.fab("deploy", "--tag", other).returncode == 0
    assert load.stop().failed == 0
    assert set(box.live_versions().values()) == {other}


# The last slotswap that ran HAProxy on the app's Docker network (ports published by Docker,
# slots found through Docker's DNS).
BRIDGED_RELEASE = "44f6fc78ab60e3cd6638e32f4e85db877f2cc147"


def require_bridged_release() -> None:
    """Fail at once, saying why, where the checkout lacks that commit (a shallow clone)."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e",
                            f"{BRIDGED_RELEASE}^{{commit}}"], capture_output=True, timeout=60,
                           check=False)
    if found.returncode != 0:
        pytest.fail(f"needs the repository's history (commit {BRIDGED_RELEASE[:12]}, the "
                    f"bridged release): git fetch --unshallow", pytrace=False)


def old_kit(box: Sandbox, folder: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`fab` of the bridged release, from a copy of that commit's files."""
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BRIDGED_RELEASE,
                              "slotswap", "testbed", "fabfile.py"],
                             capture_output=True, timeout=60, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, timeout=60, check=True)
    env = {**box.env, "PYTHONPATH": str(folder)}

    def fab(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([FAB, *args, "--inventory", str(box.inventory)], cwd=folder,
                                env=env, text=True, capture_output=True, timeout=300,
                                check=False)
        print(f"$ (bridged release) fab {' '.join(args)} -> exit {result.returncode}\n"
              f"{result.stdout}{result.stderr}")
        return result

    return fab


def test_up_moves_a_fleet_of_the_bridged_release_to_the_servers_network(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """A fleet set up and deployed by the release before: `fab up` moves HAProxy to the
    server's network (a short interruption per server, this once, counted here), the live
    slots keep serving, and deploys after it fail no request."""
    require_bridged_release()
    box = fleet_on_v1
    assert box.fab("down").returncode == 0
    fab = old_kit(box, tmp_path / "bridged")
    assert fab("up").returncode == 0
    assert fab("deploy", "--tag", "v1").returncode == 0
    for address in box.addresses:
        assert "8080/tcp" in box.ssh(address, "docker port webapp-haproxy")

    with box.load() as load:
        result = box.fab("up")
    report = load.stop()
    # Some requests fail while the old container goes (counted, not asserted): none is
    # answered by another version.
    print(f"migration: {report.summary()}", report.failures)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(report.versions) == {"v1"}, report.versions
    assert "until the next deploy" in result.stdout + result.stderr
    for address in box.addresses:
        assert box.served_versions(address) == {"v1"}
    assert set(box.live_versions().values()) == {"v1"}
    result = box.fab("up")
    assert result.returncode == 0
    assert len(re.findall(r"^s\d+\s+unchanged$", result.stdout, re.MULTILINE)) == len(
        box.addresses)

    # The second deploy replaces the slot the bridged release made.
    fab_under_load(box, "deploy", "--tag", "v2", inventory=box.inventory)
    fab_under_load(box, "deploy", "--tag", "v1", inventory=box.inventory)
    assert set(box.live_versions().values()) == {"v1"}
