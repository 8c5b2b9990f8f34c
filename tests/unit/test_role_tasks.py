"""Worker roles in the tasks around a deploy (issue 22): `status` and its --json list each
role container per server, `logs --role` and `exec --role` reach a role's containers,
`down` stops and removes them with their env files, and `up` on a worker-only host
(`hosts[].web: false`) makes the app's network only: no HAProxy, no config, no certificate.
On the FakeServer; a role container's `docker inspect` answer has the fields Docker gives
(see test_role_commands)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from slotswap.cli import report
from slotswap.commands.role_containers import INSPECT_ROLES_SCRIPT
from slotswap.config.inventory import Inventory
from slotswap.core.validation import InputError
from slotswap.fleet.status import read_status
from slotswap.remote.server import CommandResult
from slotswap.server import logs, one_off
from slotswap.server.role_status import hosts_of_role, role_by_name, with_web_slots
from slotswap.server.swap_errors import SwapError
from tests.unit.fake_server import FakeServer, make_inventory

INSPECT_ROLES = ("sh", "-c", INSPECT_ROLES_SCRIPT)


def shop(tmp_path: Path = Path("/srv"), **settings: object) -> Inventory:
    """web-a runs the slots and the worker; jobs-a (web: false) the worker and the mailer."""
    return make_inventory(tmp_path, **{
        "hosts": [{"name": "web-a", "address": "203.0.113.10"},
                  {"name": "jobs-a", "address": "203.0.113.11", "web": False}],
        "roles": {"worker": {"cmd": ["bin/jobs"], "count": 2, "stop_timeout": 90},
                  "mailer": {"cmd": ["bin/mail"], "hosts": ["jobs-a"],
                             "env": {"plain": {"QUEUE": "mail"}}}},
        **settings})


def role_box(role: str, generation: str, index: int, version: str, *, running: bool = True,
             restarts: int = 0, app: str = "webapp") -> dict[str, object]:
    """One container as `docker container inspect` describes it."""
    return {
        "Name": f"/{app}-{role}-{generation}-{index}", "RestartCount": restarts,
        "Image": f"sha256:{version}",
        "State": {"Running": running, "Status": "running" if running else "exited",
                  "ExitCode": 0 if running else 143, "StartedAt": "2026-12-03T16:00:00Z"},
        "Config": {"Image": f"acme/webapp:{version}", "Labels": {
            "slotswap.app": app, "slotswap.role": role, "slotswap.version": version,
            "slotswap.generation": generation, "slotswap.settings": "d1"}},
        "HostConfig": {"RestartPolicy": {"Name": "unless-stopped"}}}


def inspected(*boxes: dict[str, object]) -> CommandResult:
    return CommandResult(json.dumps(list(boxes)) if boxes else "", "", 0)


def worker_host(inventory: Inventory, *boxes: dict[str, object], **kwargs: object
                ) -> FakeServer:
    server = FakeServer("jobs-a", inventory=inventory,
                        answers={INSPECT_ROLES: inspected(*boxes)}, **kwargs)  # type: ignore[arg-type]
    server.host = inventory.hosts[1]
    return server


# -- status ---------------------------------------------------------------------------------


def test_status_lists_each_role_container_of_a_web_server_in_one_round_trip() -> None:
    inventory = shop()
    server = FakeServer("web-a", inventory=inventory, state="live_web2", answers={
        INSPECT_ROLES: inspected(role_box("worker", "web2", 1, "v2"),
                                 role_box("worker", "web1", 1, "v1", running=False),
                                 role_box("worker", "web2", 2, "v2", restarts=3))})

    status = read_status(server, inventory)

    assert [c.describe() for c in status.roles] == [
        "worker     webapp-worker-web1-1  v1 (web1)  stopped, 0 restarts",
        "worker     webapp-worker-web2-1  v2 (web2)  running, 0 restarts",
        "worker     webapp-worker-web2-2  v2 (web2)  running, 3 restarts"]
    assert status.live == "web2" and status.web
    assert sum(argv[:3] == list(INSPECT_ROLES) for argv in server.commands) == 1


def test_status_sends_no_extra_command_when_the_inventory_has_no_roles() -> None:
    inventory = make_inventory()
    server = FakeServer(inventory=inventory, state="live_web2")

    status = read_status(server, inventory)

    assert status.roles == []
    assert not any(argv[:1] == ["sh"] for argv in server.commands)


def test_status_of_a_worker_only_host_shows_its_roles_and_is_not_broken() -> None:
    inventory = shop()
    server = worker_host(inventory, role_box("mailer", "web1", 1, "v2"),
                         role_box("worker", "web1", 1, "v2"),
                         role_box("worker", "web2", 1, "v1", running=False), strict=True)
    server.api = {"show": AssertionError("no HAProxy on a worker-only host")}

    status = read_status(server, inventory)

    assert (status.web, status.error, status.slots, status.haproxy) == (False, "", [], "")
    assert status.version == "v2"
    assert [(c.role, c.generation, c.state) for c in status.roles] == [
        ("mailer", "web1", "running"), ("worker", "web1", "running"),
        ("worker", "web2", "stopped")]
    document = report.status_document([status], 0)["servers"][0]
    assert document["web"] is False and document["live"] is None
    assert document["roles"][2] == {"name": "webapp-worker-web2-1", "role": "worker",
                                    "version": "v1", "generation": "web2",
                                    "state": "stopped", "restarts": 0}


# -- --role -----------------------------------------------------------------------------------


def test_an_unknown_role_is_refused_naming_the_roles() -> None:
    with pytest.raises(InputError, match=r"'cron' is not a role of hosts.yaml \(its roles: "
                                         r"worker, mailer\)"):
        role_by_name(shop(), "cron")
    with pytest.raises(InputError, match="it has no roles"):
        role_by_name(make_inventory(), "worker")


def test_a_role_reaches_only_the_selected_hosts_that_run_it() -> None:
    inventory = shop()
    mailer = role_by_name(inventory, "mailer")
    assert [h.name for h in hosts_of_role(inventory, mailer).hosts] == ["jobs-a"]
    web_a = dataclasses.replace(inventory, hosts=inventory.hosts[:1])  # --hosts=web-a
    with pytest.raises(InputError, match="--role=mailer: it runs on jobs-a, none of the "
                                         "servers selected"):
        hosts_of_role(web_a, mailer)


def test_logs_of_a_role_are_each_running_container_s_prefixed_by_server_and_container(
        ) -> None:
    inventory = shop()
    server = worker_host(inventory, role_box("worker", "web1", 1, "v2"),
                         role_box("worker", "web1", 2, "v2"),
                         role_box("worker", "web2", 1, "v1", running=False),
                         role_box("mailer", "web1", 1, "v2"))
    server.answers[("docker", "logs")] = lambda argv: CommandResult("job done\n", "", 0)
    lines: list[str] = []

    sources = logs.pick_role(server, inventory, "worker")
    assert logs.show(sources, 5, lines.append) == []

    assert [argv for argv in server.commands if argv[:2] == ["docker", "logs"]] == [
        ["docker", "logs", "--tail", "5", "webapp-worker-web1-1"],
        ["docker", "logs", "--tail", "5", "webapp-worker-web1-2"]]
    assert lines == ["jobs-a webapp-worker-web1-1 | job done",
                     "jobs-a webapp-worker-web1-2 | job done"]


def test_logs_of_a_role_that_runs_nothing_on_a_server_say_so() -> None:
    inventory = shop()
    server = worker_host(inventory, role_box("worker", "web1", 1, "v1", running=False))
    lines: list[str] = []

    assert logs.show(logs.pick_role(server, inventory, "worker"), 5, lines.append) == []

    assert lines == ["jobs-a - | (no running container of role worker)"]


def test_a_slot_task_on_worker_only_hosts_alone_points_to_roles() -> None:
    inventory = shop()
    assert [h.name for h in with_web_slots(inventory, "x").hosts] == ["web-a"]
    jobs_a = dataclasses.replace(inventory, hosts=inventory.hosts[1:])  # --hosts=jobs-a
    with pytest.raises(InputError, match=r"jobs-a: no web slots there \(web: false\); "
                                         "--role=NAME"):
        with_web_slots(jobs_a, "--role=NAME shows the logs of its roles")


def test_exec_beside_a_role_uses_its_image_options_and_env_file_of_its_generation() -> None:
    inventory = shop(container={"volumes": ["/srv/data:/data"]})
    mailer = role_by_name(inventory, "mailer")
    server = worker_host(inventory, role_box("mailer", "web2", 1, "v2"),
                         role_box("mailer", "web1", 1, "v1", running=False))

    argv, where = one_off.role_command_for(server, inventory, mailer, ["bin/mail", "--dry"],
                                           live=False, tty=False, name="webapp-exec-0a1b2c3d")

    assert argv == [
        "docker", "run", "--rm", "--interactive", "--name", "webapp-exec-0a1b2c3d",
        "--network", "webapp", "--volume", "/srv/data:/data", "--stop-signal", "SIGTERM",
        "--label", "slotswap.app=webapp", "--label", "slotswap.role=one-off",
        "--env-file", "/etc/slotswap/webapp/mailer-web2.env", "--env", "PORT=3000",
        "sha256:v2", "bin/mail", "--dry"]
    assert where == ("a one-off container of v2 (the image of webapp-mailer-web2-1), "
                     "webapp-exec-0a1b2c3d")


def test_exec_live_beside_a_role_runs_in_its_first_running_container() -> None:
    inventory = shop()
    worker = role_by_name(inventory, "worker")
    server = worker_host(inventory, role_box("worker", "web1", 2, "v2"),
                         role_box("worker", "web1", 1, "v2"))

    argv, _ = one_off.role_command_for(server, inventory, worker, ["ps"], live=True,
                                       tty=True, name="unused")

    assert argv == ["docker", "exec", "--interactive", "--tty", "webapp-worker-web1-1", "ps"]


def test_exec_beside_a_role_that_runs_nothing_there_fails_in_one_line() -> None:
    inventory = shop()
    server = worker_host(inventory, role_box("worker", "web1", 1, "v1", running=False))
    with pytest.raises(SwapError, match="jobs-a: no container of role worker runs; deploy"):
        one_off.role_command_for(server, inventory, role_by_name(inventory, "worker"),
                                 ["ps"], live=True, tty=False, name="unused")
