"""The locks a shared `up`, `down` or `certs.renew` holds besides the app's own (the shared
HAProxy's, the other apps'; server/proxy_locks.py) held by the run's lease while they are
(server/lease.py): renewed by its heartbeat, checked by its guard before each call, a lost
one stopping the run on that server with the lost app lock's error (exit 4), and the app's
lock, still the run's, released at the end. Servers are folders on this machine, the lock
scripts run by the real `sh` (tests/unit/test_fleet_lock.py's FolderServer)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit

from slotswap.cli import tasks
from slotswap.fleet.errors import EXIT_BAD_INPUT, EXIT_LOCKED, exit_code_for
from slotswap.fleet.fleet_lock import FleetLock
from slotswap.server.lease import LOST_OTHER_MARK
from slotswap.server.lock_sets import take_locks
from slotswap.server.locking import (
    RENEW_SCRIPT,
    LeaseLostError,
    acquire,
    force_release_at,
    new_owner,
    parse_owner,
    read_lock_at,
)
from slotswap.server.proxy_locks import (
    holding,
    other_apps_locks,
    proxy_lock_place,
    shared_lock,
)
from tests.unit.fake_server import make_inventory
from tests.unit.test_fleet_lock import OTHER, Clock, FolderServer, inventory

PROXY_LOCK = "/var/lib/slotswap/_proxy/lock"
BLOG_LOCK = "/var/lib/slotswap/blog/lock"


def token_at(server: FolderServer, lock: str) -> str | None:
    owner_file = server.path(f"{lock}/owner.json")
    owner = parse_owner(owner_file.read_text() if owner_file.exists() else None)
    return owner.token if owner else None


def age(server: FolderServer, lock: str, seconds: int) -> None:
    then = time.time() - seconds
    os.utime(server.path(lock), (then, then))


def renewals_of(server: FolderServer, lock: str) -> int:
    return sum(1 for argv in server.commands
               if argv[:3] == ["sh", "-c", RENEW_SCRIPT] and argv[-1] == lock)


def test_the_places_are_the_shared_haproxys_and_the_other_apps() -> None:
    assert proxy_lock_place(inventory()).lock_dir == PROXY_LOCK
    assert other_apps_locks(inventory(), ["blog"])["blog's lock"].lock_dir == BLOG_LOCK


def test_the_heartbeat_renews_the_other_locks_while_they_are_held(tmp_path: Path) -> None:
    server = FolderServer(tmp_path, "s1")
    inv = inventory(lease=3)
    owner = new_owner("up")
    with FleetLock([server], inv, new_owner("up")), \
            holding(server, inv, owner, shared_lock(inv)):
        age(server, PROXY_LOCK, 100)
        deadline = time.monotonic() + 10
        while (state := read_lock_at(server, PROXY_LOCK, 180)) and state.age > 5:
            assert time.monotonic() < deadline, "never renewed"
            time.sleep(0.1)
        assert state is not None and state.owner.token == owner.token
    assert server.on_disk == []  # every lock released


def test_a_lapsed_lease_renews_the_other_locks_too_before_the_next_call(
        tmp_path: Path) -> None:
    clock = Clock()
    server = FolderServer(tmp_path, "s1")
    inv = inventory(lease=60)
    with FleetLock([server], inv, new_owner("up"), clock=clock) as lock:
        lock.heartbeat.stop()
        with holding(server, inv, new_owner("up"),
                     {**shared_lock(inv), **other_apps_locks(inv, ["blog"])}):
            clock.now += 45
            age(server, PROXY_LOCK, 45)
            server.run(["true"])
            assert renewals_of(server, PROXY_LOCK) == 1 and renewals_of(server, BLOG_LOCK) == 1
        clock.now += 45
        server.run(["true"])  # released: no longer renewed
        assert renewals_of(server, PROXY_LOCK) == 1


def test_a_shared_lock_taken_over_stops_the_run_before_its_next_change_and_the_app_lock_is_released(
        tmp_path: Path) -> None:
    """The run stopped past the shared lock's lease, another app's run took it over: the
    first, going on, changes nothing more on the server; its own app lock is still its own
    and is released at the end; the other run's lock stays."""
    clock = Clock()
    server = FolderServer(tmp_path, "s1")
    inv = inventory(lease=60)
    app_owner = new_owner("up")
    with pytest.raises(LeaseLostError) as lost, \
            FleetLock([server], inv, app_owner, clock=clock) as lock:
        lock.heartbeat.stop()
        with holding(server, inv, new_owner("up"), shared_lock(inv)):
            server.run(["touch", "/var/lib/slotswap/webapp/before"])
            clock.now += 200
            age(server, PROXY_LOCK, 200)
            other = FolderServer(tmp_path, "s1")  # another app's up, through its own login
            assert take_locks(other, [proxy_lock_place(inv)], new_owner("up"), 180).refused \
                is None
            server.run(["touch", "/var/lib/slotswap/webapp/after"])
    assert not server.path("/var/lib/slotswap/webapp/after").exists()
    assert server.path("/var/lib/slotswap/webapp/before").exists()
    assert str(lost.value).startswith("s1: the shared HAProxy's lock, held by this run, is gone")
    assert exit_code_for(lost.value) == EXIT_LOCKED
    assert token_at(server, "/var/lib/slotswap/webapp/lock") is None  # ours, released
    assert token_at(server, PROXY_LOCK) not in (None, app_owner.token)  # the other's, kept


