"""The command line as a Fabric user meets it: Fabric's own flags honoured or refused before
anything is contacted, --hosts, $SLOTSWAP_INVENTORY, and `check`. The inventories here name
documentation addresses (192.0.2.0/24): every run must stop before contacting them."""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from slotswap.cli.check import key_line, key_parts
from slotswap.cli.fabric_flags import looks_like_private_key
from slotswap.cli.host_selection import select_hosts
from slotswap.config.build import BuildSettings
from slotswap.config.container import ContainerSettings, ReleaseSettings
from slotswap.config.delivery import DeliverySettings
from slotswap.config.env import EnvSettings
from slotswap.config.fields import keys, required
from slotswap.config.haproxy import HaproxySettings
from slotswap.config.healthcheck import HealthcheckSettings
from slotswap.config.hooks import HookSettings
from slotswap.config.hosts import Host
from slotswap.config.https import AcmeSettings, CertificateFiles, HttpsSettings
from slotswap.config.inventory import Inventory
from slotswap.config.loader import load_inventory
from slotswap.config.registry import RegistrySettings
from slotswap.config.schema import schema_text
from slotswap.config.ssh import SshSettings
from slotswap.config.timeouts import Timeouts
from slotswap.core.validation import InputError
from testbed.private_ca import issue, make_ca

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
SCHEMA = json.loads((ROOT / "slotswap" / "config" / "hosts.schema.json").read_text())
INVENTORY = """\
app: webapp
image: registry.example.com/acme/webapp
env:
  plain: {MODE: production}
  secret: [API_TOKEN]
hosts:
  - {address: 192.0.2.10, name: web-a}
  - {address: 192.0.2.11, name: web-b}
  - {address: 192.0.2.12, name: web-c}
"""


# The first line is all the kit reads of a key before it logs in.
KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"


def fab(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FAB, "-r", str(ROOT), *args], cwd=cwd, text=True, input=stdin,
                          capture_output=True, timeout=60, check=False,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "hosts.yaml").write_text(INVENTORY)
    return tmp_path


