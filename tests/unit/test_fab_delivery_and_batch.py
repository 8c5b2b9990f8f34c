"""`fab build` and `fab deploy` with `delivery: ssh` and `--batch`, as a user meets them (the
inventory's hosts are documentation addresses: nothing is contacted)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def fab(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FAB, *args], cwd=ROOT, text=True, capture_output=True, timeout=60,
                          check=False, env=env)


@pytest.mark.parametrize("batch", ["0", "0%", "101%", "two", "1;reboot"])
def test_deploy_refuses_a_bad_batch_before_reading_the_inventory(batch: str) -> None:
    result = fab("deploy", "--tag=v1", f"--batch={batch}", "--inventory=/nonexistent.yaml")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --batch: expected a number of servers at a time")


def test_help_of_deploy_documents_batch() -> None:
    assert "--batch=STRING" in fab("--help", "deploy").stdout


def test_build_with_ssh_delivery_does_not_push(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\necho "$1" >> {calls}\n')
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(yaml.safe_dump({
        "app": "webapp", "image": "registry.example.com/acme/webapp",
        "build": {"context": str(ROOT / "example")}, "delivery": "ssh",
        "hosts": ["203.0.113.10"]}))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = fab("build", "--tag=v7", f"--inventory={inventory}", env=env)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().split() == ["build"]
    assert "not pushing" in result.stdout
    assert "built registry.example.com/acme/webapp:v7" in result.stdout
