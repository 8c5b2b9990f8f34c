"""One watch window for the whole rollout, a watch that judges real traffic (HAProxy's
counters), and no work for servers that already serve the tag: on the sandbox, under load."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import BackgroundDeploy
from tests.integration.test_leases_and_deadlines import frozen_docker_engine

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def deploy_failing_on_third(box: Sandbox, inventory: Path, *extra: str) -> tuple[int, str, str]:
    """Deploy v2; once s3 switched, its new version starts failing its health checks (the
    example app fails them while /data/unhealthy exists). Returns the exit code, the output
    and the slot made unhealthy."""
    s3 = box.addresses[2]
    deploy = BackgroundDeploy(box, "v2", inventory, *extra)
    switched = deploy.until("s3", r"(web[12]) \(v2\) is taking traffic")
    slot = switched.group(1) if switched else ""
    if slot:
        box.ssh(s3, f"docker exec webapp-{slot} /webapp mark /data/unhealthy")
    exit_code, output = deploy.finish(timeout=300)
    return exit_code, output, slot


def deploy_failing_on_third_under_load(box: Sandbox, folder: Path,
                                       *extra: str) -> tuple[int, str]:
    """deploy_failing_on_third with a 8 s window, under load: 0 requests may fail. The
    marked container stays unhealthy, so it is removed afterwards: a later deploy must not
    restart it."""
    inventory = box.inventory_copy(folder, timeouts={"watch": 8})
    with box.load() as load:
        exit_code, output, slot = deploy_failing_on_third(box, inventory, *extra)
    report = load.stop()
    print(output, report.summary())
    assert slot, output
    box.ssh(box.addresses[2], f"docker rm -f webapp-{slot}")
    assert report.failed == 0, report.failures
    return exit_code, output


def test_the_third_server_failing_in_the_window_goes_back_alone_under_load(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    exit_code, output = deploy_failing_on_third_under_load(box, tmp_path)
    assert exit_code == 1
    # s1 and s2 keep v2.
    assert re.search(r"^s1 .*\bdeployed\s+v2 in web[12]$", output, re.MULTILINE), output
    assert re.search(r"^s2 .*\bdeployed\s+v2 in web[12]$", output, re.MULTILINE), output
    assert re.search(r"^s3 .*\brolled back\s+v1 in web[12]$", output, re.MULTILINE), output
    assert re.search(r"error: deploy of v2 stopped at s3: v2 took traffic in web[12], then "
                     r"failed HAProxy's health checks", output), output
    assert box.live_versions() == {"s1": "v2", "s2": "v2", "s3": "v1"}
    # The switch of s2 came before the end of s1's watch: one window, not one per server.
    s1_watched = re.search(r"^\[s1 .*\] watched web[12] \(v2\)", output, re.MULTILINE)
    s2_switched = re.search(r"^\[s2 .*\] web[12] \(v2\) is taking traffic", output, re.MULTILINE)
    assert s1_watched and s2_switched and s2_switched.start() < s1_watched.start(), output
    assert box.fab("deploy", "--tag", "v1").returncode == 0


def test_on_failure_rollback_sends_every_watched_server_back_in_the_window(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    exit_code, output = deploy_failing_on_third_under_load(box, tmp_path,
                                                           "--on-failure", "rollback")
    assert exit_code == 1
    for server in ("s1", "s2", "s3"):
        assert re.search(rf"^{server} .*\brolled back\s+v1 in web[12]$", output,
                         re.MULTILINE), output
    # Back in one runtime-API line each: their old slots still ran, nothing was started.
    for server in ("s1", "s2"):
        assert re.search(rf"^\[{server} .*\] web[12] \(v2\) was switched back with the rest "
                         r"of the rollout .*--on-failure=rollback: s3: ", output,
                         re.MULTILINE), output
    assert not re.search(r"(restarting the kept container|started) \S+ \(v1\)", output)
    assert set(box.live_versions().values()) == {"v1"}


def test_a_version_answering_500_with_passing_checks_is_rolled_back_under_load(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    # broken1 passes /health but answers 500 on its pages.
    with box.load() as load:
        result = box.fab("deploy", "--tag", "broken1", "--json")
    report = load.stop()
    print(result.stderr, report.summary())
    assert result.returncode == 1
    assert re.search(r"broken1 took traffic in web[12], then answered too many errors "
                     r"[\d.]+s later \(\d+ of its \d+ requests failed", result.stderr)
    document = json.loads(result.stdout)
    first = document["servers"][0]
    assert first["outcome"] == "rolled back"
    assert first["watched"]["errors"] >= 20  # watch.min_requests before judging
    assert all(s["outcome"] in ("not started", "not switched") for s in document["servers"][1:])
    assert set(box.live_versions().values()) == {"v1"}
    # Only s1's new slot answered errors, only for the moment before it was judged.
    assert report.failed > 0
    assert all(failure.startswith(f"{box.addresses[0]}") for failure in report.failures)


def test_a_redeploy_of_the_tag_served_everywhere_changes_nothing(
        fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    before = {address: box.containers(address) for address in box.addresses}
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v1", "--json")
    report = load.stop()
    assert result.returncode == 0, result.stderr
    assert report.failed == 0, report.failures
    document = json.loads(result.stdout)
    assert [s["outcome"] for s in document["servers"]] == ["unchanged"] * len(box.addresses)
    assert "nothing to do: every server already serves it" in document["message"]
    assert re.search(r"^\[s1 .*\] already serving v1 \(v1 in web[12]; same image, environment "
                     r"and settings\): left alone", result.stderr, re.MULTILINE), result.stderr
    for address in box.addresses:
        assert box.containers(address) == before[address]  # container IDs and starts
    # --force swaps all the same.
    forced = box.fab("deploy", "--tag", "v1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert len(re.findall(r"^s\d .*\bdeployed\s+v1 in web[12]$", forced.stdout,
                          re.MULTILINE)) == len(box.addresses)
    assert box.containers(box.addresses[0]) != before[box.addresses[0]]


def test_ctrl_c_in_the_window_keeps_proven_versions_only_and_rollback_undoes_the_rest(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """Ctrl-C once s1 had its full watch (3 s) and s3 had not: s1 keeps v2, s3 goes back to
    v1 (its old slot still ran), s2 either way; then a plain `rollback` undoes the deploy:
    every server on v1, all under load with 0 failed requests."""
    box = fleet_on_v1
    watch = 3
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": watch})
    with box.load() as load:
        deploy = BackgroundDeploy(box, "v2", inventory)
        assert deploy.until("s1", "is taking traffic"), "".join(deploy.lines)
        s1_switched = time.monotonic()
        assert deploy.until("s3", "is taking traffic"), "".join(deploy.lines)
        # Still in the window (it closes `watch` after s3's switch), s1 watched past it.
        time.sleep(max(0.0, s1_switched + watch + 0.5 - time.monotonic()))
        deploy.interrupt()
        exit_code, output = deploy.finish(timeout=120)
        after_interrupt = box.live_versions()
        rollback = box.fab("rollback", inventory=inventory)
    report = load.stop()
    print(report.summary())
    assert report.failed == 0, report.failures
    assert exit_code == 130, output
    assert re.search(r"^\[s1 .*\] stopped early: web[12] \(v2\) serves; web[12] is out of "
                     r"rotation", output, re.MULTILINE), output
    assert re.search(r"^\[s3 .*\] stopped early: traffic is back on web[12] \(v1\), which "
                     rf"kept running; web[12] \(v2\) had been watched for [\d.]+s of {watch}s",
                     output, re.MULTILINE), output
    assert re.search(r"^s1 .*\binterrupted\s+v2 in web[12]$", output, re.MULTILINE), output
    assert re.search(r"^s3 .*\binterrupted\s+v1 in web[12]$", output, re.MULTILINE), output
    assert after_interrupt["s1"] == "v2" and after_interrupt["s3"] == "v1", after_interrupt
    for address in box.addresses:
        assert len(box.served_versions(address)) == 1
    # The interrupted deploy is what a plain rollback undoes: s1 (and s2 if it kept v2) go
    # back, the others stay.
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert re.search(r"the last deploy \(v2, .*\) did not finish \(interrupted\): rollback "
                     r"undoes it: s1 back to v1", rollback.stdout + rollback.stderr)
    assert set(box.live_versions().values()) == {"v1"}
    # The next deploy picks up from there.
    after = box.fab("deploy", "--tag", "v2", inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr
    assert set(box.live_versions().values()) == {"v2"}


def test_a_clean_up_that_hangs_after_the_switch_back_leaves_the_old_version_serving(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """s1's new slot leaves rotation in its watch (a hand-made maint) while s1's Docker
    engine is frozen: the watch sends the traffic back, then `docker logs` of the failed
    container is abandoned at its deadline. The old slot keeps the traffic (it used to be
    put in maint too: every request 503), the clean-up's failure is one line, 0 failed."""
    box = fleet_on_v1
    command_deadline = 5
    inventory = box.inventory_copy(tmp_path, timeouts={"watch": 20, "command": command_deadline,
                                                       "stop": 1})
    s1 = box.addresses[0]
    served = set(box.live_versions().values())  # the module's earlier tests decide which
    assert len(served) == 1
    old = served.pop()
    new = "v1" if old == "v2" else "v2"
    with box.load() as load:
        deploy = BackgroundDeploy(box, new, inventory)
        switched = deploy.until("s1", rf"(web[12]) \({new}\) is taking traffic")
        assert switched, "".join(deploy.lines)
        with frozen_docker_engine(sandbox.server_nodes(1)[0]):
            box.ssh(s1, f"echo 'set server webapp/{switched.group(1)} state maint' | "
                    "socat - UNIX-CONNECT:/etc/slotswap/webapp/haproxy/admin/admin.sock")
            exit_code, output = deploy.finish(timeout=120)
            frozen_serves = box.served_versions(s1)
    report = load.stop()
    print(report.summary())
    assert report.failed == 0, report.failures
    assert exit_code == 1, output
    assert frozen_serves == {old}
    assert re.search(rf"^\[s1 .*\] web[12] \({new}\) FAILED: stopped taking traffic .*; "
                     rf"traffic is back on web[12] \({old}\)", output, re.MULTILINE), output
    assert re.search(rf"^\[s1 .*\] could not stop webapp-web[12]: .*gave no answer within "
                     rf"{command_deadline}s.*; it gets no traffic, and the next deploy removes "
                     "it", output, re.MULTILINE), output
    assert re.search(rf"^s1 .*\brolled back\s+{old} in web[12]$", output, re.MULTILINE), output
    assert box.live_versions()["s1"] == old
    for address in box.addresses:
        assert len(box.served_versions(address)) == 1
    after = box.fab("deploy", "--tag", new, inventory=inventory)
    assert after.returncode == 0, after.stdout + after.stderr
    assert set(box.live_versions().values()) == {new}
