"""slotswap.commands.role_containers: the whole argv of a role's container run, its stop,
its check and the inspection of a server's role containers; the settings digest that tells
whether a kept container may be started again; Docker's restart count read back. And
slotswap.server.role_steps: each role a host runs as a plan's target, each step of a plan
as its docker command."""

from __future__ import annotations

import json
from pathlib import Path

from slotswap.commands import docker
from slotswap.commands.role_containers import (
    INSPECT_ROLES_SCRIPT,
    exec_check,
    inspect_roles,
    role_container_name,
    role_digest,
    run_role,
    stop_role,
)
from slotswap.config.container import ContainerSettings, LogSettings
from slotswap.config.inventory import Inventory
from slotswap.config.layout import role_env_file_path
from slotswap.config.loader import parse_inventory
from slotswap.config.roles import role_container
from slotswap.server.role_plan import Step
from slotswap.server.role_steps import role_targets, step_command

OPTIONS = ContainerSettings(command=("bin/jobs", "--queue=mail"), volumes=("spool:/spool",),
                            stop_signal="SIGQUIT", memory="1g",
                            log=LogSettings("json-file", (("max-size", "10m"),)),
                            labels=(("team", "jobs"),))


def test_a_role_container_runs_beside_the_slots_with_its_labels_and_no_port() -> None:
    name = role_container_name("shop", "mailer", "web2", 3)
    argv = run_role(container=name, image_ref="acme/shop:v2", network="shop", app="shop",
                    role="mailer", generation="web2", version="v2", app_port=3000,
                    stop_timeout=120, options=OPTIONS, env_file="/etc/slotswap/shop/m.env")
    digest = role_digest(network="shop", app_port=3000, stop_timeout=120, options=OPTIONS)

    assert name == "shop-mailer-web2-3"
    assert argv == [
        "docker", "run", "--detach", "--name", "shop-mailer-web2-3", "--network", "shop",
        "--restart", "unless-stopped", "--stop-timeout", "120",
        "--volume", "spool:/spool", "--stop-signal", "SIGQUIT", "--memory", "1g",
        "--log-driver", "json-file", "--log-opt", "max-size=10m", "--label", "team=jobs",
        "--label", "slotswap.app=shop", "--label", "slotswap.role=mailer",
        "--label", "slotswap.version=v2", "--label", "slotswap.generation=web2",
        "--label", f"slotswap.settings={digest}",
        "--env-file", "/etc/slotswap/shop/m.env", "--env", "PORT=3000",
        "acme/shop:v2", "bin/jobs", "--queue=mail"]
    assert "--publish" not in argv
    no_env = run_role(container=name, image_ref="acme/shop:v2", network="shop", app="shop",
                      role="mailer", generation="web2", version="v2", app_port=3000,
                      stop_timeout=120, options=OPTIONS, env_file=None)
    assert "--env-file" not in no_env


def test_the_digest_changes_with_what_a_container_is_made_with() -> None:
    def digest(stop_timeout: int = 30, **changes: object) -> str:
        options = ContainerSettings(**{"command": ("bin/jobs",), **changes})  # type: ignore[arg-type]
        return role_digest(network="shop", app_port=3000, stop_timeout=stop_timeout,
                           options=options)

    assert digest() == digest()
    assert len({digest(), digest(stop_timeout=60), digest(command=("bin/other",)),
                digest(stop_signal="SIGQUIT"), digest(volumes=("a:/a",))}) == 5


def test_a_role_s_digest_follows_the_app_s_container_options(tmp_path: Path) -> None:
    def inventory(memory: str) -> Inventory:
        return parse_inventory({"app": "shop", "image": "acme/shop", "hosts": ["203.0.113.1"],
                                "container": {"memory": memory},
                                "roles": {"worker": {"cmd": ["bin/jobs"]}}},
                               tmp_path / "hosts.yaml")

    digests = set()
    for memory in ("512m", "1g"):
        loaded = inventory(memory)
        options = role_container(loaded.container, loaded.roles[0])
        digests.add(role_digest(network="shop", app_port=3000, stop_timeout=30,
                                options=options))
    assert len(digests) == 2
    assert role_env_file_path(loaded, "worker", "web1") == "/etc/slotswap/shop/worker-web1.env"


def test_stop_gives_the_role_s_timeout_or_the_container_s_own() -> None:
    assert stop_role("shop-worker-web1-1", 120) == [
        "docker", "stop", "--time", "120", "shop-worker-web1-1"]
    assert stop_role("shop-cron-web1-1", None) == ["docker", "stop", "shop-cron-web1-1"]


