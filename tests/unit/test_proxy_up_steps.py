"""Steps of the shared HAProxy's `up` on a FakeServer (server/proxy_up.py,
proxy_generation.py): what it refuses before any change, a generation checked before it takes
its name, the app's backend and registration put back when its generation does not go in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slotswap.commands.docker import LABEL_APP
from slotswap.config.layout import ProxyError
from slotswap.remote.server import CommandResult, ConnectionLostError
from slotswap.server.proxy_assembly import Generation
from slotswap.server.proxy_files import READ_REGISTRY_SCRIPT, Registry, registration_for
from slotswap.server.proxy_generation import ProxyState, shared_container, write_and_check
from slotswap.server.proxy_registry import registration_json
from slotswap.server.proxy_up import (
    bound_ports,
    own_haproxies,
    put_back,
    up_worker_only_shared,
    went_in,
)
from tests.unit.fake_server import FakeServer, make_inventory

GENERATION = Generation({"haproxy.cfg": "global\n"}, "0123456789ab")


def shared(tmp_path: Path, app: str = "shop"):  # type: ignore[no-untyped-def]
    return make_inventory(tmp_path, app=app, haproxy={"shared": True}, names=[f"{app}.test"])


def inspected(mounts: dict[str, str]) -> CommandResult:
    item = {"Name": "/slotswap-proxy", "Config": {"Image": "haproxy:2.8", "Labels": {}},
            "State": {"Status": "running", "Running": True},
            "Mounts": [{"Type": "bind", "Source": src, "Destination": dst}
                       for dst, src in mounts.items()],
            "NetworkSettings": {"Networks": {"host": {}}}}
    return CommandResult(json.dumps([item]), "", 0)


def test_a_shared_haproxy_of_another_login_is_refused(tmp_path: Path) -> None:
    inventory = shared(tmp_path)
    server = FakeServer(inventory=inventory, answers={
        ("docker", "container", "inspect", "slotswap-proxy"): inspected(
            {"/usr/local/etc/haproxy": "/home/deploy/.slotswap/_proxy/config/haproxy"})})
    with pytest.raises(ProxyError) as raised:
        shared_container(server, inventory)
    assert str(raised.value) == (
        "s1's shared HAProxy runs from /home/deploy/.slotswap/_proxy/config/haproxy, not "
        "/etc/slotswap/_proxy/haproxy: every app on a server uses the same login and "
        "remote_dir; nothing was changed")
    mine = FakeServer(inventory=inventory, answers={
        ("docker", "container", "inspect", "slotswap-proxy"): inspected(
            {"/usr/local/etc/haproxy": "/etc/slotswap/_proxy/haproxy"})})
    assert shared_container(mine, inventory) is not None


def test_other_apps_own_haproxies_are_found_with_the_ports_they_bind(tmp_path: Path) -> None:
    inventory = shared(tmp_path)
    server = FakeServer(inventory=inventory, answers={
        ("docker", "ps"): CommandResult("webapp \n 1\nlegacy \n", "", 0)})
    server.files["/etc/slotswap/webapp/haproxy/haproxy.cfg"] = (
        "frontend http\n    bind 0.0.0.0:80\n    bind :::8443 ssl crt x\n")
    found = own_haproxies(server, inventory)
    assert found["webapp"] == (80, 8443)
    assert len(found["legacy"]) == 65535  # its config unreadable: every port, to refuse
    assert list(found) == ["webapp", "legacy"]
    assert server.commands[0][:5] == ["docker", "ps", "--all", "--filter",
                                      "label=slotswap.role=haproxy"]
    assert LABEL_APP in server.commands[0][-1]


def test_bound_ports_reads_bind_lines_only() -> None:
    assert bound_ports("bind 0.0.0.0:80,:::81\n  bind unix@/x\nserver s 127.0.0.1:9\n") == (80,
                                                                                           81)


def test_a_generation_is_named_only_once_haproxy_accepted_it(tmp_path: Path) -> None:
    inventory = shared(tmp_path)
    refused = CommandResult("", "[ALERT]    (1) : config : parsing [x:3] : unknown keyword "
                                "'bogus'\n[ALERT] (1) : Fatal errors\n", 1)
    server = FakeServer(inventory=inventory, answers={
        ("test", "-d"): CommandResult("", "", 1), ("docker", "run"): refused})
    with pytest.raises(ProxyError) as raised:
        write_and_check(server, inventory, GENERATION, "haproxy:2.8", "nothing was changed")
    assert str(raised.value) == (
        "s1: HAProxy refuses the shared config ([ALERT]    (1) : config : parsing [x:3] : "
        "unknown keyword 'bogus'); nothing was changed")
    moved = [argv for argv in server.commands if argv[:1] == ["mv"]]
    assert moved == []  # never given its name
    check = next(argv for argv in server.commands if argv[:2] == ["docker", "run"])
    assert ("type=bind,source=/etc/slotswap/_proxy/haproxy/.gen-0123456789ab.partial,"
            "target=/usr/local/etc/haproxy/current,readonly") in check
    assert server.commands[-1] == ["rm", "-rf",
                                   "/etc/slotswap/_proxy/haproxy/.gen-0123456789ab.partial"]


def test_a_check_docker_could_not_run_is_not_called_a_refusal(tmp_path: Path) -> None:
    inventory = shared(tmp_path)
    server = FakeServer(inventory=inventory, answers={
        ("test", "-d"): CommandResult("", "", 1),
        ("docker", "run"): CommandResult("", "docker: Cannot connect to the Docker daemon\n",
                                         125)})
    with pytest.raises(ProxyError, match=r"could not be checked .*exited 125: docker: Cannot"):
        write_and_check(server, inventory, GENERATION, "haproxy:2.8", "nothing was changed")


def test_a_checked_generation_takes_its_name_in_one_rename(tmp_path: Path) -> None:
    inventory = shared(tmp_path)
    server = FakeServer(inventory=inventory, answers={("test", "-d"): CommandResult("", "", 1)})
    write_and_check(server, inventory, GENERATION, "haproxy:2.8", "nothing was changed")
    assert server.commands[-1] == ["mv", "-T",
                                   "/etc/slotswap/_proxy/haproxy/.gen-0123456789ab.partial",
                                   "/etc/slotswap/_proxy/haproxy/gen-0123456789ab"]


def test_the_apps_backend_and_registration_are_put_back(tmp_path: Path) -> None:
    inventory = shared(tmp_path)
    old = registration_for(inventory, kit_version="0.2.0", by="a@b",
                           at="2026-12-04T09:00:00+00:00")
    server = FakeServer(inventory=inventory)
    put_back(server, inventory, Registry((old,), {"shop": "backend shop\n"}, None))
    assert server.files["/var/lib/slotswap/_proxy/apps/shop.json"] == registration_json(old)
    assert server.files["/etc/slotswap/_proxy/haproxy/apps/shop/backend.cfg"] == (
        "backend shop\n")
    server = FakeServer(inventory=inventory)
    put_back(server, inventory, Registry((), {}, None))  # a first up: nothing was there
    assert ["rm", "-f", "/var/lib/slotswap/_proxy/apps/shop.json"] in server.commands
    assert ["rm", "-f", "/etc/slotswap/_proxy/haproxy/apps/shop/backend.cfg"] in server.commands


@pytest.mark.parametrize(("current", "kept"), [
    (CommandResult("gen-0123456789ab\n", "", 0), True),  # switched: HAProxy may run it
    (CommandResult("gen-ba9876543210\n", "", 0), False),  # not switched, or put back
    (CommandResult("", "", 1), False),  # no current yet
    (ConnectionLostError("s1: lost the SSH connection"), True),  # it may be switched
])
def test_the_backend_stays_when_current_names_its_generation_or_may(
        tmp_path: Path, current: CommandResult | Exception, kept: bool) -> None:
    """Found by the fault sweep on two apps (test_fault_sweep_apps.py): an `up` cut after
    its switch put the app's registration back while HAProxy ran its backend; the app was
    then deployed, and another app's next `up` dropped it from rotation (404)."""
    server = FakeServer(inventory=shared(tmp_path))

    def readlink(argv: list[str]) -> CommandResult:
        if isinstance(current, Exception):
            raise current
        return current

    server.answers[("readlink",)] = readlink
    assert went_in(server, shared(tmp_path), GENERATION) is kept


