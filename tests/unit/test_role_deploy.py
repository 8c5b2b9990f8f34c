"""Worker roles through a deploy, on simulated servers (issue 22): the new version's role
containers start after the web switch and must pass their check, the old ones stop only
once the version is proven (a job in progress finishes), and a version whose workers fail
sends the server back, web and workers together. After every call a request gets the
version the kit last said serves (simulated_fleet.Fleet), and a role that had a running
container always has one."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.config.app_env import AppEnv
from slotswap.core import interrupts
from slotswap.fleet import dry_run, rollout
from slotswap.fleet import rollback_targets as rollback_targets_module
from slotswap.fleet.rollback_targets import rollback_targets
from slotswap.remote.server import CommandResult, RemoteCommandError
from slotswap.server import history
from slotswap.server.role_plan import Step
from slotswap.server.role_run import RoleRun
from slotswap.server.role_steps import step_command
from tests.unit.fake_server import FakeServer, make_inventory
from tests.unit.simulated_fleet import Fleet
from tests.unit.simulated_server import SimulatedServer, versions_in_rotation


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(rollout, "say", lambda *args, **kwargs: None)


def workers(server: SimulatedServer) -> dict[str, tuple[str | None, bool]]:
    """Each role container: (version, running)."""
    return {c.name: (c.labels.get(docker.LABEL_VERSION), c.running)
            for c in server.containers.values() if docker.LABEL_GENERATION in c.labels}


def running_versions(server: SimulatedServer) -> set[str | None]:
    return {version for version, running in workers(server).values() if running}


class NeverZero:
    """After every call: a server whose workers ran keeps at least `count` running."""

    def __init__(self, fleet: Fleet, count: int = 2) -> None:
        self.problems: list[str] = []
        self.had: set[str] = set()
        for server in fleet.servers:
            chained = server.after_call

            def after(server: SimulatedServer, what: str, chained=chained) -> None:
                chained(server, what)
                running = sum(1 for _, on in workers(server).values() if on)
                if server.name in self.had and running < count:
                    self.problems.append(f"{server.name}: {running} workers after `{what[:60]}`")
                if running >= count:
                    self.had.add(server.name)

            server.after_call = after


def test_a_deploy_moves_web_and_workers_and_keeps_the_old_workers_for_a_rollback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True)
    assert fleet.run("deploy v1").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    for server in fleet.servers:
        assert running_versions(server) == {"v1"} and len(workers(server)) == 2
    never_zero = NeverZero(fleet)
    for server in fleet.servers:  # each old worker holds a job when the deploy begins
        for name in workers(server):
            server.give_job(name, 1.5)
    result = fleet.run("deploy v2")
    assert result.exit_code == 0, result.message
    assert fleet.problems == [] and never_zero.problems == []
    for server in fleet.servers:
        assert versions_in_rotation(server) == {"v2"}
        assert running_versions(server) == {"v2"}
        # v1's kept, stopped (a rollback starts them again); no job was cut short.
        assert sorted(v for v, on in workers(server).values() if not on) == ["v1", "v1"]
        assert server.jobs_cut == []

    result = fleet.run("rollback")
    assert result.exit_code == 0, result.message
    assert fleet.problems == [] and never_zero.problems == []
    for server in fleet.servers:
        assert versions_in_rotation(server) == {"v1"} and running_versions(server) == {"v1"}
        assert not any(call.startswith("docker pull") for call in server.log)
    assert fleet.run("deploy v1").exit_code == 0  # unchanged: nothing moves
    assert all(o.outcome.value == "unchanged" for o in fleet.run("deploy v1").outcomes)


def test_workers_that_crash_on_start_send_the_server_back_web_included(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """v4's web is fine, its workers crash 0.5 s after each start (their check: 1 s
    running without a restart)."""
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True)
    assert fleet.run("deploy v1").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    never_zero = NeverZero(fleet)
    result = fleet.run("deploy v4")
    assert result.exit_code == 1
    assert "role worker" in result.outcomes[0].error and "rolled back to v1" in \
        result.outcomes[0].error, result.outcomes[0].error
    assert fleet.problems == [] and never_zero.problems == []
    first, second = fleet.servers
    assert versions_in_rotation(first) == {"v1"} and running_versions(first) == {"v1"}
    assert not any(v == "v4" for v in running_versions(second))  # the rollout stopped
    # The next plain run repairs nothing that is left: v2 goes everywhere, one version each.
    assert fleet.run("deploy v2").exit_code == 0
    for server in fleet.servers:
        assert running_versions(server) == {"v2"} and versions_in_rotation(server) == {"v2"}


def test_removing_the_roles_section_stops_its_workers_at_the_next_deploy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, an inventory without roles read no role container: its workers ran the old
    version on and on, and a deploy of the same tag was `unchanged`. Now the deploy is a
    swap whose window ends with them stopped (a job in progress finishes), and the next one
    is unchanged."""
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True)
    assert fleet.run("deploy v1").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    fleet.inventory = dataclasses.replace(fleet.inventory, roles=())
    plan = dry_run.deploy_plan(fleet.servers[0], fleet.inventory, "v1", pull=True,
                               task="deploy")
    assert any(line.startswith("$ docker stop") and "webapp-worker-web1-1" in line
               for line in plan.steps), "\n".join(plan.steps)
    for server in fleet.servers:
        for name in workers(server):
            server.give_job(name, 1.5)
    mark = len(fleet.servers[0].log)
    result = fleet.run("deploy v1")
    assert result.exit_code == 0, result.message
    assert [o.outcome.value for o in result.outcomes] == ["deployed", "deployed"]
    # Read before the switch, while a stuck Docker engine has changed nothing; after it,
    # Docker is asked nothing for them until the window closes (no image: no role runs).
    log = fleet.servers[0].log[mark:]
    read = next(i for i, call in enumerate(log) if "label=slotswap.generation" in call
                and "docker ps --all" in call)
    switch = next(i for i, call in enumerate(log) if "state ready" in call
                  and "state drain" in call)
    assert read < switch
    window = log[switch:next(i for i, call in enumerate(log) if "docker stop" in call
                            and "worker" in call)]
    assert not [call for call in window if "slotswap.generation" in call
                or call.startswith("docker image inspect")], window
    assert fleet.problems == []
    for server in fleet.servers:
        assert versions_in_rotation(server) == {"v1"}
        assert running_versions(server) == set() and server.jobs_cut == []
    assert all(o.outcome.value == "unchanged" for o in fleet.run("deploy v1").outcomes)