def test_a_shared_lock_released_with_unlock_refuses_the_next_command_on_the_server(
        tmp_path: Path) -> None:
    """`fab unlock --proxy`, and another run takes the shared lock at once, while this run
    still trusts its lease: the guard in front of the command line refuses it there."""
    server = FolderServer(tmp_path, "s1")
    inv = inventory()
    app_owner = new_owner("up")
    with FleetLock([server], inv, app_owner, clock=Clock()):
        with holding(server, inv, new_owner("up"), shared_lock(inv)):
            operator = FolderServer(tmp_path, "s1")
            released = force_release_at(operator, PROXY_LOCK, 180)
            assert released is not None and released.owner.task == "up"
            operator.path(PROXY_LOCK).mkdir()
            operator.path(f"{PROXY_LOCK}/owner.json").write_text(OTHER)
            with pytest.raises(LeaseLostError, match=(
                    r"^s1: the shared HAProxy's lock, held by this run, is gone \(now held by "
                    r"alice@laptop since \S+ \(deploy v9\)\): not renewed within its lease of "
                    r"180s .* or released with `fab unlock`; this run does not touch the "
                    r"server again$")):
                server.run(["touch", "/var/lib/slotswap/webapp/after"])
            assert not server.path("/var/lib/slotswap/webapp/after").exists()
            with pytest.raises(LeaseLostError):
                server.runtime_api("show stat")
            assert server.sent == []
        assert token_at(server, PROXY_LOCK) == "alices"  # not released: the other run's
    assert token_at(server, "/var/lib/slotswap/webapp/lock") is None  # ours, released


def test_the_heartbeat_finds_a_lost_other_lock_warns_once_and_renews_the_app_lock_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FolderServer(tmp_path, "s1")
    inv = inventory(lease=3)
    with FleetLock([server], inv, new_owner("up")) as lock:
        with holding(server, inv, new_owner("up"), other_apps_locks(inv, ["blog"])):
            server.path(f"{BLOG_LOCK}/owner.json").write_text(OTHER)
            lease = lock.leases["s1"]
            deadline = time.monotonic() + 10
            while lease.other_lost is None:
                assert time.monotonic() < deadline, "the heartbeat never noticed"
                time.sleep(0.1)
            with pytest.raises(LeaseLostError, match=r"^s1: blog's lock, held by this run, is "
                                                     r"gone \(now held by alice@laptop"):
                server.run(["true"])
            app_renewals = renewals_of(server, "/var/lib/slotswap/webapp/lock")
            time.sleep(2.5)
            assert renewals_of(server, "/var/lib/slotswap/webapp/lock") > app_renewals
        assert lock.lost == []  # the app's lock is still the run's
    assert capsys.readouterr().err.count("WARNING: s1: blog's lock, held by this run") == 1
    assert token_at(server, BLOG_LOCK) == "alices"
    assert token_at(server, "/var/lib/slotswap/webapp/lock") is None


