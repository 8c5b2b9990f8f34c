"""FleetLock and the lease against "servers" that are folders on this machine, the lock
scripts run by the real `sh`: every lock taken at the same time, a refused one releases
the others, only this run's locks are released, a lock not renewed for its lease is taken
over (by one run only, however many try at once), and a running run renews its locks."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slotswap.config.inventory import Inventory
from slotswap.fleet import fleet_lock as fleet_lock_module
from slotswap.fleet.fleet_lock import FleetLock
from slotswap.remote.server import CommandResult
from slotswap.server.locking import (
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
    TAKE_SCRIPT,
    LeaseLostError,
    LockedError,
    Renewal,
    acquire,
    force_release,
    new_owner,
    parse_owner,
    parse_read_answer,
    parse_take_answer,
    read_lock,
    release,
    renew,
)
from tests.unit.fake_server import FakeServer, make_inventory

LOCK = "/var/lib/slotswap/webapp/lock"


def inventory(lease: int = 60) -> Inventory:
    return make_inventory(image="r/webapp", timeouts={"lease": lease})


class FolderServer(FakeServer):
    """Runs every command with the local `sh`, the server's /var/lib/slotswap in a folder."""

    def __init__(self, root: Path, name: str, owner_file: str | None = None,
                 barrier: threading.Barrier | None = None,
                 before: FolderServer | None = None) -> None:
        super().__init__(name)
        self.root, self.barrier, self.before = root / name, barrier, before
        self.root.mkdir(parents=True, exist_ok=True)  # two runs' views of one server
        self.asked = False
        if owner_file is not None:
            self.path(LOCK).mkdir(parents=True)
            self.path(f"{LOCK}/owner.json").write_text(owner_file)

    def path(self, remote: str) -> Path:
        return self.root / remote.removeprefix("/")

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        if argv[:3] == ["sh", "-c", TAKE_SCRIPT]:
            self.asked = True
            if self.before is not None:
                assert self.before.locked_by is not None  # taken first, alone
            if self.barrier is not None:
                self.barrier.wait()  # every server's lock is being taken at this moment
        # The line Server sends: the call guard's, the server's folders in this one.
        line = self.call_guard.guard_line(shlex.join(argv))
        self.commands.append(list(argv))
        local = line.replace(" /var/lib/", f" {self.root}/var/lib/")
        done = subprocess.run(["sh", "-c", local], input=stdin or "", capture_output=True,
                              text=True, timeout=30, check=False)
        self.call_guard.check_answer(done.returncode, done.stderr)
        return CommandResult(done.stdout, done.stderr, done.returncode)

    @property
    def locked_by(self) -> str | None:
        owner_file = self.path(f"{LOCK}/owner.json")
        owner = parse_owner(owner_file.read_text() if owner_file.exists() else None)
        return owner.token if owner else None

    def age_lock(self, seconds: int) -> None:
        """As if the lock had not been renewed for `seconds`."""
        then = time.time() - seconds
        os.utime(self.path(LOCK), (then, then))

    @property
    def on_disk(self) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*")
                      if p.is_file())


OTHER = json.dumps({"who": "alice@laptop", "since": "2026-11-26T08:00:00+00:00",
                    "task": "deploy", "tag": "v9", "token": "alices"})


def test_the_first_lock_then_all_others_at_once_and_all_released_at_the_end(
        tmp_path: Path) -> None:
    barrier = threading.Barrier(3, timeout=5)  # broken unless all three wait together
    first = FolderServer(tmp_path, "s1")
    others = [FolderServer(tmp_path, f"s{i}", barrier=barrier, before=first) for i in (2, 3, 4)]
    owner = new_owner("deploy", "v2")
    with FleetLock([first, *others], inventory(), owner) as lock:
        assert [s.locked_by for s in (first, *others)] == [owner.token] * 4
        assert lock.held == [first, *others]
    assert [s.on_disk for s in (first, *others)] == [[], [], [], []]


def test_a_second_ctrl_c_while_the_locks_are_taken_releases_those_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    servers = [FolderServer(tmp_path, f"s{i}") for i in (1, 2, 3)]
    real_on_each = fleet_lock_module.on_each

    def cut_after(group: list[Any], action: Any, **kwargs: Any) -> Any:
        errors = real_on_each(group, action, **kwargs)
        if len(group) == 2 and action.__name__ == "_take":  # the others, taken, then Ctrl-C
            raise KeyboardInterrupt
        return errors

    monkeypatch.setattr(fleet_lock_module, "on_each", cut_after)
    with pytest.raises(KeyboardInterrupt):
        FleetLock(servers, inventory(), new_owner("deploy", "v2")).__enter__()  # type: ignore[arg-type]
    assert [s.on_disk for s in servers] == [[], [], []]


