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
from slotswap.server.role_status import hosts_of_role, role_by_name
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
