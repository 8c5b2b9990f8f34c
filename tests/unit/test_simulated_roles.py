"""The simulated server (simulated_roles.py) runs every command of a role's containers
(slotswap/commands/role_containers.py, slotswap/server/role_steps.py) as Docker does, and
answers them in the recorded `docker container inspect` form, so that parse_inspect,
role_plan.judge_running and role_plan.role_trouble read its answers as they read real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.commands.role_containers import exec_check, inspect_roles, stop_role
from slotswap.config.inventory import Inventory
from slotswap.config.layout import role_env_file_path
from slotswap.config.loader import parse_inventory
from slotswap.config.roles import RunningCheck
from slotswap.remote.server import CommandDeadlineError, CommandResult
from slotswap.server.haproxy_config import Login, render_config
from slotswap.server.role_plan import Step, judge_running, plan_roles, role_trouble
from slotswap.server.role_steps import role_targets, step_command
from tests.unit.fake_server import FIXTURES
from tests.unit.simulated_fleet import Fleet
from tests.unit.simulated_haproxy import UnknownCommand
from tests.unit.simulated_roles import EXIT_KILLED, EXIT_STOPPED, RESTART_DELAY
from tests.unit.simulated_server import Fault, SimClock, SimulatedServer

RECORDED = json.loads((FIXTURES / "docker_inspect_live_web1.json").read_text())[0]
WORKER = "shop-worker-web1-1"


def shop(tmp_path: Path) -> Inventory:
    return parse_inventory({
        "app": "shop", "image": "acme/shop", "hosts": ["203.0.113.1"],
        "env": {"plain": {"QUEUE": "jobs"}},
        "roles": {"worker": {"cmd": ["bin/jobs"], "count": 2, "stop_timeout": 30,
                             "stop_signal": "SIGQUIT",
                             "check": {"cmd": ["bin/jobs", "--ping"], "timeout": 9}},
                  "cron": {"cmd": ["bin/cron"], "check": {"running": 2}}}},
        tmp_path / "hosts.yaml")


def simulated(tmp_path: Path) -> SimulatedServer:
    inventory = shop(tmp_path)
    server = SimulatedServer(inventory.hosts[0].name, inventory, SimClock(), tmp_path / "s",
                             config=render_config(inventory, Login(0, 0)))
    for tag in ("v1", "v2"):
        server.add_image(tag)
    return server


def send(server: SimulatedServer, argv: list[str], **settings: float) -> CommandResult:
    return server.run(argv, check=False, **settings)


def run_worker(server: SimulatedServer, version: str = "v1", generation: str = "web1",
               role: str = "worker", index: int = 1) -> str:
    """One role container started as the deploy's `run` step starts it (its env file
    written first); its name."""
    inventory = server.inventory
    server.files.write(role_env_file_path(inventory, role, generation), "QUEUE=jobs\n")
    name = f"{inventory.app}-{role}-{generation}-{index}"
    step = Step("run", role, name, index=index, stop_timeout=30)
    result = send(server, step_command(inventory, step, tag=version, version=version,
                                       generation=generation))
    assert result.ok, result.stderr
    return name


def inspected(server: SimulatedServer) -> dict[str, docker.ContainerInfo]:
    result = send(server, inspect_roles("shop"))
    assert result.ok
    return docker.parse_inspect(result.stdout)


def now_ns(server: SimulatedServer) -> int:
    """The server's clock, as the kit reads it (wall time, in nanoseconds)."""
    return int(server.wall(server.clock.now) * 1e9)


# -- docker run, and what inspect says of it -------------------------------------------


