"""Nothing hangs, and a lost run never blocks the next one for long, on the sandbox under
load: a deploy killed with `kill -9` mid-swap (its lock is refused at once, then taken over
once its lease is over), a server whose packets are silently dropped mid-deploy (before its
switch, and in the watch window), a frozen
Docker engine mid-deploy, and a second Ctrl-C while a server does not answer."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import BackgroundDeploy, wait_for

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
LEASE = 10  # seconds: short, so that the tests do not wait long for it


def other_tag(box: Sandbox) -> str:
    current = set(box.live_versions().values())
    assert len(current) == 1
    return "v2" if current == {"v1"} else "v1"


def wait_until_stale(box: Sandbox, inventory: Path, server: str) -> str:
    """`fab lock` until the server's lock is shown stale; returns what it showed."""
    shown: list[str] = []

    def stale() -> bool:
        shown[:] = [box.fab("lock", inventory=inventory).stdout]
        return bool(re.search(rf"^{server}: locked by .*: stale", shown[0], re.MULTILINE))

    assert wait_for(stale, timeout=LEASE * 4), shown
    return shown[0]


@contextmanager
def silent_network(namespace: str) -> Iterator[None]:
    """Every packet to the server's SSH port dropped, no reset: a silent network."""
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"]
    subprocess.run(["ip", "netns", "exec", namespace, "iptables", "-I", *rule], check=True)
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", namespace, "iptables", "-D", *rule], check=True)


# Seconds a deploy may take beyond what its settings imply: the kit's own steps after the
# loss (the other servers' locks, the report) on a 2-core machine shared with other tests.
BUSY_MACHINE_MARGIN = 8


def silent_network_bound(keepalive: float, dead_after: float, connect_timeout: float) -> float:
    """The README's bound on a deploy whose server went silent: the loss is noticed within
    keepalive + dead_after, then one reconnect attempt of connect_timeout; plus the margin."""
    return keepalive + dead_after + connect_timeout + BUSY_MACHINE_MARGIN


@contextmanager
def frozen_docker_engine(node: sandbox.Node) -> Iterator[None]:
    pid = int((node.run_dir / "docker.pid").read_text())
    subprocess.run(["kill", "-STOP", str(pid)], check=True)
    try:
        yield
    finally:
        subprocess.run(["kill", "-CONT", str(pid)], check=True)


def test_a_deploy_killed_mid_swap_is_refused_then_taken_over_after_its_lease(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, timeouts={"lease": LEASE})
    tag = other_tag(box)
    with box.load() as load:
        killed = BackgroundDeploy(box, tag, inventory)
        assert killed.until("s1", "is taking traffic"), "".join(killed.lines)
        killed.process.send_signal(signal.SIGKILL)
        killed.finish(timeout=10)

        refused = box.fab("deploy", "--tag", tag, inventory=inventory)
        assert refused.returncode == 4
        assert re.search(rf"s1 is locked by \S+ since \S+ \(deploy {tag}\), renewed \d+s ago "
                         rf"\(its lease: {LEASE}s\)", refused.stderr), refused.stderr
        shown = box.fab("lock", inventory=inventory).stdout
        assert re.search(rf"^s1: locked by .*\(deploy {tag}\), (renewed \d+s ago|not renewed "
                         rf"for \d+s) \(lease {LEASE}s\)", shown, re.MULTILINE), shown

        shown = wait_until_stale(box, inventory, "s1")
        assert "the next run takes it over" in shown
        # A plain deploy: no `fab unlock`.
        after = box.fab("deploy", "--tag", tag, inventory=inventory)
    report = load.stop()
    assert report.failed == 0, report.failures
    assert after.returncode == 0, after.stdout + after.stderr
    assert re.search(rf"\[s1 .*took over the stale lock of \S+ since \S+ \(deploy {tag}\): not "
                     rf"renewed for \d+s \(its lease: {LEASE}s\)", after.stdout), after.stdout
    assert set(box.live_versions().values()) == {tag}
    assert "s1: free" in box.fab("lock").stdout