def test_a_worker_that_crashes_in_the_window_sends_the_server_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 1, monkeypatch, roles=True)
    assert fleet.run("deploy v1").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    (server,) = fleet.servers
    server.crashes_after["v2"] = 1.3  # after its 1 s check, inside the window
    result = fleet.run("deploy v2")
    assert result.exit_code == 1, result.message
    assert "role container" in result.outcomes[0].error, result.outcomes[0].error
    assert fleet.problems == []
    assert versions_in_rotation(server) == {"v1"} and running_versions(server) == {"v1"}
    # The error shows the worker's last output, not the web slot's (which was fine).
    error = result.outcomes[0].error
    assert "; the last output of webapp-worker-web2-1:\nwebapp-worker-web2-1 listening" in \
        error, error
    assert "webapp-web2 listening" not in error


def test_a_worker_that_crashes_in_the_window_on_a_worker_only_host_shows_its_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    assert fleet.run("deploy v1").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    jobs = fleet.servers[1]
    jobs.crashes_after["v2"] = 1.3  # after its 1 s check, inside the window
    result = fleet.run("deploy v2")
    assert result.exit_code == 1, result.message
    error = result.outcomes[1].error
    assert "role container" in error, error
    assert "the last output of webapp-worker-web2-1:\nwebapp-worker-web2-1 listening" in \
        error, error
    assert running_versions(jobs) == {"v1"}


