"""Worker roles in the tasks around a deploy (issue 22): `status` and its --json list each
role container per server, `logs --role` and `exec --role` reach a role's containers,
`down` stops and removes them with their env files, and `up` on a worker-only host
(`hosts[].web: false`) makes the app's network only: no HAProxy, no config, no certificate.
On the FakeServer; a role container's `docker inspect` answer has the fields Docker gives
(see test_role_commands)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit

from slotswap.cli import report, server_tasks, tasks
from slotswap.cli.server_tasks import MAINTENANCE_WHERE
from slotswap.commands.docker import only_missing_containers
from slotswap.commands.role_containers import (
    INSPECT_ROLES_SCRIPT,
    inspect_roles,
    inspect_with_roles,
    stop_roles,
)
from slotswap.config.inventory import Inventory
from slotswap.core.validation import InputError
from slotswap.fleet import certs, dry_run
from slotswap.fleet import status as fleet_status
from slotswap.fleet.delivery import up_action
from slotswap.fleet.status import read_status
from slotswap.remote.server import CommandResult
from slotswap.server import logs, one_off, platforms
from slotswap.server.haproxy import down_server
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


def web_box(name: str, *, running: bool = True) -> dict[str, object]:
    """HAProxy's or a web slot's container as `docker container inspect` describes it."""
    box = role_box("web", "web1", 1, "v1", running=running)
    return {**box, "Name": f"/{name}", "Config": {"Image": "acme/webapp:v1", "Labels": {
        "slotswap.app": "webapp", "slotswap.version": "v1"}}}


# `docker container inspect` of names none of which exists.
NO_WEB_CONTAINER = CommandResult("[]\n", "Error: No such object: webapp-haproxy\n", 1)


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


def test_status_shows_role_containers_left_when_the_roles_section_was_removed() -> None:
    """They run on until the next deploy stops them: status names them (it read nothing of
    roles for an inventory without any, and showed the fleet as if they did not run)."""
    inventory = make_inventory()
    server = FakeServer(inventory=inventory, state="live_web2", answers={
        INSPECT_ROLES: inspected(role_box("worker", "web2", 1, "v2"))})

    status = read_status(server, inventory)

    assert [c.describe() for c in status.roles] == [
        "worker     webapp-worker-web2-1  v2 (web2)  running, 0 restarts"]


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


@pytest.mark.parametrize("live", [True, False])
def test_exec_beside_a_role_on_a_web_host_takes_the_live_slot_s_version_first(
        live: bool) -> None:
    """In a watch window (or after a cut run) both versions' workers run: exec reaches the
    one of the version the live slot serves, not the first by name; in it (--live), or in
    a one-off container of its image."""
    inventory = shop()
    worker = role_by_name(inventory, "worker")
    server = FakeServer("web-a", inventory=inventory, state="live_web2", answers={
        INSPECT_ROLES: inspected(role_box("worker", "web1", 1, "v1"),
                                 role_box("worker", "web2", 1, "v2"))})

    argv, where = one_off.role_command_for(server, inventory, worker, ["ps"], live=live,
                                           tty=False, name="webapp-exec-0a1b2c3d")

    if live:
        assert argv == ["docker", "exec", "--interactive", "webapp-worker-web2-1", "ps"]
        assert where == "the worker container webapp-worker-web2-1 (v2)"
    else:
        assert argv[:2] == ["docker", "run"] and argv[-2:] == ["sha256:v2", "ps"], argv
        assert where == ("a one-off container of v2 (the image of webapp-worker-web2-1), "
                         "webapp-exec-0a1b2c3d")


def test_exec_live_beside_a_role_when_haproxy_cannot_be_asked_is_still_live() -> None:
    """Two versions' workers and no answer from HAProxy: the first by name, still with
    --live inside it (no one-off container, which the run would not clean up as such)."""
    inventory = shop()
    worker = role_by_name(inventory, "worker")

    class NoHAProxy(FakeServer):
        def runtime_api(self, command: str) -> str:
            raise RuntimeError("no admin socket")

    server = NoHAProxy("web-a", inventory=inventory, state="live_web2", answers={
        INSPECT_ROLES: inspected(role_box("worker", "web1", 1, "v1"),
                                 role_box("worker", "web2", 1, "v2"))})

    argv, _ = one_off.role_command_for(server, inventory, worker, ["ps"], live=True,
                                       tty=False, name="unused")

    assert argv == ["docker", "exec", "--interactive", "webapp-worker-web1-1", "ps"]


def test_exec_beside_a_role_that_runs_nothing_there_fails_in_one_line() -> None:
    inventory = shop()
    server = worker_host(inventory, role_box("worker", "web1", 1, "v1", running=False))
    with pytest.raises(SwapError, match="jobs-a: no container of role worker runs; deploy"):
        one_off.role_command_for(server, inventory, role_by_name(inventory, "worker"),
                                 ["ps"], live=True, tty=False, name="unused")


# -- up, HTTPS and maintenance on a worker-only host ------------------------------------------

NO_NETWORK = CommandResult("", "Error: No such network: webapp", 1)
ENGINE = CommandResult("linux/x86_64 28.3.3\n", "", 0)


@pytest.mark.parametrize("mode", ["registry", "ssh"])
def test_up_on_a_worker_only_host_makes_the_app_s_network_and_nothing_of_haproxy(
        mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platforms, "observed", {})
    inventory = shop(delivery={"mode": mode})
    server = worker_host(inventory, strict=True)  # any other command fails the test
    server.answers = {("docker", "network", "inspect"): NO_NETWORK,
                      ("docker", "network", "create"): CommandResult("", "", 0),
                      ("docker", "info"): ENGINE,
                      ("docker", "container", "inspect"): NO_WEB_CONTAINER}
    said: list[str] = []

    with up_action(inventory, certificate=None) as up_one:
        result = up_one(server, inventory, said.append)

    assert result == "network created (worker-only: no HAProxy)"
    assert [argv[:3] for argv in server.commands] == [
        ["docker", "network", "inspect"], ["docker", "network", "create"],
        ["docker", "info", "--format"], ["docker", "container", "inspect"]]
    assert server.files == {} and server.sent == []
    assert platforms.observed["jobs-a"] == "linux/amd64"


def test_up_on_a_host_turned_worker_only_takes_haproxy_and_the_slots_off_gracefully(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, `up` left them running: the host served its old version to whoever still
    reached it while deploys moved only its workers. HAProxy soft-stops first (its open
    connections finish), the live slot gets its stop timeout, then HAProxy's folder and the
    slots' env files go, then both containers; the workers and the network stay."""
    monkeypatch.setattr(platforms, "observed", {})
    inventory = shop()
    server = worker_host(inventory)
    server.answers[("docker", "container", "inspect")] = inspected(
        web_box("webapp-haproxy"), web_box("webapp-web1", running=False),
        web_box("webapp-web2"))
    said: list[str] = []

    with up_action(inventory, certificate=None) as up_one:
        result = up_one(server, inventory, said.append)

    assert result == "HAProxy and web slots removed (worker-only: no HAProxy)"
    assert "running: webapp-haproxy, webapp-web2; stopped: webapp-web1" in said[-1]
    after = server.commands[[c[:3] for c in server.commands].index(
        ["docker", "container", "inspect"]) + 1:]
    assert after == [
        ["docker", "update", "--restart", "no", "webapp-haproxy"],
        ["docker", "kill", "--signal", "USR1", "webapp-haproxy"],
        ["timeout", "30", "docker", "wait", "webapp-haproxy"],
        ["docker", "stop", "--time", "10", "webapp-web2"],
        # The files before the containers: a cut between the two leaves containers, which
        # the next `up` finds (never the certificate's key alone).
        ["rm", "-rf", "--", "/etc/slotswap/webapp/haproxy",
         "/etc/slotswap/webapp/web1.env", "/etc/slotswap/webapp/web2.env"],
        ["docker", "rm", "--force", "webapp-haproxy", "webapp-web1", "webapp-web2"]]
    assert not any("worker" in " ".join(argv) for argv in server.commands)


