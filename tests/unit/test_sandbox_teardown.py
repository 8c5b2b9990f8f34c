"""testbed.sandbox.is_gone: a daemon this process started is gone once it has exited, though
nobody has reaped it yet (create() and destroy() in one process: tests, benchmarks)."""

from __future__ import annotations

import os
import subprocess
import time

from testbed.sandbox import is_gone


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


def test_an_exited_child_that_was_never_reaped_is_gone() -> None:
    # Spawned outside subprocess's bookkeeping, which reaps dropped Popen objects of its own
    # whenever another Popen is made (create() drops its daemons' Popen objects).
    pid = os.posix_spawnp("true", ["true"], dict(os.environ))
    deadline = time.monotonic() + 10
    while state_of(pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert state_of(pid) == "Z"
    os.kill(pid, 0)  # a zombie still answers signal 0...
    assert is_gone(pid)  # ...but it has ended, and is reaped here


def test_a_running_process_is_not_gone() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert not is_gone(child.pid)
    finally:
        child.kill()
        child.wait()
    assert is_gone(child.pid)
