"""slotswap.server.role_plan: the steps a deploy or a rollback takes with the role containers
of one server, for each state a server can be found in (a first deploy, the next one, a run
again after a cut one, a rollback to kept containers, changed settings or count, a role
gone), and at every intermediate state of every plan: a role that had a running container
has one, nothing running is removed, no name is taken twice."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from slotswap.commands.docker import ContainerInfo
from slotswap.server.role_plan import (
    RolePlan,
    RoleTarget,
    Step,
    judge_running,
    plan_roles,
    role_trouble,
    worker_only_generation,
)

APP = "shop"
SECOND = 1_000_000_000
T0 = "2026-12-03T16:00:00Z"
T0_NS = 1_796_313_600 * SECOND


def box(role: str, generation: str, index: int, version: str, *, running: bool = True,
        digest: str = "d1", app: str = APP, name: str | None = None,
        started_at: str = T0, restarts: int = 0) -> ContainerInfo:
    return ContainerInfo(
        name=name or f"{app}-{role}-{generation}-{index}", running=running,
        status="running" if running else "exited", image=f"acme/shop:{version}", image_id="",
        labels={"slotswap.app": app, "slotswap.role": role, "slotswap.version": version,
                "slotswap.generation": generation, "slotswap.settings": digest},
        addresses={}, exit_code=0 if running else 143, started_at=started_at,
        restart_count=restarts)


def worker(count: int = 2, digest: str = "d1", reuse: bool = True) -> RoleTarget:
    return RoleTarget("worker", count, digest, stop_timeout=120, reuse=reuse)


CRON = RoleTarget("cron", 1, "c1", stop_timeout=10)


def plan(containers: list[ContainerInfo], version: str, generation: str,
         *targets: RoleTarget) -> RolePlan:
    return plan_roles(containers, app=APP, version=version, generation=generation,
                      targets=targets or (worker(),))


def names(steps: tuple[Step, ...]) -> list[str]:
    return [step.container for step in steps]


# -- one server, each state ---------------------------------------------------------------


def test_a_first_deploy_runs_each_role_s_containers_and_checks_them() -> None:
    result = plan([], "v1", "web1", worker(), CRON)

    assert result.remove == result.rename == result.stop == ()
    assert result.start == (
        Step("run", "worker", "shop-worker-web1-1", index=1, stop_timeout=120),
        Step("run", "worker", "shop-worker-web1-2", index=2, stop_timeout=120),
        Step("run", "cron", "shop-cron-web1-1", index=1, stop_timeout=10))
    assert names(result.check) == names(result.start)


def test_the_next_deploy_removes_the_kept_ones_in_its_way_and_stops_the_old_ones_last() -> None:
    live = [box("worker", "web1", n, "v1") for n in (1, 2)]
    kept = [box("worker", "web2", n, "v0", running=False) for n in (1, 2)]

    result = plan(live + kept, "v2", "web2")

    assert result.remove == (Step("remove", "worker", "shop-worker-web2-1"),
                             Step("remove", "worker", "shop-worker-web2-2"))
    assert result.rename == ()
    assert [step.action for step in result.start] == ["run", "run"]
    assert names(result.check) == ["shop-worker-web2-1", "shop-worker-web2-2"]
    # The old ones get the role's stop timeout, after every check, and are kept (not removed).
    assert result.stop == (Step("stop", "worker", "shop-worker-web1-1", stop_timeout=120),
                           Step("stop", "worker", "shop-worker-web1-2", stop_timeout=120))
    assert [step.action for step in result.steps] == [
        "remove", "remove", "run", "run", "check", "check", "stop", "stop"]


def test_a_run_again_after_a_cut_one_starts_only_what_is_missing() -> None:
    # Cut after the first new container started: it is checked again, not made again.
    containers = [box("worker", "web1", 1, "v1"), box("worker", "web1", 2, "v1"),
                  box("worker", "web2", 1, "v2")]

    result = plan(containers, "v2", "web2")

    assert result.remove == result.rename == ()
    assert names(result.start) == ["shop-worker-web2-2"]
    assert names(result.check) == ["shop-worker-web2-1", "shop-worker-web2-2"]
    assert names(result.stop) == ["shop-worker-web1-1", "shop-worker-web1-2"]


def test_a_run_again_after_one_that_finished_changes_nothing() -> None:
    containers = [box("worker", "web2", n, "v2") for n in (1, 2)]
    containers += [box("worker", "web1", n, "v1", running=False) for n in (1, 2)]

    result = plan(containers, "v2", "web2")

    assert result.unchanged and result.steps == ()


def test_a_run_cut_before_the_old_ones_stopped_stops_them() -> None:
    containers = [box("worker", "web2", n, "v2") for n in (1, 2)]
    containers += [box("worker", "web1", n, "v1") for n in (1, 2)]

    result = plan(containers, "v2", "web2")

    assert result.start == () and not result.unchanged
    assert names(result.check) == ["shop-worker-web2-1", "shop-worker-web2-2"]
    assert names(result.stop) == ["shop-worker-web1-1", "shop-worker-web1-2"]


def test_a_rollback_starts_the_kept_containers_again_then_stops_the_new_ones() -> None:
    live = [box("worker", "web2", n, "v2") for n in (1, 2)]
    kept = [box("worker", "web1", n, "v1", running=False) for n in (1, 2)]

    result = plan(live + kept, "v1", "web1")

    assert result.remove == ()
    assert result.start == (Step("start", "worker", "shop-worker-web1-1", stop_timeout=120),
                            Step("start", "worker", "shop-worker-web1-2", stop_timeout=120))
    assert names(result.stop) == ["shop-worker-web2-1", "shop-worker-web2-2"]


def test_kept_containers_made_with_other_settings_are_made_again() -> None:
    live = [box("worker", "web2", n, "v2") for n in (1, 2)]
    kept = [box("worker", "web1", n, "v1", running=False, digest="old") for n in (1, 2)]

    result = plan(live + kept, "v1", "web1")

    assert names(result.remove) == ["shop-worker-web1-1", "shop-worker-web1-2"]
    assert [step.action for step in result.start] == ["run", "run"]


def test_running_old_ones_in_the_new_generation_are_renamed_out_of_the_way() -> None:
    # A cut rollback left v2 running in web2 alone (web is back on web1): deploying v3 into
    # web2 must not leave the role without a worker, nor take a name twice.
    containers = [box("worker", "web2", n, "v2") for n in (1, 2)]
    containers += [box("worker", "web1", n, "v1", running=False) for n in (1, 2)]
    containers.append(box("worker", "web2", 1, "v0", running=False,
                          name="shop-worker-web2-1-old"))

    result = plan(containers, "v3", "web2")

    assert result.rename == (
        Step("rename", "worker", "shop-worker-web2-1", new_name="shop-worker-web2-1-old"),
        Step("rename", "worker", "shop-worker-web2-2", new_name="shop-worker-web2-2-old"))
    assert names(result.stop) == ["shop-worker-web2-1-old", "shop-worker-web2-2-old"]
    # A stopped one of an earlier cut run in the same generation is removed first (its name
    # is free again); the kept ones of the other generation stay for a rollback.
    assert names(result.remove) == ["shop-worker-web2-1-old"]


def test_a_renamed_one_never_takes_the_name_of_a_kept_one() -> None:
    containers = [box("worker", "web2", 1, "v2"),
                  box("worker", "web1", 1, "v1", running=False, name="shop-worker-web2-1-old")]

    result = plan(containers, "v3", "web2", worker(count=1))

    assert [step.new_name for step in result.rename] == ["shop-worker-web2-1-old2"]
    assert result.remove == ()


def test_a_changed_env_file_replaces_the_running_containers_of_the_same_version() -> None:
    containers = [box("worker", "web2", n, "v2") for n in (1, 2)]

    result = plan(containers, "v2", "web2", worker(reuse=False))

    assert [step.new_name for step in result.rename] == ["shop-worker-web2-1-old",
                                                          "shop-worker-web2-2-old"]
    assert [step.action for step in result.start] == ["run", "run"]
    assert names(result.stop) == ["shop-worker-web2-1-old", "shop-worker-web2-2-old"]


def test_a_smaller_count_stops_the_extra_old_ones_and_a_larger_one_adds_some() -> None:
    three = [box("worker", "web1", n, "v1") for n in (1, 2, 3)]
    smaller = plan(three, "v2", "web2", worker(count=1))
    assert names(smaller.start) == ["shop-worker-web2-1"]
    assert len(smaller.stop) == 3

    one = [box("worker", "web2", 1, "v2")]
    larger = plan(one, "v2", "web2", worker(count=3))
    assert names(larger.start) == ["shop-worker-web2-2", "shop-worker-web2-3"]
    assert larger.stop == ()


def test_extra_containers_of_the_version_above_the_count_are_stopped() -> None:
    containers = [box("worker", "web2", n, "v2") for n in (1, 2, 3)]

    result = plan(containers, "v2", "web2", worker(count=2))

    assert result.start == ()
    assert names(result.stop) == ["shop-worker-web2-3"]


def test_a_role_gone_from_the_server_is_stopped_last_with_its_own_timeout() -> None:
    containers = [box("worker", "web1", 1, "v1"), box("cron", "web1", 1, "v1")]

    result = plan(containers, "v2", "web2", worker(count=1))

    assert result.stop == (Step("stop", "worker", "shop-worker-web1-1", stop_timeout=120),
                           Step("stop", "cron", "shop-cron-web1-1", stop_timeout=None))
    assert result.steps[-1].container == "shop-cron-web1-1"


def test_other_apps_and_the_kit_s_other_containers_are_left_alone() -> None:
    slot = ContainerInfo(name="shop-web1", running=True, status="running", image="acme/shop:v1",
                         image_id="", labels={"slotswap.app": APP, "slotswap.role": "app",
                                              "slotswap.version": "v1"},
                         addresses={}, exit_code=0, started_at=T0)
    other = box("worker", "web1", 1, "v1", app="blog")
    stopped_other = box("worker", "web2", 1, "v0", app="blog", running=False)

    result = plan([slot, other, stopped_other], "v2", "web2")

    touched = {step.container for step in result.steps}
    assert touched == {"shop-worker-web2-1", "shop-worker-web2-2"}


def test_an_unknown_generation_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown generation 'web3'"):
        plan([], "v1", "web3")


def test_undo_stops_the_new_version_with_the_role_s_timeout() -> None:
    """web2-1 (v2) a cut run left running stops too: the worker's old ones run on; the
    cron, which had none, keeps nothing of v2 but what this run started."""
    live = [box("worker", "web1", n, "v1") for n in (1, 2)]
    containers = [*live, box("worker", "web2", 1, "v2")]

    result = plan(containers, "v2", "web2", worker(), CRON)

    assert result.undo() == (Step("stop", "worker", "shop-worker-web2-1", stop_timeout=120),
                             Step("stop", "worker", "shop-worker-web2-2", stop_timeout=120),
                             Step("stop", "cron", "shop-cron-web2-1", stop_timeout=10))


def test_undo_keeps_new_ones_a_cut_run_left_where_no_old_one_runs() -> None:
    containers = [box("worker", "web2", 1, "v2")]
    result = plan(containers, "v2", "web2", worker())
    assert [step.container for step in result.undo()] == ["shop-worker-web2-2"]


# -- every intermediate state -------------------------------------------------------------


@dataclass
class Box:
    role: str
    running: bool


def apply(containers: list[ContainerInfo], step: Step, server: dict[str, Box]) -> None:
    """One step on a model of the server, refusing what Docker would refuse or what would
    lose a job (removing a running container)."""
    if step.action == "remove":
        assert not server[step.container].running, f"removes running {step.container}"
        del server[step.container]
    elif step.action == "rename":
        assert step.new_name is not None and step.new_name not in server
        server[step.new_name] = server.pop(step.container)
    elif step.action == "run":
        assert step.container not in server, f"{step.container} taken"
        server[step.container] = Box(step.role, True)
    elif step.action == "start":
        assert not server[step.container].running
        server[step.container].running = True
    elif step.action == "stop":
        server[step.container].running = False
    else:
        assert step.container in server and server[step.container].running


def running_roles(server: dict[str, Box]) -> set[str]:
    return {box.role for box in server.values() if box.running}


STATES = {
    "first deploy": ([], "v1", "web1"),
    "next deploy": ([box("worker", "web1", n, "v1") for n in (1, 2)]
                    + [box("worker", "web2", n, "v0", running=False) for n in (1, 2)],
                    "v2", "web2"),
    "again after a cut start": ([box("worker", "web1", n, "v1") for n in (1, 2)]
                                + [box("worker", "web2", 1, "v2")], "v2", "web2"),
    "rollback to kept": ([box("worker", "web2", n, "v2") for n in (1, 2)]
                         + [box("worker", "web1", n, "v1", running=False) for n in (1, 2)],
                         "v1", "web1"),
    "old ones in the new generation": ([box("worker", "web2", n, "v2") for n in (1, 2)]
                                       + [box("cron", "web2", 1, "v2")], "v3", "web2"),
    "both generations running": ([box("worker", "web1", 1, "v1"), box("worker", "web2", 1, "v2"),
                                  box("cron", "web1", 1, "v1")], "v3", "web1"),
    "a stopped one of the live version": ([box("worker", "web1", 1, "v1"),
                                           box("worker", "web1", 2, "v1", running=False)],
                                          "v2", "web2"),
}


@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("count", [1, 2, 3])
def test_no_role_that_had_a_worker_is_ever_left_without_one(state: str, count: int) -> None:
    containers, version, generation = STATES[state]
    targets = (worker(count=count), CRON)
    result = plan_roles(containers, app=APP, version=version, generation=generation,
                        targets=targets)
    server = {info.name: Box(info.labels["slotswap.role"], info.running)
              for info in containers}
    had = running_roles(server)

    for step in result.steps:
        apply(containers, step, server)
        assert running_roles(server) >= had, f"after {step}"
        if step.action == "stop":  # only once every new container was checked
            assert all(check in result.steps[:result.steps.index(step)]
                       for check in result.check)
    # The end: each role's count of this version's containers, running, and nothing else.
    running = sorted(name for name, box in server.items() if box.running)
    assert running == sorted(
        [f"shop-worker-{generation}-{n}" for n in range(1, count + 1)]
        + [f"shop-cron-{generation}-1"])
    # A plan made on the state it left has nothing to do.
    after = [box(server[name].role, generation, 0, version, name=name,
                 digest="d1" if server[name].role == "worker" else "c1",
                 running=server[name].running) for name in running]
    assert plan_roles(after, app=APP, version=version, generation=generation,
                      targets=targets).unchanged


@pytest.mark.parametrize("state", list(STATES))
def test_undoing_a_failed_check_leaves_the_old_ones_running(state: str) -> None:
    containers, version, generation = STATES[state]
    result = plan(containers, version, generation, worker(), CRON)
    server = {info.name: Box(info.labels["slotswap.role"], info.running)
              for info in containers}
    before = {name for name, box in server.items() if box.running}

    roles_before = {server[name].role for name in before}
    version_of = {info.name: info.version for info in containers}
    for step in (*result.remove, *result.rename, *result.start, *result.undo()):
        apply(containers, step, server)

    renamed = {step.container: step.new_name for step in result.rename}
    running = {name for name, box in server.items() if box.running}
    for name in before:
        now = renamed.get(name, name)
        role = server[now].role
        other_version_ran = any(server[renamed.get(b, b)].role == role
                                and version_of[b] != version for b in before)
        # What ran before runs on, unless it is of the failed version where another
        # version of its role runs (a cut run's leftover): that one stops.
        assert (now in running) == (version_of[name] != version or not other_version_ran), (
            name, running)
    started = {step.container for step in result.start}
    assert not started & running  # what this run started stopped again
    assert {server[name].role for name in running} == roles_before  # never zero


# -- generation of a worker-only host, checks, watch --------------------------------------


def test_a_worker_only_host_alternates_generations_and_finds_kept_ones() -> None:
    assert worker_only_generation([], app=APP, version="v1") == "web1"
    live = [box("worker", "web1", 1, "v1")]
    assert worker_only_generation(live, app=APP, version="v2") == "web2"
    kept = [box("worker", "web2", 1, "v2", running=False)]
    assert worker_only_generation(live + kept, app=APP, version="v2") == "web2"
    # A rollback finds the kept ones where they are.
    assert worker_only_generation(live + kept, app=APP, version="v1") == "web1"
    newer = [box("worker", "web1", 1, "v1", started_at="2026-12-03T16:00:00Z"),
             box("worker", "web2", 1, "v2", started_at="2026-12-03T16:05:00.5Z")]
    assert worker_only_generation(newer, app=APP, version="v3") == "web1"
    assert worker_only_generation([box("worker", "web1", 1, "v1", app="blog")], app=APP,
                                  version="v2") == "web1"


def test_the_running_check_waits_then_passes_and_fails_on_a_restart() -> None:
    started = box("worker", "web1", 1, "v1")
    assert judge_running(started, seconds=5, now_ns=T0_NS + 4 * SECOND) == "waiting"
    assert judge_running(started, seconds=5, now_ns=T0_NS + 5 * SECOND) == "passed"
    assert judge_running(box("worker", "web1", 1, "v1", restarts=1), seconds=5,
                         now_ns=T0_NS + 9 * SECOND) == "failed"
    assert judge_running(box("worker", "web1", 1, "v1", running=False), seconds=5,
                         now_ns=T0_NS) == "failed"
    assert judge_running(None, seconds=5, now_ns=T0_NS) == "failed"


def test_a_worker_that_exits_or_restarts_in_the_watch_window_fails_it() -> None:
    started = box("worker", "web1", 1, "v1")
    assert role_trouble(started, T0_NS) is None
    assert role_trouble(None, T0_NS) == "its container no longer exists"
    assert role_trouble(box("worker", "web1", 1, "v1", running=False), T0_NS) == (
        "its container stopped (exited, exit code 143)")
    restarted = box("worker", "web1", 1, "v1", started_at="2026-12-03T16:00:07Z", restarts=1)
    assert role_trouble(restarted, T0_NS) == "its container crashed: Docker restarted it"
