"""The example CI pipeline: valid YAML, SSH key and known_hosts from the pipeline's secrets,
and only `fab` tasks and flags that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from tasks.cli import collection

PIPELINE = Path(__file__).resolve().parents[2] / "example" / "ci" / "github-actions.yml"


def run_lines() -> list[str]:
    data = yaml.safe_load(PIPELINE.read_text())
    steps = [step for job in data["jobs"].values() for step in job["steps"]]
    return [line for step in steps for line in str(step.get("run", "")).splitlines()]


def test_pipeline_parses_and_takes_ssh_material_from_secrets() -> None:
    text = PIPELINE.read_text()
    data = yaml.safe_load(text)
    assert data["jobs"]["deploy"]["steps"]
    assert "${{ secrets.SSH_PRIVATE_KEY }}" in text
    assert "${{ secrets.SSH_KNOWN_HOSTS }}" in text
    assert any("~/.ssh/known_hosts" in line for line in run_lines())
    assert any("chmod 600 ~/.ssh/id_ed25519" in line for line in run_lines())


def test_pipeline_builds_pushes_and_deploys_with_json() -> None:
    invocations = [shlex.split(line.split(">")[0]) for line in run_lines()
                   if line.strip().startswith("fab ")]
    tasks_used = [words[3] if words[1] == "-r" else words[1] for words in invocations]
    assert tasks_used[0] == "build" and "deploy" in tasks_used
    assert any("--json" in words for words in invocations)


def test_pipeline_uses_only_tasks_and_flags_that_exist() -> None:
    tasks = collection()
    for line in run_lines():
        if not line.strip().startswith("fab "):
            continue
        words = shlex.split(line.split(">")[0])
        name = words[3] if words[1] == "-r" else words[1]
        task = tasks[name]
        flags = {a.name.replace("_", "-") for a in task.get_arguments()}
        for word in words:
            match = re.match(r"--([a-z-]+)", word)
            if match and words.index(word) > words.index(name):
                assert match.group(1) in flags, (name, word)
