"""The operator's tools on the sandbox: --json checked against the real containers and
HAProxy, --dry-run changing nothing and showing no secret, hooks around real deploys,
`fab logs` (bounded --follow), and an invalid proxy config refused by `fab up` under load."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slotswap.config import scaffold
from testbed import sandbox

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

from tests.integration.conftest import FAB, ROOT

pytestmark = pytest.mark.sandbox
SECRET_VALUE = "Sup3r-Secret-Value-42"
CONFIG = "/etc/slotswap/webapp/haproxy/haproxy.cfg"
ADMIN_SOCKET = "/etc/slotswap/webapp/haproxy/admin/admin.sock"
SHOW_STAT = f"echo 'show stat webapp 4 -1' | socat - UNIX-CONNECT:{ADMIN_SOCKET}"


def slot_state(box: Sandbox, address: str) -> dict[str, tuple[str, str]]:
    """Per slot, from the server itself: (HAProxy status, version label of a running
    container or '-')."""
    stat = box.ssh(address, f"bash -c {SHOW_STAT!r}")
    statuses = {row.split(",")[1]: row.split(",")[17] for row in stat.splitlines()
                if row.startswith("webapp,web")}
    found = {}
    for slot in ("web1", "web2"):
        version = box.ssh(address, "docker inspect --format '{{if .State.Running}}"
                          "{{index .Config.Labels \"slotswap.version\"}}{{else}}-{{end}}' "
                          f"webapp-{slot} 2>/dev/null || echo -").strip()
        found[slot] = (statuses[slot], version)
    return found


def serving_on_server(box: Sandbox, address: str) -> str:
    """What serves, as the kit words it ("v2 in web2"), read from HAProxy and Docker."""
    serving = [f"{version} in {slot}" for slot, (status, version) in
               slot_state(box, address).items() if status == "UP" and version != "-"]
    return " and ".join(serving) or "NOTHING"


def fab_json(box: Sandbox, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    result = box.fab(*args, "--json")
    return result, json.loads(result.stdout)  # stdout is the document and nothing else


def test_deploy_status_rollback_json_match_the_servers(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    result, document = fab_json(box, "deploy", "--tag", "v2")
    assert result.returncode == 0
    assert document["ok"] is True and document["task"] == "deploy"
    assert "all 3 servers serve v2" in result.stderr
    for server, address in zip(document["servers"], box.addresses, strict=True):
        assert server["address"] == address
        assert (server["old_tag"], server["new_tag"], server["outcome"]) == ("v1", "v2",
                                                                             "deployed")
        assert server["error"] is None and server["seconds"] > 0
        assert server["serving"] == serving_on_server(box, address)
        assert server["serving"].startswith("v2 in web")
        assert box.served_versions(address) == {"v2"}

    result, status = fab_json(box, "status")
    assert result.returncode == 0
    for server, address in zip(status["servers"], box.addresses, strict=True):
        states = slot_state(box, address)
        assert states[server["live"]] == ("UP", "v2")
        assert server["version"] == "v2" and server["error"] is None

    result, document = fab_json(box, "rollback")
    assert result.returncode == 0
    for server, address in zip(document["servers"], box.addresses, strict=True):
        assert (server["old_tag"], server["new_tag"], server["outcome"]) == ("v2", "v1",
                                                                             "deployed")
        assert server["serving"] == serving_on_server(box, address)
        assert box.served_versions(address) == {"v1"}


def test_failed_deploy_json_says_what_each_server_serves(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    result, document = fab_json(box, "deploy", "--tag", "bad1")
    assert result.returncode == 1
    assert document["ok"] is False and document["exit_code"] == 1
    first, *rest = document["servers"]
    assert first["outcome"] == "failed" and "L7STS" in first["error"]
    assert [s["outcome"] for s in rest] == ["not started", "not started"]
    for server, address in zip(document["servers"], box.addresses, strict=True):
        assert server["serving"] == serving_on_server(box, address)
        assert box.served_versions(address) == {"v1"}


def test_dry_run_changes_nothing_and_shows_no_secret(fleet_on_v1: Sandbox,
                                                     tmp_path: Path) -> None:
    box = dataclasses.replace(fleet_on_v1, env={**fleet_on_v1.env, "API_TOKEN": SECRET_VALUE})
    inventory = box.inventory_copy(tmp_path, env={"plain": {"LOG_LEVEL": "debug"},
                                                  "secret": ["API_TOKEN"]},
                                   healthcheck={"path": "/health?changed=1"})
    before = {a: (box.containers(a), box.ssh(a, f"cat {CONFIG}"),
                  box.ssh(a, "cat /var/lib/slotswap/webapp/history.jsonl")) for a in box.addresses}
    runs = {args: box.fab(*args, "--dry-run", inventory=inventory)
            for args in (("deploy", "--tag", "v2"), ("rollback", "--to", "v2"), ("up",),
                         ("down",))}
    for args, result in runs.items():
        assert result.returncode == 0, args
        output = result.stdout + result.stderr
        assert SECRET_VALUE not in output
        assert output.startswith("DRY RUN: nothing is changed")
        for name in ("s1", "s2", "s3"):
            subnet = re.escape(sandbox.SUBNET_PREFIX)
            assert re.search(rf"^{name} \({subnet}\.\d+\): ", output, re.MULTILINE), output
    deploy_plan = runs[("deploy", "--tag", "v2")].stdout
    assert "API_TOKEN=<secret>" in deploy_plan and "LOG_LEVEL=debug" in deploy_plan
    assert f"$ docker pull --quiet {sandbox.REGISTRY}/" in deploy_plan
    assert "docker run --detach --name webapp-web" in deploy_plan
    assert "runtime API> set server webapp/web" in deploy_plan
    assert "docker pull" not in runs[("rollback", "--to", "v2")].stdout
    assert "changes: config" in runs[("up",)].stdout  # the changed health path
    assert " -c -f " in runs[("up",)].stdout and "haproxy.cfg.new" in runs[("up",)].stdout
    assert "$ docker rm --force webapp-haproxy" in runs[("down",)].stdout
    for address in box.addresses:
        after = (box.containers(address), box.ssh(address, f"cat {CONFIG}"),
                 box.ssh(address, "cat /var/lib/slotswap/webapp/history.jsonl"))
        assert after == before[address]
        assert box.served_versions(address) == {"v1"}
    assert all(line.endswith(": free") for line in box.fab("lock").stdout.splitlines())


def test_dry_run_names_a_held_lock_and_exits_4(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    owner = ('{"who": "alice@laptop", "since": "2026-11-26T08:00:00+00:00", '
             '"task": "deploy", "tag": "v9", "token": "someone-else"}')
    box.ssh(box.addresses[1], "mkdir -p /var/lib/slotswap/webapp/lock && "
            f"echo '{owner}' > /var/lib/slotswap/webapp/lock/owner.json")
    try:
        result = box.fab("deploy", "--tag", "v2", "--dry-run")
    finally:
        assert box.fab("unlock", "--server", "s2").returncode == 0
    assert result.returncode == 4
    assert "STOP: locked by alice@laptop" in result.stdout
    assert "s2 is locked by alice@laptop" in result.stderr


def recording_hook(folder: Path, name: str, code: int = 0) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\nenv | grep -E '^(SLOTSWAP_[A-Z_]*|API_TOKEN)=' "
                    f"| grep -v RESULT_JSON | sort > \"$0.env\"\nexit {code}\n")
    path.chmod(0o755)
    return path


def recorded(program: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in Path(f"{program}.env").read_text().splitlines())


def test_hooks_run_around_real_deploys(fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = dataclasses.replace(fleet_on_v1, env={**fleet_on_v1.env, "API_TOKEN": SECRET_VALUE})
    refuse = recording_hook(tmp_path, "refuse.sh", code=1)
    ok, success, failure = (recording_hook(tmp_path, n) for n in ("ok.sh", "success.sh",
                                                                   "failure.sh"))
    env_section = {"secret": ["API_TOKEN"]}
    (tmp_path / "refusing").mkdir()
    (tmp_path / "hooked").mkdir()
    refusing = box.inventory_copy(tmp_path / "refusing", env=env_section,
                                  hooks={"pre_deploy": str(refuse),
                                         "post_failure": str(failure)})
    before = {a: box.containers(a) for a in box.addresses}
    result = box.fab("deploy", "--tag", "v2", inventory=refusing)
    assert result.returncode == 5
    assert "pre_deploy hook" in result.stderr and "exited 1" in result.stderr
    assert {a: box.containers(a) for a in box.addresses} == before
    assert not Path(f"{failure}.env").exists()  # nothing started, nothing to report
    assert recorded(refuse)["SLOTSWAP_SERVERS"] == "s1 s2 s3"

    hooked = box.inventory_copy(tmp_path / "hooked", env=env_section,
                                hooks={"pre_deploy": str(ok), "post_success": str(success),
                                       "post_failure": str(failure)})
    assert box.fab("deploy", "--tag", "v2", inventory=hooked).returncode == 0
    told = recorded(success)
    assert told["SLOTSWAP_OUTCOME"] == "success" and told["SLOTSWAP_TAG"] == "v2"
    assert told["SLOTSWAP_ADDRESSES"] == " ".join(box.addresses)
    assert "API_TOKEN" not in told and "API_TOKEN" not in recorded(ok)

    assert box.fab("deploy", "--tag", "bad1", inventory=hooked).returncode == 1
    told = recorded(failure)
    assert (told["SLOTSWAP_OUTCOME"], told["SLOTSWAP_EXIT_CODE"]) == ("failure", "1")
    assert "stopped at s1" in told["SLOTSWAP_MESSAGE"]
    assert box.fab("deploy", "--tag", "v1").returncode == 0


def test_logs_prefix_every_line_with_its_server(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    for slot, version in (("live", "v1"), ("idle", "")):
        result = box.fab("logs", "--slot", slot, "--lines", "5")
        assert result.returncode == 0
        lines = result.stdout.splitlines()
        assert lines and all(re.match(r"^s[123] +\| ", line) for line in lines), lines
        assert {line.split()[0] for line in lines} == {"s1", "s2", "s3"}
        if version:
            starts = re.findall(rf"^(s[123]) +\| .*webapp starting version={version}",
                                result.stdout, re.MULTILINE)
            assert set(starts) == {"s1", "s2", "s3"}, result.stdout


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_logs_follow_streams_every_server_until_ctrl_c(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    # Ctrl-C as in a terminal, also when the tests run in the background, where the shell
    # has them ignore SIGINT (and so would fab, inheriting that).
    process = subprocess.Popen([FAB, "logs", "--follow", "--lines", "3", "--inventory",
                                str(box.inventory)], cwd=ROOT, env=box.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=default_sigint)
    seen: set[str] = set()
    selector = selectors.DefaultSelector()
    assert process.stdout is not None
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + 60
    # Straight from the pipe: a buffered readline() takes several servers' lines out of the
    # pipe at once and hands back one, and select() then waits on an empty pipe.
    descriptor, pending = process.stdout.fileno(), ""
    try:
        while seen != {"s1", "s2", "s3"} and time.monotonic() < deadline:
            if selector.select(timeout=1):
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk.decode(errors="replace")).split("\n")
                seen.update(line.split()[0] for line in lines if line.split())
        assert seen == {"s1", "s2", "s3"}
        assert process.poll() is None  # still following
        process.send_signal(signal.SIGINT)
        # Read what is left, as a terminal would: a full pipe would block the exit.
        rest, errors = process.communicate(timeout=30)
        assert process.returncode == 0, rest[-2000:] + errors[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_up_refuses_a_config_haproxy_rejects_and_keeps_the_running_one(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    scaffold.write_starter(tmp_path, templates=True)  # as `fab init --templates` does
    inventory = box.inventory_copy(tmp_path)  # the sandbox's settings over its hosts.yaml
    template = tmp_path / "templates" / "haproxy.cfg.j2"
    template.write_text(template.read_text().replace(
        "    balance first\n", "    balance first\n    no-such-directive on\n"))
    before = {a: (box.containers(a), box.ssh(a, f"cat {CONFIG}")) for a in box.addresses}
    with box.load() as load:
        result = box.fab("up", inventory=inventory)
    report = load.stop()
    print(report.summary())
    assert result.returncode == 1
    assert "HAProxy rejects the new config, the running one stays" in result.stderr
    assert "no-such-directive" in result.stderr
    assert report.sent > 0 and report.failed == 0, report.failures
    for address in box.addresses:
        assert box.containers(address) == before[address][0]
        assert box.ssh(address, f"cat {CONFIG}") == before[address][1]