def test_the_dry_run_of_up_on_a_host_turned_worker_only_shows_the_removal() -> None:
    inventory = shop()
    server = worker_host(inventory)
    server.answers[("docker", "container", "inspect")] = inspected(web_box("webapp-haproxy"))

    steps = "\n".join(dry_run.up_plan(server, inventory).steps)

    assert "the web's containers are here (running: webapp-haproxy)" in steps
    assert "$ docker kill --signal USR1 webapp-haproxy" in steps
    assert "$ docker rm --force webapp-haproxy" in steps
    assert not any(argv[:2] in (["docker", "kill"], ["docker", "rm"], ["rm", "-rf"])
                   for argv in server.commands)

def test_up_again_on_a_worker_only_host_is_unchanged() -> None:
    inventory = shop()
    server = worker_host(inventory)
    with up_action(inventory) as up_one:
        assert up_one(server, inventory, print) == "unchanged (worker-only: no HAProxy)"


def test_up_s_dry_run_on_a_worker_only_host_says_network_only() -> None:
    inventory = shop(https={"names": ["shop.example"], "acme": {"contact": "ops@example.com"}})
    server = worker_host(inventory)
    server.answers[("docker", "network", "inspect")] = NO_NETWORK

    plan = dry_run.up_plan(server, inventory)

    assert plan.summary == ("worker-only (web: false): the app's network only; no HAProxy, "
                            "no config, no certificate")
    steps = "\n".join(plan.steps)
    assert "$ docker network create --driver bridge --label slotswap.app=webapp webapp" in steps
    assert "haproxy" not in steps.lower() and "cert" not in steps


