"""End to end on the sandbox's 3 servers, in order: each test starts from where the previous
one left the fleet. Traffic goes only to the sandbox's own addresses, bounded in time and
count by the load generator."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox


def test_up_then_first_deploy(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    assert box.fab("up").returncode == 0
    result = box.fab("deploy", "--tag", "v1")
    assert result.returncode == 0
    for address in box.addresses:
        assert box.served_versions(address) == {"v1"}
    # Deployed, or left alone where an earlier test module left v1 serving.
    assert re.search(r"(deployed|unchanged)\s+v1 in web[12]$", result.stdout, re.MULTILINE)


def test_no_admin_port_from_outside(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    for address in box.addresses:
        # The port the runtime API once had is closed: the API is a unix socket now.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, 9999), timeout=3).close()
        # ...which the login reaches on the server (as the kit does, through SSH).
        answer = box.ssh(address, "echo 'show info' | socat - "
                         "UNIX-CONNECT:/etc/slotswap/webapp/haproxy/admin/admin.sock")
        assert "Name: HAProxy" in answer


def test_back_to_back_deploys_under_load_fail_no_request(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    with box.load() as load:
        for tag in ("v2", "v1", "v2"):
            result = box.fab("deploy", "--tag", tag)
            assert result.returncode == 0, result.stdout + result.stderr
    report = load.stop()
    print(report.summary())
    assert report.sent > 500
    assert report.failed == 0, report.failures
    for address in box.addresses:
        assert box.served_versions(address) == {"v2"}
        assert set(report.versions_by_target[address]) == {"v1", "v2"}
    assert set(box.live_versions().values()) == {"v2"}


def test_missing_tag_fails_before_any_traffic_moves(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    before = {a: box.containers(a) for a in box.addresses}
    result = box.fab("deploy", "--tag", "v404")
    assert result.returncode == 1
    assert "nothing was changed" in result.stderr
    assert "cannot pull" in result.stderr and "webapp:v404" in result.stderr
    for address in box.addresses:
        assert box.served_versions(address) == {"v2"}
        assert box.containers(address) == before[address]


def test_unhealthy_version_is_contained_under_load(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    later = box.addresses[1:]
    before = {a: box.containers(a) for a in later}
    with box.load() as load:
        result = box.fab("deploy", "--tag", "bad1")
    report = load.stop()
    print(report.summary())
    assert result.returncode == 1
    assert report.failed == 0, report.failures
    output = result.stdout + result.stderr
    assert "deploy of bad1 stopped at s1" in output
    # Why: HAProxy's own check of the new slot failed on its HTTP status. (Once the stats
    # showed the code as 0 instead of 500, cause not known, hence no "500" here.)
    assert "L7STS" in output
    assert re.search(r"^s1 .* failed\s+v2 in web[12]$", result.stdout, re.MULTILINE)
    assert re.search(r"^s2 .* not started\s+v2 in web[12]$", result.stdout, re.MULTILINE)
    assert box.served_versions(box.addresses[0]) == {"v2"}
    assert report.versions_by_target[box.addresses[0]].keys() == {"v2"}
    for address in later:
        assert box.served_versions(address) == {"v2"}
        assert box.containers(address) == before[address]


def test_up_twice_under_load_changes_nothing(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    with box.load() as load:
        first, second = box.fab("up"), box.fab("up")
    report = load.stop()
    assert first.returncode == 0 and second.returncode == 0
    assert report.failed == 0, report.failures
    assert len(re.findall(r"^s\d\s+unchanged$", second.stdout, re.MULTILINE)) == 3


def test_changed_proxy_config_reloads_without_failing_a_request(
        sandbox_env: Sandbox, tmp_path: Path) -> None:
    box = sandbox_env
    data = yaml.safe_load(box.inventory.read_text())
    data["healthcheck"] = {"path": "/health?probe=1"}
    for key in ("identity", "known_hosts"):
        data["ssh"][key] = str(box.inventory.parent / data["ssh"][key])
    for key in ("context", "dockerfile"):
        data["build"][key] = str((box.inventory.parent / data["build"][key]).resolve())
    changed = tmp_path / "hosts.yaml"
    changed.write_text(yaml.safe_dump(data))
    with box.load() as load:
        result = box.fab("up", inventory=changed)
        back = box.fab("up")
    report = load.stop()
    assert result.returncode == 0 and back.returncode == 0
    assert len(re.findall(r"^s\d\s+config reloaded$", result.stdout, re.MULTILINE)) == 3
    assert report.failed == 0, report.failures
    for address in box.addresses:
        assert box.served_versions(address) == {"v2"}


def test_shell_injection_in_a_tag_is_refused_before_any_server(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    marker = Path("/tmp/slotswap-pwned")
    marker.unlink(missing_ok=True)
    for tag in ("v1; touch /tmp/slotswap-pwned", "$(touch /tmp/slotswap-pwned)"):
        result = box.fab("deploy", "--tag", tag)
        assert result.returncode == 2
        assert "invalid tag" in result.stderr
    assert not marker.exists()
    for address in box.addresses:
        assert not box.ssh(address, "ls /tmp/slotswap-pwned 2>/dev/null || true").strip()


def test_down_removes_the_app(sandbox_env: Sandbox) -> None:
    box = sandbox_env
    assert box.fab("down").returncode == 0
    for address in box.addresses:
        assert box.ssh(address, "docker ps -aq --filter label=slotswap.app=webapp") == ""
        assert "webapp" not in box.ssh(address, "docker network ls --format '{{.Name}}'")
