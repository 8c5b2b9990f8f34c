"""Ctrl-C (SIGINT) and SIGTERM during a run: noted at once, acted on at the next safe point.

A KeyboardInterrupt raised wherever the signal lands can cut an SSH packet in half and
leave the connection unusable for the very steps that put the server back in order, so
while a run is guarded the signal only sets a flag; `checkpoint()` between steps and in
polling loops turns it into a KeyboardInterrupt where recovery can follow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_requested = threading.Event()


def checkpoint() -> None:
    if _requested.is_set():
        raise KeyboardInterrupt


def requested() -> bool:
    return _requested.is_set()


def _note(signum: int, frame: FrameType | None) -> None:
    if not _requested.is_set():
        # Straight to the file descriptor: the signal may land while the main thread holds
        # the output lock or is inside a stream's buffer, and neither is reentrant.
        message = (f"\n{signal.Signals(signum).name}: stopping at the next safe point; every "
                   "server is left serving one version\n")
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), message.encode())
    _requested.set()


@contextmanager
def guarded() -> Iterator[None]:
    """Signals become a request to stop, for the length of the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous = {sig: signal.signal(sig, _note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
