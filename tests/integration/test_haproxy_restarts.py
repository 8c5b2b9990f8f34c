"""Which slot is live survives a restart of HAProxy, under load: a Docker engine restarted
between deploys (with the old slot's container left running, as a failed stop leaves it)
and during the watch window, and HAProxy's process killed in the window (as an OOM kill
that Docker restarts). Afterwards each server serves exactly one version, the one the kit
last said; requests fail only on the restarted server while its engine (or HAProxy) is
down. And an HAProxy hand-over cut while the old one drains is finished by the next `up`.
Traffic goes only to the sandbox's own addresses, bounded by the load generator."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slotswap.config import scaffold
from testbed import sandbox
from tests.integration.conftest import FAB, ROOT, BackgroundDeploy, wait_for

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox


def s1() -> sandbox.Node:
    return sandbox.server_nodes(1)[0]


def restart_engine(node: sandbox.Node) -> None:
    """The node's dockerd stopped (SIGTERM: it stops its containers) and started again, as
    a reboot, an engine upgrade or `systemctl restart docker` do; returns once it answers."""
    pid = int((node.run_dir / "docker.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: not process_alive(pid), 60), "dockerd did not stop"
    sandbox.start_dockerd(node)
    assert wait_for(lambda: sandbox.engine_ready(node), 60), "dockerd did not start"


def process_alive(pid: int) -> bool:
    """Running, not a zombie (a dockerd this test run started stays one until reaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def haproxy_answers(box: Sandbox, address: str) -> bool:
    try:
        box.ssh(address, "docker ps --filter name=webapp-haproxy --filter status=running -q"
                " | grep -q .")
        return box.served_versions(address, 2) != set()
    except (OSError, subprocess.CalledProcessError):
        return False


def status_of(box: Sandbox, server: str) -> tuple[str, str]:
    """(live slot, version) that `fab status` says `server` serves."""
    result = box.fab("status")
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(rf"^{server} \(\S+\): live (web[12]), serving (\S+)$", result.stdout,
                      re.MULTILINE)
    assert match, result.stdout
    return match.group(1), match.group(2)


def other(tag: str) -> str:
    return "v2" if tag == "v1" else "v1"


def served_over_load(box: Sandbox, address: str, seconds: float = 3.0) -> set[str]:
    """The versions a few seconds of load on one server got; none failed."""
    with box.load([address]) as load:
        time.sleep(seconds)
    report = load.stop()
    print(report.summary(), report.failures)
    assert report.sent > 0 and report.failed == 0, report.failures
    return set(report.versions)


def test_an_engine_restart_between_deploys_keeps_the_version_the_kit_deployed(
        fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    address = box.addresses[0]
    # The live slot web2: from the config alone, HAProxy's `balance first` would send every
    # request to web1's container (the other version) once both came back.
    while status_of(box, "s1")[0] != "web2":
        tag = other(status_of(box, "s1")[1])
        assert box.fab("deploy", "--tag", tag).returncode == 0
    _, live = status_of(box, "s1")
    # The old slot's container left running (a `docker stop` that failed, a cut run).
    box.ssh(address, "docker start webapp-web1")
    others = box.addresses[1:]
    with box.load(others) as load:
        restart_engine(s1())
        assert wait_for(lambda: haproxy_answers(box, address), 60)
    report = load.stop()
    print(report.summary(), report.failures)
    assert report.sent > 0 and report.failed == 0, report.failures
    assert "webapp-web1" in box.ssh(address, "docker ps --format '{{.Names}}'")
    assert served_over_load(box, address) == {live}
    assert status_of(box, "s1") == ("web2", live)
    # The next plain deploy works from there.
    assert box.fab("deploy", "--tag", other(live)).returncode == 0
    assert served_over_load(box, address) == {other(live)}


def fault_in_the_window(box: Sandbox, tmp_path: Path, fault: Callable[[], None],
                        restart_seconds: float) -> tuple[str, str, set[str]]:
    """A deploy of the other version with a 25 s window; `fault` on s1 once it switched;
    returns (version before, version deployed, what s1 served once HAProxy answered
    again, while still in the window). No request to s2 and s3 failed. s1 serves one
    version, the one the run's summary says it serves: the new one, or the old one when
    the watch, which lost HAProxy before the new version's full watch, sent the traffic
    back once it answered again (which of the two depends on how soon HAProxy is back)."""
    address = box.addresses[0]
    _, before = status_of(box, "s1")
    tag = other(before)
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": 25})
    with box.load(box.addresses[1:]) as load:
        deploy = BackgroundDeploy(box, tag, inventory)
        assert deploy.until("s1", "is taking traffic"), "".join(deploy.lines)
        fault()
        assert wait_for(lambda: haproxy_answers(box, address), restart_seconds)
        code, output = deploy.finish(timeout=180)
        served = served_over_load(box, address)
    report = load.stop()
    print(report.summary(), report.failures, "deploy exit", code)
    assert report.sent > 0 and report.failed == 0, report.failures
    said = re.search(r"^s1 .* (v\d+) in web[12]$", output, re.MULTILINE)
    # (`unknown` when the server could not be read at the end: honest, and nothing to hold.)
    assert said is None or served == {said.group(1)}, output
    return before, tag, served


def test_an_engine_restart_in_the_watch_window_leaves_one_version(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    before, tag, served = fault_in_the_window(box, tmp_path, lambda: restart_engine(s1()), 60)
    assert served in ({tag}, {before})
    assert served_over_load(box, box.addresses[0]) == {status_of(box, "s1")[1]} == served
    # The next plain deploy ends clean.
    assert box.fab("deploy", "--tag", tag).returncode == 0
    assert served_over_load(box, box.addresses[0]) == {tag}


def test_haproxy_killed_in_the_watch_window_comes_back_with_the_new_slot_alone(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """As an OOM kill: HAProxy's process dies, Docker's restart policy starts it again."""
    box = fleet_on_v1
    address = box.addresses[0]

    def kill_haproxy() -> None:
        pid = box.ssh(address, "docker inspect --format '{{.State.Pid}}' webapp-haproxy")
        os.kill(int(pid), signal.SIGKILL)

    before, tag, served = fault_in_the_window(box, tmp_path, kill_haproxy, 30)
    assert served in ({tag}, {before})
    assert served_over_load(box, address) == {status_of(box, "s1")[1]} == served
    assert box.fab("deploy", "--tag", tag).returncode == 0
    assert served_over_load(box, address) == {tag}


def streamed_up(box: Sandbox, inventory: Path) -> subprocess.Popen[str]:
    """`fab up` started, its output (stderr too) read line by line from its stdout."""
    return subprocess.Popen([FAB, "up", "--inventory", str(inventory)], cwd=ROOT, env=box.env,
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_up_finishes_a_hand_over_cut_while_the_old_haproxy_drains(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """`fab up` with a second tag of HAProxy's image, killed once s1's old HAProxy was told to
    stop, while a request it accepted before is still open (so it is still running); the
    next `up` (after `fab unlock --all`, as for any run known to be gone) finishes the hand-over:
    no request fails, one HAProxy is left. Maintenance refuses the server until then."""
    box = fleet_on_v1
    address = box.addresses[0]
    image = f"{sandbox.HAPROXY_IMAGE}-cut-hand-over"
    sandbox.docker(sandbox.BUILDER_NODE, "tag", sandbox.HAPROXY_IMAGE, image)
    sandbox.docker(sandbox.BUILDER_NODE, "push", "-q", image)
    # The held request below keeps the old HAProxy running after its soft stop for as long
    # as `timeout http-request` allows: the starter's 10 s can pass before the next `up` on
    # a busy machine (the old one gone, the hand-over is ended by a rename instead). 60 s
    # here, loaded by a reload first, so that the old HAProxy runs with it.
    scaffold.write_starter(tmp_path, templates=True)  # as `fab init --templates` does
    template = tmp_path / "templates" / "haproxy.cfg.j2"
    assert "    timeout http-request 10s\n" in template.read_text()
    template.write_text(template.read_text().replace("    timeout http-request 10s\n",
                                                     "    timeout http-request 60s\n"))
    assert box.fab("up", inventory=box.inventory_copy(tmp_path)).returncode == 0
    inventory = box.inventory_copy(tmp_path, haproxy={"image": image})
    held: socket.socket | None = None
    try:
        with box.load() as load:
            up = streamed_up(box, inventory)
            lines = []
            for line in up.stdout:  # type: ignore[union-attr]
                lines.append(line)
                if line.startswith("[s1") and "webapp-haproxy-next beside" in line:
                    # Only the old HAProxy listens yet: a request whose headers never end
                    # keeps it running for `timeout http-request` (60 s) after its soft stop.
                    held = socket.create_connection((address, 80), timeout=5)
                    held.sendall(b"GET / HTTP/1.1\r\nHost: s1\r\n")
                if line.startswith("[s1") and "soft stop of" in line:
                    break
            # The soft stop's command follows its progress line.
            assert wait_for(lambda: box.ssh(address, "docker inspect --format "
                                            "'{{.HostConfig.RestartPolicy.Name}}' "
                                            "webapp-haproxy").strip() == "no", 10), lines
            up.kill()
            up.wait()
            running = box.ssh(address, "docker ps --format '{{.Names}}'").split()
            assert {"webapp-haproxy", "webapp-haproxy-next"} <= set(running), running
            assert box.fab("unlock", "--all").returncode == 0
            # Maintenance would reach one of the two HAProxys only: refused, nothing changed.
            refused = box.fab("maintenance.on", inventory=inventory)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            assert "s1: webapp-haproxy-next is left from an HAProxy upgrade that was cut " \
                   "short; run `fab up`" in refused.stderr, refused.stderr
            finish = streamed_up(box, inventory)
            output = []
            for line in finish.stdout:  # type: ignore[union-attr]
                output.append(line)
                if "finishing an interrupted hand-over" in line and held is not None:
                    # Found running: the held request has done its part (the old HAProxy
                    # need not wait for it until its drain time).
                    held.close()
                    held = None
            finished = finish.wait(timeout=300)
        report = load.stop()
    finally:
        if held is not None:
            held.close()
    print(report.summary(), report.failures)
    assert finished == 0, "".join(output)
    assert "finishing an interrupted hand-over" in "".join(output), "".join(output)
    assert report.sent > 0 and report.failed == 0, report.failures
    names = box.ssh(address, "docker ps -a --format '{{.Names}} {{.Image}}'").splitlines()
    assert [name for name in names if "haproxy" in name] == [f"webapp-haproxy {image}"]
    result = box.fab("up", inventory=inventory)
    assert result.returncode == 0
    assert re.search(r"^s1\s+unchanged$", result.stdout, re.MULTILINE), result.stdout
    # Back to the sandbox's image for the modules after this one.
    assert box.fab("up").returncode == 0
