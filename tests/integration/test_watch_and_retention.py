"""After the switch on the sandbox: the watch period that sends traffic back to the old slot
when the new version breaks after taking it (each server watched in turn, watch.each; the
window for the whole rollout is in test_watch_window.py), the old images pruned, and
inventory values crafted to inject shell refused before any server is contacted."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import BackgroundDeploy

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def test_a_version_failing_after_the_switch_is_rolled_back_under_load(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    # flaky1 passes its checks for 3 s, then fails them: it takes traffic, then breaks.
    # Each server watched in turn (watch.each): s2 never starts.
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": 10}, watch={"each": True})
    before = {a: box.containers(a) for a in box.addresses[1:]}
    with box.load() as load:
        result = box.fab("deploy", "--tag", "flaky1", inventory=inventory)
    report = load.stop()
    assert result.returncode == 1
    assert report.failed == 0, report.failures
    assert re.search(r"^s1 .*\brolled back\s+v1 in web[12]$", result.stdout, re.MULTILINE)
    assert re.search(r"flaky1 took traffic in web[12], then failed HAProxy's health checks "
                     r"[\d.]+s later \(L7STS", result.stderr)
    assert "rolled back to v1" in result.stderr
    assert re.search(r"^s2 .*\bnot started\s+v1 in web[12]$", result.stdout, re.MULTILINE)
    assert set(box.live_versions().values()) == {"v1"}
    for address in box.addresses[1:]:
        assert box.containers(address) == before[address]
    assert re.search(r"deploy\s+v1\s+flaky1\s+rolled back",
                     box.fab("history", "--lines", "1").stdout)
    # The broken version's container is stopped, not serving and not running.
    s1_containers = box.containers(box.addresses[0])
    assert sum(" running " in line for line in s1_containers.splitlines()) == 2  # v1 + HAProxy


def test_a_version_crashing_after_the_switch_is_rolled_back_under_load(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    # crash1 passes its checks, takes traffic, then exits 1 two seconds after every start
    # (Docker restarts it with back-off); its name may vanish from Docker's DNS and HAProxy
    # show MAINT (resolution) before any check fails.
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": 6}, watch={"each": True})
    with box.load() as load:
        result = box.fab("deploy", "--tag", "crash1", inventory=inventory)
    report = load.stop()
    print(report.summary(), report.failures)
    assert result.returncode == 1
    assert re.search(r"^s1 .*\brolled back\s+v1 in web[12]$", result.stdout, re.MULTILINE)
    assert re.search(r"crash1 took traffic in web[12], then .+ rolled back to v1", result.stderr)
    assert re.search(r"^s2 .*\bnot started\s+v1 in web[12]$", result.stdout, re.MULTILINE)
    assert set(box.live_versions().values()) == {"v1"}
    assert box.served_versions(box.addresses[0]) == {"v1"}
    # The old slot was never stopped; the crashed one is (its restarts end with it).
    s1_containers = box.containers(box.addresses[0])
    assert sum(" running " in line for line in s1_containers.splitlines()) == 2  # v1 + HAProxy
    # The load is GET requests. From the app's exit until Docker closes its loopback port,
    # Docker's proxy accepts a request and closes it unanswered; HAProxy sends the GET again
    # to another server line, and during the window the old slot's fallback line is one
    # (balance first: it gets no new request while the new slot can take it).
    print(box.ssh(box.addresses[0], "echo 'show stat webapp 4 -1' | socat - UNIX-CONNECT:"
                  "/etc/slotswap/webapp/haproxy/admin/admin.sock | cut -d, -f2,8,14-18"))
    assert report.failed == 0, report.failures
    assert box.fab("deploy", "--tag", "v1").returncode == 0


def test_a_version_whose_failed_requests_are_retried_on_the_old_slot_is_rolled_back(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """hangup1 passes its checks but closes every other page request unanswered: HAProxy
    sends each such GET again to the old slot's fallback line, so clients see only
    answers, half of them from v1. Those retries are the new version's failed requests:
    it must fail its watch, not be reported serving while v1 answers, and fail every
    other request once the old slot is stopped."""
    box = fleet_on_v1
    s1 = box.addresses[0]
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": 6}, watch={"each": True})
    with box.load() as load:
        deploy = BackgroundDeploy(box, "hangup1", inventory)
        if deploy.until("s1", r"\(hangup1\) is taking traffic"):
            # HAProxy's counters in the window, for the report (the new slot's wretr and
            # wredis, the fallback lines' requests).
            print(box.ssh(s1, "sleep 1; echo 'show stat webapp 4 -1' | socat - UNIX-CONNECT:"
                          "/etc/slotswap/webapp/haproxy/admin/admin.sock"))
        exit_code, output = deploy.finish(timeout=300)
        # Whatever the deploy said, what s1 serves after it, still under load.
        served = box.served_versions(s1)
    report = load.stop()
    print(report.summary(), report.failures)
    assert exit_code == 1
    assert re.search(r"hangup1 took traffic in web[12], then answered too many errors "
                     r"[\d.]+s later \(\d+ of its \d+ requests failed", output)
    assert re.search(r"^s1 .*\brolled back\s+v1 in web[12]$", output, re.MULTILINE)
    assert re.search(r"^s2 .*\bnot started\s+v1 in web[12]$", output, re.MULTILINE)
    assert served == {"v1"}
    assert set(box.live_versions().values()) == {"v1"}
    assert re.search(r"deploy\s+v1\s+hangup1\s+rolled back",
                     box.fab("history", "--lines", "1").stdout)
    assert report.failed == 0, report.failures


def test_a_new_slot_out_of_rotation_during_the_watch_is_rolled_back_under_load(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """HAProxy may take the new slot out of rotation without a failed check (MAINT
    (resolution) when Docker's DNS drops a stopped container's name): here by hand."""
    box = fleet_on_v1
    s1 = box.addresses[0]
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": 6}, watch={"each": True})
    with box.load() as load:
        deploy = BackgroundDeploy(box, "v2", inventory)
        switched = deploy.until("s1", r"(web[12]) \(v2\) is taking traffic")
        if switched:
            box.ssh(s1, f"echo 'set server webapp/{switched.group(1)} state maint' | "
                    "socat - UNIX-CONNECT:/etc/slotswap/webapp/haproxy/admin/admin.sock")
        exit_code, output = deploy.finish(timeout=300)
    report = load.stop()
    print(report.summary(), report.failures)
    assert exit_code == 1
    assert re.search(r"v2 took traffic in web[12], then stopped taking traffic [\d.]+s later "
                     r"\(HAProxy reports it MAINT", output)
    assert re.search(r"^s1 .*\brolled back\s+v1 in web[12]$", output, re.MULTILINE)
    assert box.served_versions(s1) == {"v1"}
    assert set(box.live_versions().values()) == {"v1"}
    # An artificial fault: the slots are fixed loopback addresses, with nothing to resolve,
    # so HAProxy no longer puts one in MAINT by itself; only a hand on the runtime API does.
    # From the hand-made maint until the watch sends the traffic back, the new slot cannot
    # take requests: the old slot's fallback line, ready during the window, takes them.
    assert report.failed == 0, report.failures

def test_an_old_container_gone_in_the_window_does_not_fail_the_proven_version(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """During s2's watch its old container is removed by hand: stopping it after the watch
    fails. v3 had its full watch and serves alone, its old slot out of rotation: said in a
    WARNING, and the run goes on (`--on-failure=rollback` has nothing to return). A plain
    `rollback` after it goes back one version, as after any finished deploy."""
    box = fleet_on_v1
    s2 = box.addresses[1]
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": 6}, watch={"each": True})
    assert box.fab("build", "--tag", "v3").returncode == 0
    assert box.fab("deploy", "--tag", "v2").returncode == 0
    with box.load() as load:
        deploy = BackgroundDeploy(box, "v3", inventory, "--on-failure", "rollback")
        switched = deploy.until("s2", r"is taking traffic .*; (web[12]) drains")
        assert switched, "".join(deploy.lines)
        box.ssh(s2, f"docker rm -f webapp-{switched.group(1)}")
        exit_code, output = deploy.finish(timeout=300)
    report = load.stop()
    assert exit_code == 0, output
    assert report.failed == 0, report.failures
    assert re.search(r"\[s2 .*WARNING: could not stop webapp-web[12]: .*it is out of rotation",
                     output), output
    assert set(box.live_versions().values()) == {"v3"}
    with box.load() as load:
        rollback = box.fab("rollback")
    assert load.stop().failed == 0
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert set(box.live_versions().values()) == {"v2"}


def app_images(box: Sandbox, address: str) -> set[str]:
    """The app's tagged images on the server. An untagged one (`<none>`: a tag that an
    earlier test moved to another image) is not among what keep_images counts."""
    listed = box.ssh(address, "docker image ls --format '{{.Tag}}' " + sandbox.APP_IMAGE)
    return set(listed.split()) - {"<none>"}


def test_old_images_beyond_keep_images_are_pruned(fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, keep_images=2)
    assert box.fab("deploy", "--tag", "v1", inventory=inventory).returncode == 0
    for address in box.addresses:
        for tag in ("bad1", "flaky1"):
            box.ssh(address, f"docker pull --quiet {sandbox.APP_IMAGE}:{tag}")
    result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert result.returncode == 0
    # bad1 and flaky1 at least; earlier tests may have left more tags behind.
    removed = re.findall(r"removed (\d+) old images \(keep_images: 2\)", result.stdout)
    assert len(removed) == 3 and all(int(count) >= 2 for count in removed), result.stdout
    for address in box.addresses:
        # v2 serves, v1 is kept (stopped) for a rollback: both stay, the others go.
        assert app_images(box, address) == {"v1", "v2"}
    rollback = box.fab("rollback", inventory=inventory)
    assert rollback.returncode == 0
    assert "restarting the kept container" in rollback.stdout
    assert set(box.live_versions().values()) == {"v1"}


@pytest.mark.parametrize(("changes", "key"), [
    ({"app": "webapp; touch /tmp/pwned"}, "app"),
    ({"image": "demo/webapp$(touch /tmp/pwned)"}, "image"),
    ({"healthcheck": {"path": "/health\nhttp-request deny"}}, "healthcheck.path"),
    ({"hosts": [{"address": "10.77.0.11;touch /tmp/pwned", "name": "s1"}]}, "hosts[0].address"),
    ({"hosts": [{"address": "10.77.0.11", "name": "$(reboot)"}]}, "hosts[0].name"),
    ({"ssh": {"user": "root;touch /tmp/pwned"}}, "ssh.user"),
    ({"env": {"plain": {"A": "x\nB=y"}}}, "env.plain"),
])
def test_inventory_values_crafted_to_inject_are_refused_before_any_connection(
        fleet_on_v1: Sandbox, tmp_path: Path, changes: dict[str, object], key: str) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, **changes)
    before = {a: box.containers(a) for a in box.addresses}
    result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert result.returncode == 2, result.stdout + result.stderr
    assert key in result.stderr
    assert "cannot connect" not in result.stderr
    assert not Path("/tmp/pwned").exists()
    for address in box.addresses:
        assert box.containers(address) == before[address]