def test_a_worker_only_host_deploys_its_workers_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    web, jobs = fleet.servers
    assert fleet.run("deploy v1").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    assert running_versions(jobs) == {"v1"}
    assert not any("haproxy" in name for name in jobs.containers)
    result = fleet.run("deploy v2")
    assert result.exit_code == 0, result.message
    assert running_versions(jobs) == {"v2"} and running_versions(web) == {"v2"}
    assert result.outcomes[1].serving == "v2 (worker x2)"
    result = fleet.run("rollback")
    assert result.exit_code == 0, result.message
    assert running_versions(jobs) == {"v1"}


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("worker_only", [0, 1])
def test_the_dry_run_prints_the_role_commands_the_deploy_sends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker_only: int, force: bool) -> None:
    """A new tag, and (force) the tag that runs already, redeployed with --force."""
    fleet = Fleet(tmp_path, 1 + worker_only, monkeypatch, roles=True, worker_only=worker_only)
    assert fleet.run("deploy v1").exit_code == 0
    server = fleet.servers[-1]
    tag = "v1" if force else "v2"
    plan = dry_run.deploy_plan(server, fleet.inventory, tag, pull=True, task="deploy")
    printed = [line[2:] for line in plan.steps
               if line.startswith("$ docker") and "worker" in line]
    mark = len(server.log)
    assert fleet.run(f"deploy {tag}" + (" --force" if force else "")).exit_code == 0
    sent = [call for call in server.log[mark:] if call.startswith(("docker run", "docker stop"))
            and "worker" in call]
    undo = [line for line in plan.steps if line.startswith("  if it fails: $ docker stop")
            and "worker" in line]
    assert sent == printed, "\n".join(["printed:", *printed, "", "sent:", *sent])
    assert len(undo) == 1 and "webapp-worker-web2-1" in undo[0]


def test_the_dry_run_needs_no_value_of_a_role_secret(tmp_path: Path) -> None:
    inventory = make_inventory(tmp_path, roles={"worker": {
        "cmd": ["bin/jobs"], "env": {"secret": ["QUEUE_TOKEN"]}}})
    assert dry_run.masked_env(inventory) == "no variables"
    assert dry_run.stand_in_env(inventory).of_role("worker").masked() == "QUEUE_TOKEN=<secret>"


def start_workers(fleet: Fleet, server: SimulatedServer, version: str, generation: str) -> None:
    """The role's containers of `version` as a run cut after their start left them."""
    server.add_image(version)
    for index in (1, 2):
        step = Step("run", "worker", f"webapp-worker-{generation}-{index}", index=index,
                    stop_timeout=30)
        assert server.run(step_command(server.inventory, step, tag=version, version=version,
                                       generation=generation), check=False).ok


def test_the_web_goes_back_before_the_failed_workers_are_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their stop waits for a job to finish: meanwhile no request may go to the version that
    failed."""
    fleet = Fleet(tmp_path, 1, monkeypatch, roles=True)
    assert fleet.run("deploy v1").exit_code == 0
    (server,) = fleet.servers
    seen: list[set[str | None]] = []
    chained = server.after_call

    def after(server: SimulatedServer, what: str) -> None:
        chained(server, what)
        if what.startswith("docker stop") and "worker-web2" in what:
            seen.append(versions_in_rotation(server))

    server.after_call = after
    assert fleet.run("deploy v4").exit_code == 1
    assert seen == [{"v1"}]


def test_failed_workers_a_cut_run_left_running_are_stopped_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 1, monkeypatch, roles=True)
    assert fleet.run("deploy v1").exit_code == 0
    (server,) = fleet.servers
    start_workers(fleet, server, "v4", "web2")  # crashing, beside v1's
    for _ in range(2):  # a plain run again ends the same way
        assert fleet.run("deploy v4").exit_code == 1
        assert running_versions(server) == {"v1"} and versions_in_rotation(server) == {"v1"}


def test_force_on_a_worker_only_host_makes_new_workers_as_on_a_web_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`deploy --force` of the tag a worker-only host runs: new role containers in the
    other generation, checked, then the old ones stopped (a web host gets a new slot)."""
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    assert fleet.run("deploy v2").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    jobs = fleet.servers[1]
    before = {name for name, (_, on) in workers(jobs).items() if on}
    assert fleet.run("deploy v2").outcomes[1].outcome.value == "unchanged"

    result = fleet.run("deploy v2 --force")

    assert result.exit_code == 0, result.message
    after = {name for name, (_, on) in workers(jobs).items() if on}
    assert len(after) == 2 and not after & before, (before, after)
    assert running_versions(jobs) == {"v2"} and fleet.problems == []


