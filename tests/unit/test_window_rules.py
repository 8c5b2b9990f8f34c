"""slotswap.fleet.watch_window: when the window closes, what a failure means for the other
watches, and that close() waits for every watch."""

from __future__ import annotations

import threading
import time

from slotswap.fleet.watch_window import WatchWindow


def test_the_window_closes_its_length_after_the_last_switch() -> None:
    window = WatchWindow(5, revert_on_failure=False)
    window.switched(100.0)
    window.switched(103.5)
    window.switched(101.0)  # a batch's servers report in any order
    assert window.closes_at() is None  # servers may still switch
    window.close()
    assert window.closes_at() == 108.5


def test_with_no_switch_the_window_closes_now() -> None:
    window = WatchWindow(5, revert_on_failure=False)
    before = time.monotonic()
    window.close()
    closes = window.closes_at()
    assert closes is not None and before + 5 <= closes <= time.monotonic() + 5


def test_the_first_failure_is_kept_and_reverts_only_with_rollback() -> None:
    stop = WatchWindow(5, revert_on_failure=False)
    stop.fail("s3: failed its checks")
    stop.fail("s1: went back with the rest")
    assert stop.failure() == "s3: failed its checks"
    assert stop.revert_reason() is None  # the servers done keep the new version
    rollback = WatchWindow(5, revert_on_failure=True)
    assert rollback.revert_reason() is None
    rollback.fail("s3: failed its checks")
    assert rollback.revert_reason() == "--on-failure=rollback: s3: failed its checks"


def test_close_waits_for_every_watch_to_end() -> None:
    window = WatchWindow(0.05, revert_on_failure=False)
    ended: list[str] = []
    release = threading.Event()

    def watch(name: str) -> None:
        while (closes := window.closes_at()) is None or time.monotonic() < closes:
            release.wait(0.01)
        ended.append(name)

    window.switched(time.monotonic())
    for name in ("s1", "s2"):
        window.watch(name, lambda name=name: watch(name))
    assert ended == []
    window.close()
    assert sorted(ended) == ["s1", "s2"]


def test_a_failure_told_early_stops_the_rollout_and_the_full_one_is_named() -> None:
    window = WatchWindow(5, revert_on_failure=True)
    window.failing("s1: v2 failed its checks; rolled back to v1")
    assert window.failure() == "s1: v2 failed its checks; rolled back to v1"
    assert window.revert_reason() == "--on-failure=rollback: s1: v2 failed its checks; " \
                                     "rolled back to v1"
    window.failing("s2: a later one")
    window.fail("s1: v2 failed its checks; rolled back to v1; its last output: ...")
    assert window.failure() == "s1: v2 failed its checks; rolled back to v1; its last output: ..."
