"""The example CI pipeline: valid YAML, SSH key and known_hosts from the pipeline's secrets,
a pinned release of the kit, and only `slotswap` tasks and flags that exist."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from slotswap.cli.tasks import collection

CI = Path(__file__).resolve().parents[2] / "example" / "ci"
GITHUB, GITLAB = CI / "github-actions.yml", CI / "gitlab-ci.yml"
SECRET_REFERENCES = {GITHUB: ("${{ secrets.SSH_PRIVATE_KEY }}", "${{ secrets.SSH_KNOWN_HOSTS }}"),
                     GITLAB: ('"$SSH_PRIVATE_KEY"', '"$SSH_KNOWN_HOSTS"')}
PIPELINES = pytest.mark.parametrize("pipeline", [GITHUB, GITLAB], ids=["github", "gitlab"])


def run_lines(pipeline: Path) -> list[str]:
    """Every shell line the pipeline runs."""
    data = yaml.safe_load(pipeline.read_text())
    if pipeline == GITHUB:
        steps = [step for job in data["jobs"].values() for step in job["steps"]]
        return [line for step in steps for line in str(step.get("run", "")).splitlines()]
    jobs = [job for job in data.values() if isinstance(job, dict) and "script" in job]
    return [line for job in jobs
            for line in [*job.get("before_script", []), *job["script"]]]


@PIPELINES
def test_pipeline_parses_and_takes_ssh_material_from_secrets(pipeline: Path) -> None:
    text = pipeline.read_text()
    for reference in SECRET_REFERENCES[pipeline]:
        assert reference in text
    assert any("> ~/.ssh/known_hosts" in line for line in run_lines(pipeline))
    assert any("chmod 600 ~/.ssh/id_ed25519" in line for line in run_lines(pipeline))


def invocations(pipeline: Path) -> list[list[str]]:
    return [shlex.split(line.split(">")[0]) for line in run_lines(pipeline)
            if line.strip().startswith("slotswap ")]


@PIPELINES
def test_pipeline_checks_builds_pushes_and_deploys_with_json(pipeline: Path) -> None:
    tasks_used = [words[1] for words in invocations(pipeline)]
    assert tasks_used[:2] == ["check", "build"] and "deploy" in tasks_used
    assert any("--json" in words for words in invocations(pipeline))


@PIPELINES
def test_pipeline_installs_a_pinned_release_of_the_kit(pipeline: Path) -> None:
    installs = sorted({line for line in run_lines(pipeline) if "pip install" in line})
    assert len(installs) == 1
    assert "slotswap @ git+https://" in installs[0] and "@v${SLOTSWAP_VERSION}" in installs[0]
    assert re.search(r'SLOTSWAP_VERSION: "\d+\.\d+\.\d+"', pipeline.read_text())


@PIPELINES
def test_pipeline_uses_only_tasks_and_flags_that_exist(pipeline: Path) -> None:
    tasks = collection()
    for words in invocations(pipeline):
        name = words[1]
        task = tasks[name]
        flags = {a.name.replace("_", "-") for a in task.get_arguments()}
        for word in words:
            match = re.match(r"--([a-z-]+)", word)
            if match and words.index(word) > words.index(name):
                assert match.group(1) in flags, (name, word)


def test_the_pinned_release_is_this_version_everywhere() -> None:
    """The README's install line and both pipelines pin the version pyproject.toml builds."""
    root = CI.parents[1]
    version = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(),
                        re.MULTILINE)
    assert version
    for pipeline in (GITHUB, GITLAB):
        assert f'SLOTSWAP_VERSION: "{version[1]}"' in pipeline.read_text(), pipeline.name
    assert f"/slotswap@v{version[1]}\"" in (root / "README.md").read_text()
