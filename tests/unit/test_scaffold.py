"""`fab init` and the template search path: the real `fab init` in an empty folder writes a
hosts.yaml the kit's own loader accepts, and never overwrites without --force."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from slotswap.config import scaffold
from slotswap.config.fields import keys
from slotswap.config.hooks import HookSettings
from slotswap.config.inventory import Inventory
from slotswap.config.loader import load_inventory
from slotswap.server.haproxy_config import Login, render_config

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def fab_init(folder: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FAB, "--search-root", str(ROOT), "init", *flags], cwd=folder,
                          text=True, capture_output=True, timeout=60, check=False)


def test_fab_init_writes_a_short_inventory_the_loader_accepts(tmp_path: Path) -> None:
    result = fab_init(tmp_path)

    assert result.returncode == 0, result.stderr
    inventory = load_inventory(tmp_path / "hosts.yaml")
    assert inventory.build.context == tmp_path
    assert inventory.build.dockerfile == tmp_path / "Dockerfile"
    assert inventory.ssh.jump is None
    assert inventory.hooks == HookSettings()
    assert not (tmp_path / "templates").exists()
    text = (tmp_path / "hosts.yaml").read_text()
    assert len(text.splitlines()) <= 40  # one screen
    # Only app, image, ssh and hosts are set; the other keys are shown commented out.
    assert sorted(yaml.safe_load(text)) == ["app", "hosts", "image", "ssh"]
    for key in keys(Inventory):
        if key not in ("app", "image", "ssh", "hosts"):
            assert f"\n# {key}:" in text, key


def starter_examples(text: str) -> dict[str, object]:
    """Each commented-out key of the starter with the value it shows (the example after
    'none. e.g.' for keys that are off until set)."""
    examples: dict[str, object] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"# ([a-z_]+): (?:none\. e\.g\. )?(.+?)(?:\s+#.*)?", line)
        if match and match[2] != "none":
            examples[match[1]] = yaml.safe_load(match[2])
    return examples


def test_every_value_the_starter_shows_is_accepted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://x")
    monkeypatch.setenv("REGISTRY_PASSWORD", "x")
    assert fab_init(tmp_path).returncode == 0
    text = (tmp_path / "hosts.yaml").read_text()
    examples = starter_examples(text)
    assert set(examples) >= {"env", "https", "registry", "container", "release", "hooks"}
    for key, value in examples.items():
        data = yaml.safe_load(text) | {key: value}
        if key == "hooks":
            for script in value.values():
                (tmp_path / script).parent.mkdir(exist_ok=True)
                (tmp_path / script).write_text("#!/bin/sh\n")
                (tmp_path / script).chmod(0o755)
        changed = tmp_path / f"with-{key}.yaml"
        changed.write_text(yaml.safe_dump(data))
        load_inventory(changed)  # raises on a value the loader refuses


def test_fab_init_templates_copies_the_kit_s_templates(tmp_path: Path) -> None:
    assert fab_init(tmp_path, "--templates").returncode == 0
    written = (tmp_path / "templates" / "haproxy.cfg.j2").read_text()
    assert written == (scaffold.KIT_TEMPLATES / "haproxy.cfg.j2").read_text()
    # The shared HAProxy's own part is the kit's; a project's part is its backend.
    assert (tmp_path / "templates" / "haproxy-backend.cfg.j2").is_file()
    assert not (tmp_path / "templates" / scaffold.SHARED_TEMPLATE).exists()


def test_fab_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text("mine\n")

    result = fab_init(tmp_path)

    assert result.returncode == 2
    assert "hosts.yaml exists already" in result.stderr and "--force" in result.stderr
    assert (tmp_path / "hosts.yaml").read_text() == "mine\n"
    assert not (tmp_path / "templates").exists()


def test_fab_init_force_overwrites(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text("mine\n")

    assert fab_init(tmp_path, "--force").returncode == 0
    assert load_inventory(tmp_path / "hosts.yaml").app == "webapp"


def test_a_local_template_overrides_the_kit_s_file_by_file(tmp_path: Path) -> None:
    scaffold.write_starter(tmp_path, templates=True)
    inventory = load_inventory(tmp_path / "hosts.yaml")
    assert scaffold.template_folders(inventory) == [tmp_path / "templates",
                                                    scaffold.KIT_TEMPLATES]
    local = tmp_path / "templates" / "haproxy.cfg.j2"
    local.write_text(local.read_text().replace("timeout client 30s", "timeout client 45s"))

    assert "timeout client 45s" in render_config(inventory, Login(1000, 1000))


def test_without_a_local_folder_the_kit_s_templates_are_used(tmp_path: Path) -> None:
    scaffold.write_starter(tmp_path, templates=True)
    (tmp_path / "templates" / "haproxy.cfg.j2").unlink()
    inventory = load_inventory(tmp_path / "hosts.yaml")

    assert "timeout client 30s" in render_config(inventory, Login(1000, 1000))
    shutil.rmtree(tmp_path / "templates")
    assert scaffold.template_folders(inventory) == [scaffold.KIT_TEMPLATES]


def test_an_app_s_fabfile_adds_its_tasks_to_the_kit_s_beside_its_own_tasks_py(
        tmp_path: Path) -> None:
    """The README's fabfile: the kit's tasks and the app's in `fab --list`; the app's own
    Invoke tasks.py still found by `invoke --list` (the kit is not a top-level `tasks`)."""
    readme = (ROOT / "README.md").read_text()
    fabfile = re.search(r"```python\n(# fabfile.py\n.*?)```", readme, re.DOTALL)
    assert fabfile
    (tmp_path / "fabfile.py").write_text(fabfile[1])
    (tmp_path / "tasks.py").write_text(
        "from invoke import task\n\n@task\ndef lint(c):\n    'Lint the app.'\n")
    fab_list = subprocess.run([FAB, "--list"], cwd=tmp_path, text=True, capture_output=True,
                              timeout=60, check=False)
    assert fab_list.returncode == 0, fab_list.stderr
    listed = fab_list.stdout.split()
    assert {"seed", "deploy", "status", "init"} <= set(listed)
    invoke = str(Path(sys.executable).with_name("invoke"))
    invoke_list = subprocess.run([invoke, "--list"], cwd=tmp_path, text=True,
                                 capture_output=True, timeout=60, check=False)
    assert invoke_list.returncode == 0, invoke_list.stderr
    assert "lint" in invoke_list.stdout.split()


def test_fab_init_shared_puts_the_app_on_the_shared_haproxy(tmp_path: Path,
                                                               monkeypatch) -> None:
    assert fab_init(tmp_path, "--shared").returncode == 0
    text = (tmp_path / "hosts.yaml").read_text()
    inventory = load_inventory(tmp_path / "hosts.yaml")
    assert inventory.haproxy.shared
    assert inventory.route_names == ("webapp.example.com",)
    assert sorted(yaml.safe_load(text)) == ["app", "haproxy", "hosts", "image", "names", "ssh"]
    # The second app's example in its comment is accepted too.
    second = re.search(r"e\.g\. haproxy: (\{.*\})", text)
    assert second is not None
    data = yaml.safe_load(text) | {"app": "admin", "haproxy": yaml.safe_load(second[1])}
    (tmp_path / "admin.yaml").write_text(yaml.safe_dump(data))
    assert load_inventory(tmp_path / "admin.yaml").haproxy.slot_ports == (18083, 18084)