def test_a_run_that_finds_the_first_server_locked_tries_no_other(tmp_path: Path) -> None:
    servers = [FolderServer(tmp_path, "s1", OTHER), FolderServer(tmp_path, "s2"),
               FolderServer(tmp_path, "s3")]
    lock = FleetLock(servers, inventory(), new_owner("deploy", "v2"))  # type: ignore[arg-type]
    with pytest.raises(LockedError, match=r"^s1 is locked"):
        lock.__enter__()
    assert [s.on_disk for s in servers[1:]] == [[], []]
    assert not any(s.asked for s in servers[1:])


def test_a_locked_server_stops_the_run_and_the_others_are_released(tmp_path: Path) -> None:
    servers = [FolderServer(tmp_path, "s1"), FolderServer(tmp_path, "s2", OTHER),
               FolderServer(tmp_path, "s3")]
    lock = FleetLock(servers, inventory(), new_owner("deploy", "v2"))  # type: ignore[arg-type]
    with pytest.raises(LockedError, match=r"^s2 is locked by alice@laptop since "
                                          r"2026-11-26T08:00:00\+00:00 \(deploy v9\), renewed "
                                          r"[01]s ago \(its lease: 60s\)\. If that run"):
        lock.__enter__()
    assert lock.failed_on == "s2"
    assert [s.locked_by for s in servers] == [None, "alices", None]


def test_of_several_locked_servers_the_first_in_the_inventory_is_named(tmp_path: Path) -> None:
    servers = [FolderServer(tmp_path, "s1"), FolderServer(tmp_path, "s2", OTHER),
               FolderServer(tmp_path, "s3", OTHER)]
    lock = FleetLock(servers, inventory(), new_owner("deploy", "v2"))  # type: ignore[arg-type]
    with pytest.raises(LockedError, match=r"^s2 is locked"):
        lock.__enter__()
    assert lock.failed_on == "s2"


def test_a_lock_that_is_no_longer_ours_is_left_alone(tmp_path: Path) -> None:
    server = FolderServer(tmp_path, "s1")
    with FleetLock([server], inventory(), new_owner("deploy", "v2")):
        server.path(f"{LOCK}/owner.json").write_text(OTHER)  # `fab unlock`, another run took it
    assert server.locked_by == "alices"


# -- the lease -------------------------------------------------------------------------------


def test_a_lock_not_renewed_for_its_lease_is_taken_over_and_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FolderServer(tmp_path, "s1")
    dead_run = new_owner("deploy", "v1")
    acquire(server, inventory(lease=10), dead_run)
    server.age_lock(11)
    state = read_lock(server, inventory())
    assert state is not None and state.stale and state.lease == 10 and state.age >= 11
    assert "not renewed for 1" in state.describe() and "stale" in state.describe()

    next_run = new_owner("deploy", "v2")
    taken = acquire(server, inventory(lease=10), next_run)
    assert taken.taken and taken.previous is not None
    assert taken.previous.owner == dead_run
    assert server.locked_by == next_run.token
    assert "took over the stale lock of" in capsys.readouterr().out
    # The dead run, should it come back, neither renews nor releases the new owner's lock.
    assert renew(server, inventory(), dead_run, timeout=5) is Renewal.NOT_OURS
    release(server, inventory(), dead_run)
    assert server.locked_by == next_run.token


def test_a_lock_within_its_own_lease_is_refused_whatever_the_readers_lease(
        tmp_path: Path) -> None:
    server = FolderServer(tmp_path, "s1")
    acquire(server, inventory(lease=60), new_owner("deploy", "v1"))
    server.age_lock(30)
    with pytest.raises(LockedError, match=r"renewed 3\ds ago \(its lease: 60s\)"):
        acquire(server, inventory(lease=5), new_owner("deploy", "v2"))


def test_a_lock_without_a_lease_file_is_judged_by_the_readers_lease(tmp_path: Path) -> None:
    server = FolderServer(tmp_path, "s1", OTHER)
    server.age_lock(20)
    with pytest.raises(LockedError):
        acquire(server, inventory(lease=30), new_owner("deploy", "v2"))
    assert acquire(server, inventory(lease=10), new_owner("deploy", "v2")).taken


