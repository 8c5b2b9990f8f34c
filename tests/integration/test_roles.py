"""Worker roles on the sandbox, under load, with a worker that proves it (issue 22): the
example app's `webapp worker` takes jobs from a folder every server's workers share
(testbed/job_queue.py), each job a few seconds, and on SIGTERM finishes the one it holds.

- a deploy with jobs flowing: 0 failed requests, no job lost or run twice, every job in
  progress when the deploy began finished;
- `rollback` returns web and workers to the previous version together;
- a version whose workers crash on start: the server goes back, web included, 0 failed;
- a worker-only host: deployed, shown by `status`, no HAProxy there;
- the whole `roles` section removed: the next deploy stops the workers, their jobs done.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from testbed import job_queue
from tests.integration.conftest import Sandbox

JOB_SECONDS = 2.0


@dataclass
class RolesFleet:
    box: Sandbox
    inventory: Path  # the sandbox's, with a worker role on every server
    queue: Path
    folder: Path

    def worker_versions(self, address: str) -> list[str]:
        """The versions of the running worker containers of a server."""
        out = self.box.ssh(address, "docker ps --filter label=slotswap.role=worker "
                                    "--format '{{.Label \"slotswap.version\"}}'")
        return sorted(out.split())


@pytest.fixture(scope="module")
def roles_fleet(fleet_on_v1: Sandbox) -> Iterator[RolesFleet]:
    """v1 everywhere, web and two workers per server; afterwards the sandbox's own fleet
    again (the workers removed, HAProxy and v1 back where a test took them away)."""
    box = fleet_on_v1
    folder = Path(tempfile.mkdtemp(prefix="slotswap-roles-", dir="/var/tmp"))
    folder.chmod(0o777)
    queue = job_queue.make_queue(folder / "queue")
    inventory = box.inventory_copy(folder, roles={"worker": job_queue.worker_role(
        queue, job_seconds=JOB_SECONDS, count=2)})
    fleet = RolesFleet(box, inventory, queue, folder)
    try:
        result = box.fab("deploy", "--tag", "v1", "--force", inventory=inventory)
        assert result.returncode == 0, result.stdout + result.stderr
        yield fleet
    finally:
        box.fab("down", inventory=inventory)
        box.fab("up")
        box.fab("deploy", "--tag", "v1", "--force")
        shutil.rmtree(folder, ignore_errors=True)


def jobs_in_progress(fleet: RolesFleet, prefix: str, count: int) -> list[str]:
    """`count` jobs enqueued, once some are in a worker's hands; the jobs of an earlier
    test, all done, cleared first (the verdict wants only this test's in the queue)."""
    state = job_queue.read_state(fleet.queue)
    assert not state.pending and not state.taken, state
    for done in (fleet.queue / job_queue.DONE).iterdir():
        done.unlink()
    ids = job_queue.enqueue(fleet.queue, count, prefix=prefix)
    assert job_queue.wait_until_drained(fleet.queue, ids[:1], timeout=30).unfinished(
        ids[:1]) == []
    return ids


def test_a_deploy_with_jobs_flowing_loses_none_and_fails_no_request(
        roles_fleet: RolesFleet) -> None:
    box = roles_fleet.box
    ids = jobs_in_progress(roles_fleet, "deploy", 60)
    moment = job_queue.now()
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v2", inventory=roles_fleet.inventory)
    report = load.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    state = job_queue.wait_until_drained(roles_fleet.queue, ids, timeout=120)
    verdict = job_queue.judge(ids, state, moment=moment)
    assert verdict.ok, verdict.summary()
    assert verdict.in_progress, verdict.summary()  # else it proves nothing about them
    assert set(verdict.runs_by_version) == {"v1", "v2"}, verdict.summary()
    for address in box.addresses:
        assert roles_fleet.worker_versions(address) == ["v2", "v2"]
    status = box.fab("status", "--json", inventory=roles_fleet.inventory)
    shown = yaml.safe_load(status.stdout)
    for server in shown["servers"]:
        running = [c for c in server["roles"] if c["state"] == "running"]
        assert {(c["role"], c["version"]) for c in running} == {("worker", "v2")}, server


def test_rollback_returns_web_and_workers_together(roles_fleet: RolesFleet) -> None:
    box = roles_fleet.box
    ids = jobs_in_progress(roles_fleet, "rollback", 40)
    moment = job_queue.now()
    with box.load() as load:
        result = box.fab("rollback", inventory=roles_fleet.inventory)
    report = load.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    verdict = job_queue.judge(
        ids, job_queue.wait_until_drained(roles_fleet.queue, ids, timeout=120), moment=moment)
    assert verdict.ok, verdict.summary()
    for address in box.addresses:
        assert box.served_versions(address) == {"v1"}
        assert roles_fleet.worker_versions(address) == ["v1", "v1"]
    # The kept v1 workers were started again: nothing was pulled.
    assert "pull" not in result.stdout


def test_workers_that_crash_on_start_send_the_server_back_web_included(
        roles_fleet: RolesFleet, tmp_path: Path) -> None:
    box = roles_fleet.box
    role = job_queue.worker_role(roles_fleet.queue, job_seconds=JOB_SECONDS, count=2)
    role["env"]["plain"]["WORKER_CRASH"] = "1"  # type: ignore[index]
    crashing = box.inventory_copy(tmp_path, roles={"worker": role})
    ids = jobs_in_progress(roles_fleet, "crash", 30)
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v2", inventory=crashing)
    report = load.stop()
    assert result.returncode == 1, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    # One line, then the crashing worker's last output.
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "role worker" in error and "rolled back to v1" in error, result.stderr
    assert "crashing on purpose" in result.stderr.split(error, 1)[1]
    first = box.addresses[0]
    assert box.served_versions(first) == {"v1"}
    assert roles_fleet.worker_versions(first) == ["v1", "v1"]
    for address in box.addresses[1:]:  # the rollout stopped at the first server
        assert roles_fleet.worker_versions(address) == ["v1", "v1"]
    verdict = job_queue.judge(ids, job_queue.wait_until_drained(roles_fleet.queue, ids,
                                                                 timeout=120))
    assert verdict.ok, verdict.summary()
    assert set(verdict.runs_by_version) == {"v1"}, verdict.summary()


def test_logs_and_exec_reach_the_workers(roles_fleet: RolesFleet) -> None:
    box, inventory = roles_fleet.box, roles_fleet.inventory
    logs = box.fab("logs", "--role=worker", "--lines=20", inventory=inventory)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    assert "webapp-worker-" in logs.stdout and "worker version=" in logs.stdout
    one_off = box.fab("exec", "--role=worker", "--command=env QUEUE_DIR", inventory=inventory)
    assert one_off.returncode == 0, one_off.stdout + one_off.stderr
    assert one_off.stdout.strip().splitlines()[-1] == job_queue.QUEUE_MOUNT
    live = box.fab("exec", "--role=worker", "--live", "--command=/webapp env JOB_SECONDS",
                   inventory=inventory)
    assert live.returncode == 0, live.stdout + live.stderr
    assert live.stdout.strip().splitlines()[-1] == f"{JOB_SECONDS:g}"
    unknown = box.fab("logs", "--role=mailer", inventory=inventory)
    assert unknown.returncode == 2 and "worker" in unknown.stderr


def test_removing_the_roles_section_stops_the_workers_at_the_next_deploy(
        roles_fleet: RolesFleet, tmp_path: Path) -> None:
    """Before, an inventory without roles read no role container: the workers ran the old
    version on, unseen by `status`, and a deploy of the tag served was `unchanged`."""
    box = roles_fleet.box
    without = box.inventory_copy(tmp_path)  # the sandbox's inventory: no roles
    # No more jobs than the workers take before the deploy begins: once they stop, none is
    # left to take a job still pending (the role is gone).
    ids = jobs_in_progress(roles_fleet, "removed", 12)
    moment = job_queue.now()
    status = box.fab("status", inventory=without)
    assert status.returncode == 0 and "webapp-worker-" in status.stdout, status.stdout
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v2", inventory=without)
    report = load.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.failed == 0, report.failures
    assert "stopped the old role containers" in result.stdout, result.stdout
    for address in box.addresses:
        assert box.served_versions(address) == {"v2"}
        assert roles_fleet.worker_versions(address) == []
    verdict = job_queue.judge(ids, job_queue.wait_until_drained(roles_fleet.queue, ids,
                                                                 timeout=120), moment=moment)
    assert verdict.ok, verdict.summary()
    again = box.fab("deploy", "--tag", "v2", inventory=without)
    assert again.returncode == 0 and "unchanged" in again.stdout, again.stdout
    # The section back: the workers start again (and run for the tests after this one).
    back = box.fab("deploy", "--tag", "v2", inventory=roles_fleet.inventory)
    assert back.returncode == 0, back.stdout + back.stderr
    for address in box.addresses:
        assert roles_fleet.worker_versions(address) == ["v2", "v2"]

def test_a_worker_only_host_runs_workers_and_no_haproxy(roles_fleet: RolesFleet,
                                                         tmp_path: Path) -> None:
    """The last server turned worker-only (`web: false`): `up` takes its HAProxy and slots
    off (HAProxy soft-stopped, the slots given their stop timeout) and keeps its workers
    and network; deploys move its workers with the others."""
    box = roles_fleet.box
    jobs = box.addresses[-1]
    data = yaml.safe_load(roles_fleet.inventory.read_text())
    workers_before = running_workers(box, jobs)
    served_before = {address: box.served_versions(address) for address in box.addresses}
    other = "v1" if served_before[box.addresses[0]] == {"v2"} else "v2"
    data["hosts"][-1]["web"] = False
    worker_only = tmp_path / "hosts.yaml"
    worker_only.write_text(yaml.safe_dump(data))
    refused = box.fab("deploy", "--tag", other, inventory=worker_only)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "is web: false but still runs the web's containers" in refused.stderr
    assert "nothing was changed" in refused.stderr
    # Refused before any server moved.
    assert {address: box.served_versions(address) for address in box.addresses} == \
        served_before
    assert running_workers(box, jobs) == workers_before
    up = box.fab("up", inventory=worker_only)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "HAProxy and web slots removed (worker-only: no HAProxy)" in up.stdout, up.stdout
    assert running_workers(box, jobs) == workers_before  # untouched
    left = box.ssh(jobs, "ls /etc/slotswap/webapp 2>/dev/null || true").split()
    assert not [name for name in left if name == "haproxy" or name in ("web1.env", "web2.env")]
    again = box.fab("up", inventory=worker_only)
    assert "unchanged (worker-only: no HAProxy)" in again.stdout, again.stdout
    ids = jobs_in_progress(roles_fleet, "only", 40)
    moment = job_queue.now()
    web = box.addresses[:-1]
    with box.load(web) as load:
        result = box.fab("deploy", "--tag", other, inventory=worker_only)
        assert result.returncode == 0, result.stdout + result.stderr
        # --force of the tag it runs: new workers (as a web host gets a new slot).
        before = running_workers(box, jobs)
        forced = box.fab("deploy", "--tag", other, "--force", inventory=worker_only)
        assert forced.returncode == 0, forced.stdout + forced.stderr
    report = load.stop()
    assert report.failed == 0, report.failures
    assert roles_fleet.worker_versions(jobs) == [other, other]
    after = running_workers(box, jobs)
    assert len(after) == 2 and not set(after) & set(before), (before, after)
    names = box.ssh(jobs, "docker ps --all --format '{{.Names}}'").split()
    assert not [n for n in names if "haproxy" in n or n.endswith(("-web1", "-web2"))], names
    status = box.fab("status", inventory=worker_only)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "worker" in status.stdout and other in status.stdout
    verdict = job_queue.judge(ids, job_queue.wait_until_drained(roles_fleet.queue, ids,
                                                                 timeout=120), moment=moment)
    assert verdict.ok, verdict.summary()


def running_workers(box: Sandbox, address: str) -> list[str]:
    return box.ssh(address, "docker ps --filter label=slotswap.role=worker "
                            "--format '{{.Names}}'").split()


def test_down_stops_and_removes_the_workers(roles_fleet: RolesFleet) -> None:
    box = roles_fleet.box
    down = box.fab("down", inventory=roles_fleet.inventory)
    assert down.returncode == 0, down.stdout + down.stderr
    for address in box.addresses:
        names = box.ssh(address, "docker ps --all --format '{{.Names}}'").split()
        assert not [n for n in names if n.startswith("webapp-")], names