def test_https_leaves_worker_only_hosts_out(monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = shop(https={"names": ["shop.example"], "acme": {"contact": "ops@example.com"}})
    read_on: list[list[str]] = []
    monkeypatch.setattr(certs, "servers_of", lambda inv: read_on.append(
        [h.name for h in inv.hosts]) or [])
    installed_on: list[list[str]] = []
    monkeypatch.setattr(certs, "on_every_server",
                        lambda inv, action, task, **options: installed_on.append(
                            [h.name for h in inv.hosts]) or [])
    monkeypatch.setattr(certs, "issue", lambda *args: None)

    certs.read_fleet(inventory)
    certs.renew(inventory, force=True)

    assert read_on == [["web-a"], ["web-a"]]
    assert installed_on == [["web-a"]]


def test_maintenance_leaves_worker_only_hosts_out() -> None:
    inventory = shop()
    assert [h.name for h in with_web_slots(inventory, MAINTENANCE_WHERE).hosts] == ["web-a"]


# -- down -------------------------------------------------------------------------------------


def test_down_stops_each_role_s_running_containers_with_its_stop_timeout_then_removes_all(
        ) -> None:
    inventory = shop()
    boxes = (role_box("worker", "web1", 1, "v2"), role_box("worker", "web1", 2, "v2"),
             role_box("worker", "web2", 1, "v1", running=False),
             role_box("mailer", "web1", 1, "v2"), role_box("cron", "web2", 1, "v1"))
    server = worker_host(inventory, *boxes)
    labelled = "\n".join(str(box["Name"]).lstrip("/") for box in boxes) + "\n"
    server.answers[("docker", "ps", "--all", "--quiet", "--filter")] = CommandResult(
        labelled, "", 0)
    deadlines: list[float | None] = []
    run = server.run

    def timed(argv: list[str], *, timeout: float | None = None, **kwargs: object
              ) -> CommandResult:
        deadlines.append(timeout)
        return run(argv, timeout=timeout, **kwargs)  # type: ignore[arg-type]

    server.run = timed  # type: ignore[method-assign]

    result = down_server(server, inventory, print)

    stops = [argv for argv in server.commands if argv[:2] == ["docker", "stop"]]
    assert stops == [
        ["docker", "stop", "webapp-cron-web2-1"],  # a role gone: its own stop timeout
        ["docker", "stop", "--time", "30", "webapp-mailer-web1-1"],
        ["docker", "stop", "--time", "90", "webapp-worker-web1-1", "webapp-worker-web1-2"]]
    assert [deadlines[server.commands.index(argv)] for argv in stops] == [3660, 90, 150]
    removed = [argv for argv in server.commands if argv[:3] == ["docker", "rm", "--force"]]
    assert server.commands.index(stops[-1]) < server.commands.index(removed[-1])
    assert set(removed[-1][3:]) == {str(box["Name"]).lstrip("/") for box in boxes}
    assert ["rm", "-rf", "/etc/slotswap/webapp"] in server.commands  # the roles' env files
    assert result.startswith("5 containers removed")


def test_down_s_dry_run_shows_the_role_containers_stopped_and_their_env_files_removed(
        ) -> None:
    inventory = shop()
    server = worker_host(inventory, role_box("worker", "web1", 1, "v2"))

    steps = dry_run.down_plan(server, inventory).steps

    assert ("$ docker stop --time 90 webapp-worker-web1-1  (the worker containers: up to 90s "
            "to finish their jobs)") in steps
    assert ("$ rm -rf /etc/slotswap/webapp  (the config, the slots' and the roles' env "
            "files)") in steps


def test_down_without_roles_stops_no_role_container_when_none_runs() -> None:
    server = FakeServer(inventory=make_inventory())
    down_server(server, server.inventory, print)
    assert not any(argv[:2] == ["docker", "stop"] for argv in server.commands)


def test_several_containers_stop_in_one_command() -> None:
    assert stop_roles(["a", "b"], 60) == ["docker", "stop", "--time", "60", "a", "b"]
    assert stop_roles(["a"], None) == ["docker", "stop", "a"]


def test_the_status_task_prints_roles_and_a_worker_only_host_exits_0(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hosts.yaml").write_text(
        "app: webapp\nimage: acme/webapp\nhosts:\n"
        "  - {name: web-a, address: 203.0.113.10}\n"
        "  - {name: jobs-a, address: 203.0.113.11, web: false}\n"
        "roles:\n  worker: {cmd: [bin/jobs]}\n")

    def fake_servers(inv: Inventory) -> list[FakeServer]:
        assert [h.name for h in inv.hosts] == ["jobs-a"]  # --hosts=jobs-a
        return [FakeServer("jobs-a", inventory=inv, answers={
            INSPECT_ROLES: inspected(role_box("worker", "web2", 1, "v3"))})]

    monkeypatch.setattr(fleet_status, "servers_of", fake_servers)

    tasks.status(Context(), inventory=str(tmp_path / "hosts.yaml"), json=True,
                 hosts="jobs-a")  # no Exit: exit 0

    captured = capsys.readouterr()
    assert ("jobs-a (203.0.113.11): worker-only (web: false, no slots, no HAProxy), roles "
            "running v3") in captured.err
    assert "worker     webapp-worker-web2-1  v3 (web2)  running, 0 restarts" in captured.err
    document = json.loads(captured.out)
    assert document["ok"] and document["servers"][0]["web"] is False


@pytest.mark.parametrize("task", ["logs", "exec"])
def test_an_unknown_role_exits_2_in_one_line_before_any_server_is_contacted(
        task: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "hosts.yaml").write_text(
        "app: webapp\nimage: acme/webapp\nhosts: [203.0.113.10]\n"
        "roles:\n  worker: {cmd: [bin/jobs]}\n  cron: {cmd: [bin/cron]}\n")
    monkeypatch.setattr(server_tasks, "servers_of", lambda inv: pytest.fail("contacted"))
    path = str(tmp_path / "hosts.yaml")

    with pytest.raises(Exit) as stopped:
        if task == "logs":
            server_tasks.logs_task(Context(), role="mailer", inventory=path)
        else:
            server_tasks.exec_task(Context(), command="ls", role="mailer", inventory=path)

    assert stopped.value.code == 2
    assert stopped.value.message == ("error: --role: 'mailer' is not a role of hosts.yaml "
                                     "(its roles: worker, cron)")


# -- the inspection script, run by a real sh with a stand-in `docker` ------------------------


def run_inspect_script(tmp_path: Path, docker_script: str, ids: str = ""
                       ) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "docker"
    stub.write_text("#!/bin/sh\n" + docker_script)
    stub.chmod(0o755)
    return subprocess.run(inspect_roles("webapp"), capture_output=True, text=True,
                          check=False, env={"PATH": f"{tmp_path}:/usr/bin:/bin", "IDS": ids})


def test_a_docker_that_cannot_list_containers_fails_the_inspection(tmp_path: Path) -> None:
    # Else a worker-only host whose Docker is down would show no role container, exit 0.
    answer = run_inspect_script(tmp_path, 'echo "Cannot connect to the Docker daemon" >&2\n'
                                          "exit 1\n")
    assert answer.returncode != 0
    assert "Cannot connect" in answer.stderr


def test_the_inspection_inspects_what_docker_lists_and_nothing_when_none(
        tmp_path: Path) -> None:
    listing = ('if [ "$1" = ps ]; then printf "%s\\n" $IDS; exit 0; fi\n'
               'echo "inspect $*"\n')
    answer = run_inspect_script(tmp_path, listing, ids="aaa bbb")
    assert (answer.returncode, answer.stdout) == (0, "inspect container inspect aaa bbb\n")
    answer = run_inspect_script(tmp_path, listing)
    assert (answer.returncode, answer.stdout) == (0, "")


def run_inspect_with_roles(tmp_path: Path, docker_script: str, ids: str = ""
                           ) -> subprocess.CompletedProcess[str]:
    stub = tmp_path / "docker"
    stub.write_text("#!/bin/sh\n" + docker_script)
    stub.chmod(0o755)
    return subprocess.run(inspect_with_roles("webapp", ["webapp-web1", "webapp-web2"]),
                          capture_output=True, text=True, check=False,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin", "IDS": ids})


def test_the_slots_and_the_role_containers_are_inspected_in_one_command(
        tmp_path: Path) -> None:
    listing = ('if [ "$1" = ps ]; then printf "%s\\n" $IDS; exit 0; fi\n'
               'echo "inspect $*"\n')
    answer = run_inspect_with_roles(tmp_path, listing, ids="aaa bbb")
    assert (answer.returncode, answer.stdout) == (
        0, "inspect container inspect webapp-web1 webapp-web2 aaa bbb\n")
    answer = run_inspect_with_roles(tmp_path, listing)
    assert (answer.returncode, answer.stdout) == (
        0, "inspect container inspect webapp-web1 webapp-web2\n")


def test_a_docker_that_cannot_list_containers_never_reads_as_slots_gone(
        tmp_path: Path) -> None:
    # Docker's "No such container" would be read as a slot that does not exist: a failed
    # listing exits 125, with Docker's own error last, which no caller takes for a missing
    # container (slots.containers_inspected: only exit 1 can mean that).
    answer = run_inspect_with_roles(tmp_path, 'echo "Cannot connect to the Docker daemon" '
                                              ">&2\nexit 1\n")
    assert answer.returncode == 125
    assert answer.stdout == "" and answer.stderr == "Cannot connect to the Docker daemon\n"
    assert not only_missing_containers(answer.stderr)
