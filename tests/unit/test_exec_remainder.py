"""`slotswap exec -- CMD ARGS`: the words after `--` reach exec's --command with their quoting
kept; anywhere else `--` is refused, and under `fab` it ends in one line naming --command.
The inventory here names a documentation address: nothing is contacted."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Collection, Context, task

from slotswap.cli.program import SlotswapProgram
from slotswap.cli.remainder import words_after_double_dash

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_words_after_the_first_double_dash_are_kept_as_given() -> None:
    assert words_after_double_dash(["slotswap", "exec", "--", "sh", "-c", "echo a  b", "--"]) \
        == ["sh", "-c", "echo a  b", "--"]
    assert words_after_double_dash(["slotswap", "exec", "--command=x"]) == []


def run_program(*argv: str) -> tuple[list[str], int]:
    """The slotswap program with a stand-in exec that records the command it was given."""
    seen: list[str] = []

    @task(name="exec")
    def stand_in(c: Context, command: str = "") -> None:
        seen.append(command)

    @task
    def deploy(c: Context) -> None:
        seen.append("deploy")

    program = SlotswapProgram(name="slotswap", binary="slotswap", version="test",
                              namespace=Collection(stand_in, deploy))
    try:
        program.run(["slotswap", *argv])
        code = 0
    except SystemExit as stop:
        code = int(stop.code or 0)
    return seen, code


def test_exec_gets_the_words_after_double_dash_as_its_command() -> None:
    seen, code = run_program("exec", "--", "sh", "-c", "echo 'a b'; exit 3")
    assert code == 0
    assert [shlex.split(command) for command in seen] == [["sh", "-c", "echo 'a b'; exit 3"]]


def test_double_dash_is_refused_beside_command_and_for_other_tasks(
        capsys: pytest.CaptureFixture[str]) -> None:
    seen, code = run_program("exec", "--command", "version", "--", "version")
    assert (seen, code) == ([], 2)
    assert "with --command or after `--`, not both" in capsys.readouterr().err
    seen, code = run_program("deploy", "--", "version")
    assert (seen, code) == ([], 2)
    assert "only for exec" in capsys.readouterr().err


def test_without_double_dash_exec_is_unchanged() -> None:
    assert run_program("exec", "--command", "version") == (["version"], 0)


def test_fab_exec_with_double_dash_names_command_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run([str(BIN / "fab"), "-r", str(ROOT), "exec", "--", "version"],
                            cwd=tmp_path, text=True, capture_output=True, timeout=60,
                            check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: `fab exec -- CMD` is not available: Fabric keeps `--` for itself; use fab exec "
        "--command='CMD ARGS' (or `slotswap exec -- CMD ARGS`)"]
