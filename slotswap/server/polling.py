"""Waiting on a server for a condition the swap needs (an address in HAProxy, a slot passing
its checks): cheap looks often, an expensive one (the container itself, over SSH) now and
then, a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

from slotswap.core.interrupts import checkpoint
from slotswap.server.swap_errors import SwapError

POLL_INTERVAL = 0.05
CONTAINER_CHECK_INTERVAL = 1.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str, *,
             look: Callable[[], None], detail: Callable[[], str] = lambda: "") -> None:
    """Poll `condition` (runtime API reads: cheap); call `look` (which raises when the
    container died: a command over SSH, not cheap) only now and then, and at the deadline
    before SwapError says what was awaited."""
    started = time.monotonic()
    next_look = started + CONTAINER_CHECK_INTERVAL
    while not condition():
        checkpoint()
        now = time.monotonic()
        if now > next_look:
            look()
            next_look = now + CONTAINER_CHECK_INTERVAL
        if now > started + timeout:
            look()
            extra = detail()
            raise SwapError(f"timed out after {timeout:g}s waiting for {what}"
                            + (f" ({extra})" if extra else ""), "")
        time.sleep(POLL_INTERVAL)