def test_only_a_generation_seen_running_is_one_to_go_back_to() -> None:
    assert ProxyState(None, "gen-a", "gen-a").ran == "gen-a"
    assert ProxyState(None, "gen-b", "gen-a").ran is None  # switched, never seen running
    assert ProxyState(None, "gen-a", None).ran is None


def worker_host_server(tmp_path: Path, registered: bool) -> FakeServer:
    """A shared app's worker-only host (web: false), its registry read answered."""
    inventory = make_inventory(
        tmp_path, app="shop", haproxy={"shared": True}, names=["shop.test"],
        hosts=["203.0.113.10", {"address": "203.0.113.11", "name": "w1", "web": False}],
        roles={"worker": {"cmd": ["worker"], "hosts": ["w1"]}})
    mark_line = ""
    if registered:
        mine = registration_for(inventory, kit_version="0.2.0", by="a@b",
                                at="2026-12-04T09:00:00+00:00")
        mark_line = registration_json(mine)

    def registry(argv: list[str]) -> CommandResult:
        mark = argv[-1]
        return CommandResult(f"{mark} registration shop\n{mark_line}\n" if registered
                             else "", "", 0)

    server = FakeServer(inventory=inventory, answers={
        ("sh", "-c", READ_REGISTRY_SCRIPT): registry,
        ("docker", "network", "inspect"): CommandResult("", "No such network", 1)})
    server.host = inventory.hosts[1]
    return server


def test_a_worker_only_host_of_a_shared_app_gets_the_network_alone(tmp_path: Path) -> None:
    server = worker_host_server(tmp_path, registered=False)
    said = up_worker_only_shared(server, server.inventory, lambda line: None)
    assert said == "network created (worker-only: no HAProxy)"
    assert not any("slotswap-proxy" in " ".join(argv) for argv in server.commands)


def test_a_host_turned_worker_only_on_the_shared_haproxy_is_refused(tmp_path: Path) -> None:
    server = worker_host_server(tmp_path, registered=True)
    with pytest.raises(ProxyError, match="web: false, but shop is on this server's shared "
                                         "HAProxy") as raised:
        up_worker_only_shared(server, server.inventory, lambda line: None)
    assert str(raised.value).endswith("nothing was changed")
    assert not any(argv[:3] == ["docker", "network", "create"] for argv in server.commands)
