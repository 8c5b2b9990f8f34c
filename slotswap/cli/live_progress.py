"""Live progress on a terminal: one line per server (current step, time since the server's
first step), updated in place. Anything else said prints above those lines. When the
output is not a terminal (CI logs, pipes) nothing of this runs: progress stays plain
`[server  1.2s] step` lines, one per step.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TextIO

from slotswap.core import output

REDRAW_INTERVAL = 0.25
FINAL_STEPS = ("done", "FAILED")  # a server whose step starts so has stopped its clock
UP_AND_CLEAR = "\x1b[{n}F\x1b[J"  # cursor up n lines to column 1, clear to the end


@dataclass
class ServerLine:
    server: str
    first_seen: float  # when its first step came
    step: str
    step_seen: float  # when its current step came


def render(lines: list[ServerLine], now: float, active: str | None, columns: int) -> list[str]:
    """Pure: the display's text. The active server (the last one updated, unless its step
    is final) keeps counting; the others show the time their current step came at."""
    width = max((len(line.server) for line in lines), default=0)
    shown = []
    for line in lines:
        ticking = line.server == active and not line.step.startswith(FINAL_STEPS)
        elapsed = (now if ticking else line.step_seen) - line.first_seen
        mark = ">" if ticking else " "
        text = f"{mark} {line.server:<{width}} {elapsed:6.1f}s  {line.step}"
        shown.append(text[:max(columns - 1, 10)])
    return shown


class LiveBoard:
    """The display; its methods run under output.PRINT_LOCK."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic,
                 columns: Callable[[], int] = lambda: shutil.get_terminal_size().columns):
        self.stream, self.clock, self.columns = stream, clock, columns
        self.lines: dict[str, ServerLine] = {}
        self.active: str | None = None
        self.drawn = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="live-progress", daemon=True)

    def update(self, server: str, message: str) -> None:
        now = self.clock()
        line = self.lines.get(server)
        if line is None:
            self.lines[server] = ServerLine(server, now, message, now)
        else:
            line.step, line.step_seen = message, now
        self.active = server
        self.redraw()

    def write_above(self, message: str) -> None:
        self._clear()
        self.stream.write(message + "\n")
        self._draw()

    def redraw(self) -> None:
        self._clear()
        self._draw()

    def _clear(self) -> None:
        if self.drawn:
            self.stream.write(UP_AND_CLEAR.format(n=self.drawn))
            self.drawn = 0

    def _draw(self) -> None:
        text = render(list(self.lines.values()), self.clock(), self.active, self.columns())
        for line in text:
            self.stream.write(line + "\n")
        self.drawn = len(text)
        self.stream.flush()

    def _tick(self) -> None:
        while not self._stopped.wait(REDRAW_INTERVAL):
            with output.PRINT_LOCK, contextlib.suppress(OSError, ValueError):
                self.redraw()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Freeze the lines where they are and leave them on the screen."""
        self._stopped.set()
        self._thread.join()
        with output.PRINT_LOCK, contextlib.suppress(OSError, ValueError):
            self.active = None
            self.redraw()


def wants_live(stream: TextIO, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return terminal and environ.get("TERM", "") not in ("", "dumb") \
        and not environ.get("SLOTSWAP_PLAIN_OUTPUT")


@contextlib.contextmanager
def live_progress_if_terminal(stream: TextIO | None = None) -> Iterator[LiveBoard | None]:
    """On a terminal: the live display for the duration; elsewhere: nothing changes."""
    stream = stream or output.message_stream()
    if not wants_live(stream):
        yield None
        return
    board = LiveBoard(stream)
    output.set_live_display(board)
    board.start()
    try:
        yield board
    finally:
        board.stop()
        output.set_live_display(None)
