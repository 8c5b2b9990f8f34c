"""Faults and people on the sandbox: a lock held by another run, rollback, and a deploy
interrupted (Ctrl-C) at each of its steps in turn, under load."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.conftest import SWAP_STEPS, BackgroundDeploy

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))

LOCK_OWNER = ('{"who": "alice@laptop", "since": "2026-11-26T08:00:00+00:00", '
              '"task": "deploy", "tag": "v9", "token": "someone-else"}')

def test_a_held_lock_refuses_the_run_and_changes_nothing(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    locked = box.addresses[1]
    box.ssh(locked, "mkdir -p /var/lib/slotswap/webapp/lock && "
            f"echo '{LOCK_OWNER}' > /var/lib/slotswap/webapp/lock/owner.json")
    before = {a: box.containers(a) for a in box.addresses}
    result = box.fab("deploy", "--tag", "v2")
    assert result.returncode == 4
    assert "s2 is locked by alice@laptop since 2026-11-26T08:00:00+00:00 (deploy v9)" \
        in result.stderr
    assert "fab unlock --server=s2" in result.stderr
    for address in box.addresses:
        assert box.containers(address) == before[address]
    status = box.fab("lock")
    assert "s1: free" in status.stdout and "s2: locked by alice@laptop" in status.stdout
    assert box.fab("unlock", "--server", "s2").returncode == 0
    assert "s2: free" in box.fab("lock").stdout


def test_rollback_under_load_returns_each_server_to_its_previous_version(
        fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    assert box.fab("deploy", "--tag", "v2").returncode == 0
    kept_v1 = "docker ps --all --quiet --no-trunc --filter label=slotswap.version=v1"
    stopped = {a: box.ssh(a, kept_v1 + " --filter status=exited").split() for a in box.addresses}
    assert all(len(ids) == 1 for ids in stopped.values()), stopped
    with box.load() as load:
        result = box.fab("rollback")
    report = load.stop()
    assert result.returncode == 0
    assert report.failed == 0, report.failures
    assert set(box.live_versions().values()) == {"v1"}
    assert "pulling" not in result.stdout  # the previous image is still on the servers
    # The previous version's own container, kept stopped by the deploy, serves again.
    assert result.stdout.count("restarting the kept container") == len(box.addresses)
    for address in box.addresses:
        assert box.ssh(address, kept_v1 + " --filter status=running").split() == stopped[address]
    history = box.fab("history", "--lines", "2")
    assert history.returncode == 0
    assert re.search(r"deploy\s+v1\s+v2\s+deployed", history.stdout)
    assert re.search(r"rollback\s+v2\s+v1\s+deployed", history.stdout)


def interrupt_after(box: Sandbox, tag: str, marker: str) -> tuple[int, str]:
    """Run `fab deploy`, send it SIGINT as soon as s1 prints `marker`."""
    deploy = BackgroundDeploy(box, tag)
    if deploy.until("s1", re.escape(marker)):
        deploy.interrupt()
    return deploy.finish(timeout=120)


@pytest.mark.parametrize("marker", SWAP_STEPS)
def test_ctrl_c_at_each_step_leaves_one_healthy_version(fleet_on_v1: Sandbox,
                                                        marker: str) -> None:
    box = fleet_on_v1
    current = set(box.live_versions().values())
    assert len(current) == 1
    tag = "v2" if current == {"v1"} else "v1"
    with box.load() as load:
        exit_code, output = interrupt_after(box, tag, marker)
    report = load.stop()
    print(output)
    assert report.failed == 0, report.failures
    assert exit_code in (130, 0), output  # 0: the interrupt came after s1's very last step
    versions = box.live_versions()  # exactly one live slot on every server
    for address in box.addresses:
        assert len(box.served_versions(address)) == 1
    assert set(versions.values()) <= {"v1", "v2"}
    assert "s1: free" in box.fab("lock").stdout  # the lock went with the run
    # The next deploy takes whatever was left behind in its stride.
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    assert set(box.live_versions().values()) == {"v1"}


def test_secrets_reach_the_app_only_through_a_private_file(fleet_on_v1: Sandbox,
                                                          tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, env={"plain": {"GREETING": "hello"},
                                                  "secret": ["SLOTSWAP_TEST_TOKEN"]})
    before = box.containers(box.addresses[0])
    missing = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert missing.returncode == 2
    assert "SLOTSWAP_TEST_TOKEN" in missing.stderr
    assert box.containers(box.addresses[0]) == before

    token = f"s3cr3t-{time.time_ns()}"
    env = {**box.env, "SLOTSWAP_TEST_TOKEN": token}
    result = subprocess.run([FAB, "deploy", "--tag", "v2", "--inventory", str(inventory)],
                            cwd=ROOT, env=env, text=True, capture_output=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert token not in result.stdout + result.stderr
    assert "SLOTSWAP_TEST_TOKEN=<secret>" in result.stdout
    status = box.fab("status").stdout
    for address in box.addresses:
        live = re.search(rf"\({re.escape(address)}\): live (web[12])", status)
        assert live is not None, status
        slot = live.group(1)
        assert box.ssh(address, f"stat -c %a /etc/slotswap/webapp/{slot}.env").strip() == "600"
        assert box.ssh(address, "stat -c %a /etc/slotswap/webapp").strip() == "700"
        app_env = box.ssh(address, "docker inspect --format '{{json .Config.Env}}' "
                          f"webapp-{slot}")
        assert f"SLOTSWAP_TEST_TOKEN={token}" in app_env and "GREETING=hello" in app_env
        assert token not in box.ssh(address, "ps -eo args")
        assert token not in box.ssh(address, "cat /var/lib/slotswap/webapp/history.jsonl")


def test_a_stopped_haproxy_is_named_and_on_failure_rollback_restores_the_fleet(
        fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    s1, s2, s3 = box.addresses
    box.ssh(s2, "docker stop webapp-haproxy")
    try:
        # s2 serves nothing while its HAProxy is down, so the load goes to the others.
        with box.load([s1, s3]) as load:
            result = box.fab("deploy", "--tag", "v2", "--on-failure", "rollback")
        report = load.stop()
        assert result.returncode == 1
        assert report.failed == 0, report.failures
        assert "is HAProxy running? (`fab up` starts it)" in result.stderr
        # s1 was still in the watch window when s2 failed: back in one runtime-API line.
        assert "the servers in the watch window were switched back: s1;" in result.stderr
        assert re.search(r"^s1 .*\brolled back\s+v1 in web[12]$", result.stdout, re.MULTILINE)
        assert box.served_versions(s1) == {"v1"} and box.served_versions(s3) == {"v1"}

        # The default policy: what was moved stays moved, the summary says so.
        result = box.fab("deploy", "--tag", "v2")
        assert result.returncode == 1
        assert re.search(r"^s1 .*\bdeployed\s+v2 in web[12]$", result.stdout, re.MULTILINE)
        assert box.served_versions(s1) == {"v2"} and box.served_versions(s3) == {"v1"}
    finally:
        assert box.fab("up").returncode == 0  # starts s2's HAProxy again
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    assert set(box.live_versions().values()) == {"v1"}
