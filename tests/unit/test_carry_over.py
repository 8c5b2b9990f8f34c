"""A non-root login's folders (its home, found on the server) and the carry-over of a server
from another login's folders: the pure parts (see tests/integration/test_logins.py for the
real thing)."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from slotswap.cli.check import settings_lines
from slotswap.commands import docker
from slotswap.commands.login_facts import LoginFacts, parse_login_facts
from slotswap.config import layout
from slotswap.config.inventory import Inventory
from slotswap.config.layout import admin_dir, haproxy_dir, state_dir_beside
from slotswap.remote.server import Server
from slotswap.server import carry_over
from slotswap.server.carry_over import (
    PreviousFolders,
    carried_lock_archive,
    carrier_config,
    merge_histories,
    previous_folders,
)
from slotswap.server.haproxy_handover import container_spec
from slotswap.server.locking import CARRIED_TASK, LockOwner
from tests.unit.fake_server import make_inventory


def inventory(tmp_path: Path, **settings: object) -> Inventory:
    return make_inventory(tmp_path, **settings)


def haproxy_on(config: str, admin: str | None = None) -> docker.ContainerInfo:
    return docker.ContainerInfo(
        "webapp-haproxy", True, "running", "haproxy:2.8", "sha256:1", {}, {"host": ""}, 0, "",
        binds={layout.HAPROXY_CONFIG_DIR_INSIDE: config,
               layout.HAPROXY_ADMIN_DIR_INSIDE: admin or f"{config}/admin"})


def test_a_non_root_logins_folders_are_in_its_home(tmp_path: Path) -> None:
    home = dataclasses.replace(inventory(tmp_path), login_home="/home/deploy")
    assert home.state_dir == "/home/deploy/.slotswap/webapp/state"
    assert home.config_dir == "/home/deploy/.slotswap/webapp/config"
    # remote_dir wins; root (no home) keeps the system folders.
    chosen = dataclasses.replace(inventory(tmp_path, remote_dir="/srv/kit"),
                                 login_home="/home/deploy")
    assert chosen.config_dir == "/srv/kit/webapp/config"
    assert inventory(tmp_path).state_dir == "/var/lib/slotswap/webapp"


def test_the_login_facts_are_its_ids_and_home() -> None:
    assert parse_login_facts("1001\n1001\n/home/de ploy\n") == LoginFacts(1001, 1001,
                                                                         "/home/de ploy")
    assert parse_login_facts("uid\n") is None


class AskedServer(Server):
    """A Server whose login and answers are given: nothing is contacted."""

    def __init__(self, user: str, facts: LoginFacts, inv: Inventory) -> None:
        self.inventory, self.name, self.asked, self.facts = inv, "s1", 0, facts
        self.connection = SimpleNamespace(user=user)  # type: ignore[assignment]

    def login_facts(self) -> LoginFacts:
        self.asked += 1
        return self.facts


def test_with_folders_asks_the_server_only_for_a_non_root_login_without_remote_dir(
        tmp_path: Path) -> None:
    plain = inventory(tmp_path)
    deploy = AskedServer("deploy", LoginFacts(1001, 1001, "/home/deploy/"), plain)
    assert deploy.with_folders(plain).config_dir == "/home/deploy/.slotswap/webapp/config"
    root = AskedServer("root", LoginFacts(0, 0, "/root"), plain)
    assert root.with_folders(plain) is plain and root.asked == 0
    uid0 = AskedServer("toor", LoginFacts(0, 0, "/root"), plain)
    assert uid0.with_folders(plain) is plain
    given = inventory(tmp_path, remote_dir="/srv/kit")
    assert deploy.with_folders(given) is given
    with pytest.raises(RuntimeError, match=r"no usable home folder.*set remote_dir"):
        AskedServer("deploy", LoginFacts(1001, 1001, "/"), plain).with_folders(plain)


def test_the_haproxy_container_changes_with_a_home_folder(tmp_path: Path) -> None:
    plain = inventory(tmp_path)
    home = dataclasses.replace(plain, login_home="/home/deploy")
    assert container_spec(home) != container_spec(plain)


@pytest.mark.parametrize(("config", "state"), [
    ("/etc/slotswap/webapp", "/var/lib/slotswap/webapp"),
    ("/home/deploy/slotswap/webapp/config", "/home/deploy/slotswap/webapp/state"),
    ("/home/deploy/.slotswap/webapp/config", "/home/deploy/.slotswap/webapp/state"),
    ("/opt/elsewhere", None),
])
def test_the_state_folder_beside_a_config_folder(config: str, state: str | None) -> None:
    assert state_dir_beside(config, "webapp") == state


def test_an_haproxy_of_root_is_carried_over_to_the_login_and_its_own_is_not(
        tmp_path: Path) -> None:
    deploy = dataclasses.replace(inventory(tmp_path), login_home="/home/deploy")
    roots = haproxy_on("/etc/slotswap/webapp/haproxy")
    assert previous_folders(roots, deploy, haproxy_dir(deploy)) == PreviousFolders(
        "/etc/slotswap/webapp", "/etc/slotswap/webapp/haproxy/admin",
        "/var/lib/slotswap/webapp")
    own = haproxy_on(haproxy_dir(deploy), admin_dir(deploy))
    assert previous_folders(own, deploy, haproxy_dir(deploy)) is None
    root = inventory(tmp_path)
    assert previous_folders(haproxy_on(haproxy_dir(deploy)), root, haproxy_dir(root)) == \
        PreviousFolders("/home/deploy/.slotswap/webapp/config",
                        "/home/deploy/.slotswap/webapp/config/haproxy/admin",
                        "/home/deploy/.slotswap/webapp/state")


def test_the_carrier_relays_the_old_admin_socket_to_one_of_the_logins() -> None:
    text = carrier_config(1001, 1002)
    assert (f"bind {layout.HAPROXY_ADMIN_DIR_INSIDE}/{layout.RELAY_SOCKET} mode 600 "
            "uid 1001 gid 1002") in text
    assert f"server previous {layout.PREVIOUS_ADMIN_DIR_INSIDE}/admin.sock" in text
    assert "mode tcp" in text


def test_the_carrier_mounts_the_old_folders_and_has_no_network() -> None:
    argv = docker.run_carrier(
        container="webapp-haproxy-carrier", image_ref="haproxy:2.8", app="webapp",
        config_dir="/home/deploy/.slotswap/webapp/config/haproxy", config="carrier.cfg",
        admin_dir="/home/deploy/.slotswap/webapp/config/haproxy/admin",
        previous_admin_dir="/etc/slotswap/webapp/haproxy/admin",
        previous_config_dir="/etc/slotswap/webapp", previous_state_dir="/var/lib/slotswap/webapp")
    assert argv[argv.index("--network") + 1] == "none"
    assert "/etc/slotswap/webapp:/etc/slotswap-previous:ro" in argv
    assert "/var/lib/slotswap/webapp:/var/lib/slotswap-previous" in argv
    assert "--publish" not in argv and "slotswap.role=carrier" in argv


def entry(time: str, to: str) -> str:
    return json.dumps({"time": time, "task": "deploy", "to_tag": to})


def test_histories_are_merged_in_time_order_each_entry_once() -> None:
    old = "\n".join([entry("2026-12-01T10:00:00+00:00", "v1"),
                     entry("2026-12-02T10:00:00+00:00", "v2")]) + "\n"
    new = entry("2026-12-02T10:00:00+00:00", "v2") + "\n" + entry(
        "2026-12-03T10:00:00+00:00", "v3") + "\n"
    merged = merge_histories(old, new).splitlines()
    assert [json.loads(line)["to_tag"] for line in merged] == ["v1", "v2", "v3"]
    assert merge_histories("", "") == ""


def test_the_lock_left_behind_is_a_lock_directory_that_never_expires() -> None:
    owner = LockOwner("ops@laptop", "2026-12-03T06:00:00+00:00", CARRIED_TASK,
                      "to /home/deploy/.slotswap/webapp/state (the login deploy)", "t" * 32)
    data = carried_lock_archive(owner, carry_over.CARRIED_LEASE, 1_800_000_000)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        names = archive.getnames()
        assert names == ["lock", "lock/owner.json", "lock/lease"]
        assert json.loads(archive.extractfile("lock/owner.json").read())["task"] == CARRIED_TASK
        lease = int(archive.extractfile("lock/lease").read())
    assert lease > 5 * 365 * 86400


def test_check_says_where_the_files_go_without_remote_dir(tmp_path: Path) -> None:
    lines = list(settings_lines(inventory(tmp_path), {}))
    assert ("remote_dir: (not set: root keeps the kit's files in /var/lib/slotswap/webapp and "
            "/etc/slotswap/webapp, any other login in ~/.slotswap/webapp of its home on each "
            "server)") in lines
    assert not any(line.startswith("login_home") for line in lines)
    assert "remote_dir: /srv/kit" in settings_lines(inventory(tmp_path, remote_dir="/srv/kit"),
                                                    {})