def test_a_silent_network_ends_the_deploy_within_its_bound(fleet_on_v1: Sandbox,
                                                           tmp_path: Path) -> None:
    box = fleet_on_v1
    keepalive, dead_after, connect_timeout = 1, 3, 3
    inventory = box.inventory_copy(
        tmp_path, timeouts={"lease": LEASE},
        ssh={"keepalive": keepalive, "dead_after": dead_after, "connect_timeout": connect_timeout})
    tag = other_tag(box)
    s1 = sandbox.server_nodes(1)[0]
    before = {a: box.containers(a) for a in box.addresses[1:]}
    with box.load() as load:
        deploy = BackgroundDeploy(box, tag, inventory)
        assert deploy.until("s1", "waiting for HAProxy's health checks"), "".join(deploy.lines)
        with silent_network(s1.name):
            dropped = time.monotonic()
            exit_code, output = deploy.finish(timeout=silent_network_bound(
                keepalive, dead_after, connect_timeout))
            took = time.monotonic() - dropped
            assert box.served_versions(box.addresses[0]) == {"v1" if tag == "v2" else "v2"}
    report = load.stop()
    print(f"the deploy ended {took:.1f}s after the network went silent")
    assert report.failed == 0, report.failures
    assert exit_code == 1
    assert re.search(r"error: deploy of \S+ stopped at s1: (\w+: )?s1: lost the SSH connection "
                     rf"\(.*acknowledged for {dead_after}s \(ssh.dead_after\)\) \(during: waiting "
                     r"for HAProxy's health checks", output), output
    assert "could not release its lock" in output  # s1's: it expires after its lease
    for address in box.addresses[1:]:
        assert box.containers(address) == before[address]  # not touched
    for address in box.addresses:
        assert len(box.served_versions(address)) == 1

    # The network is back: once s1's lock is stale, the next deploy takes it over.
    wait_until_stale(box, inventory, "s1")
    after = box.fab("deploy", "--tag", tag, inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "took over the stale lock" in after.stdout
    assert set(box.live_versions().values()) == {tag}


def test_a_silent_network_in_the_watch_window_stops_the_rollout_with_one_version_served(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """s1 switched, then its network goes silent while its new slot is in the window: its
    watch loses the connection, the rollout stops; s1 keeps one slot in rotation (the new
    one: the old one drains, its container still runs), and the others one version each."""
    box = fleet_on_v1
    keepalive, dead_after, connect_timeout = 1, 3, 3
    inventory = box.inventory_copy(
        tmp_path, timeouts={"lease": LEASE, "watch": 8},
        ssh={"keepalive": keepalive, "dead_after": dead_after, "connect_timeout": connect_timeout})
    tag = other_tag(box)
    s1 = sandbox.server_nodes(1)[0]
    with box.load() as load:
        deploy = BackgroundDeploy(box, tag, inventory)
        assert deploy.until("s1", "is taking traffic"), "".join(deploy.lines)
        with silent_network(s1.name):
            exit_code, output = deploy.finish(timeout=120)
            assert box.served_versions(box.addresses[0]) == {tag}
    report = load.stop()
    assert report.failed == 0, report.failures
    assert exit_code == 1
    assert re.search(rf"error: deploy of {tag} stopped at s1: .*s1: lost the SSH connection",
                     output), output
    assert re.search(r"^s1 .*\bfailed\s+unknown \(", output, re.MULTILINE), output
    for address in box.addresses:
        assert len(box.served_versions(address)) == 1
    wait_until_stale(box, inventory, "s1")
    after = box.fab("deploy", "--tag", tag, inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr
    assert set(box.live_versions().values()) == {tag}


def test_a_frozen_docker_engine_ends_the_deploy_and_the_old_version_keeps_serving(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    command_deadline = 5
    inventory = box.inventory_copy(tmp_path, timeouts={"command": command_deadline, "stop": 1})
    tag = other_tag(box)
    old = "v1" if tag == "v2" else "v2"
    s1 = sandbox.server_nodes(1)[0]
    with box.load() as load:
        deploy = BackgroundDeploy(box, tag, inventory)
        assert deploy.until("s1", "live slot"), "".join(deploy.lines)
        with frozen_docker_engine(s1):
            # docker run, then the recovery's docker stop (its own deadline: stop + 30 s) and
            # docker inspect: each abandoned at its deadline.
            exit_code, output = deploy.finish(timeout=120)
            assert box.served_versions(box.addresses[0]) == {old}
    report = load.stop()
    assert report.failed == 0, report.failures
    assert exit_code == 1
    assert re.search(rf"error: deploy of {tag} stopped at s1: .*s1: `[^`]*docker[^`]*` gave no "
                     rf"answer within {command_deadline}s and was abandoned.*\(during: ",
                     output), output
    assert re.search(r"^s1 .*\bfailed\s+web[12] in rotation \(HAProxy; Docker did not answer",
                     output, re.MULTILINE), output
    assert "s1: free" in box.fab("lock").stdout  # SSH worked: the lock was released
    for address in box.addresses:
        assert box.served_versions(address) == {old}
    after = box.fab("deploy", "--tag", tag, inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr
    assert set(box.live_versions().values()) == {tag}


def test_a_docker_engine_frozen_in_the_watch_window_stops_the_rollout_one_version_served(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """s1 switched, then its Docker engine freezes while the new slot is in the window: the
    watch's look at the container is abandoned at its deadline, the rollout stops, and
    every server serves exactly one version; HAProxy, which needs no Docker, fails no
    request."""
    box = fleet_on_v1
    command_deadline = 5
    inventory = box.inventory_copy(tmp_path, timeouts={"command": command_deadline,
                                                       "watch": 20, "stop": 1})
    tag = other_tag(box)
    s1 = sandbox.server_nodes(1)[0]
    with box.load() as load:
        deploy = BackgroundDeploy(box, tag, inventory)
        assert deploy.until("s1", "is taking traffic"), "".join(deploy.lines)
        with frozen_docker_engine(s1):
            exit_code, output = deploy.finish(timeout=120)
            frozen_serves = box.served_versions(box.addresses[0])
    report = load.stop()
    assert report.failed == 0, report.failures
    assert exit_code == 1
    assert len(frozen_serves) == 1, frozen_serves
    assert re.search(rf"s1: `[^`]*docker[^`]*` gave no answer within {command_deadline}s",
                     output), output
    # The summary says which slot HAProxy sends the traffic to, since Docker cannot say.
    assert re.search(r"^s1 .*\bfailed\s+web[12] in rotation \(HAProxy; Docker did not answer",
                     output, re.MULTILINE), output
    for address in box.addresses:
        assert len(box.served_versions(address)) == 1
    after = box.fab("deploy", "--tag", tag, inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr
    assert set(box.live_versions().values()) == {tag}


def test_a_second_ctrl_c_stops_at_once_and_says_what_each_server_serves(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    # A long bound: without the second Ctrl-C this deploy would wait a minute.
    inventory = box.inventory_copy(tmp_path, timeouts={"lease": LEASE},
                                   ssh={"keepalive": 5, "dead_after": 60, "connect_timeout": 3})
    tag = other_tag(box)
    old = "v1" if tag == "v2" else "v2"
    s1 = sandbox.server_nodes(1)[0]
    with box.load() as load:
        deploy = BackgroundDeploy(box, tag, inventory)
        assert deploy.until("s1", "waiting for HAProxy's health checks"), "".join(deploy.lines)
        with silent_network(s1.name):
            time.sleep(1)
            deploy.process.send_signal(signal.SIGINT)
            time.sleep(1)
            deploy.process.send_signal(signal.SIGINT)
            second = time.monotonic()
            exit_code, output = deploy.finish(timeout=60)
            took = time.monotonic() - second
    report = load.stop()
    print(f"the deploy ended {took:.1f}s after the second Ctrl-C")
    assert report.failed == 0, report.failures
    assert exit_code == 130
    assert took < 20  # releasing the locks and reading the servers: 5 s at most each
    assert "stopping now" in output
    assert re.search(r"^s1 .*\binterrupted\s+unknown \(", output, re.MULTILINE), output
    assert re.search(rf"^s2 .*\bnot started\s+{old} in web[12]$", output, re.MULTILINE), output
    for address in box.addresses:
        assert box.served_versions(address) == {old}
    wait_until_stale(box, inventory, "s1")
    after = box.fab("deploy", "--tag", tag, inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr


# -- a run stopped past its lease --------------------------------------------------------------


@contextmanager
def deploy_stopped_past_its_lease(box: Sandbox, inventory: Path,
                                  tag: str) -> Iterator[BackgroundDeploy]:
    """A deploy of `tag` stopped (SIGSTOP, a laptop asleep) in its watch window until every
    lock of it is stale; resumed (SIGCONT) at the end of the block."""
    stopped = BackgroundDeploy(box, tag, inventory)
    assert stopped.until("s1", "is taking traffic"), "".join(stopped.lines)
    stopped.process.send_signal(signal.SIGSTOP)
    try:
        for server in ("s1", "s2", "s3"):
            wait_until_stale(box, inventory, server)
        yield stopped
    finally:
        stopped.process.send_signal(signal.SIGCONT)


def test_a_deploy_stopped_past_its_lease_does_not_touch_the_fleet_another_run_took_over(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """Its locks stale, a second deploy takes the fleet over and finishes; the first,
    resumed, changes nothing on any server and exits 4, naming the lost lock. Before, it went
    on: it stopped the container the second run kept on s1 and started one on s2."""
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, timeouts={"lease": LEASE, "watch": 8})
    tag = other_tag(box)
    old = "v1" if tag == "v2" else "v2"
    with box.load() as load:
        with deploy_stopped_past_its_lease(box, inventory, tag) as stopped:
            took_over = box.fab("deploy", "--tag", old, inventory=inventory)
            assert took_over.returncode == 0, took_over.stdout + took_over.stderr
            assert "took over the stale lock" in took_over.stdout
            left = {a: box.containers(a) for a in box.addresses}
        exit_code, output = stopped.finish(timeout=60)
        for address in box.addresses:
            assert box.served_versions(address) == {old}
    report = load.stop()
    assert report.failed == 0, report.failures
    assert exit_code == 4, output
    assert re.search(r"s1: this run's lock on it is gone \(no run holds it now\): not renewed "
                     rf"within its lease of {LEASE}s", output), output
    assert {a: box.containers(a) for a in box.addresses} == left  # nothing touched
    assert set(box.live_versions().values()) == {old}
    assert re.search(r"^s1: free$", box.fab("lock", inventory=inventory).stdout, re.MULTILINE)
    after = box.fab("deploy", "--tag", tag, inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr
    assert set(box.live_versions().values()) == {tag}


def test_a_deploy_resumed_while_another_holds_the_fleet_leaves_every_server_to_it(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """As above, but the first deploy is resumed while the second is in its watch window,
    holding every lock: the first names the run that holds them and touches nothing; the
    second finishes as if it were alone."""
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, timeouts={"lease": LEASE, "watch": 8})
    tag = other_tag(box)
    old = "v1" if tag == "v2" else "v2"
    with box.load() as load:
        with deploy_stopped_past_its_lease(box, inventory, tag) as stopped:
            other = BackgroundDeploy(box, old, inventory)
            assert other.until("s1", "is taking traffic"), "".join(other.lines)
        exit_code, output = stopped.finish(timeout=60)
        other_code, other_output = other.finish(timeout=120)
        for address in box.addresses:
            assert box.served_versions(address) == {old}
    report = load.stop()
    assert report.failed == 0, report.failures
    assert exit_code == 4, output
    assert re.search(rf"s1: this run's lock on it is gone \(now held by \S+ since \S+ \(deploy "
                     rf"{old}\)\)", output), output
    assert other_code == 0, other_output
    assert set(box.live_versions().values()) == {old}


# -- the release command's container -----------------------------------------------------------


def release_containers(box: Sandbox) -> list[str]:
    """The release command's containers on the first server, running or not."""
    return box.ssh(box.addresses[0], "docker ps --all --filter label=slotswap.role=release "
                                     "--format '{{.Names}} {{.Status}}'").splitlines()


def test_a_release_command_past_its_timeout_is_killed_and_the_next_deploy_runs_one(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    slow = box.inventory_copy(tmp_path, release={"command": ["sleep", "600"], "timeout": 3})
    tag = other_tag(box)
    serving = box.live_versions()
    with box.load() as load:
        failed = box.fab("deploy", "--tag", tag, inventory=slow)
        assert release_containers(box) == []
        assert box.live_versions() == serving
        (tmp_path / "marks").mkdir()
        marking = box.inventory_copy(tmp_path / "marks", container={"volumes": [
            "webapp-release-test:/data"]}, release={"command": ["mark", "/data/releases.log"]})
        after = box.fab("deploy", "--tag", tag, inventory=marking)
    report = load.stop()
    assert report.failed == 0, report.failures
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert re.search(r"error: the release command `sleep 600` timed out after 3s "
                     r"\(release\.timeout\) on s1: its container webapp-release-[0-9a-f]{8} "
                     r"was killed; nothing else was changed", failed.stderr), failed.stderr
    assert after.returncode == 0, after.stdout + after.stderr
    assert (after.stdout + after.stderr).count("release command done") == 1
    marks = box.ssh(box.addresses[0], "cat \"$(docker volume inspect --format "
                                      "'{{.Mountpoint}}' webapp-release-test)/releases.log\"")
    assert marks.split() == [tag]
    assert release_containers(box) == []
    assert set(box.live_versions().values()) == {tag}


def test_ctrl_c_during_the_release_command_kills_it_at_once(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    slow = box.inventory_copy(tmp_path, release={"command": ["sleep", "600"]})
    tag = other_tag(box)
    serving = box.live_versions()
    deploy = BackgroundDeploy(box, tag, slow)
    assert deploy.until("s1", "release command: sleep 600"), "".join(deploy.lines)
    assert wait_for(lambda: any(" Up " in f" {c}" for c in release_containers(box)))
    deploy.interrupt()
    exit_code, output = deploy.finish(timeout=30)
    assert exit_code == 130, output
    assert re.search(r"\[s1 .*interrupted: its container webapp-release-[0-9a-f]{8} was killed",
                     output), output
    assert release_containers(box) == []
    assert box.live_versions() == serving


def test_a_release_container_a_killed_deploy_left_is_removed_by_the_next_one(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    slow = box.inventory_copy(tmp_path, timeouts={"lease": LEASE},
                              release={"command": ["sleep", "600"]})
    tag = other_tag(box)
    killed = BackgroundDeploy(box, tag, slow)
    assert killed.until("s1", "release command: sleep 600"), "".join(killed.lines)
    assert wait_for(lambda: any(" Up " in f" {c}" for c in release_containers(box)))
    killed.process.send_signal(signal.SIGKILL)
    killed.finish(timeout=10)
    time.sleep(2)
    left = release_containers(box)
    assert len(left) == 1 and " Up " in f" {left[0]}", left  # the kit was killed: it runs on
    for server in ("s1", "s2", "s3"):
        wait_until_stale(box, slow, server)
    (tmp_path / "quick").mkdir()
    quick = box.inventory_copy(tmp_path / "quick", timeouts={"lease": LEASE},
                               release={"command": ["exit", "0"]})
    with box.load() as load:
        after = box.fab("deploy", "--tag", tag, inventory=quick)
    report = load.stop()
    assert report.failed == 0, report.failures
    assert after.returncode == 0, after.stdout + after.stderr
    name = left[0].split()[0]
    assert re.search(rf"\[s1 .*removed {name} \(Up .*\), left by an earlier run", after.stdout)
    assert release_containers(box) == []
    assert set(box.live_versions().values()) == {tag}