def test_a_worker_only_host_running_two_versions_records_no_mixed_tag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    assert fleet.run("deploy v1").exit_code == 0
    jobs = fleet.servers[1]
    start_workers(fleet, jobs, "v2", "web2")  # left by a cut run: v1 and v2 run
    assert fleet.run("deploy v2").exit_code == 0
    assert running_versions(jobs) == {"v2"}
    last = history.parse_history(jobs.read_local(history.history_path(fleet.inventory)))[-1]
    assert last.from_tag == ""  # not "v1, v2", which a rollback took for a tag
    assert "invalid tag" not in fleet.run("rollback").message


def cut_beside_v2(fleet: Fleet) -> SimulatedServer:
    """v1 then v2 deployed; then a run of v3 cut on the worker-only host once its new
    workers ran, before v2's stopped (v1's kept ones removed to make room)."""
    assert fleet.run("deploy v1").exit_code == 0
    assert fleet.run("deploy v2").exit_code == 0
    jobs = fleet.servers[1]
    kept = [name for name, (version, on) in workers(jobs).items() if version == "v1"]
    generation = kept[0].split("-")[2]
    for name in kept:  # the cut run removed them to make its own
        assert jobs.run(["docker", "rm", "--force", name], check=False).ok
    start_workers(fleet, jobs, "v3", generation)
    assert running_versions(jobs) == {"v2", "v3"}
    return jobs


def test_a_plain_rollback_repairs_a_worker_only_host_running_two_versions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cut run wrote nothing: `rollback` takes the version the history last says the
    host runs (v2) as what it serves, goes back to the one before it, and no version's
    workers but v1's run after."""
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    jobs = cut_beside_v2(fleet)

    # What `rollback` (the task) goes by: a problem on any server refuses the whole run.
    assert rollback_targets(fleet.inventory) == ({s.name: "v1" for s in fleet.servers}, {})
    result = fleet.run("rollback")

    assert result.exit_code == 0, result.message
    assert running_versions(jobs) == {"v1"}
    assert versions_in_rotation(fleet.servers[0]) == {"v1"}


def test_a_plain_rollback_undoes_a_run_cut_on_a_worker_only_host(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cut run recorded `interrupted` there (and never reached the web host): the
    rollback undoes that run, says the worker-only host goes back to v2 alone, and leaves
    v2's workers alone running; the web host stays as it is."""
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    jobs = cut_beside_v2(fleet)
    history.append(jobs, fleet.inventory,
                   history.new_entry("deploy", "v2", "v3", "interrupted", 3.0, run="cut1"))
    said: list[str] = []
    monkeypatch.setattr(rollback_targets_module, "say", said.append)

    assert rollback_targets(fleet.inventory) == ({s.name: "v2" for s in fleet.servers}, {})
    assert f"{jobs.name} back to v2 alone" in said[0] and "nothing left" not in said[0], said
    result = fleet.run("rollback")

    assert result.exit_code == 0, result.message
    assert running_versions(jobs) == {"v2"}
    assert versions_in_rotation(fleet.servers[0]) == {"v2"}


def test_docker_s_own_error_is_no_last_output_of_a_worker(tmp_path: Path) -> None:
    """A worker gone: `docker logs` answers Docker's error, which the failure must not
    show as what the worker wrote."""
    server = FakeServer(answers={("docker", "logs"): CommandResult(
        "", "Error response from daemon: No such container: webapp-worker-web2-1", 1)})
    inventory = make_inventory(tmp_path, roles={"worker": {"cmd": ["bin/jobs"]}})
    run = RoleRun(server, inventory, "v2", "web2", AppEnv(""), lambda message: None)
    assert run.last_output("webapp-worker-web2-1", inventory.roles[0]) == ""


def test_a_docker_that_does_not_answer_is_no_worker_gone(tmp_path: Path) -> None:
    server = FakeServer(answers={("docker", "container", "inspect"): CommandResult(
        "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", 1)})
    run = RoleRun(server, make_inventory(tmp_path), "v2", "web2", AppEnv(""),
                  lambda message: None)
    run.seen = {"webapp-worker-web2-1": (1, 0)}
    with pytest.raises(RemoteCommandError, match="Cannot connect"):
        run.trouble()


def with_count(fleet: Fleet, count: int) -> None:
    fleet.inventory = dataclasses.replace(fleet.inventory, roles=tuple(
        dataclasses.replace(role, count=count) for role in fleet.inventory.roles))


def role_images(server: SimulatedServer) -> set[str]:
    return {c.image_id for c in server.containers.values()
            if c.running and docker.LABEL_GENERATION in c.labels}


@pytest.mark.parametrize("worker_only", [0, 1])
def test_a_tag_pushed_again_reaches_the_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker_only: int) -> None:
    """As the web slots: a container of the tag's earlier image is made again, not kept."""
    fleet = Fleet(tmp_path, 1 + worker_only, monkeypatch, roles=True, worker_only=worker_only)
    assert fleet.run("deploy v1").exit_code == 0
    assert fleet.run("deploy v2").exit_code == 0
    again = "sha256:" + "ee" * 32
    tag = "v2" if worker_only else "v1"  # worker-only: the tag it runs; web: the kept one
    for server in fleet.servers:
        server.registry[fleet.inventory.image_ref(tag)] = again
    assert fleet.run(f"deploy {tag}").exit_code == 0
    assert all(role_images(server) == {again} for server in fleet.servers)


