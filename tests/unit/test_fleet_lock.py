"""FleetLock against servers that keep their files in memory: every lock taken at the same
time, a refused one releases the others, and only this run's locks are released."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from slotswap.inventory import Inventory, parse_inventory
from slotswap.locking import (
    LOCK_HELD,
    RELEASE_SCRIPT,
    TAKE_SCRIPT,
    FleetLock,
    LockedError,
    new_owner,
    parse_owner,
)
from slotswap.remote import CommandResult

LOCK = "/var/lib/slotswap/webapp/lock"


def inventory() -> Inventory:
    return parse_inventory({"app": "webapp", "image": "r/webapp", "hosts": ["203.0.113.10"]},
                           Path("/srv/hosts.yaml"))


class MemoryServer:
    """Runs the lock scripts the way sh would, on a dict of files."""

    def __init__(self, name: str, owner_file: str | None = None,
                 barrier: threading.Barrier | None = None,
                 before: MemoryServer | None = None) -> None:
        self.name, self.barrier, self.before = name, barrier, before
        self.files: dict[str, str] = {}
        self.asked = False
        if owner_file is not None:
            self.files[f"{LOCK}/owner.json"] = owner_file

    def run(self, argv: list[str], *, check: bool = True, stdin: str | None = None,
            **_: Any) -> CommandResult:
        if argv[:3] == ["sh", "-c", TAKE_SCRIPT]:
            self.asked = True
            if self.before is not None:
                assert self.before.locked_by is not None  # taken first, alone
            if self.barrier is not None:
                self.barrier.wait()  # every server's lock is being taken at this moment
            if any(path.startswith(f"{argv[5]}/") for path in self.files):
                # What the script's exit code says, in whatever language mkdir speaks.
                return CommandResult("", f"mkdir: Verzeichnis „{argv[5]}“ kann nicht angelegt "
                                         "werden: Die Datei existiert bereits\n", LOCK_HELD)
            self.files[f"{argv[5]}/owner.json"] = stdin or ""
            return CommandResult("", "", 0)
        if argv[:3] == ["sh", "-c", RELEASE_SCRIPT]:
            token, directory = argv[4], argv[5]
            if token in self.files.get(f"{directory}/owner.json", ""):
                self.files = {p: t for p, t in self.files.items()
                              if not p.startswith(f"{directory}/")}
            return CommandResult("", "", 0)
        if argv[0] == "cat":
            text = self.files.get(argv[1])
            return CommandResult(text or "", "", 0 if text is not None else 1)
        raise AssertionError(f"unexpected command {argv}")

    def read_file(self, path: str) -> str | None:
        return self.files.get(path)

    @property
    def locked_by(self) -> str | None:
        owner = parse_owner(self.files.get(f"{LOCK}/owner.json"))
        return owner.token if owner else None


OTHER = json.dumps({"who": "alice@laptop", "since": "2026-11-26T08:00:00+00:00",
                    "task": "deploy", "tag": "v9", "token": "alices"})


def test_the_first_lock_then_all_others_at_once_and_all_released_at_the_end() -> None:
    barrier = threading.Barrier(3, timeout=5)  # broken unless all three wait together
    first = MemoryServer("s1")
    others = [MemoryServer(f"s{i}", barrier=barrier, before=first) for i in (2, 3, 4)]
    owner = new_owner("deploy", "v2")
    with FleetLock([first, *others], inventory(), owner) as lock:  # type: ignore[list-item]
        assert [s.locked_by for s in (first, *others)] == [owner.token] * 4
        assert lock.held == [first, *others]
    assert [s.files for s in (first, *others)] == [{}, {}, {}, {}]


def test_a_run_that_finds_the_first_server_locked_tries_no_other() -> None:
    servers = [MemoryServer("s1", OTHER), MemoryServer("s2"), MemoryServer("s3")]
    lock = FleetLock(servers, inventory(), new_owner("deploy", "v2"))  # type: ignore[arg-type]
    with pytest.raises(LockedError, match=r"^s1 is locked"):
        lock.__enter__()
    assert [s.files for s in servers[1:]] == [{}, {}]
    assert not any(s.asked for s in servers[1:])


def test_a_locked_server_stops_the_run_and_the_others_are_released() -> None:
    servers = [MemoryServer("s1"), MemoryServer("s2", OTHER), MemoryServer("s3")]
    lock = FleetLock(servers, inventory(), new_owner("deploy", "v2"))  # type: ignore[arg-type]
    with pytest.raises(LockedError, match=r"^s2 is locked by alice@laptop since "
                                          r"2026-11-26T08:00:00\+00:00 \(deploy v9\)"):
        lock.__enter__()
    assert lock.failed_on == "s2"
    assert [s.locked_by for s in servers] == [None, "alices", None]


def test_of_several_locked_servers_the_first_in_the_inventory_is_named() -> None:
    servers = [MemoryServer("s1"), MemoryServer("s2", OTHER), MemoryServer("s3", OTHER)]
    lock = FleetLock(servers, inventory(), new_owner("deploy", "v2"))  # type: ignore[arg-type]
    with pytest.raises(LockedError, match=r"^s2 is locked"):
        lock.__enter__()
    assert lock.failed_on == "s2"


def test_a_lock_that_is_no_longer_ours_is_left_alone() -> None:
    server = MemoryServer("s1")
    with FleetLock([server], inventory(), new_owner("deploy", "v2")):  # type: ignore[list-item]
        server.files[f"{LOCK}/owner.json"] = OTHER  # `fab unlock`, then another run took it
    assert server.locked_by == "alices"
