"""`fab up` with a config that HAProxy accepts (`haproxy -c`) but cannot start with: the old
workers keep serving, the file on disk stays the one that runs, and nothing stale is left
for the next `fab up` or the next restart of HAProxy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slotswap.config import scaffold
from tests.integration.conftest import wait_for

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
FOLDER = "/etc/slotswap/webapp/haproxy"
CONFIG = f"{FOLDER}/haproxy.cfg"
HTTP_BIND = "    bind 0.0.0.0:{{ http_port }}\n"


@pytest.mark.parametrize(("after", "line", "refusal", "refused_first"), [
    # An IPv4 address the server does not have: refused before any reload.
    (HTTP_BIND, "    bind 10.9.9.9:8081\n",
     "binds 10.9.9.9, which the server does not have", True),
    # A pid file in a folder that does not exist: only the reload itself can tell.
    ("global\n", "    pidfile /nonexistent/haproxy.pid\n",
     "HAProxy accepted the new config but did not start with it", False),
])
def test_a_config_haproxy_cannot_start_with_is_refused_and_the_running_one_stays(
        fleet_on_v1: Sandbox, tmp_path: Path, after: str, line: str, refusal: str,
        refused_first: bool) -> None:
    box = fleet_on_v1
    s1 = box.addresses[0]
    scaffold.write_starter(tmp_path, templates=True)  # as `fab init --templates` does
    inventory = box.inventory_copy(tmp_path)
    template = tmp_path / "templates" / "haproxy.cfg.j2"
    good = template.read_text()
    assert box.fab("up", inventory=inventory).returncode == 0
    running = box.ssh(s1, f"cat {CONFIG}")
    # Valid for `haproxy -c`, which neither binds nor writes a pid file.
    template.write_text(good.replace(after, after + line, 1))
    for _ in range(2):  # the second time must not pass for "unchanged"
        with box.load() as load:
            result = box.fab("up", inventory=inventory)
        report = load.stop()
        print(report.summary(), report.failures)
        assert result.returncode == 1
        assert refusal in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1  # one line: the error
        # The failed start binds nothing away from the old workers, which serve on.
        assert report.sent > 0 and report.failed == 0, report.failures
        if not refused_first:
            assert "the previous config is back in place" in result.stderr
        assert box.ssh(s1, f"cat {CONFIG}") == running
        # No new config or kept copy left behind: the running config, its hash, the admin
        # socket's folder, the maintenance map and its service, and the slots' state, which
        # a restarted HAProxy starts from (kept current, never removed).
        # (An earlier test's HTTPS leaves its certs folder: not this test's concern.)
        listed = set(box.ssh(s1, f"ls {FOLDER}").split()) - {"certs"}
        assert sorted(listed) == [
            "admin", "haproxy.cfg", "haproxy.cfg.running-sha256", "maintenance.lua",
            "maintenance.map", "server-state"]
    template.write_text(good)
    result = box.fab("up", inventory=inventory)
    assert result.returncode == 0
    assert re.search(r"^s1\s+unchanged$", result.stdout, re.MULTILINE)
    if refused_first:
        return  # HAProxy was never reloaded: what follows is the failed reload's to show
    # HAProxy starts again from the file on disk, with the slots as the kit left them.
    box.ssh(s1, "docker restart webapp-haproxy")
    assert wait_for(lambda: box.fab("status").returncode == 0, timeout=30)
    assert wait_for(lambda: box.served_versions(s1) == {"v1"}, timeout=30)
    assert set(box.live_versions().values()) == {"v1"}
    with box.load() as load:
        assert box.fab("deploy", "--tag", "v2").returncode == 0
    assert load.stop().failed == 0
