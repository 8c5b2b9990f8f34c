"""Live progress: the rendering function, the plain path when the output is not a terminal,
and the in-place display on a real pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import select
import sys
import time

import pytest

from slotswap.cli import live_progress
from slotswap.cli.live_progress import LiveBoard, ServerLine, render, wants_live
from slotswap.core import output


def test_render_ticks_only_the_active_unfinished_server() -> None:
    lines = [ServerLine("s1", 10.0, "done in 3.0s: serves v2 in web2", 13.0),
             ServerLine("s2", 13.0, "waiting for HAProxy's health checks of web1", 14.0),
             ServerLine("s10", 9.0, "pulling registry/app:v2", 9.5)]
    shown = render(lines, now=20.0, active="s2", columns=200)
    assert shown == [
        "  s1     3.0s  done in 3.0s: serves v2 in web2",
        "> s2     7.0s  waiting for HAProxy's health checks of web1",
        "  s10    0.5s  pulling registry/app:v2",
    ]


def test_render_cuts_lines_to_the_terminal_width() -> None:
    shown = render([ServerLine("s1", 0.0, "x" * 100, 0.0)], now=1.0, active="s1", columns=40)
    assert len(shown[0]) == 39


def test_a_finished_active_server_stops_counting() -> None:
    shown = render([ServerLine("s1", 0.0, "FAILED: timed out", 5.0)], now=60.0, active="s1",
                   columns=80)
    assert shown == ["  s1    5.0s  FAILED: timed out"]


def test_not_a_terminal_means_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with live_progress.live_progress_if_terminal() as board:
        assert board is None
        output.progress_for("s1")("pulling app:v2")
        output.say("summary")
    assert capsys.readouterr().out.splitlines() == ["[s1         0.0s] pulling app:v2",
                                                    "summary"]


@pytest.mark.parametrize(("environ", "wanted"), [({"TERM": "xterm"}, True),
                                                 ({"TERM": "dumb"}, False), ({}, False),
                                                 ({"TERM": "xterm",
                                                   "SLOTSWAP_PLAIN_OUTPUT": "1"}, False)])
def test_wants_live_on_a_real_terminal_only(environ: dict[str, str], wanted: bool) -> None:
    main, secondary = pty.openpty()
    try:
        with os.fdopen(secondary, "w", closefd=False) as terminal:
            assert wants_live(terminal, environ) is wanted
        assert wants_live(io.StringIO(), {"TERM": "xterm"}) is False
    finally:
        os.close(main)
        os.close(secondary)


def read_all(fd: int) -> str:
    """What the pty has for us: the kernel hands it over asynchronously, maybe in pieces, so
    read until nothing more comes for a moment (bounded to 5 s)."""
    chunks, deadline = [], time.monotonic() + 5
    while time.monotonic() < deadline and select.select([fd], [], [], 0.3)[0]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks).decode()


def test_on_a_pty_lines_are_updated_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    main, secondary = pty.openpty()
    clock = iter(float(n) for n in range(100))
    try:
        with os.fdopen(secondary, "w", closefd=False) as terminal:
            monkeypatch.setattr(sys, "stdout", terminal)
            board = LiveBoard(terminal, clock=lambda: next(clock), columns=lambda: 80)
            output.set_live_display(board)
            try:
                output.progress_for("s1")("live slot web1 (v1); v2 goes into web2")
                output.progress_for("s1")("waiting for HAProxy's health checks of web2")
                output.say("a message above the lines")
            finally:
                output.set_live_display(None)
        written = read_all(main)
    finally:
        os.close(main)
        os.close(secondary)
    # Each update went back up over the line drawn before and drew it again.
    assert written.count("\x1b[1F\x1b[J") == 2
    assert "a message above the lines" in written
    last = written.rsplit("\x1b[J", 1)[1]
    assert "a message above the lines" in last
    assert "s1" in last and "health checks of web2" in last
