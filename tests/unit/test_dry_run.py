"""--dry-run plans, built from facts recorded on the sandbox (HAProxy 2.6, Docker 20.10):
the right slots and commands, only read-only queries sent, and no secret value anywhere."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slotswap.commands.role_containers import INSPECT_ROLES_SCRIPT
from slotswap.config.inventory import Inventory
from slotswap.fleet import dry_run
from slotswap.remote.server import CommandResult
from slotswap.server import maintenance
from slotswap.server.haproxy_config import config_hash
from slotswap.server.locking import READ_SCRIPT
from tests.unit.fake_server import FakeServer, make_inventory

SECRET = "s3cr3t-value-never-shown"
READ_ONLY = (["docker", "container", "inspect"], ["docker", "image", "inspect"],
             ["docker", "network", "inspect"], ["cat"], ["docker", "ps"], ["test", "-d"],
             ["docker", "image", "ls"], ["sh", "-c", READ_SCRIPT],
             ["sh", "-c", INSPECT_ROLES_SCRIPT])


class FactServer(FakeServer):
    """Answers read-only queries from recorded outputs; anything else fails the test."""

    def __init__(self, state: str, *, image_present: bool = True, config: str | None = None,
                 lock_owner: str | None = None, lock_age: int = 5):
        image = (CommandResult("sha256:abc\n", "", 0) if image_present
                 else CommandResult("", "", 1))
        lock = CommandResult(f"lock {lock_age} 60\n{lock_owner}\n" if lock_owner else "free\n",
                             "", 0)
        super().__init__(state=state, answers={("docker", "image", "inspect"): image,
                                               ("sh", "-c", READ_SCRIPT): lock})
        self.config, self.lock_owner = config, lock_owner

    def runtime_api(self, command: str) -> str:
        assert command.startswith("show "), command
        return super().runtime_api(command)

    def run(self, argv: Sequence[str], **options: Any) -> CommandResult:
        assert any(list(argv[:len(prefix)]) == prefix for prefix in READ_ONLY), argv
        return super().run(argv, **options)

    def read_file(self, path: str) -> str | None:
        self.run(["cat", path])
        if path.endswith("/lock/owner.json"):
            return self.lock_owner
        if path.endswith(".running-sha256"):  # `up` records what HAProxy was seen running
            return config_hash(self.config) + "\n" if self.config is not None else None
        if path.endswith("/maintenance.lua"):  # `up` writes it beside the config
            return maintenance.service_script() if self.config is not None else None
        return self.config


def inventory(tmp_path: Path) -> Inventory:
    return make_inventory(tmp_path, image="registry.example/acme/webapp",
                          env={"plain": {"LOG_LEVEL": "info"}, "secret": ["API_TOKEN"]})


def test_deploy_plan_goes_into_the_idle_slot_and_drains_the_live_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    server = FactServer("live_web1")
    plan = dry_run.deploy_plan(server, inventory(tmp_path), "v3", pull=True,
                               task="deploy")
    text = dry_run.render([plan], [])

    assert plan.summary.startswith("live slot web1 (")
    assert plan.summary.endswith("v3 goes into web2")
    steps = "\n".join(plan.steps)
    assert "$ docker pull --quiet registry.example/acme/webapp:v3" in steps
    assert "write /etc/slotswap/webapp/web2.env (mode 0600): LOG_LEVEL=info, API_TOKEN=<secret>" \
        in steps
    assert "--env-file /etc/slotswap/webapp/web2.env" in steps
    order = [steps.index(s) for s in (
        "set server webapp/web2 state maint", "docker run", "state drain; set server "
        "webapp/web2 health down",
        # The switch is one line; the watch may switch back, in one line too.
        "runtime API> set server webapp/web2 state ready; set server webapp/web1 state drain",
        "set server webapp/web1 state ready; set server webapp/web2 state maint",
        "  if it fails: $ docker stop --time 10 webapp-web2",
        "runtime API> set server webapp/web1 state maint",
        "$ docker stop --time 10 webapp-web1", "rm -rf /var/lib/slotswap/webapp/lock")]
    assert order == sorted(order)
    assert SECRET not in text


def test_rollback_plan_does_not_pull_an_image_that_is_there(tmp_path: Path) -> None:
    plan = dry_run.deploy_plan(FactServer("live_web2"), inventory(tmp_path), "v1",
                               pull=False, task="rollback")
    assert "goes into web1" in plan.summary
    assert not any("docker pull" in step for step in plan.steps)


def test_up_plan_of_an_unchanged_config_writes_no_config(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    from slotswap.server.haproxy_config import Login, render_config
    config = render_config(inv, Login(0, 0))
    plan = dry_run.up_plan(FactServer("live_web1", config=config), inv)
    assert plan.summary == "config unchanged"
    # No config written or checked (HAProxy's state is: where a restarted one starts from).
    assert not any("haproxy.cfg.new" in step for step in plan.steps)


def test_up_plan_logs_in_to_the_registry_and_names_the_password_s_variable_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PASSWORD", SECRET)
    inv = make_inventory(tmp_path, image="registry.example/acme/webapp",
                         registry={"user": "ci", "password_secret": "REGISTRY_PASSWORD"})
    plan = dry_run.up_plan(FactServer("live_web1"), inv)
    text = dry_run.render([plan], [])
    assert ("$ docker login --username ci --password-stdin registry.example  (the password of "
            "$REGISTRY_PASSWORD on stdin)") in plan.steps
    assert SECRET not in text


def test_up_plan_of_a_config_haproxy_does_not_run_writes_it(tmp_path: Path) -> None:
    """The file is the wanted one, but HAProxy was never seen running it (a reload that
    failed): as `up` does, the plan installs it again."""
    inv = inventory(tmp_path)
    from slotswap.server.haproxy_config import Login, render_config
    server = FactServer("live_web1", config=render_config(inv, Login(0, 0)))
    server.read_file = lambda path: (None if path.endswith(".running-sha256")  # type: ignore[method-assign]
                                     else server.config)
    plan = dry_run.up_plan(server, inv)
    assert plan.summary != "config unchanged"
    assert any(step.startswith("write ") and "haproxy.cfg.new" in step for step in plan.steps)


def test_up_plan_of_a_changed_config_checks_then_reloads(tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    plan = dry_run.up_plan(FactServer("live_web1", config="old config\n"), inv)
    steps = "\n".join(plan.steps)
    assert plan.summary == "changes: config"
    assert steps.index(" -c -f ") < steps.index("mv -f ")


def test_render_names_servers_that_cannot_be_planned() -> None:
    text = dry_run.render([dry_run.ServerPlan("s2", "203.0.113.11", error="cannot connect")],
                          ["pre"])
    assert text.splitlines() == ["DRY RUN: nothing is changed; the commands below are what "
                                 "would run.", "pre", "s2 (203.0.113.11): cannot plan: "
                                 "cannot connect"]


def test_a_held_lock_is_named_in_the_plan(tmp_path: Path) -> None:
    owner = ('{"who": "alice@laptop", "since": "2026-11-26T08:00:00+00:00", "task": "deploy", '
             '"tag": "v9", "token": "t"}')
    plan = dry_run.deploy_plan(FactServer("live_web1", lock_owner=owner), inventory(tmp_path),
                               "v3", pull=True, task="deploy")
    assert plan.locked_by.startswith("alice@laptop")
    assert plan.steps[0] == ("STOP: locked by alice@laptop since 2026-11-26T08:00:00+00:00 "
                             "(deploy v9), renewed 5s ago (lease 60s): the run would change "
                             "nothing and exit 4 (`fab lock`, `fab unlock`)")


def test_a_stale_lock_is_taken_over_in_the_plan(tmp_path: Path) -> None:
    owner = ('{"who": "alice@laptop", "since": "2026-11-26T08:00:00+00:00", "task": "deploy", '
             '"tag": "v9", "token": "t"}')
    server = FactServer("live_web1", lock_owner=owner, lock_age=61)
    plan = dry_run.deploy_plan(server, inventory(tmp_path), "v3", pull=True,
                               task="deploy")
    assert not plan.locked_by
    assert plan.steps[0].startswith("take over the stale lock of alice@laptop since ")
    assert "not renewed for 61s (lease 60s)" in plan.steps[0]


def test_with_delivery_over_ssh_the_plan_sends_the_image_instead_of_pulling(
        tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, image="registry.example/acme/webapp", delivery="ssh")
    plan = dry_run.deploy_plan(FactServer("live_web1"), inv, "v3", pull=True,
                               task="deploy")
    assert not any("docker pull" in step for step in plan.steps)
    assert any(step.startswith("send registry.example/acme/webapp:v3 from this machine's "
                               "Docker") for step in plan.steps)
