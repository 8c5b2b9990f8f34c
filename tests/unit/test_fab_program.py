"""The `fab` program as a user meets it: task list, help, and bad input refused with exit 2
before any server is contacted (the inventory's hosts are documentation addresses)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
TASKS = ("init", "check", "logs", "build", "up", "deploy", "rollback", "status", "history", "lock",
         "unlock", "down", "sandbox.create", "sandbox.destroy")


def fab(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FAB, *args], cwd=cwd, text=True, capture_output=True, timeout=60,
                          check=False)


def test_list_shows_every_task_with_a_description() -> None:
    result = fab("--list")
    assert result.returncode == 0
    for name in TASKS:
        line = next(line for line in result.stdout.splitlines()
                    if line.strip().startswith(name + " "))
        assert len(line.split(maxsplit=1)[1]) > 20, line


@pytest.mark.parametrize("task", ["build", "up", "deploy", "rollback", "status", "history",
                                  "logs",
                                  "lock", "unlock", "down"])
def test_help_documents_every_flag(task: str) -> None:
    result = fab("--help", task)
    assert result.returncode == 0
    assert "--inventory=STRING" in result.stdout
    assert "Example: fab" in result.stdout
    option_lines = result.stdout.split("Options:")[1].strip().splitlines()
    flags = [line for line in option_lines if line.strip().startswith("-")]
    assert all(len(line.split("  ", 1)) == 2 for line in flags), flags


def test_deploy_without_tag_is_bad_input() -> None:
    result = fab("deploy")
    assert result.returncode == 2
    assert "--tag is required" in result.stderr


@pytest.mark.parametrize("tag", ["v1; touch /tmp/x", "$(reboot)", "-v1", "", "a" * 129])
def test_deploy_refuses_a_tag_that_is_not_a_docker_tag(tag: str) -> None:
    result = fab("deploy", f"--tag={tag}")
    assert result.returncode == 2
    assert "invalid tag" in result.stderr


def test_bad_inventory_names_file_and_key(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("app: webapp\nimage: r.example/app\nssh: {port: abc}\n"
                         "hosts: [203.0.113.10]\n")
    result = fab("status", f"--inventory={inventory}")
    assert result.returncode == 2
    assert "hosts.yaml: ssh.port:" in result.stderr


def test_missing_inventory_is_bad_input(tmp_path: Path) -> None:
    result = fab("up", f"--inventory={tmp_path}/nope.yaml")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_deploy_refuses_an_unknown_failure_policy() -> None:
    result = fab("deploy", "--tag=v1", "--on-failure=retry")
    assert result.returncode == 2
    assert "--on-failure must be one of stop, rollback" in result.stderr
