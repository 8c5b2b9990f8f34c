"""Hooks: validated by the inventory loader, run with SLOTSWAP_* variables and no secret; a
failing pre_deploy hook stops `fab deploy` with exit 5 before any server is contacted (the
inventory's hosts are documentation addresses, which would fail with exit 3)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotswap.cli import hooks
from slotswap.config.inventory import Inventory, InventoryError
from slotswap.config.loader import load_inventory

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
BASE = ("app: webapp\nimage: registry.example.com/acme/webapp\n"
        "env: {secret: [API_TOKEN]}\nhosts: [203.0.113.10, {address: 203.0.113.11, name: b}]\n")
RECORDER = "#!/bin/sh\nenv | grep -E '^(SLOTSWAP_|API_TOKEN)' | sort > \"$0.env\"\nexit {code}\n"


def hook(folder: Path, name: str, code: int = 0) -> Path:
    path = folder / name
    path.write_text(RECORDER.replace("{code}", str(code)))
    path.chmod(0o755)
    return path


def inventory_with(folder: Path, hooks_yaml: str) -> Path:
    path = folder / "hosts.yaml"
    path.write_text(BASE + hooks_yaml)
    return path


def recorded(program: Path) -> dict[str, str]:
    lines = Path(f"{program}.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_hooks_load_relative_to_the_inventory(tmp_path: Path) -> None:
    hook(tmp_path, "pre.sh")
    inventory = load_inventory(inventory_with(tmp_path, "hooks: {pre_deploy: pre.sh}\n"))
    assert inventory.hooks.pre_deploy == tmp_path / "pre.sh"
    assert inventory.hooks.post_success is None


@pytest.mark.parametrize(("yaml_text", "problem"), [
    ("hooks: {pre_deploy: missing.sh}\n", "hooks.pre_deploy: expected an executable file"),
    ("hooks: {post_failure: plain.txt}\n", "hooks.post_failure: "),
    ("hooks: {pre_deploy: 3}\n", "hooks.pre_deploy: expected a file or folder path"),
    ("hooks: {after: x.sh}\n", "hooks.after: unknown key"),
])
def test_bad_hooks_are_refused_naming_the_key(tmp_path: Path, yaml_text: str,
                                              problem: str) -> None:
    (tmp_path / "plain.txt").write_text("not executable")
    with pytest.raises(InventoryError, match=problem):
        load_inventory(inventory_with(tmp_path, yaml_text))


def test_hook_environment_tells_the_run_and_drops_secrets(tmp_path: Path) -> None:
    inventory = load_inventory(inventory_with(tmp_path, ""))
    env = hooks.hook_environment({"PATH": "/bin", "API_TOKEN": "s3cret", "SLOTSWAP_TAG": "old"},
                                 inventory, hook="pre_deploy", task="deploy", tag="v2")
    assert "API_TOKEN" not in env
    assert env["PATH"] == "/bin"
    assert env["SLOTSWAP_TAG"] == "v2"
    assert env["SLOTSWAP_SERVERS"] == "203.0.113.10 b"
    assert env["SLOTSWAP_ADDRESSES"] == "203.0.113.10 203.0.113.11"
    assert env["SLOTSWAP_TASK"] == "deploy"


# Every setting of the model that names a variable holding a secret, set (add a new one here).
EVERY_SECRET = ("registry: {user: ci, password_secret: REGISTRY_PASSWORD}\n"
                "https: {names: [www.example.com], "
                "files: {chain_secret: TLS_CHAIN, key_secret: TLS_KEY}}\n")
OPERATOR = {"PATH": "/usr/bin:/bin", "API_TOKEN": "s3cret", "REGISTRY_PASSWORD": "hunter2",
            "TLS_CHAIN": "-----BEGIN CERTIFICATE-----", "TLS_KEY": "-----BEGIN PRIVATE KEY-----"}


def secret_settings(model: type, prefix: str = "") -> Iterator[str]:
    """Key paths of every `*_secret` field of the inventory's model, found in its types (not
    in a loaded inventory, so that one no test file sets is found too)."""
    for name, hint in typing.get_type_hints(model).items():
        if name.endswith("_secret"):
            yield f"{prefix}{name}"
            continue
        for part in types_in(hint):
            if dataclasses.is_dataclass(part):
                yield from secret_settings(part, f"{prefix}{name}.")


def types_in(hint: object) -> Iterator[object]:
    yield hint
    for argument in typing.get_args(hint):
        yield from types_in(argument)


def setting(inventory: Inventory, key: str) -> object:
    value: object = inventory
    for name in key.split("."):
        value = getattr(value, name)
    return value


def test_every_secret_setting_is_a_secret_variable_that_no_hook_gets(tmp_path: Path) -> None:
    inventory = load_inventory(inventory_with(tmp_path, EVERY_SECRET))
    keys = sorted(secret_settings(Inventory))
    assert keys == ["https.files.chain_secret", "https.files.key_secret",
                    "registry.password_secret"]
    named = [setting(inventory, key) for key in keys]
    assert all(isinstance(name, str) for name in named), "EVERY_SECRET must set each of them"
    assert set(inventory.secret_variables) == {"API_TOKEN", *named}
    env = hooks.hook_environment(OPERATOR, inventory, hook="pre_deploy", task="deploy",
                                 tag="v2")
    assert not set(inventory.secret_variables) & set(env)
    assert env["PATH"] == "/usr/bin:/bin"


def test_a_hook_never_gets_the_registry_password_or_the_certificate(tmp_path: Path) -> None:
    program = hook(tmp_path, "before.sh")
    program.write_text("#!/bin/sh\nenv > \"$0.env\"\n")
    inventory = load_inventory(inventory_with(tmp_path, "hooks: {pre_deploy: before.sh}\n"
                                              + EVERY_SECRET))
    hooks.before(inventory, OPERATOR, task="deploy", tag="v2")
    saved = Path(f"{program}.env").read_text()
    for value in ("s3cret", "hunter2", "BEGIN CERTIFICATE", "BEGIN PRIVATE KEY"):
        assert value not in saved
    assert "SLOTSWAP_HOOK=pre_deploy" in saved


def test_post_hook_gets_the_outcome_and_the_document(tmp_path: Path) -> None:
    program = hook(tmp_path, "after.sh")
    inventory = load_inventory(inventory_with(tmp_path, "hooks: {post_failure: after.sh}\n"))
    hooks.after(inventory, {"PATH": "/usr/bin:/bin", "API_TOKEN": "s3cret"}, task="deploy",
                tag="v2", exit_code=1, message="stopped at b", document={"ok": False})
    env = recorded(program)
    assert env["SLOTSWAP_HOOK"] == "post_failure"
    assert env["SLOTSWAP_OUTCOME"] == "failure"
    assert env["SLOTSWAP_EXIT_CODE"] == "1"
    assert json.loads(env["SLOTSWAP_RESULT_JSON"]) == {"ok": False}
    assert "API_TOKEN" not in env


def test_a_failing_hook_raises(tmp_path: Path) -> None:
    hook(tmp_path, "no.sh", code=3)
    inventory = load_inventory(inventory_with(tmp_path, "hooks: {pre_deploy: no.sh}\n"))
    with pytest.raises(hooks.HookFailedError, match="exited 3"):
        hooks.before(inventory, {"PATH": "/bin"}, task="deploy", tag="v2")


def test_a_hook_that_runs_too_long_is_killed(tmp_path: Path) -> None:
    program = tmp_path / "slow.sh"
    program.write_text("#!/bin/sh\nsleep 30\n")
    program.chmod(0o755)
    with pytest.raises(hooks.HookFailedError, match="ran longer than"):
        hooks.run_hook(program, {"SLOTSWAP_HOOK": "pre_deploy"}, cwd=tmp_path, timeout=0.5)


@pytest.mark.parametrize(("code", "outcome"), [(0, "success"), (1, "failure"),
                                               (4, "failure"), (130, "interrupted")])
def test_outcome_of_exit_codes(code: int, outcome: str) -> None:
    assert hooks.outcome_of(code) == outcome


def test_fab_deploy_stops_with_exit_5_when_the_pre_deploy_hook_fails(tmp_path: Path) -> None:
    pre, post = hook(tmp_path, "pre.sh", code=1), hook(tmp_path, "post.sh")
    inventory = inventory_with(tmp_path, "hooks: {pre_deploy: pre.sh, post_failure: post.sh}\n")
    result = subprocess.run([FAB, "deploy", "--tag=v2", f"--inventory={inventory}"], cwd=ROOT,
                            text=True, capture_output=True, timeout=60, check=False,
                            env={"PATH": "/usr/bin:/bin", "API_TOKEN": "s3cret"})
    assert result.returncode == 5, result.stderr
    assert "pre_deploy hook" in result.stderr and "nothing was contacted" in result.stderr
    assert recorded(pre)["SLOTSWAP_TAG"] == "v2"
    assert not Path(f"{post}.env").exists()