@pytest.mark.parametrize(("flags", "named"), [
    (["-R"], "-R/--dry"),
    (["-H", "192.0.2.10"], "-H/--hosts"),
    (["-T", "5"], "-T/--command-timeout"),
    (["-w"], "-w/--warn-only"),
    (["-p"], "-p/--pty"),
])
def test_fabric_flags_the_kit_does_not_honour_are_refused_before_anything_runs(
        project: Path, flags: list[str], named: str) -> None:
    result = fab(*flags, "deploy", "--tag=v1", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith("error: nothing was contacted: ")
    assert named in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("flags", "named"), [
    (["-S", "ssh_config"], "-S/--ssh-config"),
    (["--prompt-for-passphrase"], "--prompt-for-passphrase"),
    (["--prompt-for-login-password"], "--prompt-for-login-password"),
    (["--prompt-for-sudo-password"], "--prompt-for-sudo-password"),
])
def test_fabric_ssh_config_and_prompt_flags_are_refused_before_anything_runs(
        project: Path, flags: list[str], named: str) -> None:
    (project / "ssh_config").write_text("Host *\n  User nobody\n")
    # Fabric asks for the secret before any task runs (from stdin without a terminal).
    result = fab(*flags, "deploy", "--tag=v1", cwd=project, stdin="typed\n")
    assert result.returncode == 2
    assert "error: nothing was contacted: " in result.stderr
    assert named in result.stderr
    assert "typed" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_fabric_identity_and_connect_timeout_are_honoured(project: Path) -> None:
    key = project / "deploy_key"
    key.write_text(KEY_TEXT)
    result = fab("-i", str(key), "-t", "4", "check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert f"ssh.identity: {key}" in result.stdout
    assert "ssh.connect_timeout: 4.0" in result.stdout


def test_a_missing_identity_file_is_bad_input(project: Path) -> None:
    result = fab("-i", str(project / "nope"), "check", cwd=project)
    assert result.returncode == 2
    assert "-i/--identity" in result.stderr and "is not a file" in result.stderr


def test_dash_i_after_the_task_is_still_the_identity_never_the_inventory(project: Path) -> None:
    other = project / "other"
    other.write_text(KEY_TEXT)
    result = fab("check", "-i", str(other), cwd=project)
    assert result.returncode == 0, result.stderr
    assert "app: webapp" in result.stdout  # hosts.yaml of the folder
    assert f"ssh.identity: {other}" in result.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_an_inventory_given_as_the_identity_is_refused_before_anything_runs(
        project: Path, where: str) -> None:
    """`fab -i hosts.yaml deploy`: a Fabric user's -i is the key; the inventory is never
    sent to the servers as one (an authentication error after contacting them all)."""
    flags = ["-i", "hosts.yaml"]
    args = [*flags, "deploy", "--tag=v1"] if where == "before" else ["deploy", "--tag=v1", *flags]
    result = fab(*args, cwd=project)
    assert result.returncode == 2
    assert f"-i/--identity: {project / 'hosts.yaml'} is not a private key" in result.stderr
    assert "use -I or --inventory for the inventory" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("head", "key"), [
    (b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl", True),
    (b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n", True),
    (b"\n-----BEGIN EC PRIVATE KEY-----\r\n", True),
    (b"-----BEGIN PRIVATE KEY-----\n", True),
    (INVENTORY.encode(), False),
    (b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 me@laptop\n", False),  # the public key
    (b"-----BEGIN CERTIFICATE-----\n", False),
    (b"", False),
])
def test_looks_like_private_key(head: bytes, key: bool) -> None:
    assert looks_like_private_key(head) is key


def test_the_inventory_comes_from_the_environment_when_not_given(project: Path,
                                                                 tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    result = fab("check", cwd=elsewhere, env={"SLOTSWAP_INVENTORY": str(project / "hosts.yaml")})
    assert result.returncode == 0, result.stderr
    assert f"path: {project / 'hosts.yaml'}" in result.stdout


def test_check_masks_secrets_and_says_whether_they_are_set(project: Path) -> None:
    result = fab("check", cwd=project, env={"API_TOKEN": "s3cr3t-value"})
    assert result.returncode == 0, result.stderr
    assert "env.secret.API_TOKEN: <secret> (set in this environment)" in result.stdout
    assert "env.plain.MODE: 'production'" in result.stdout
    assert "s3cr3t-value" not in result.stdout + result.stderr
    assert "templates: haproxy.cfg.j2 rendered" in result.stdout
    assert result.stdout.rstrip().endswith("OK, 3 servers; no server was contacted")


def test_check_says_whether_a_secret_named_by_a_setting_is_set(project: Path) -> None:
    with (project / "hosts.yaml").open("a") as inventory:
        inventory.write("registry: {user: ci, password_secret: REGISTRY_PASSWORD}\n")
    given = fab("check", cwd=project, env={"REGISTRY_PASSWORD": ""})
    assert "registry.password_secret: REGISTRY_PASSWORD (set in this environment)" \
        in given.stdout
    result = fab("check", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "registry.password_secret: REGISTRY_PASSWORD (NOT SET in this environment)" \
        in result.stdout


def test_up_dry_run_refuses_what_up_would_refuse_before_contacting_anything(
        project: Path) -> None:
    with (project / "hosts.yaml").open("a") as inventory:
        inventory.write("registry: {user: ci, password_secret: REGISTRY_PASSWORD}\n")
    result = fab("up", "--dry-run", cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "REGISTRY_PASSWORD is not set in the environment of this run" in result.stderr
    assert "DRY RUN" not in result.stdout


@pytest.mark.parametrize(("task", "added", "missing"), [
    (["deploy", "--tag=v2"], "registry: {user: ci, password_secret: REGISTRY_PASSWORD}\n",
     "REGISTRY_PASSWORD"),
    (["deploy", "--tag=v2"], "env: {secret: [API_TOKEN]}\n", "API_TOKEN"),
    # A rollback pulls nothing: the registry's password is not asked for.
    (["rollback", "--to=v1"], "env: {secret: [API_TOKEN]}\n", "API_TOKEN"),
])
def test_deploy_and_rollback_dry_runs_exit_as_the_run_when_a_secret_is_not_set(
        project: Path, task: list[str], added: str, missing: str) -> None:
    """Issue 21, path 9: the dry run exited 0 where the deploy exits 2."""
    with (project / "hosts.yaml").open("a") as inventory:
        inventory.write(added)
    result = fab(*task, "--dry-run", cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert missing in result.stderr and "DRY RUN" not in result.stdout


def test_certs_renew_dry_run_refuses_expired_files_before_contacting_anything(
        project: Path) -> None:
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    chain, key = issue(make_ca(), ["www.example.com"],
                       valid=(start, start + datetime.timedelta(days=30)))
    (project / "chain.pem").write_text(chain)
    (project / "key.pem").write_text(key)
    (project / "key.pem").chmod(0o600)
    with (project / "hosts.yaml").open("a") as inventory:
        inventory.write("https: {names: [www.example.com], files: {chain: chain.pem, "
                        "key: key.pem}}\n")
    result = fab("certs.renew", "--dry-run", cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "expired on 2020-01-31" in result.stderr and "DRY RUN" not in result.stdout


def test_check_names_the_key_and_its_line(project: Path) -> None:
    (project / "hosts.yaml").write_text(INVENTORY.replace("name: web-b}",
                                                          "name: web-b, port: abc}"))
    result = fab("check", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: hosts.yaml:8: hosts[1].port: expected an integer from 1 to 65535, got 'abc'")


def test_check_reports_a_template_that_does_not_render(project: Path) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "haproxy.cfg.j2").write_text("global\n{% if %}\n")
    result = fab("check", cwd=project)
    assert result.returncode == 2
    assert "haproxy.cfg.j2:2:" in result.stderr


def test_hosts_refuses_an_unknown_server_before_anything_runs(project: Path) -> None:
    result = fab("deploy", "--tag=v1", "--hosts=web-a,web-z", cwd=project)
    assert result.returncode == 2
    assert "--hosts: web-z is not in hosts.yaml (its servers: web-a, web-b, web-c)" \
        in result.stderr


def test_hosts_keeps_the_inventory_order(project: Path) -> None:
    inventory = load_inventory(project / "hosts.yaml")
    chosen = select_hosts(inventory, "web-c,192.0.2.10")
    assert [host.name for host in chosen.hosts] == ["web-a", "web-c"]
    assert select_hosts(inventory, None) is inventory
    for bad in ("", "web-a,", " , "):
        with pytest.raises(InputError, match="--hosts expects server names"):
            select_hosts(inventory, bad)


def test_task_flags_are_long_only() -> None:
    result = subprocess.run([FAB, "-r", str(ROOT), "--help", "deploy"], text=True,
                            capture_output=True, timeout=60, check=False)
    options = result.stdout.split("Options:")[1]
    assert "-i STRING" not in options and "-t STRING" not in options
    assert "-I STRING, --inventory=STRING" in options and "--hosts=STRING" in options
    assert set(re.findall(r"^\s+-([a-zA-Z]) ", options, re.MULTILINE)) == {"I"}


def test_dash_capital_i_is_the_inventory(project: Path) -> None:
    (project / "hosts.yaml").rename(project / "prod.yaml")
    result = fab("check", "-I", "prod.yaml", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "prod.yaml: OK" in result.stdout


@pytest.mark.parametrize(("key", "parts"), [
    ("ssh.port", ["ssh", "port"]), ("hosts[2].jump", ["hosts", 2, "jump"]),
    ("env.secret[0]", ["env", "secret", 0]), ("app", ["app"])])
def test_key_parts(key: str, parts: list[str | int]) -> None:
    assert key_parts(key) == parts


def test_key_line_finds_the_deepest_part_the_file_has() -> None:
    assert key_line(INVENTORY, "app") == 1
    assert key_line(INVENTORY, "env.secret[0]") == 5
    assert key_line(INVENTORY, "hosts[1].name") == 8
    assert key_line(INVENTORY, "ssh.port") == 1  # no ssh section: the top mapping
    assert key_line("app: [", "app") is None


# -- the JSON Schema shipped for editors ----------------------------------------------------

SECTIONS = {
    "build": BuildSettings, "healthcheck": HealthcheckSettings, "env": EnvSettings,
    "ssh": SshSettings, "haproxy": HaproxySettings, "timeouts": Timeouts,
    "hooks": HookSettings, "container": ContainerSettings, "release": ReleaseSettings,
    "registry": RegistrySettings,
}


def test_the_schema_knows_exactly_the_keys_the_inventory_accepts() -> None:
    properties = SCHEMA["properties"]
    assert set(properties) == set(keys(Inventory))
    assert SCHEMA["required"] == list(required(Inventory))
    for section, settings in SECTIONS.items():
        assert set(properties[section]["properties"]) == set(keys(settings)), section
    delivery = next(o for o in properties["delivery"]["oneOf"] if o.get("type") == "object")
    assert set(delivery["properties"]) == set(keys(DeliverySettings))
    host = next(o for o in properties["hosts"]["items"]["oneOf"] if o["type"] == "object")
    assert set(host["properties"]) == set(keys(Host))
    https = properties["https"]["properties"]
    assert set(https) == set(keys(HttpsSettings))
    assert set(https["files"]["properties"]) == set(keys(CertificateFiles))
    assert set(https["acme"]["properties"]) == set(keys(AcmeSettings))


@pytest.mark.parametrize("path", [ROOT / "hosts.yaml"])
def test_the_reference_inventory_matches_the_schema(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), SCHEMA)


def test_the_shipped_schema_is_the_one_the_settings_classes_generate() -> None:
    # After a change to a section's class:
    # python -m slotswap.config.schema > slotswap/config/hosts.schema.json
    shipped = (ROOT / "slotswap" / "config" / "hosts.schema.json").read_text()
    assert shipped == schema_text()


def test_the_schema_refuses_what_the_inventory_refuses() -> None:
    data = yaml.safe_load(INVENTORY)
    data["ssh"] = {"prot": 22}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


SLOTSWAP = str(Path(sys.executable).with_name("slotswap"))


def test_the_slotswap_command_has_the_deploy_tasks_and_no_sandbox(tmp_path: Path) -> None:
    version = subprocess.run([SLOTSWAP, "--version"], text=True, capture_output=True,
                             timeout=60, check=False, cwd=tmp_path)
    assert version.returncode == 0
    assert version.stdout.startswith("slotswap ")
    listed = subprocess.run([SLOTSWAP, "--list"], text=True, capture_output=True, timeout=60,
                            check=False, cwd=tmp_path)
    assert listed.returncode == 0
    names = {line.split()[0] for line in listed.stdout.splitlines()[1:] if line.strip()
             and line.startswith("  ") and not line.startswith("   ")}
    assert {"init", "check", "build", "up", "deploy", "rollback", "status", "logs"} <= names
    assert not any(name.startswith("sandbox") for name in names)


def test_the_slotswap_command_refuses_invokes_dry_flag_like_fab(project: Path) -> None:
    result = subprocess.run([SLOTSWAP, "-R", "deploy", "--tag=v1"], text=True,
                            capture_output=True, timeout=60, check=False, cwd=project)
    assert result.returncode == 2
    assert "-R/--dry" in result.stderr


def test_check_schema_prints_the_schema_this_installation_ships(tmp_path: Path) -> None:
    result = subprocess.run([SLOTSWAP, "check", "--schema"], text=True, capture_output=True,
                            timeout=60, check=False, cwd=tmp_path)  # no hosts.yaml there
    assert result.returncode == 0, result.stderr
    assert json.loads(Path(result.stdout.strip()).read_text()) == SCHEMA