def test_a_restart_long_ago_is_no_crash_now(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker Docker restarted once, weeks ago, running since: a deploy that checks it
    again (the count changed) passes."""
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    jobs = fleet.servers[1]
    assert fleet.run("deploy v2").exit_code == 0
    next(c for c in jobs.containers.values() if c.name.endswith("-1")
         and docker.LABEL_GENERATION in c.labels and c.running).restart_count = 1
    with_count(fleet, 3)
    result = fleet.run("deploy v2")
    assert result.exit_code == 0, result.message
    assert sum(on for _, on in workers(jobs).values()) == 3


def test_an_interrupted_count_down_keeps_the_workers_that_served(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True, worker_only=1)
    jobs = fleet.servers[1]
    with_count(fleet, 3)
    assert fleet.run("deploy v2").exit_code == 0
    with_count(fleet, 2)
    chained = jobs.after_call

    def after(server: SimulatedServer, what: str) -> None:
        chained(server, what)
        if what.startswith("docker container inspect"):
            interrupts._requested.set()  # Ctrl-C while the checks look

    jobs.after_call = after
    fleet.run("deploy v2")
    running = {name for name, (_, on) in workers(jobs).items() if on}
    assert {"webapp-worker-web1-1", "webapp-worker-web1-2"} <= running, running


def test_a_host_turned_worker_only_is_refused_by_deploy_until_up_takes_the_web_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, the deploy moved its workers and said so while its HAProxy went on serving
    the old version there. The deploy (and its dry run, with the same exit) refuses that
    host with one line naming `up`, before any server moves; `up` takes HAProxy and the
    slots off, keeps the workers; the deploy then goes on."""
    fleet = Fleet(tmp_path, 2, monkeypatch, roles=True)
    assert fleet.run("deploy v1").exit_code == 0
    fleet.problems.clear()  # before the first deploy nothing serves
    jobs = fleet.servers[1]
    turned = dataclasses.replace(jobs.host, web=False)
    fleet.inventory = dataclasses.replace(fleet.inventory, hosts=(
        fleet.inventory.hosts[0], turned))
    jobs.host = turned  # as a Server made from that inventory; its HAProxy still serves
    with pytest.raises(Exception, match="is web: false but still runs the web's containers "
                       r"\(running: webapp-web1\): `fab up` takes them off"):
        dry_run.deploy_plan(jobs, fleet.inventory, "v2", pull=True, task="deploy")
    result = fleet.run("deploy v2")
    assert result.exit_code == 1
    assert result.message.startswith("nothing was changed: the web's containers run on a "
                                     "worker-only host: 203.0.113.11 is web: false"), \
        result.message
    assert "`fab up` takes them off" in result.outcomes[1].error
    # Refused before any server moved: the first one too stays on v1, web and workers.
    for server in fleet.servers:
        assert running_versions(server) == {"v1"} and versions_in_rotation(server) == {"v1"}
    workers_before = workers(jobs)
    assert fleet.run("up").exit_code == 0
    assert workers(jobs) == workers_before  # (the simulator's HAProxy is no container)
    assert not [name for name in jobs.containers if name in ("webapp-web1", "webapp-web2")]
    result = fleet.run("deploy v2")
    assert result.exit_code == 0, result.message
    assert running_versions(jobs) == {"v2"} and fleet.problems == []
