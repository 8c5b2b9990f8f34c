"""What the operator reads: progress lines per server and the summary table."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO

_print_lock = threading.Lock()
PRINT_LOCK = _print_lock  # for a live display's redraws
_messages_to_stderr = False


class LiveDisplay(Protocol):
    """Per-server lines updated in place on a terminal (slotswap.cli.live_progress)."""

    stream: TextIO

    def update(self, server: str, message: str) -> None: ...

    def write_above(self, message: str) -> None: ...


_live: LiveDisplay | None = None


def set_live_display(display: LiveDisplay | None) -> None:
    """While set, progress updates the display and messages print above it."""
    global _live
    _live = display


def message_stream() -> TextIO:
    return sys.stderr if _messages_to_stderr else sys.stdout


def messages_to_stderr(on: bool = True) -> None:
    """From now on everything said goes to stderr: stdout carries one JSON document."""
    global _messages_to_stderr
    _messages_to_stderr = on


def say(message: str) -> None:
    _write(message, message_stream())


def warn(message: str) -> None:
    _write(message, sys.stderr)


def _write(message: str, stream: TextIO) -> None:
    # A closed terminal or pipe must not abort a deploy halfway through a swap.
    with _print_lock, contextlib.suppress(OSError, ValueError):
        if _live is not None and stream is _live.stream:
            _live.write_above(message)
            return
        print(message, file=stream, flush=True)


def progress_for(server: str, width: int = 8) -> Callable[[str], None]:
    """A printer of `[server  +1.2s] message` lines, timed from its creation."""
    started = time.monotonic()

    def progress(message: str) -> None:
        if _live is not None:
            with _print_lock, contextlib.suppress(OSError, ValueError):
                _live.update(server, message)
            return
        elapsed = time.monotonic() - started
        say(f"[{server:<{width}} {elapsed:5.1f}s] {message}")

    return progress


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             .rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
