"""Several locks of a server taken in one round trip, all or none (server/lock_sets.py), by a
real sh on local folders: the shared HAProxy's lock beside an app's, and the other apps'
locks a change of the shared HAProxy takes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from slotswap.core.timings import Timings
from slotswap.remote.server import CommandResult
from slotswap.server.lock_sets import LockPlace, take_locks
from slotswap.server.locking import LockOwner


class LocalShell:
    """Just enough of a ServerLike: commands run here, by /bin/sh."""

    name = "s1"

    def __init__(self) -> None:
        self.timings = Timings()
        self.calls = 0

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        self.calls += 1
        done = subprocess.run(list(argv), input=stdin, text=True, capture_output=True,
                              check=False, env={"PATH": "/usr/bin:/bin"}, timeout=30)
        return CommandResult(done.stdout, done.stderr, done.returncode)


def owner(token: str) -> LockOwner:
    return LockOwner("alice@laptop", "2026-12-04T09:00:00+00:00", "up", "", token)


def places(root: Path, *apps: str) -> list[LockPlace]:
    return [LockPlace(str(root / app / "state"), str(root / app / "state" / "lock"))
            for app in apps]


def holder(place: LockPlace) -> str | None:
    path = Path(place.lock_dir) / "owner.json"
    return json.loads(path.read_text())["token"] if path.exists() else None


def test_every_lock_is_taken_in_one_round_trip(tmp_path: Path) -> None:
    shell = LocalShell()
    wanted = places(tmp_path, "shop", "_proxy", "admin")
    taken = take_locks(shell, wanted, owner("run-1"), 90)
    assert taken.refused is None and shell.calls == 1
    assert [lock for lock, _ in taken.results] == [place.lock_dir for place in wanted]
    assert [holder(place) for place in wanted] == ["run-1"] * 3
    assert (Path(wanted[0].lock_dir) / "lease").read_text() == "90\n"


def test_one_held_lock_refuses_them_all_and_those_taken_are_released(tmp_path: Path) -> None:
    shell = LocalShell()
    shop, proxy, admin = places(tmp_path, "shop", "_proxy", "admin")
    assert take_locks(shell, [admin], owner("admins-deploy"), 90).refused is None
    taken = take_locks(shell, [shop, proxy, admin], owner("run-1"), 90)
    assert taken.refused is not None and taken.cannot_write is None
    lock, refusal = taken.refused
    assert lock == admin.lock_dir and not refusal.taken
    assert refusal.previous is not None and refusal.previous.owner.token == "admins-deploy"
    # This run holds nothing; admin's deploy still holds its own.
    assert [holder(place) for place in (shop, proxy, admin)] == [None, None, "admins-deploy"]


def test_a_held_first_lock_refuses_before_any_other_is_made(tmp_path: Path) -> None:
    shell = LocalShell()
    shop, proxy = places(tmp_path, "shop", "_proxy")
    take_locks(shell, [shop], owner("other"), 90)
    taken = take_locks(shell, [shop, proxy], owner("run-1"), 90)
    assert taken.refused is not None and taken.refused[0] == shop.lock_dir
    assert taken.results == ()
    assert not Path(proxy.lock_dir).exists()


def test_a_stale_lock_among_them_is_taken_over(tmp_path: Path) -> None:
    shell = LocalShell()
    shop, proxy = places(tmp_path, "shop", "_proxy")
    take_locks(shell, [proxy], owner("gone"), 5)
    old = time.time() - 60
    os.utime(proxy.lock_dir, (old, old))
    taken = take_locks(shell, [shop, proxy], owner("run-1"), 90)
    assert taken.refused is None
    over = dict(taken.results)[proxy.lock_dir]
    assert over.taken and over.previous is not None and over.previous.owner.token == "gone"
    assert holder(proxy) == holder(shop) == "run-1"


def test_a_state_folder_this_login_cannot_make_releases_the_others(tmp_path: Path) -> None:
    shell = LocalShell()
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # nobody can make a folder below a file, root included
    shop = places(tmp_path, "shop")[0]
    proxy = LockPlace(str(blocked / "state"), str(blocked / "state" / "lock"))
    taken = take_locks(shell, [shop, proxy], owner("run-1"), 90)
    assert taken.cannot_write == proxy.state_dir
    assert holder(shop) is None


def test_paths_are_arguments_never_shell_text(tmp_path: Path) -> None:
    shell = LocalShell()
    odd = tmp_path / "a b" / "$(touch pwned)"
    place = LockPlace(str(odd / "state"), str(odd / "state" / "lock"))
    assert take_locks(shell, [place], owner("run-1"), 90).refused is None
    assert holder(place) == "run-1"
    assert not list(tmp_path.rglob("pwned")) and not Path("pwned").exists()
