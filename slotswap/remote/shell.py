"""What the login shell prints before a command, kept apart from the command's output.

sshd runs every command through the login's shell, and bash reads ~/.bashrc even for
`ssh host command`: a motd-style `echo` there lands in the command's stdout or stderr.
Every command therefore first prints a marker of its own on both, and only what follows
the marker is the command's output. LC_ALL=C keeps the messages of the tools the kit reads
in English (the kit decides on exit codes, never on a message, but shows the messages).
"""

from __future__ import annotations

import io
import secrets
import shlex
from collections.abc import Callable

MARKER_PREFIX = "slotswap-output-starts-"


def new_marker() -> str:
    """A marker no start-up file can print by chance."""
    return MARKER_PREFIX + secrets.token_hex(8)


def with_marker(line: str, marker: str) -> str:
    """`line` (a shell command line) preceded by the marker on stdout and on stderr, run by
    the login shell with LC_ALL=C."""
    mark = shlex.quote(marker)
    return (f"printf '%s\\n' {mark}; printf '%s\\n' {mark} >&2; "
            f"LC_ALL=C; export LC_ALL; {line}")


def after_marker(text: str, marker: str, *, missing: str | None = None) -> str:
    """What the command wrote: the text after the marker's line. Without a marker the shell
    never reached the command: `missing` when given (stdout: nothing of it is output),
    else the whole text (stderr: it may say why, e.g. an unusable login shell)."""
    _, found, rest = text.partition(marker + "\n")
    if found:
        return rest
    return text if missing is None else missing


class MarkerGate:
    """Hands on the lines that follow the marker's line; drops the ones before it."""

    def __init__(self, marker: str, on_line: Callable[[str], None]):
        self.marker, self.on_line, self.open = marker, on_line, False

    def __call__(self, line: str) -> None:
        if self.open:
            self.on_line(line)
        elif line.endswith(self.marker):  # text printed without a newline precedes it
            self.open = True


class LineSink(io.TextIOBase):
    """A stream for Fabric's output that hands on whole lines."""

    def __init__(self, on_line: Callable[[str], None]):
        super().__init__()
        self._on_line, self._pending = on_line, ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._on_line(line)
        return len(text)

    def flush_rest(self) -> None:
        if self._pending:
            self._on_line(self._pending)
            self._pending = ""

