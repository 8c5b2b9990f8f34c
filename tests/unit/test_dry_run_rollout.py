"""A deploy's dry run says what the deploy does fleet-wide (issue 21, path 9): the servers it
leaves alone (`unchanged`, as the deploy finds them), the release command, the batch and the
watch; checked on simulated servers against the deploy itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.config.app_env import resolve_app_env
from slotswap.fleet import dry_run, rollout
from slotswap.fleet.outcomes import Outcome
from tests.unit.simulated_fleet import Fleet


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(rollout, "say", lambda *args, **kwargs: None)


def test_a_server_that_serves_the_tag_is_unchanged_in_the_dry_run_as_in_the_deploy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = Fleet(tmp_path, 2, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    app_env = resolve_app_env(fleet.inventory, {})
    plans = [dry_run.deploy_plan(server, fleet.inventory, "v1", pull=True, task="deploy",
                                 app_env=app_env) for server in fleet.servers]
    assert all(plan.summary.startswith("unchanged: already serves v1") for plan in plans)
    forced = dry_run.deploy_plan(fleet.servers[0], fleet.inventory, "v1", pull=True,
                                 task="deploy")  # --force: no app_env, a swap
    assert forced.summary.startswith("live slot")
    other = dry_run.deploy_plan(fleet.servers[0], fleet.inventory, "v2", pull=True,
                                task="deploy", app_env=app_env)
    assert other.summary.endswith("v2 goes into web2")
    result = fleet.run("deploy v1")
    assert result.exit_code == 0
    assert {outcome.outcome for outcome in result.outcomes} == {Outcome.UNCHANGED}


@pytest.mark.parametrize(("batch", "watch_each", "expected"), [
    (1, False, "one server at a time, in this order, in one watch window"),
    (2, False, "2 servers at a time, in this order, in one watch window"),
    (1, True, "one server at a time, in this order, each server watched before the next"),
])
def test_the_dry_run_says_the_release_command_the_batch_and_the_watch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int, watch_each: bool,
        expected: str) -> None:
    inventory = Fleet(tmp_path, 3, monkeypatch, release=True).inventory
    steps = dry_run.rollout_steps(inventory, "v2", batch=batch, watch_each=watch_each,
                                  release=True, force=False)
    assert "left alone: unchanged" in steps[0]
    assert steps[1].startswith(f"then the release command, once, on {inventory.hosts[0].name}")
    assert "--name webapp-release-ID" in steps[1] and steps[1].endswith("bin/migrate")
    assert expected in steps[2]
    skipped = dry_run.rollout_steps(inventory, "v2", batch=batch, watch_each=watch_each,
                                    release=False, force=True)
    assert len(skipped) == 2 and "unchanged" not in skipped[0]
