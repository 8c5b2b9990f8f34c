"""A deploy, rollback or maintenance of an app on a shared HAProxy refused, under its lock and
before any change, on a server where the app's registration is missing or says leaving (its
`down` cut short): slotswap.server.registration_gate, read in the round trip that takes the
lock (slotswap.server.locking.TAKE_AND_READ_SCRIPT)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slotswap.cli.plan import in_rotation
from slotswap.config.layout import lock_dir, proxy_lock_dir, registration_path
from slotswap.fleet import every_server
from slotswap.fleet.errors import EXIT_DEPLOY_FAILED
from slotswap.fleet.fleet_lock import FleetLock
from slotswap.server import locking
from slotswap.server.locking import new_owner, split_read
from slotswap.server.proxy_registry import (
    Registration,
    RegistryFileError,
    parse_registration,
    registration_json,
)
from slotswap.server.registration_gate import NotOnSharedProxy, refusal
from tests.unit.fake_server import make_inventory
from tests.unit.simulated_apps_fleet import AppsFleet, answered
from tests.unit.test_simulated_server import simulated

BOTH = ("up a", "deploy a v1", "up b", "deploy b v1")
LEAVING = ("{name}: b is leaving the shared HAProxy (a down cut short): run `fab down` to "
           "finish it, or `fab up` to bring it back; nothing was changed")
MISSING = "{name}: b is not on the shared HAProxy here: run `fab up`; nothing was changed"


def registration(state: str = "present") -> Registration:
    return Registration(app="b", names=("b.test",), default=False, https=False,
                        slot_ports=(8101, 8102), check_ports=None, shared_settings={},
                        drain=2.0, kit_version="1.0", by="me@here",
                        at="2026-12-04T10:00:00+00:00", state=state)  # type: ignore[arg-type]


def test_a_missing_or_leaving_registration_is_refused_in_one_line(tmp_path: Path) -> None:
    inventory = make_inventory(tmp_path, app="b", names=["b.test"], haproxy={"shared": True})
    path = "/var/lib/slotswap/_proxy/apps/b.json"
    assert refusal("s1", inventory, path, registration_json(registration())) is None
    assert str(refusal("s1", inventory, path, None)) == MISSING.format(name="s1")
    assert str(refusal("s1", inventory, path, registration_json(registration("leaving")))) \
        == LEAVING.format(name="s1")
    broken = refusal("s1", inventory, path, "(unreadable)\n")
    assert isinstance(broken, RegistryFileError)
    assert str(broken).startswith(f"s1: {path}: not JSON") and "\n" not in str(broken)


def test_the_file_read_with_the_lock_is_told_from_the_take_scripts_answer() -> None:
    assert split_read("taken\nMARK\n{}\n", "MARK") == ("taken\n", "{}\n")
    assert split_read("taken\nMARK\n", "MARK") == ("taken\n", "")  # an empty file
    assert split_read("taken\n", "MARK") == ("taken\n", None)  # no file
    assert split_read("held 3 60\n{}\n\n", "MARK") == ("held 3 60\n{}\n\n", None)


@pytest.mark.parametrize("real", [False, True], ids=["simulated", "real sh"])
def test_the_lock_is_taken_and_the_file_read_in_one_round_trip(tmp_path: Path,
                                                               real: bool) -> None:
    """The simulated server answers TAKE_AND_READ_SCRIPT as the real `sh` does: the file
    after the mark once the lock is taken, nothing of it when there is none or the lock is
    another run's."""
    server = simulated(tmp_path)
    server.real_shell = real
    inventory = server.inventory
    path = f"{inventory.state_dir}/read-me.json"
    server.files.write(path, '{"state": "present"}\n')
    first = locking.acquire(server, inventory, new_owner("deploy", "v1"), read=path)
    assert first.taken and first.read == '{"state": "present"}\n'
    with pytest.raises(locking.LockedError):
        locking.acquire(server, inventory, new_owner("deploy", "v2"), read=path)
    server.files.remove_tree(lock_dir(inventory))
    second = locking.acquire(server, inventory, new_owner("deploy", "v2"),
                             read=f"{inventory.state_dir}/none.json")
    assert second.taken and second.read is None