def test_a_role_container_runs_with_its_labels_restart_policy_and_no_port(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    started = now_ns(server)
    run_worker(server)

    info = inspected(server)[WORKER]
    assert info.running and info.status == "running" and info.version == "v1"
    assert info.labels[docker.LABEL_ROLE] == "worker"
    assert info.labels[docker.LABEL_GENERATION] == "web1"
    assert info.labels[docker.LABEL_APP] == "shop"
    assert info.restart_policy == "unless-stopped" and info.restart_count == 0
    assert info.loopback_ports == () and abs(info.started_ns - started) < 1000
    assert info.image == "acme/shop:v1"
    container = server.containers[WORKER]
    assert container.stop_timeout == 30 and container.stop_signal == "SIGQUIT"
    assert container.command == ("bin/jobs",) and container.network == "shop"
    assert container.env == {"PORT": "3000"}


def test_a_role_container_is_inspected_in_the_recorded_form(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    run_worker(server, role="cron")
    send(server, docker.stop("shop-cron-web1-1", 10))

    items = json.loads(send(server, inspect_roles("shop")).stdout)
    for item in items:
        assert item.keys() == RECORDED.keys()
        assert item["State"].keys() == RECORDED["State"].keys()
        assert item["HostConfig"].keys() == RECORDED["HostConfig"].keys()
        # Docker writes StopSignal only when the container has one.
        assert item["Config"].keys() - {"StopSignal"} == RECORDED["Config"].keys()
        for when in (item["State"]["StartedAt"], RECORDED["State"]["StartedAt"]):
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", when)
        assert isinstance(item["RestartCount"], int)
    worker, cron = sorted(items, key=lambda item: item["Name"], reverse=True)
    assert (worker["Config"]["StopSignal"], cron["Config"]["StopSignal"]) == (
        "SIGQUIT", "SIGTERM")  # the role's (its default: SIGTERM)
    assert worker["Config"]["Cmd"] == ["bin/jobs"] and worker["Config"]["StopTimeout"] == 30
    assert cron["State"]["Status"] == "exited" and cron["State"]["Running"] is False


def test_a_role_container_needs_its_env_file_and_a_free_name(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    step = Step("run", "worker", WORKER, index=1, stop_timeout=30)
    argv = step_command(server.inventory, step, tag="v1", version="v1", generation="web1")

    missing = send(server, argv)
    assert missing.exit_code == 125
    assert missing.stderr.startswith("docker: open /etc/slotswap/shop/worker-web1.env: no "
                                     "such file or directory")
    run_worker(server)
    taken = send(server, argv)
    assert taken.exit_code == 125 and f'container name "/{WORKER}" is already in use' in \
        taken.stderr


def test_inspect_roles_answers_nothing_when_there_is_none(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    # A slot and another app's worker are no role containers of this app.
    send(server, docker.run_app_slot(
        container="shop-web1", image_ref="acme/shop:v1", network="shop", app="shop",
        slot="web1", version="v1", app_port=3000, stop_timeout=10,
        published=((8081, 3000),)))
    assert send(server, inspect_roles("shop")) == CommandResult("", "", 0)
    assert inspected(server) == {}

    run_worker(server, index=1)
    server.clock.advance(1)
    run_worker(server, index=2)
    assert list(inspected(server)) == ["shop-worker-web1-2", WORKER]  # newest first
    assert inspected(server)[WORKER].name == WORKER
    assert send(server, inspect_roles("other")).stdout == ""


# -- rename, start, rm ---------------------------------------------------------------


def test_rename_keeps_the_container_and_says_what_docker_says(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server, index=1)
    run_worker(server, index=2)

    assert send(server, docker.rename(WORKER, f"{WORKER}-old")).ok
    info = inspected(server)[f"{WORKER}-old"]
    assert info.labels[docker.LABEL_ROLE] == "worker" and info.running
    taken = send(server, docker.rename("shop-worker-web1-2", f"{WORKER}-old"))
    assert taken.exit_code == 1 and taken.stderr.startswith(
        "Error response from daemon: Error when allocating new name: Conflict. The container "
        f'name "/{WORKER}-old" is already in use by container')
    gone = send(server, docker.rename("nosuch", "x"))
    assert gone.stderr == "Error response from daemon: No such container: nosuch\n"


def test_a_manual_start_sets_restart_count_back_to_zero(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    server.crashes_after["v1"] = 1.0
    run_worker(server)
    server.clock.advance(3)
    assert inspected(server)[WORKER].restart_count >= 2

    send(server, stop_role(WORKER, 30))
    server.crashes_after.clear()
    server.clock.advance(5)
    assert send(server, docker.start(WORKER)).ok
    info = inspected(server)[WORKER]
    assert info.running and info.restart_count == 0
    assert abs(info.started_ns - now_ns(server)) < 1000


def test_rm_force_kills_at_once_and_cuts_the_job_in_progress(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.give_job(WORKER, 50)
    before = server.clock.now

    assert send(server, docker.remove(WORKER)).ok
    assert WORKER not in server.containers and server.clock.now == before
    assert server.jobs_cut == [WORKER]


# -- docker stop: a job in progress finishes, within the stop timeout ---------------------


def test_a_stop_waits_for_the_job_in_progress_to_finish(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.give_job(WORKER, 12)
    before = server.clock.now

    assert send(server, stop_role(WORKER, 30)).stdout == f"{WORKER}\n"
    assert server.clock.now - before == pytest.approx(12)
    info = inspected(server)[WORKER]
    assert not info.running and info.exit_code == EXIT_STOPPED and server.jobs_cut == []


def test_a_job_longer_than_the_stop_timeout_is_killed_at_its_end(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.give_job(WORKER, 100)
    before = server.clock.now

    send(server, stop_role(WORKER, 30))
    assert server.clock.now - before == pytest.approx(30)
    assert inspected(server)[WORKER].exit_code == EXIT_KILLED
    assert server.jobs_cut == [WORKER]


def test_a_stop_without_time_gives_the_container_its_own_stop_timeout(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.give_job(WORKER, 100)
    before = server.clock.now

    assert stop_role(WORKER, None) == ["docker", "stop", WORKER]
    send(server, stop_role(WORKER, None))
    assert server.clock.now - before == pytest.approx(30)  # --stop-timeout of its run
    assert not server.containers[WORKER].running


def test_idle_workers_stop_at_once_and_several_side_by_side(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    for index in (1, 2, 3):
        run_worker(server, index=index)
    server.give_job(WORKER, 5)
    server.give_job("shop-worker-web1-2", 8)
    before = server.clock.now

    send(server, ["docker", "stop", "--time", "30", WORKER, "shop-worker-web1-2",
                  "shop-worker-web1-3"])
    assert server.clock.now - before == pytest.approx(8)  # the longest, not the sum
    assert not any(c.running for c in server.containers.values())
    missing = send(server, ["docker", "stop", "nosuch"])
    assert (missing.exit_code, missing.stderr) == (
        1, "Error response from daemon: No such container: nosuch\n")


def test_workers_busy_back_to_back_finish_the_job_they_hold(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    server.job_seconds = 4
    run_worker(server)
    server.clock.advance(9)  # its third job began a second ago
    before = server.clock.now

    send(server, stop_role(WORKER, 30))
    assert server.clock.now - before == pytest.approx(3) and server.jobs_cut == []


def test_a_stop_past_the_calls_deadline_goes_on_in_docker(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.give_job(WORKER, 100)
    before = server.clock.now

    with pytest.raises(CommandDeadlineError):
        server.run(stop_role(WORKER, 120), timeout=60)
    assert server.clock.now - before == pytest.approx(60)
    assert inspected(server)[WORKER].running  # finishing its job
    server.clock.advance(40)
    info = inspected(server)[WORKER]
    assert not info.running and info.exit_code == EXIT_STOPPED and server.jobs_cut == []


# -- the check: docker exec under coreutils' timeout -----------------------------------


def test_a_check_passes_fails_or_hangs_as_set(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server, index=1)
    run_worker(server, index=2)
    check = exec_check(WORKER, ("bin/jobs", "--ping"), 9)

    assert send(server, check).exit_code == 0
    server.role_checks["v1"] = "fail"
    assert send(server, check).exit_code == 1
    server.role_checks[WORKER] = "pass"  # a container's own setting comes first
    assert send(server, check).exit_code == 0
    assert send(server, exec_check("shop-worker-web1-2", ("bin/jobs",), 9)).exit_code == 1
    server.role_checks[WORKER] = "hang"
    before = server.clock.now
    assert send(server, check).exit_code == 124
    assert server.clock.now - before == pytest.approx(9)


def test_a_check_in_a_container_that_does_not_run_is_refused_by_docker(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    send(server, stop_role(WORKER, 30))
    serial = server.containers[WORKER].serial

    stopped = send(server, exec_check(WORKER, ("bin/jobs",), 9))
    assert (stopped.exit_code, stopped.stderr) == (
        1, f"Error response from daemon: container {serial:064x} is not running\n")
    gone = send(server, exec_check("nosuch", ("bin/jobs",), 9))
    assert gone.stderr == "Error response from daemon: No such container: nosuch\n"
    server.crashes_after["v1"] = 0.5
    send(server, docker.start(WORKER))
    server.clock.advance(0.55)  # crashed, Docker starts it again in 0.1 s
    restarting = send(server, exec_check(WORKER, ("bin/jobs",), 9))
    assert restarting.exit_code == 1 and "is restarting, wait until the container is " \
        "running" in restarting.stderr


def test_a_frozen_engine_holds_a_check_until_its_timeout(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.frozen = True
    before = server.clock.now

    assert send(server, exec_check(WORKER, ("bin/jobs",), 9)).exit_code == 124
    assert server.clock.now - before == pytest.approx(9)


def test_a_malformed_exec_fails_loudly(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    with pytest.raises(UnknownCommand):
        send(server, ["timeout", "9", "docker", "exec", "--tty", WORKER, "x"])
    with pytest.raises(UnknownCommand):
        send(server, ["sh", "-c", "docker ps --all | xargs docker inspect", "sh", "shop"])


# -- crashes, engine restarts, and the kit's judges -------------------------------------


def test_a_crashing_worker_is_restarted_by_docker_and_judged_so(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    server.crashes_after["v2"] = 1.0
    run_worker(server, version="v2", generation="web2")
    name = "shop-worker-web2-1"
    first = inspected(server)[name]
    assert judge_running(first, seconds=2, now_ns=now_ns(server)) == "waiting"

    server.clock.advance(1.0 + RESTART_DELAY + 0.01)
    info = inspected(server)[name]
    assert info.running and info.status == "running" and info.restart_count == 1
    assert info.started_ns - first.started_ns == pytest.approx((1.0 + RESTART_DELAY) * 1e9,
                                                               abs=1000)
    assert judge_running(info, seconds=2, now_ns=now_ns(server)) == "failed"
    assert role_trouble(info, first.started_ns) == "its container crashed: Docker restarted it"
    # Docker's delay doubles at each crash: 0.1, 0.2, 0.4 s...
    server.clock.advance(1.0 + 2 * RESTART_DELAY + 1.0 + 4 * RESTART_DELAY)
    assert inspected(server)[name].restart_count == 3


def test_a_healthy_worker_passes_the_running_check_and_stays_untroubled(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    name = run_worker(server, role="cron")
    started = inspected(server)[name].started_ns
    server.clock.advance(1)
    assert judge_running(inspected(server)[name], seconds=2, now_ns=now_ns(server)) == \
        "waiting"
    server.clock.advance(1)
    info = inspected(server)[name]
    assert judge_running(info, seconds=2, now_ns=now_ns(server)) == "passed"
    assert role_trouble(info, started) is None
    send(server, stop_role(name, 30))
    assert role_trouble(inspected(server)[name], started) == \
        f"its container stopped (exited, exit code {EXIT_STOPPED})"
    send(server, docker.remove(name))
    assert role_trouble(inspected(server).get(name), started) == \
        "its container no longer exists"


def test_an_engine_restart_brings_back_the_workers_the_kit_did_not_stop(
        tmp_path: Path) -> None:
    server = simulated(tmp_path)
    old = run_worker(server, index=1)
    kept = run_worker(server, version="v2", generation="web2")
    send(server, stop_role(kept, 30))
    server.give_job(old, 60)
    started = inspected(server)[old].started_ns
    server.clock.advance(5)

    server.restart_engine()
    after = inspected(server)
    assert after[old].running and after[old].restart_count == 0
    assert after[old].started_ns > started and role_trouble(after[old], started) is not None
    assert not after[kept].running
    assert server.jobs_cut == [old]


def test_the_faults_of_the_schedule_strike_role_commands_too(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.give_job(WORKER, 5)
    server.faults = [Fault(server.calls + 1, "deadline"), Fault(server.calls + 2,
                                                                "engine_restart")]

    with pytest.raises(CommandDeadlineError):  # its answer lost: the stop ran all the same
        server.run(stop_role(WORKER, 30))
    assert not server.containers[WORKER].running and server.jobs_cut == []
    info = inspected(server)[WORKER]  # the engine restarted before this call
    assert not info.running  # the kit stopped it: unless-stopped leaves it down


def test_a_clone_keeps_the_workers_settings_and_jobs(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    run_worker(server)
    server.give_job(WORKER, 5)
    server.role_checks["v1"], server.crashes_after["v2"], server.job_seconds = "fail", 1, 3
    twin = server.clone(SimClock(server.clock.now), tmp_path / "twin")
    assert (twin.role_checks, twin.crashes_after, twin.job_seconds) == (
        {"v1": "fail"}, {"v2": 1}, 3)
    assert twin.containers[WORKER].busy_until == server.containers[WORKER].busy_until
    twin.role_checks["v1"] = "pass"
    assert server.role_checks["v1"] == "fail"


# -- a plan's steps, run on the simulator as the deploy will send them ------------------


def deploy_roles(server: SimulatedServer, version: str, generation: str) -> list[str]:
    """The plan's steps for `version`, each sent as step_command builds it; its checks
    answered; the old stopped after. The actions taken."""
    inventory = server.inventory
    for role in ("worker", "cron"):
        server.files.write(role_env_file_path(inventory, role, generation), "QUEUE=jobs\n")
    plan = plan_roles(inspected(server).values(), app="shop", version=version,
                      generation=generation, targets=role_targets(inventory, inventory.hosts[0]))
    for step in plan.steps:
        if step.action == "check" and step.role == "cron":
            server.clock.advance(2)
        result = send(server, step_command(inventory, step, tag=version, version=version,
                                           generation=generation))
        assert result.ok, (step, result)
        if step.action == "check" and step.role == "cron":
            info = docker.parse_inspect(result.stdout)[step.container]
            assert judge_running(info, seconds=2, now_ns=now_ns(server)) == "passed"
    return [step.action for step in plan.steps]


def test_a_deploy_then_a_rollback_of_the_roles_run_on_the_simulator(tmp_path: Path) -> None:
    server = simulated(tmp_path)
    assert deploy_roles(server, "v1", "web1") == ["run"] * 3 + ["check"] * 3
    server.job_seconds = 5
    assert deploy_roles(server, "v2", "web2") == ["run"] * 3 + ["check"] * 3 + ["stop"] * 3
    running = {name: info.version for name, info in inspected(server).items() if info.running}
    assert running == {"shop-worker-web2-1": "v2", "shop-worker-web2-2": "v2",
                       "shop-cron-web2-1": "v2"}
    # A rollback: the kept v1 containers started again, checked, then v2's stopped.
    assert deploy_roles(server, "v1", "web1") == ["start"] * 3 + ["check"] * 3 + ["stop"] * 3
    assert {info.version for info in inspected(server).values() if info.running} == {"v1"}
    assert server.jobs_cut == [] and not server.unknown


def test_a_fleet_with_roles_has_a_worker_and_a_version_whose_workers_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True)
    (worker,) = fleet.inventory.roles
    assert (worker.name, worker.count, worker.check) == ("worker", 2, RunningCheck(1))
    assert [role.name for role in fleet.new_inventory.roles] == ["worker"]

    assert fleet.run("deploy v1").exit_code == 0
    server = fleet.servers[0]
    server.add_image("v4")
    run_worker(server, version="v4", generation="web2")
    fleet.clock.advance(0.7)
    info = docker.parse_inspect(send(server, inspect_roles(fleet.inventory.app)).stdout)
    assert info["webapp-worker-web2-1"].restart_count == 1