def test_a_guarded_line_names_the_other_lock_in_its_refusal(tmp_path: Path) -> None:
    server = FolderServer(tmp_path, "s1")
    inv = inventory()
    with FleetLock([server], inv, new_owner("up"), clock=Clock()) as lock:
        with holding(server, inv, new_owner("up"), shared_lock(inv)):
            line = lock.leases["s1"].guard_line("true")
            assert f"{PROXY_LOCK}/owner.json" in line and LOST_OTHER_MARK in line
        assert LOST_OTHER_MARK not in lock.leases["s1"].guard_line("true")


# -- `fab lock` and `fab unlock --proxy` -------------------------------------------------------


def shared_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
                     shared: bool = True) -> str:
    path = tmp_path / "hosts.yaml"
    path.write_text("app: webapp\nimage: acme/webapp\n"
                    + ("names: [webapp.test]\nhaproxy: {shared: true}\n" if shared else "")
                    + "hosts:\n  - {name: s1, address: 203.0.113.10}\n")
    return str(path)


def folder_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FolderServer:
    server = FolderServer(tmp_path / "servers", "s1")
    monkeypatch.setattr(tasks, "servers_of", lambda inv: [server])
    return server


def hold_shared_lock(server: FolderServer) -> None:
    server.path(PROXY_LOCK).mkdir(parents=True)
    server.path(f"{PROXY_LOCK}/owner.json").write_text(OTHER)


def test_lock_shows_the_shared_haproxys_lock_and_until_when(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_inventory(tmp_path, monkeypatch)
    server = folder_fleet(tmp_path, monkeypatch)
    tasks.lock_status(Context(), inventory=path)
    assert "s1: free; shared HAProxy free" in capsys.readouterr().out
    hold_shared_lock(server)
    tasks.lock_status(Context(), inventory=path)
    assert re.search(r"s1: free; shared HAProxy locked by alice@laptop since "
                     r"2026-11-26T08:00:00\+00:00 \(deploy v9\), renewed [01]s ago \(lease "
                     r"180s\), until 1(80|79)s from now unless its run renews it",
                     capsys.readouterr().out)
    age(server, PROXY_LOCK, 200)
    tasks.lock_status(Context(), inventory=path)
    assert "(lease 180s): stale, the next run takes it over\n" in capsys.readouterr().out


def test_unlock_proxy_releases_the_shared_haproxys_lock_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_inventory(tmp_path, monkeypatch)
    server = folder_fleet(tmp_path, monkeypatch)
    hold_shared_lock(server)
    acquire(server, make_inventory(), new_owner("deploy", "v3"))  # the app's own lock
    tasks.unlock(Context(), server="s1", proxy=True, inventory=path)
    assert ("s1: released the shared HAProxy's lock of alice@laptop since "
            "2026-11-26T08:00:00+00:00 (deploy v9)") in capsys.readouterr().out
    assert token_at(server, PROXY_LOCK) is None
    assert token_at(server, "/var/lib/slotswap/webapp/lock") is not None
    tasks.unlock(Context(), all=True, proxy=True, inventory=path)
    assert "s1: the shared HAProxy was not locked" in capsys.readouterr().out


def test_unlock_proxy_of_an_inventory_without_a_shared_haproxy_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = shared_inventory(tmp_path, monkeypatch, shared=False)
    server = folder_fleet(tmp_path, monkeypatch)
    with pytest.raises(Exit) as refused:
        tasks.unlock(Context(), all=True, proxy=True, inventory=path)
    assert refused.value.code == EXIT_BAD_INPUT
    assert "--proxy: this inventory's HAProxy is not shared" in str(refused.value.message)
    assert server.commands == []
