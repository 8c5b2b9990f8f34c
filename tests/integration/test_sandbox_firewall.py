"""The sandbox on a machine where a Docker engine runs in this machine's own namespace (an
operator's laptop; a Debian 12 right after `apt-get install docker.io`): that engine sets
iptables' FORWARD policy to DROP, and with bridge netfilter on, what the sandbox's bridge
forwards between two of its servers goes through FORWARD. Other sandboxes may run on this
machine at the same time, so the global policy is left alone: a rule at the end of FORWARD
drops this sandbox's bridge traffic only, which is what the policy does to it."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slotswap.config.hosts import Host
from slotswap.config.inventory import Inventory
from slotswap.config.loader import load_inventory
from slotswap.config.ssh import JumpHost
from slotswap.remote.server import Server
from testbed import sandbox

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox

BRIDGE_NETFILTER = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
# What DROP as FORWARD's policy does to the bridge's traffic: nothing after it accepts it.
DOCKER_POLICY = ["-i", sandbox.BRIDGE, "-o", sandbox.BRIDGE, "-m", "comment", "--comment",
                 f"test: Docker's FORWARD policy DROP, for {sandbox.BRIDGE} alone", "-j", "DROP"]


def iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", *args], text=True, capture_output=True,
                          check=check)


def bridge_accepts() -> list[str]:
    """The FORWARD rules that accept the bridge's own traffic."""
    return [line for line in iptables("-S", "FORWARD").stdout.splitlines()
            if re.search(rf"-i {sandbox.BRIDGE} -o {sandbox.BRIDGE} .*-j ACCEPT$", line)]


@pytest.fixture(scope="module")
def docker_drops_forwarding() -> Iterator[None]:
    """Bridge netfilter on (built into the kernel, or the module br_netfilter loaded), and
    this bridge's forwarded traffic dropped at the end of FORWARD, until the module ends."""
    if not BRIDGE_NETFILTER.exists() and shutil.which("modprobe"):
        subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
    if not BRIDGE_NETFILTER.exists():
        pytest.skip("no bridge netfilter in this kernel: FORWARD never sees bridged traffic, "
                    "so a Docker engine here cannot cut the sandbox's bridge")
    before = BRIDGE_NETFILTER.read_text().strip()
    if before != "1":
        # Only while FORWARD's policy is ACCEPT does turning it on cost other bridges nothing.
        assert iptables("-S", "FORWARD").stdout.splitlines()[0] == "-P FORWARD ACCEPT"
        BRIDGE_NETFILTER.write_text("1\n")
    iptables("-A", "FORWARD", *DOCKER_POLICY)
    try:
        yield
    finally:
        while iptables("-D", "FORWARD", *DOCKER_POLICY, check=False).returncode == 0:
            pass
        BRIDGE_NETFILTER.write_text(f"{before}\n")


def ssh_client_address(inventory: Inventory, host: Host, via: Host) -> str:
    """Where `host` sees an SSH connection come from that goes through the jump host `via`."""
    jumped = dataclasses.replace(host, jump=JumpHost(via.address))
    quick = dataclasses.replace(inventory, ssh=dataclasses.replace(inventory.ssh,
                                                                   connect_timeout=5))
    server = Server(jumped, quick)
    try:
        return server.run(["sh", "-c", 'echo "$SSH_CLIENT"']).stdout.split()[0]
    finally:
        server.close()


def test_a_jump_from_server_to_server_where_docker_drops_forwarding(
        docker_drops_forwarding: None, sandbox_env: Sandbox) -> None:
    inventory = load_inventory(sandbox_env.inventory)
    s1, s2, s3 = inventory.hosts[:3]
    assert ssh_client_address(inventory, s2, via=s1) == s1.address
    assert ssh_client_address(inventory, s1, via=s3) == s3.address


def test_destroy_removes_the_rule_also_one_left_behind(docker_drops_forwarding: None,
                                                       sandbox_env: Sandbox) -> None:
    """A sandbox of this ID killed before its destroy() left its rule beside the running
    sandbox's: destroy() (which create() runs first) removes both, and create() adds one. The
    session's sandbox is made again, with its images."""
    assert len(bridge_accepts()) == 1
    iptables("-I", "FORWARD", *sandbox.forward_rule())  # the one left behind
    try:
        sandbox.destroy()
        assert bridge_accepts() == []
    finally:
        sandbox.create(len(sandbox_env.addresses))
        sandbox_env.build_tags()
    assert len(bridge_accepts()) == 1
    inventory = load_inventory(sandbox_env.inventory)
    s1, s2 = inventory.hosts[:2]
    assert ssh_client_address(inventory, s1, via=s2) == s2.address
