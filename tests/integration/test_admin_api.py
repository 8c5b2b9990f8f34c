"""HAProxy's runtime API answers the deploy login alone, over its SSH connection; and Docker's
DNS stalling (a frozen engine) costs no request. On the sandbox, under load."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import chatty_logins

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
ADMIN_DIR = "/etc/slotswap/webapp/haproxy/admin"
PROBE_IMAGE = "slotswap-test/probe:busybox"
BUSYBOX = Path("/bin/busybox")


def first_server() -> sandbox.Node:
    return sandbox.server_nodes(1)[0]


@pytest.fixture(scope="module")
def probe() -> sandbox.Node:
    """A busybox image (sh, nc, nslookup) in the first server's engine: what code running in
    an app container could use."""
    if not BUSYBOX.exists():
        # Where the sandbox is required (scripts/test.sh), a missing tool is an error.
        if os.environ.get("SLOTSWAP_REQUIRE_SANDBOX"):
            pytest.fail(f"needs {BUSYBOX} (Debian's busybox-static; scripts/bootstrap.sh "
                        f"installs it)")
        pytest.skip("needs busybox-static")
    node = first_server()
    context = sandbox.STATE_DIR / "probe-image"
    shutil.rmtree(context, ignore_errors=True)
    (context / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, context / "bin" / "busybox")
    (context / "Dockerfile").write_text(
        "FROM scratch\nCOPY bin/ /bin/\nENTRYPOINT [\"/bin/busybox\"]\n")
    sandbox.docker(node, "build", "-q", "-t", PROBE_IMAGE, str(context))
    return node


def in_container(node: sandbox.Node, network: str, script: str) -> str:
    result = sandbox.docker(node, "run", "--rm", "--network", network, PROBE_IMAGE,
                            "sh", "-c", script, check=False)
    return result.stdout + result.stderr


def haproxy_listening_ports(node: sandbox.Node) -> set[int]:
    """Every TCP port HAProxy's processes listen on, in the server's network namespace (which
    HAProxy's container shares)."""
    table = subprocess.run(["ip", "netns", "exec", node.name, "ss", "-Hltnp"], text=True,
                           capture_output=True, timeout=30, check=True).stdout
    return {int(line.split()[3].rsplit(":", 1)[1]) for line in table.splitlines()
            if '"haproxy"' in line}


def process_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_the_admin_api_does_not_answer_from_the_app_network(fleet_on_v1: Sandbox,
                                                            probe: sandbox.Node) -> None:
    box, node = fleet_on_v1, probe
    # HAProxy runs on the server's network: from the app's containers it is the server, at
    # the app network's gateway address and at the server's own address.
    gateway = sandbox.docker(node, "network", "inspect", "--format",
                             "{{(index .IPAM.Config 0).Gateway}}", "webapp").stdout.strip()
    assert gateway
    # HAProxy listens on its HTTP port alone.
    ports = haproxy_listening_ports(node)
    assert ports == {80}
    # From inside the live slot's container (its network namespace) and from anywhere on the
    # app's network: on the port the API once had, on every port HAProxy listens on and on
    # the slots' loopback ports, the runtime API answers nothing.
    live = box.live_versions() and json.loads(box.fab("status", "--json").stdout)
    live_slot = next(s["live"] for s in live["servers"] if s["name"] == "s1")
    for network in (f"container:webapp-{live_slot}", "webapp"):
        for target in (gateway, node.ip, "127.0.0.1"):
            for port in sorted(ports | {9999, 18081, 18082}):
                answer = in_container(node, network,
                                      f"echo 'show info' | nc -w 2 {target} {port}; "
                                      f"echo 'set server webapp/web1 state maint' | "
                                      f"nc -w 2 {target} {port}")
                assert "Name: HAProxy" not in answer
                assert "Version:" not in answer
    assert box.served_versions(box.addresses[0]) == {"v1"}
    # No app container mounts the admin socket's folder; HAProxy's alone does.
    mounts = sandbox.docker(node, "inspect", "--format",
                            "{{.Name}} {{range .Mounts}}{{.Source}} {{end}}",
                            "webapp-haproxy", "webapp-web1", "webapp-web2",
                            check=False).stdout
    with_admin = [line.split()[0] for line in mounts.splitlines() if ADMIN_DIR in line]
    assert with_admin == ["/webapp-haproxy"]
    # The folder and the socket are the login's (root here) alone.
    address = box.addresses[0]
    assert box.ssh(address, f"stat -c '%a %u' {ADMIN_DIR}").split() == ["700", "0"]
    assert box.ssh(address, f"stat -c '%a %u %F' {ADMIN_DIR}/admin.sock").split()[:3] == [
        "600", "0", "socket"]
    # The traffic is handled by unprivileged workers; only the master, which creates the
    # socket and handles no traffic, runs as root.
    master = int(sandbox.docker(node, "inspect", "--format", "{{.State.Pid}}",
                                "webapp-haproxy").stdout)
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert workers
    assert process_uid(master) == 0
    assert {process_uid(int(pid)) for pid in workers} == {99}
    assert box.live_versions()


# -- sshd settings ------------------------------------------------------------------------

SECOND_SSHD_PORT = 2222


def written_pid(pidfile: Path, timeout: float = 10.0) -> int:
    """The pid sshd writes once it listens: the file may exist, empty, an instant before its
    number is in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text.isdigit():
            return int(text)
        time.sleep(0.05)
    raise AssertionError(f"sshd wrote no pid to {pidfile} in {timeout:.0f} s")


@pytest.fixture
def sshd_with(tmp_path: Path) -> Iterator:
    """Start, in the first server, a second sshd with extra settings on another port; yield a
    function making it; stop it afterwards."""
    node = first_server()
    started: list[int] = []

    def start(*settings: str) -> tuple[str, int, Path]:
        base = sandbox.write_sshd_config(node).read_text()
        lines = [line for line in base.splitlines()
                 if not line.startswith(("Port ", "PidFile ", "AllowTcpForwarding "))]
        pidfile = tmp_path / "sshd.pid"
        config = tmp_path / "sshd_config"
        config.write_text("\n".join([f"Port {SECOND_SSHD_PORT}", f"PidFile {pidfile}",
                                     *settings, *lines]) + "\n")
        subprocess.run([*node.nsenter(), "/usr/sbin/sshd", "-f", str(config)], check=True)
        started.append(written_pid(pidfile))
        kind, key = (sandbox.STATE_DIR / f"{node.name}-host_key.pub").read_text().split()[:2]
        known = tmp_path / "known_hosts"
        known.write_text(f"[{node.ip}]:{SECOND_SSHD_PORT} {kind} {key}\n")
        return node.ip, SECOND_SSHD_PORT, known

    yield start
    for pid in started:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


@contextlib.contextmanager
def without_socat(node: sandbox.Node, tmp_path: Path) -> Iterator[None]:
    """The server without socat: an empty, non-executable file over it, in that server's
    own mount namespace only."""
    empty = tmp_path / "no-socat"
    empty.write_text("")
    empty.chmod(0o644)
    socat = shutil.which("socat")
    assert socat
    subprocess.run(["nsenter", f"--mount={node.mount_ns}", "mount", "--bind", str(empty),
                    socat], check=True)
    try:
        yield
    finally:
        subprocess.run(["nsenter", f"--mount={node.mount_ns}", "umount", socat], check=True)


def one_server_inventory(box: Sandbox, tmp_path: Path, login: tuple[str, int, Path]) -> Path:
    address, port, known = login
    return box.inventory_copy(tmp_path, hosts=[{"address": address, "name": "s1",
                                                "port": port}],
                              ssh={"known_hosts": str(known)})


@pytest.mark.parametrize("banner", [False, True], ids=["quiet", "banner"])
def test_without_tcp_forwarding_the_admin_api_goes_through_socat(
        fleet_on_v1: Sandbox, tmp_path: Path, sshd_with, banner: bool) -> None:
    """OpenSSH's `AllowTcpForwarding no` refuses channels to unix sockets too: the kit then
    runs socat on the server, and the deploy is the same, also when the login's ~/.bashrc
    prints (socat runs in the login shell: nothing printed before it is HAProxy's answer)."""
    box = fleet_on_v1
    inventory = one_server_inventory(box, tmp_path, sshd_with("AllowTcpForwarding no"))
    address = box.addresses[0]
    with chatty_logins(banner):
        assert box.fab("status", inventory=inventory).returncode == 0
        with box.load([address]) as load:
            result = box.fab("deploy", "--tag", "v2", inventory=inventory)
        report = load.stop()
    print(report.summary())
    assert result.returncode == 0, result.stderr
    assert report.failed == 0, report.failures
    assert "Welcome to" not in result.stdout + result.stderr
    assert box.served_versions(address) == {"v2"}
    assert box.fab("deploy", "--tag", "v1", inventory=inventory).returncode == 0


@pytest.mark.parametrize("setting", ["AllowTcpForwarding no", "AllowStreamLocalForwarding no",
                                     "DisableForwarding yes"])
def test_without_forwarding_nor_socat_the_error_names_the_setting(
        fleet_on_v1: Sandbox, tmp_path: Path, sshd_with, setting: str) -> None:
    box = fleet_on_v1
    inventory = one_server_inventory(box, tmp_path, sshd_with(setting))
    address = box.addresses[0]
    before = box.containers(address)
    with without_socat(first_server(), tmp_path):
        result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert setting.split()[0] in errors[0]
    assert "install socat" in errors[0]
    assert "Traceback" not in result.stderr
    assert box.containers(address) == before
    assert box.served_versions(address) == {"v1"}
    assert "s1: free" in box.fab("lock", inventory=inventory).stdout


# -- Docker's DNS stalls ------------------------------------------------------------------

def test_a_frozen_docker_engine_fails_no_request(fleet_on_v1: Sandbox) -> None:
    """While the engine is stopped nothing of Docker answers: HAProxy reaches the slots on
    fixed loopback ports (Docker's proxy processes run on), and nothing it needs waits for
    the engine."""
    box = fleet_on_v1
    node = first_server()
    pid = int((node.run_dir / "docker.pid").read_text())
    with box.load([box.addresses[0]]) as load:
        time.sleep(1)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(8)
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(1)
    report = load.stop()
    print(report.summary())
    assert report.sent > 100
    assert report.failed == 0, report.failures
    assert box.live_versions()["s1"] == "v1"


# -- a server set up by an older version --------------------------------------------------

def test_up_moves_a_server_set_up_by_an_older_version(fleet_on_v1: Sandbox) -> None:
    """Before, the runtime API listened on 0.0.0.0:9999 in HAProxy's container, published
    on the server's 127.0.0.1:9999. `fab up` recreates that container (a short interruption,
    said), and deploys then go through the admin socket."""
    box, node = fleet_on_v1, first_server()
    address = box.addresses[0]
    files = sandbox.DATA_DIR / node.name / "fs" / "etc/slotswap/webapp/haproxy"
    config = (files / "haproxy.cfg").read_text()
    old_config = "\n".join(
        "    stats socket ipv4@0.0.0.0:9999 level admin" if line.strip().startswith(
            "stats socket") else line
        for line in config.splitlines()
        if line.strip() not in ("uid 99", "gid 99")) + "\n"
    (files / "haproxy.cfg").write_text(old_config)
    old_spec = hashlib.sha256(f"{sandbox.HAPROXY_IMAGE}|80|9999".encode()).hexdigest()[:16]
    sandbox.docker(node, "rm", "-f", "webapp-haproxy")
    sandbox.docker(node, "run", "--detach", "--name", "webapp-haproxy", "--network", "webapp",
                   "--restart", "unless-stopped", "--label", "slotswap.app=webapp",
                   "--label", "slotswap.role=haproxy",
                   "--label", f"slotswap.haproxy-spec={old_spec}",
                   "--publish", "80:8080", "--publish", "127.0.0.1:9999:9999",
                   "--volume", "/etc/slotswap/webapp/haproxy:/usr/local/etc/haproxy:ro",
                   sandbox.HAPROXY_IMAGE, "-f", "/usr/local/etc/haproxy/haproxy.cfg")
    assert "Name: HAProxy" in box.ssh(address, "echo 'show info' | socat - TCP:127.0.0.1:9999")

    result = box.fab("up")
    assert result.returncode == 0, result.stderr
    assert re.search(r"\[s1 .*\] moving HAProxy to the server's network: recreating "
                     r"webapp-haproxy \(a short interruption, this once\)",
                     result.stdout + result.stderr)
    assert "9999" not in box.ssh(address, "docker port webapp-haproxy")
    with box.load() as load:
        deployed = box.fab("deploy", "--tag", "v2")
    report = load.stop()
    print(report.summary())
    assert deployed.returncode == 0, deployed.stderr
    assert report.failed == 0, report.failures
    assert set(box.live_versions().values()) == {"v2"}
    assert box.fab("deploy", "--tag", "v1").returncode == 0


def test_a_stopped_slot_is_closed_on_the_loopback_and_not_taken_for_live(
        fleet_on_v1: Sandbox) -> None:
    """A stopped slot's container is no longer published: its loopback port refuses, HAProxy
    has it in maint, and the kit, which asks Docker too, never takes it for live."""
    box = fleet_on_v1
    address = box.addresses[0]
    assert box.fab("deploy", "--tag", "v2").returncode == 0
    result = box.fab("status", "--json")
    s1 = next(s for s in json.loads(result.stdout)["servers"] if s["name"] == "s1")
    live = s1["live"]
    stopped = "web1" if live == "web2" else "web2"
    port = {"web1": 18081, "web2": 18082}[stopped]
    # curl's own exit code: 7 is "failed to connect" (refused), not any other failure.
    refused = box.ssh(address, f"curl -s -o /dev/null --max-time 5 "
                      f"http://127.0.0.1:{port}/health; echo \"exit $?\"")
    assert refused.strip() == "exit 7", refused
    state = box.ssh(address, "echo 'show servers state webapp' | socat - "
                    f"UNIX-CONNECT:{ADMIN_DIR}/admin.sock")
    row = next(line.split() for line in state.splitlines()
               if len(line.split()) > 6 and line.split()[3] == stopped)
    assert row[4] == "127.0.0.1"
    assert int(row[6]) & 0x01  # in maint: no traffic, no checks
    assert s1["version"] == "v2"
    assert f"{stopped}: v1 exited" in " ".join(s1["slots"])
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    assert box.served_versions(address) == {"v1"}
