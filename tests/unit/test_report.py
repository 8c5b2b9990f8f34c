"""--json documents, the line splitting that prefixes `fab logs` output, and bad flags."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slotswap.cli import report
from slotswap.core import output
from slotswap.core.timings import Timings, table
from slotswap.fleet.outcomes import RolloutResult, ServerOutcome
from slotswap.fleet.status import ServerStatus
from slotswap.remote.shell import LineSink

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def test_rollout_document_has_every_server_field() -> None:
    result = RolloutResult("v2", [
        ServerOutcome("s1", "10.0.0.1", "v1", "v2", "deployed", 3.23456, "v2 in web2",
                      switch_seconds=1.23456, watched_requests=812, watched_errors=1),
        ServerOutcome("s2", "10.0.0.2", None, "v2", "failed", 3.0, "v1 in web1", "timed out"),
    ], exit_code=1, message="deploy of v2 stopped at s2: timed out")

    document = report.rollout_document("deploy", result)

    assert document["ok"] is False and document["exit_code"] == 1
    assert document["servers"][0] == {
        "name": "s1", "address": "10.0.0.1", "old_tag": "v1", "new_tag": "v2",
        "outcome": "deployed", "seconds": 3.235, "switch_seconds": 1.235,
        "watched": {"requests": 812, "errors": 1}, "error": None, "serving": "v2 in web2",
        "timings": None}
    assert document["servers"][1]["switch_seconds"] is None  # it never switched
    assert document["servers"][1]["watched"] is None
    assert document["servers"][1]["error"] == "timed out"
    assert document["servers"][1]["old_tag"] is None
    assert document["timings"] == {}
    json.dumps(document)


def test_rollout_document_says_where_each_server_s_seconds_went() -> None:
    clock = iter([0.0, 0.25, 0.25, 1.0, 2.0, 2.5]).__next__
    server, phases = Timings(clock), Timings(clock)
    server.begin("image")
    server.round_trip()
    server.begin("swap")  # ends `image` after 0.25 s
    server.round_trip()
    server.round_trip()
    server.end()  # `swap`: 0.75 s
    phases.begin("swaps")
    phases.end()
    server.round_trip()  # outside any step (the lock's renewals)
    result = RolloutResult("v2", [ServerOutcome("s1", "10.0.0.1", new_tag="v2", timings=server)])
    result.timings = phases

    document = report.rollout_document("deploy", result)

    assert document["timings"] == {"swaps": 0.5}
    assert document["servers"][0]["timings"] == {
        "steps": {"image": {"seconds": 0.25, "round_trips": 1},
                  "swap": {"seconds": 0.75, "round_trips": 2},
                  "lease": {"seconds": None, "round_trips": 1}},
        "round_trips": 4}
    header, rows = table([("s1", server)])
    assert header == ("server", "image", "swap", "lease", "round trips")
    assert rows == [("s1", "0.25 (1)", "0.75 (2)", "- (1)", "4")]


def test_status_document() -> None:
    reports = [ServerStatus("s1", "10.0.0.1", "web2", "v2", ["web1: ...", "web2: ..."],
                            maintenance=True),
               ServerStatus("s2", "10.0.0.2", "?", "?", [], error="cannot connect")]
    document = report.status_document(reports, 3)
    assert document["servers"][0]["live"] == "web2"
    assert document["servers"][0]["maintenance"] is True
    assert document["servers"][1] == {"name": "s2", "address": "10.0.0.2", "live": None,
                                      "version": None, "slots": [], "maintenance": None,
                                      "haproxy": None, "web": True, "roles": [],
                                      "error": "cannot connect"}


def test_emit_writes_one_document_and_messages_go_to_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    output.messages_to_stderr()
    try:
        output.say("progress")
        report.emit({"ok": True})
    finally:
        output.messages_to_stderr(False)
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": True}
    assert captured.err == "progress\n"


def test_line_sink_hands_on_whole_lines() -> None:
    lines: list[str] = []
    sink = LineSink(lines.append)
    sink.write("one\ntw")
    sink.write("o\nthree")
    assert lines == ["one", "two"]
    sink.flush_rest()
    assert lines == ["one", "two", "three"]


def fab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FAB, *args], cwd=ROOT, text=True, capture_output=True, timeout=60,
                          check=False)


def test_json_and_dry_run_together_is_bad_input() -> None:
    result = fab("deploy", "--tag=v2", "--json", "--dry-run")
    assert result.returncode == 2
    assert "give --json or --dry-run" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("args", "problem"), [(("--slot=blue",), "--slot must be one of"),
                                               (("--lines=-1",), "--lines must be 0 or more")])
def test_logs_refuses_bad_flags_before_contacting_anything(args: tuple[str, ...],
                                                           problem: str) -> None:
    result = fab("logs", *args)
    assert result.returncode == 2
    assert problem in result.stderr
