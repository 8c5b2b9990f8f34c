"""The kit as a user installs it: a wheel built from this checkout, installed into a fresh
virtualenv outside the repository, deploys to the sandbox with the `slotswap` command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env=env, text=True, capture_output=True,
                            timeout=timeout, check=False)
    print(f"$ {' '.join(argv)} -> exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `slotswap` command of a fresh virtualenv holding only the wheel and its
    dependencies."""
    work = tmp_path_factory.mktemp("installed")
    wheels = work / "wheels"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--wheel-dir", str(wheels), str(ROOT)], cwd=work)
    assert built.returncode == 0
    venv = work / "venv"
    assert run([sys.executable, "-m", "venv", str(venv)], cwd=work).returncode == 0
    wheel = next(wheels.glob("slotswap-*.whl"))
    assert run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)],
               cwd=work).returncode == 0
    where = run([str(venv / "bin" / "python"), "-c", "import slotswap; print(slotswap.__file__)"],
                cwd=work)
    assert not where.stdout.strip().startswith(str(ROOT))  # the wheel's copy, not this checkout
    return venv / "bin" / "slotswap"


def test_the_installed_command_starts_a_project_and_checks_it(installed: Path,
                                                               tmp_path: Path) -> None:
    version = run([str(installed), "--version"], cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("slotswap ")
    assert run([str(installed), "init"], cwd=tmp_path).returncode == 0
    checked = run([str(installed), "check"], cwd=tmp_path)
    assert checked.returncode == 0
    assert "templates: haproxy.cfg.j2 rendered" in checked.stdout
    listed = run([str(installed), "--list"], cwd=tmp_path)
    assert "deploy" in listed.stdout and "sandbox" not in listed.stdout


def test_the_installed_command_deploys_to_the_sandbox_under_load(
        installed: Path, fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path)
    env = {**box.env, "SLOTSWAP_INVENTORY": str(inventory)}
    with box.load() as load:
        deployed = run([str(installed), "deploy", "--tag=v2"], cwd=tmp_path, env=env)
    report = load.stop()
    assert deployed.returncode == 0
    assert report.failed == 0, report.failures
    assert set(box.live_versions().values()) == {"v2"}
    status = run([str(installed), "status", "--hosts=s1"], cwd=tmp_path,
                 env=env)
    assert status.returncode == 0
    assert status.stdout.startswith("s1 (") and "s2 (" not in status.stdout
    assert run([str(installed), "deploy", "--tag=v1"], cwd=tmp_path, env=env).returncode == 0


def test_hosts_picks_servers_of_the_inventory_for_a_canary_rollback_and_logs(
        installed: Path, fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """--hosts: a canary on one server, the rest after it, one server rolled back alone,
    the logs of one server; every other server untouched each time."""
    box = fleet_on_v1
    env = {**box.env, "SLOTSWAP_INVENTORY": str(box.inventory_copy(tmp_path))}
    with box.load() as load:
        canary = run([str(installed), "deploy", "--tag=v2", "--hosts=s1"], cwd=tmp_path, env=env)
        canary_serves = box.live_versions()
        rest = run([str(installed), "deploy", "--tag=v2"], cwd=tmp_path, env=env)
        rolled = run([str(installed), "rollback", "--hosts=s1"], cwd=tmp_path, env=env)
    report = load.stop()
    assert canary.returncode == 0
    assert canary_serves == {"s1": "v2", "s2": "v1", "s3": "v1"}
    assert "s2" not in canary.stdout
    assert rest.returncode == 0
    assert re.search(r"^s1 .*\bunchanged\b", rest.stdout, re.MULTILINE)
    assert rolled.returncode == 0
    assert box.live_versions() == {"s1": "v1", "s2": "v2", "s3": "v2"}
    assert report.failed == 0, report.failures
    logs = run([str(installed), "logs", "--hosts=s2", "--lines=5"], cwd=tmp_path, env=env)
    assert logs.returncode == 0
    prefixes = {line.split()[0] for line in logs.stdout.splitlines() if line.strip()}
    assert prefixes == {"s2"}, logs.stdout
    assert run([str(installed), "deploy", "--tag=v1"], cwd=tmp_path, env=env).returncode == 0


def test_fabric_s_identity_flag_is_the_key_the_kit_logs_in_with(
        sandbox_env: Sandbox, tmp_path: Path) -> None:
    """`fab -i KEY status`: the inventory names no key and the agent has none, so only the
    key given with -i can log in."""
    box = sandbox_env
    data = yaml.safe_load(box.inventory.read_text())
    folder = box.inventory.parent
    key = folder / data["ssh"].pop("identity")
    data["ssh"]["known_hosts"] = str(folder / data["ssh"]["known_hosts"])
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(yaml.safe_dump(data))
    env = {key_: value for key_, value in box.env.items() if key_ != "SSH_AUTH_SOCK"}
    env["HOME"] = str(tmp_path)  # no ~/.ssh/id_* keys to fall back on
    without = run([FAB, "status", "--inventory", str(inventory)], cwd=ROOT, env=env)
    assert without.returncode != 0
    with_key = run([FAB, "-i", str(key), "status", "--inventory", str(inventory)], cwd=ROOT,
                   env=env)
    assert with_key.returncode == 0, with_key.stderr
    assert len(re.findall(r"^s\d \(", with_key.stdout, re.MULTILINE)) == len(box.addresses)