def test_the_check_command_runs_in_the_container_with_a_deadline_on_the_server() -> None:
    assert exec_check("shop-worker-web2-1", ("bin/jobs", "--ping"), 7.2) == [
        "timeout", "--kill-after=2", "8", "docker", "exec", "shop-worker-web2-1",
        "bin/jobs", "--ping"]
    assert exec_check("c", ("true",), 0.1)[2] == "1"


def test_the_inspection_of_role_containers_takes_the_app_as_an_argument() -> None:
    argv = inspect_roles("shop; rm -rf /")
    assert argv == ["sh", "-c", INSPECT_ROLES_SCRIPT, "sh", "shop; rm -rf /"]
    assert "shop" not in INSPECT_ROLES_SCRIPT
    assert "label=slotswap.generation" in INSPECT_ROLES_SCRIPT


def test_the_restart_count_is_read_from_docker_inspect() -> None:
    answer = json.dumps([{
        "Name": "/shop-worker-web1-1", "RestartCount": 4, "Image": "sha256:1",
        "State": {"Running": True, "Status": "running", "StartedAt": "2026-12-03T16:00:00Z"},
        "Config": {"Image": "acme/shop:v1", "Labels": {"slotswap.generation": "web1"}},
        "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}}}])

    info = docker.parse_inspect(answer)["shop-worker-web1-1"]

    assert info.restart_count == 4
    assert info.labels[docker.LABEL_GENERATION] == "web1"


# -- from the inventory to a plan's commands (slotswap.server.role_steps) -------------------


def shop(tmp_path: Path, **changes: object) -> Inventory:
    data = {"app": "shop", "image": "acme/shop", "hosts": [
        "203.0.113.1", {"address": "203.0.113.2", "name": "jobs", "web": False}],
        "roles": {"worker": {"cmd": ["bin/jobs"], "count": 2, "stop_timeout": 90,
                             "check": {"cmd": ["bin/jobs", "--ping"], "timeout": 9}},
                  "cron": {"cmd": ["bin/cron"], "hosts": ["203.0.113.1"]}}}
    return parse_inventory({**data, **changes}, tmp_path / "hosts.yaml")


def test_the_targets_of_a_host_are_the_roles_it_runs(tmp_path: Path) -> None:
    inventory = shop(tmp_path)
    web, jobs = inventory.hosts

    assert [(t.role, t.count, t.stop_timeout, t.reuse) for t in role_targets(inventory, web)] \
        == [("worker", 2, 90, True), ("cron", 1, 30, True)]
    assert [t.role for t in role_targets(inventory, jobs, env_changed={"worker"})] == ["worker"]
    assert not role_targets(inventory, jobs, env_changed={"worker"})[0].reuse
    assert role_targets(inventory, web)[0].digest == role_digest(
        network="shop", app_port=3000, stop_timeout=90,
        options=role_container(inventory.container, inventory.roles[0]))


def test_each_step_of_a_plan_has_its_docker_command(tmp_path: Path) -> None:
    inventory = shop(tmp_path, env={"plain": {"A": "1"}})

    def command(step: Step) -> list[str]:
        return step_command(inventory, step, tag="v2", version="v2", generation="web2")

    assert command(Step("remove", "worker", "shop-worker-web2-1")) == [
        "docker", "rm", "--force", "shop-worker-web2-1"]
    assert command(Step("rename", "worker", "a", new_name="a-old")) == [
        "docker", "rename", "a", "a-old"]
    assert command(Step("start", "worker", "a", stop_timeout=90)) == ["docker", "start", "a"]
    assert command(Step("stop", "worker", "a", stop_timeout=90)) == [
        "docker", "stop", "--time", "90", "a"]
    run = command(Step("run", "worker", "shop-worker-web2-2", index=2, stop_timeout=90))
    assert run[:4] == ["docker", "run", "--detach", "--name"]
    assert run[-3:] == ["PORT=3000", "acme/shop:v2", "bin/jobs"]
    assert run[run.index("--env-file") + 1] == "/etc/slotswap/shop/worker-web2.env"
    assert "slotswap.generation=web2" in run and "--stop-timeout" in run
    assert command(Step("check", "worker", "shop-worker-web2-2")) == [
        "timeout", "--kill-after=2", "9", "docker", "exec", "shop-worker-web2-2", "bin/jobs",
        "--ping"]
    assert command(Step("check", "cron", "shop-cron-web2-1")) == [
        "docker", "container", "inspect", "shop-cron-web2-1"]


def test_a_role_without_any_variable_gets_no_env_file(tmp_path: Path) -> None:
    inventory = shop(tmp_path)
    run = step_command(inventory, Step("run", "cron", "shop-cron-web1-1", index=1),
                       tag="v1", version="v1", generation="web1")
    assert "--env-file" not in run
