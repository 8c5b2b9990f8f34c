"""What the kit says about the servers' Docker Engine: the sandbox runs Debian 12's Docker
20.10, whose published loopback ports a host on the server's local network can get past
(moby/moby#45610)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox


def engine_version(box: Sandbox, address: str) -> str:
    return box.ssh(address, "docker info --format '{{.ServerVersion}}'").strip()


def test_up_warns_once_per_server_naming_its_docker_version(sandbox_env: Sandbox) -> None:
    version = engine_version(sandbox_env, sandbox_env.addresses[0])
    assert version.startswith("20.10.")
    result = sandbox_env.fab("up")
    assert result.returncode == 0
    # `[s1   1.9s] WARNING: Docker 20.10.24+dfsg1: ...`
    warned = re.findall(rf"^\[(\S+) +[\d.]+s\] WARNING: Docker {re.escape(version)}: .*"
                        r"bypassing HAProxy.*moby/moby#45610.*upgrade to Docker 28\.3\.3",
                        result.stdout, re.MULTILINE)
    names = [node.name.removeprefix(sandbox.NAME_PREFIX)
             for node in sandbox.server_nodes(len(sandbox_env.addresses))]
    assert sorted(warned) == names, result.stdout + result.stderr


# Another machine on the servers' local network: the builder's namespace is on their bridge.
NEIGHBOUR = sandbox.BUILDER_NODE
SLOT_PORTS = (18081, 18082)  # the inventory's haproxy.slot_ports (the defaults)


def neighbour_gets(address: str) -> str | None:
    """What the neighbour gets from the app's port (3000) at a container's address, straight
    from the container: HAProxy never sees the request. None when nothing answers."""
    result = subprocess.run(["ip", "netns", "exec", NEIGHBOUR.name, "curl", "-s",
                             "--max-time", "3", f"http://{address}:3000/"],
                            text=True, capture_output=True, check=False)
    return result.stdout if result.returncode == 0 else None


def loopback_port_answers(server: sandbox.Node, port: int) -> bool:
    """The neighbour's SYN to 127.0.0.1:port at the server's MAC address got a SYN-ACK."""
    link = json.loads(subprocess.run(["ip", "-n", server.name, "-j", "link", "show", "eth0"],
                                     text=True, capture_output=True, check=True).stdout)
    return subprocess.run(["ip", "netns", "exec", NEIGHBOUR.name, sys.executable, "-m",
                           "testbed.lan_probe", "eth0", NEIGHBOUR.ip, link[0]["address"],
                           str(port)], cwd=sandbox.ROOT, capture_output=True,
                          check=False).returncode == 0


def running_slots(box: Sandbox, address: str) -> list[str]:
    """The running slots' addresses on the app's network."""
    return box.ssh(address, "docker inspect --format "
                   "'{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "
                   "$(docker ps -q --filter label=slotswap.slot)").split()


def readme_rules(subnet: str, bridge: str) -> list[list[str]]:
    """The server checklist's rules for an engine before 28.0 (after `iptables -t raw`): what
    arrives for 127.0.0.0/8 on an interface other than lo, and for the app's network on an
    interface other than its bridge, is dropped before Docker's NAT sees it."""
    return [["PREROUTING", "-d", "127.0.0.0/8", "!", "-i", "lo", "-j", "DROP"],
            ["PREROUTING", "-d", subnet, "!", "-i", bridge, "-j", "DROP"]]


def test_a_neighbour_gets_past_haproxy_on_docker_20_10_unless_the_readme_rules_are_set(
        fleet_on_v1: Sandbox) -> None:
    box, s1 = fleet_on_v1, fleet_on_v1.addresses[0]
    server = sandbox.server_nodes(1)[0]
    network_id, subnet = box.ssh(s1, "docker network inspect --format "
                                 "'{{.Id}} {{range .IPAM.Config}}{{.Subnet}}{{end}}' "
                                 "webapp").split()
    bridge = f"br-{network_id[:12]}"
    # A host on the LAN routes the app network's addresses through the server.
    subprocess.run(["ip", "-n", NEIGHBOUR.name, "route", "add", subnet, "via", s1], check=True)
    try:
        (slot,) = running_slots(box, s1)
        assert "version=v1" in (neighbour_gets(slot) or "")
        assert any(loopback_port_answers(server, port) for port in SLOT_PORTS)
        rules = readme_rules(subnet, bridge)
        for rule in rules:
            subprocess.run(["ip", "netns", "exec", server.name, "iptables", "-w", "-t", "raw",
                            "-I", *rule], check=True)
        try:
            assert neighbour_gets(slot) is None
            assert not any(loopback_port_answers(server, port) for port in SLOT_PORTS)
            with box.load() as load:
                result = box.fab("deploy", "--tag", "v2")
            report = load.stop()
            print(report.summary(), report.failures)
            assert result.returncode == 0
            assert report.sent > 0 and report.failed == 0, report.failures
            assert box.served_versions(s1) == {"v2"}
            assert [neighbour_gets(slot) for slot in running_slots(box, s1)] == [None]
            assert not any(loopback_port_answers(server, port) for port in SLOT_PORTS)
        finally:
            for rule in rules:
                subprocess.run(["ip", "netns", "exec", server.name, "iptables", "-w", "-t",
                                "raw", "-D", *rule], check=False)
    finally:
        subprocess.run(["ip", "-n", NEIGHBOUR.name, "route", "del", subnet], check=False)
