"""Ctrl-C (SIGINT) and SIGTERM during a run: noted at once, acted on at the next safe point;
a second one stops the run at once.

A KeyboardInterrupt raised wherever the signal lands can cut an SSH packet in half and
leave the connection unusable for the very steps that put the server back in order, so
while a run is guarded the first signal only sets a flag; `checkpoint()` between steps and
in polling loops turns it into a KeyboardInterrupt where recovery can follow.

The second signal is the operator saying "now": every SSH connection is cut (the
callbacks registered with `when_stopping_now`, which only shut sockets down: safe inside a
signal handler) and KeyboardInterrupt is raised right there. The run then reports, with
short deadlines and over new connections, what each server was left serving.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

# Seconds the run spends, after a second signal, finding out what each server serves (and
# releasing its locks): every server at once, over new connections.
REPORT_AFTER_STOP_SECONDS = 5.0

_requested = threading.Event()
_now = threading.Event()
_stopping_now_callbacks: list[Callable[[], None]] = []


def checkpoint() -> None:
    if _requested.is_set():
        raise KeyboardInterrupt


def requested() -> bool:
    return _requested.is_set()


def stopping_now() -> bool:
    """A second signal came: do only what is quick, with short deadlines."""
    return _now.is_set()


def when_stopping_now(callback: Callable[[], None]) -> None:
    """`callback` runs inside the signal handler of the second signal: it must not take
    locks (shutting a socket down is fine)."""
    _stopping_now_callbacks.append(callback)


def _write(message: str) -> None:
    # Straight to the file descriptor: the signal may land while the main thread holds
    # the output lock or is inside a stream's buffer, and neither is reentrant.
    with contextlib.suppress(OSError):
        os.write(sys.stderr.fileno(), message.encode())


def _note(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if not _requested.is_set():
        _requested.set()
        _write(f"\n{name}: stopping at the next safe point; every server is left serving one "
               f"version ({name} again stops at once)\n")
        return
    if _now.is_set():
        raise KeyboardInterrupt  # already stopping: the report has its own deadline
    _now.set()
    _write(f"\n{name} again: stopping now; releasing the locks and finding out what each "
           f"server serves (at most {2 * REPORT_AFTER_STOP_SECONDS:g}s)\n")
    for callback in _stopping_now_callbacks:
        with contextlib.suppress(Exception):
            callback()
    raise KeyboardInterrupt


@contextmanager
def guarded() -> Iterator[None]:
    """Signals become a request to stop, for the length of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    _now.clear()
    previous = {sig: signal.signal(sig, _note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
