"""The network on the sandbox: a server that does not answer, and an SSH connection that is
cut in the middle of a swap, under load."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import SWAP_STEPS, BackgroundDeploy

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
# In the sandbox's own subnet, and nothing answers there.
NOBODY = f"{sandbox.SUBNET_PREFIX}.99"


def test_an_unreachable_server_stops_the_run_before_anything_changes(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    hosts = [{"address": box.addresses[0], "name": "s1"}, {"address": NOBODY, "name": "ghost"},
             {"address": box.addresses[2], "name": "s3"}]
    inventory = box.inventory_copy(tmp_path, hosts=hosts, ssh={"connect_timeout": 3})
    before = {a: box.containers(a) for a in box.addresses}
    started = time.monotonic()
    result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert time.monotonic() - started < 60
    assert result.returncode == 3
    assert "nothing was changed" in result.stderr
    assert f"ghost: cannot connect to root@{NOBODY}:22" in result.stderr
    for address in box.addresses:
        assert box.containers(address) == before[address]
    assert "s1: free" in box.fab("lock").stdout


def cut_ssh_sessions(namespace: str) -> int:
    """Kill the server side of every SSH session in that server (not its listener)."""
    pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                          check=True).stdout.split()
    killed = 0
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if command.startswith(b"sshd: root"):
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed


@pytest.mark.parametrize("marker", SWAP_STEPS)
def test_a_cut_connection_mid_swap_leaves_one_healthy_version(fleet_on_v1: Sandbox,
                                                              marker: str) -> None:
    box = fleet_on_v1
    current = set(box.live_versions().values())
    tag = "v2" if current == {"v1"} else "v1"
    with box.load() as load:
        deploy = BackgroundDeploy(box, tag)
        if deploy.until("s1", re.escape(marker)):
            assert cut_ssh_sessions(sandbox.server_nodes(1)[0].name) >= 1
        exit_code, output = deploy.finish(timeout=180)
    report = load.stop()
    assert report.failed == 0, report.failures
    assert exit_code != 0 or "all 3 servers serve" in output
    box.live_versions()  # every server has exactly one live slot
    for address in box.addresses:
        assert len(box.served_versions(address)) == 1
    assert "s1: free" in box.fab("lock").stdout
    assert box.fab("deploy", "--tag", "v1").returncode == 0