def test_of_many_runs_finding_one_stale_lock_exactly_one_takes_it(tmp_path: Path) -> None:
    server = FolderServer(tmp_path, "s1", OTHER)
    server.age_lock(120)
    runs = [new_owner("deploy", f"v{i}") for i in range(8)]
    start = threading.Barrier(len(runs), timeout=10)
    outcomes: dict[str, bool] = {}

    def take(owner: Any) -> None:
        start.wait()
        try:
            outcomes[owner.token] = acquire(server, inventory(), owner).taken
        except LockedError:
            outcomes[owner.token] = False

    threads = [threading.Thread(target=take, args=(owner,)) for owner in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [token for token, taken in outcomes.items() if taken]
    assert len(outcomes) == len(runs) and len(winners) == 1
    assert server.locked_by == winners[0]
    assert not server.path(f"{LOCK}.takeover").exists()


def test_a_running_run_renews_its_locks(tmp_path: Path) -> None:
    server = FolderServer(tmp_path, "s1")
    with FleetLock([server], inventory(lease=3), new_owner("deploy", "v2")):
        server.age_lock(100)
        deadline = time.monotonic() + 10
        while (state := read_lock(server, inventory())) and state.age > 5:
            assert time.monotonic() < deadline, "never renewed"
            time.sleep(0.1)
    assert server.on_disk == []


@pytest.mark.parametrize(("stdout", "taken", "previous_age", "busy"), [
    ("taken\n", True, None, False),
    ("busy\n", False, None, True),
    (f"held 12 60\n{OTHER}\n\n", False, 12, False),
    (f"stale 75 60\n{OTHER}\n\ntaken\n", True, 75, False),
    (f"stale 75 60\n{OTHER}\n\nbusy\n", False, None, True),
    ("", False, None, True),
])
def test_the_take_scripts_answers(stdout: str, taken: bool, previous_age: int | None,
                                  busy: bool) -> None:
    result = parse_take_answer(stdout)
    assert result.taken is taken and result.busy is busy
    assert (result.previous.age if result.previous else None) == previous_age
    if result.previous:
        assert result.previous.owner.who == "alice@laptop"


def test_the_read_scripts_answers() -> None:
    assert parse_read_answer("free\n") is None
    state = parse_read_answer(f"lock 3 60\n{OTHER}\n")
    assert state is not None and not state.stale
    assert state.describe() == ("alice@laptop since 2026-11-26T08:00:00+00:00 (deploy v9), "
                                "renewed 3s ago (lease 60s)")
    unreadable = parse_read_answer("lock 61 60\n\n")
    assert unreadable is not None and unreadable.stale
    assert unreadable.owner.task == "unreadable owner file"


# -- a run that lost its lease touches nothing more ------------------------------------------


class Clock:
    """The lease's clock, moved by the test: a process stopped or asleep for N seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def renewals(server: FolderServer) -> int:
    return sum(1 for argv in server.commands if argv[:3] == ["sh", "-c", RENEW_SCRIPT])


def test_a_run_stopped_past_its_lease_does_not_touch_the_server_another_run_took_over(
        tmp_path: Path) -> None:
    """A laptop asleep: the run and its heartbeat stopped past the lease (real seconds here),
    another run takes the lock over; the first, awake again, changes nothing on the server
    (before, it went on and changed what the other run had set up)."""
    stopped = FolderServer(tmp_path, "s1")
    lease = 3
    with FleetLock([stopped], inventory(lease=lease), new_owner("deploy", "v2")) as lock:
        stopped.run(["touch", "/var/lib/slotswap/webapp/before"])
        lock.heartbeat.stop()  # the process is stopped: its heartbeat too
        time.sleep(lease * 2 / 3 + 0.2)
        stopped.age_lock(lease + 2)
        other = new_owner("deploy", "v1")
        assert acquire(FolderServer(tmp_path, "s1"), inventory(lease=lease), other).taken
        with pytest.raises(LockedError, match=r"^s1: this run's lock on it is gone \(now held "
                                              r"by \S+ since \S+ \(deploy v1\)\)"):
            stopped.run(["touch", "/var/lib/slotswap/webapp/after"])
        assert not stopped.path("/var/lib/slotswap/webapp/after").exists()
        with pytest.raises(LockedError):  # nor anything else, without asking again
            stopped.runtime_api("set server webapp/web1 state maint")
        assert stopped.sent == [] and renewals(stopped) == 1
    assert stopped.path("/var/lib/slotswap/webapp/before").exists()
    assert stopped.locked_by == other.token  # not released: it is the other run's


def test_a_healthy_run_asks_nothing_more_and_a_lapsed_lease_is_renewed_once(
        tmp_path: Path) -> None:
    """Within 2/3 of the lease since its last confirmation a call costs no round trip; past
    that (the heartbeat could not renew), one renewal first, and the run goes on when the
    lock is still its own."""
    clock = Clock()
    server = FolderServer(tmp_path, "s1")
    with FleetLock([server], inventory(lease=60), new_owner("deploy", "v2"), clock=clock):
        for _ in range(3):
            clock.now += 10
            server.run(["true"])
        assert renewals(server) == 0  # 30 s of 60: trusted
        clock.now += 15
        server.age_lock(45)
        server.runtime_api("show stat")
        server.run(["touch", "/var/lib/slotswap/webapp/after"])
        assert renewals(server) == 1
        assert server.path("/var/lib/slotswap/webapp/after").exists()
        state = read_lock(server, inventory())
        assert state is not None and state.age <= 1  # renewed


def test_a_lock_taken_while_the_run_still_trusts_its_lease_refuses_its_commands_on_the_server(
        tmp_path: Path) -> None:
    """`fab unlock`, and another run takes the lock at once: the first run's commands still
    reach the server, where the owner file's guard in front of each refuses to run them."""
    server = FolderServer(tmp_path, "s1")
    with FleetLock([server], inventory(), new_owner("deploy", "v2"), clock=Clock()):
        other = FolderServer(tmp_path, "s1")
        force_release(other, inventory())
        assert acquire(other, inventory(), new_owner("up")).taken
        with pytest.raises(LeaseLostError, match=r"^s1: this run's lock on it is gone \(now "
                                                 r"held by \S+ since \S+ \(up\)\)"):
            server.run(["touch", "/var/lib/slotswap/webapp/after"])
        assert not server.path("/var/lib/slotswap/webapp/after").exists()
        with pytest.raises(LeaseLostError):
            server.runtime_api("set server webapp/web1 state ready")
        assert server.sent == []


def test_a_renewal_waits_for_a_take_over_under_way(tmp_path: Path) -> None:
    """The take-over guard is held (another run reading the lock): the renewal waits for it,
    then finds the lock still this run's."""
    clock = Clock()
    server = FolderServer(tmp_path, "s1")
    with FleetLock([server], inventory(), new_owner("deploy", "v2"), clock=clock):
        guard = server.path(f"{LOCK}.takeover")
        guard.mkdir()
        assert renew(server, inventory(), new_owner("x"), timeout=5) is Renewal.BUSY
        threading.Timer(0.5, guard.rmdir).start()
        clock.now += 50
        server.run(["touch", "/var/lib/slotswap/webapp/after"])
        assert server.path("/var/lib/slotswap/webapp/after").exists()
        assert renewals(server) >= 3  # busy, busy, ..., renewed


def test_the_heartbeat_finds_a_lost_lock_and_every_later_call_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = FolderServer(tmp_path, "s1")
    with FleetLock([server], inventory(lease=3), new_owner("deploy", "v2")) as lock:
        server.path(f"{LOCK}/owner.json").write_text(OTHER)  # another run's now
        deadline = time.monotonic() + 10
        while not lock.lost:
            assert time.monotonic() < deadline, "the heartbeat never noticed"
            time.sleep(0.1)
        assert lock.lost == ["s1"]
        before = len(server.commands)
        with pytest.raises(LeaseLostError, match=r"now held by alice@laptop since "):
            server.run(["true"])
        assert len(server.commands) == before
    assert "WARNING: s1: this run's lock on it is gone" in capsys.readouterr().err
    assert server.locked_by == "alices"


class CutOnRelease(FolderServer):
    """Its release fails as paramiko fails on a cut connection: a bare EOFError."""

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        if argv[:3] == ["sh", "-c", RELEASE_SCRIPT]:
            raise EOFError()
        return super().run(argv, check=check, timeout=timeout, stdin=stdin)


def test_a_release_that_fails_with_no_message_is_named_and_the_others_are_released(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: `[s2] WARNING: could not release its lock (); ...`."""
    servers = [FolderServer(tmp_path, "s1"), CutOnRelease(tmp_path, "s2"),
               FolderServer(tmp_path, "s3")]
    with FleetLock(servers, inventory(lease=30), new_owner("deploy", "v2")):  # type: ignore[arg-type]
        pass
    out = capsys.readouterr()
    assert ("[s2] WARNING: could not release its lock (EOFError); it expires 30s after its "
            "last renewal") in out.out + out.err
    assert [s.locked_by is None for s in servers] == [True, False, True]