def two_apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppsFleet:
    fleet = AppsFleet(tmp_path, 2, monkeypatch)
    for command in BOTH:
        assert fleet.run(command).exit_code == 0, command
    return fleet


def mark(fleet: AppsFleet, index: int, state: str | None) -> None:
    """b's registration on one server set to `state` (None: removed), as a `down` cut short
    leaves it (leaving) or a `down` done (none)."""
    server = fleet.servers[index]
    path = registration_path(fleet.inventories["b"], "b")
    if state is None:
        server.files.unlink(path)
        return
    found = parse_registration(server.read_local(path) or "", "b")
    server.files.write(path, registration_json(dataclasses.replace(found, state=state)))


def containers(fleet: AppsFleet) -> list[list[tuple[str, str | None, bool]]]:
    return [sorted((c.name, c.version, c.running) for c in server.containers.values())
            for server in fleet.servers]


@pytest.mark.parametrize(("state", "message", "index"), [
    ("leaving", LEAVING, 1), (None, MISSING, 1), ("leaving", LEAVING, 0)],
    ids=["leaving on the second server", "missing on the second server",
         "leaving on the first server"])
def test_a_deploy_or_rollback_is_refused_before_any_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, state: str | None, message: str,
        index: int) -> None:
    fleet = two_apps(tmp_path, monkeypatch)
    assert fleet.run("deploy b v2").exit_code == 0
    mark(fleet, index, state)
    before = containers(fleet)
    for command in ("deploy b v3", "rollback b", "rollback b v1"):
        result = fleet.run(command)
        name = fleet.servers[index].name
        assert (result.exit_code, result.message) == (EXIT_DEPLOY_FAILED,
                                                      message.format(name=name)), command
        assert fleet.problems == []
    assert containers(fleet) == before
    for server in fleet.servers:  # every lock taken was released
        assert not server.files.is_dir(lock_dir(fleet.inventories["b"]))
    # a is another app: its deploy goes on everywhere.
    assert fleet.run("deploy a v2").exit_code == 0
    assert [answered(server, "a").version for server in fleet.servers] == ["v2", "v2"]


def test_maintenance_is_refused_where_the_app_is_leaving(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    fleet = two_apps(tmp_path, monkeypatch)
    mark(fleet, 1, "leaving")
    changed: list[str] = []

    def switch_on(server: object, inventory: object, progress: object) -> str:
        changed.append(getattr(server, "name", "?"))
        return "maintenance on"

    inventory = fleet.inventories["b"]
    [refused] = every_server.on_every_server(inventory, switch_on, "maintenance.on",
                                             in_rotation=True)
    name = fleet.servers[1].name
    assert (refused.name, refused.text, refused.ok, refused.exit_code) == (
        name, LEAVING.format(name=name), False, EXIT_DEPLOY_FAILED)
    assert changed == []
    for server in fleet.servers:
        assert not server.files.is_dir(lock_dir(inventory))
        assert not server.files.is_dir(proxy_lock_dir(inventory))
    # `up` and `down` are not refused: they bring it back, or finish its `down`.
    assert fleet.run("up b").exit_code == 0
    assert fleet.run("deploy b v2").exit_code == 0


def test_taking_the_locks_reads_the_registration_in_the_same_round_trip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = two_apps(tmp_path, monkeypatch)
    for reads in (False, True):
        calls = [server.calls for server in fleet.servers]
        with FleetLock(list(fleet.servers), fleet.inventories["b"], new_owner("deploy", "v2"),
                       in_rotation=reads):
            assert [server.calls - was for server, was in zip(fleet.servers, calls,
                                                              strict=True)] == [1, 1]


def test_the_dry_runs_refuse_as_the_run_does(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    fleet = two_apps(tmp_path, monkeypatch)
    mark(fleet, 1, "leaving")
    inventory = fleet.inventories["b"]
    planned: list[str] = []
    build = in_rotation(inventory, lambda server: planned.append(server.name))  # type: ignore
    build(fleet.servers[0])
    with pytest.raises(NotOnSharedProxy) as refused:
        build(fleet.servers[1])
    assert str(refused.value) == LEAVING.format(name=fleet.servers[1].name)
    assert planned == [fleet.servers[0].name]
    assert not any(server.files.is_dir(lock_dir(inventory)) for server in fleet.servers)
