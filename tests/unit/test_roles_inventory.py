"""The `roles` section of the inventory (issue 22): parsed like the other sections, every
bad value refused naming its key path, worker-only hosts (`hosts[].web: false`), what a
role's containers are made with (the app's options and env with the role's on top), the
reference hosts.yaml, `check`'s lines, the JSON Schema and hooks, which never get a role's
secret."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from slotswap.cli import hooks
from slotswap.cli.check import settings_lines
from slotswap.config.app_env import resolve_role_env, secret_values_in
from slotswap.config.container import ContainerSettings, LogSettings
from slotswap.config.env import EnvSettings
from slotswap.config.inventory import Inventory, InventoryError
from slotswap.config.loader import load_inventory, parse_inventory
from slotswap.config.roles import (
    CommandCheck,
    RoleSettings,
    RunningCheck,
    role_container,
    role_env,
    roles_on,
)
from slotswap.config.schema import inventory_schema
from slotswap.core.validation import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "app": "shop", "image": "registry.example.com/acme/shop",
    "env": {"plain": {"LOG_LEVEL": "info", "QUEUE": "all"}, "secret": ["DATABASE_URL"]},
    "container": {"volumes": ["uploads:/data"], "memory": "512m",
                  "log": {"driver": "json-file"}, "labels": {"team": "web", "tier": "1"}},
    "hosts": ["203.0.113.10", {"address": "203.0.113.11", "name": "web-b"},
              {"address": "203.0.113.20", "name": "jobs-a", "web": False}],
    "roles": {"worker": {"cmd": ["bin/jobs"]}},
}


def load(tmp_path: Path, **changes: Any) -> Inventory:
    data = {**BASE, **changes}
    return parse_inventory({key: value for key, value in data.items() if value is not None},
                           tmp_path / "hosts.yaml")


def test_a_role_with_only_a_command_has_every_default(tmp_path: Path) -> None:
    inventory = load(tmp_path)

    assert inventory.roles == (RoleSettings(
        name="worker", cmd=("bin/jobs",), hosts=("203.0.113.10", "web-b", "jobs-a"),
        count=1, stop_signal="SIGTERM", stop_timeout=30, env=EnvSettings(),
        container=ContainerSettings(), check=RunningCheck(running=5.0)),)
    assert [host.name for host in inventory.web_hosts] == ["203.0.113.10", "web-b"]


def test_every_key_of_a_role_is_read(tmp_path: Path) -> None:
    worker = {"cmd": ["bin/jobs", "--queue=mail"], "hosts": ["jobs-a", "web-b"], "count": 3,
              "stop_signal": "SIGQUIT", "stop_timeout": 600,
              "env": {"plain": {"QUEUE": "mail"}, "secret": ["MAIL_TOKEN"]},
              "container": {"volumes": ["spool:/spool"], "cpus": 2},
              "check": {"cmd": ["bin/jobs", "--ping"], "timeout": 12}}
    scheduler = {"cmd": ["bin/cron"], "hosts": ["203.0.113.10"], "check": {"running": 20}}

    inventory = load(tmp_path, roles={"mailer": worker, "cron": scheduler})

    mailer, cron = inventory.roles
    assert (mailer.name, mailer.hosts, mailer.count) == ("mailer", ("jobs-a", "web-b"), 3)
    assert (mailer.stop_signal, mailer.stop_timeout) == ("SIGQUIT", 600)
    assert mailer.env == EnvSettings(plain=(("QUEUE", "mail"),), secret=("MAIL_TOKEN",))
    assert mailer.container == ContainerSettings(volumes=("spool:/spool",), cpus=2.0)
    assert mailer.check == CommandCheck(cmd=("bin/jobs", "--ping"), timeout=12.0)
    assert cron.check == RunningCheck(running=20.0)
    assert [role.name for role in roles_on(inventory.roles, inventory.hosts[2])] == ["mailer"]
    assert [role.name for role in roles_on(inventory.roles, inventory.hosts[0])] == ["cron"]


def test_no_roles_section_is_the_web_slots_alone(tmp_path: Path) -> None:
    hosts = BASE["hosts"][:2]
    assert load(tmp_path, roles=None, hosts=hosts).roles == ()
    assert load(tmp_path, roles={}, hosts=hosts).roles == ()


def bad(key: str, fragment: str, **changes: Any) -> Any:
    return pytest.param(changes, key, fragment, id=f"{key}: {fragment}")


def role(**settings: Any) -> dict[str, Any]:
    return {"worker": {"cmd": ["bin/jobs"], **settings}}


BAD_ROLES = [
    bad("roles", "expected a mapping of role names", roles=["worker"]),
    bad("roles.Worker", "expected a role name of 1-24", roles={"Worker": {"cmd": ["x"]}}),
    bad("roles.jobs-", "not ending with '-'", roles={"jobs-": {"cmd": ["x"]}}),
    bad("roles." + "w" * 25, "1-24 lowercase", roles={"w" * 25: {"cmd": ["x"]}}),
    bad("roles.web", "a name the kit uses", roles={"web": {"cmd": ["x"]}}),
    bad("roles.release", "a name the kit uses", roles={"release": {"cmd": ["x"]}}),
    bad("roles.haproxy", "a name the kit uses", roles={"haproxy": {"cmd": ["x"]}}),
    bad("roles.exec", "a name the kit uses", roles={"exec": {"cmd": ["x"]}}),
    bad("roles.worker.cmd", "required key is missing", roles={"worker": {"count": 2}}),
    bad("roles.worker.cmd", "required key is missing", roles={"worker": None}),
    bad("roles.worker.cmd", "expected a list of words", roles=role(cmd="bin/jobs --x")),
    bad("roles.worker.cmd", "expected a list of words", roles=role(cmd=[])),
    bad("roles.worker.cmd[1]", "expected a word", roles=role(cmd=["bin/jobs", 3])),
    bad("roles.worker.counts", "unknown key (did you mean 'count'?)", roles=role(counts=2)),
    bad("roles.worker.hosts[1]", "'web-c' is not the name of a host of `hosts` (their "
        "names: 203.0.113.10, web-b, jobs-a)", roles=role(hosts=["jobs-a", "web-c"])),
    bad("roles.worker.hosts[1]", "'jobs-a' is already roles.worker.hosts[0]",
        roles=role(hosts=["jobs-a", "jobs-a"])),
    bad("roles.worker.hosts", "non-empty list", roles=role(hosts=[])),
    bad("roles.worker.hosts", "non-empty list", roles=role(hosts="jobs-a")),
    bad("roles.worker.count", "from 1 to 16", roles=role(count=0)),
    bad("roles.worker.count", "from 1 to 16", roles=role(count=17)),
    bad("roles.worker.count", "from 1 to 16", roles=role(count=True)),
    bad("roles.worker.stop_signal", "expected a signal", roles=role(stop_signal="TERM; rm")),
    bad("roles.worker.stop_timeout", "from 1 to 3600", roles=role(stop_timeout=0)),
    bad("roles.worker.stop_timeout", "from 1 to 3600", roles=role(stop_timeout=3601)),
    bad("roles.worker.stop_timeout", "from 1 to 3600", roles=role(stop_timeout=1.5)),
    bad("roles.worker.env.plain.PORT", "set by slotswap", roles=role(env={"plain": {"PORT": 1}})),
    bad("roles.worker.env.secret[0]", "also in env.plain",
        roles=role(env={"plain": {"A": 1}, "secret": ["A"]})),
    bad("roles.worker.env.secrets", "unknown key", roles=role(env={"secrets": ["A"]})),
    bad("roles.worker.container.command", "its own key `cmd`",
        roles=role(container={"command": ["x"]})),
    bad("roles.worker.container.stop_signal", "its own key `stop_signal`",
        roles=role(container={"stop_signal": "SIGINT"})),
    bad("roles.worker.container.volumes[0]", "expected NAME:/path",
        roles=role(container={"volumes": ["../x:/x"]})),
    bad("roles.worker.container.volumes[1]", "/data is mounted already by the app's "
        "container.volumes (uploads:/data)",
        roles=role(container={"volumes": ["spool:/spool", "other:/data:ro"]})),
    bad("roles.worker.container.labels.slotswap.role", "slotswap.* is the kit's own",
        roles=role(container={"labels": {"slotswap.role": "web"}})),
    bad("roles.worker.check", "either cmd (with timeout) or running, not both",
        roles=role(check={"cmd": ["x"], "running": 5})),
    bad("roles.worker.check", "expected {cmd: [argv], timeout: SECONDS} or {running: SECONDS}",
        roles=role(check={"timeout": 5})),
    bad("roles.worker.check", "expected {cmd", roles=role(check="running")),
    bad("roles.worker.check.cmd", "expected a list of words", roles=role(check={"cmd": None})),
    bad("roles.worker.check.timeout", "greater than 0",
        roles=role(check={"cmd": ["x"], "timeout": 0})),
    bad("roles.worker.check.running", "greater than 0", roles=role(check={"running": -1})),
    bad("roles.worker.check.every", "unknown key", roles=role(check={"running": 1, "every": 1})),
    bad("hosts[2].web", "jobs-a has no web slots and runs no role",
        roles=role(hosts=["web-b"])),
    bad("hosts[2].web", "jobs-a has no web slots and runs no role", roles=None),
    bad("hosts", "every host has web: false",
        hosts=[{"address": "203.0.113.20", "web": False}]),
    bad("hosts[0].web", "expected true or false", hosts=[{"address": "203.0.113.20",
                                                          "web": "no"}]),
]


@pytest.mark.parametrize(("changes", "key", "fragment"), BAD_ROLES)
def test_bad_roles_name_the_key_path(tmp_path: Path, changes: dict[str, Any], key: str,
                                     fragment: str) -> None:
    with pytest.raises(InventoryError) as caught:
        load(tmp_path, **changes)
    assert caught.value.key == key
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'hosts.yaml'}: {key}: ")


def test_a_role_s_containers_get_the_app_s_options_with_the_role_s_on_top(
        tmp_path: Path) -> None:
    inventory = load(tmp_path, roles=role(
        cmd=["bin/jobs", "-q"], stop_signal="SIGQUIT",
        container={"volumes": ["spool:/spool", "uploads:/data"], "memory": "2g",
                   "labels": {"team": "jobs"}}))

    options = role_container(inventory.container, inventory.roles[0])

    assert options == ContainerSettings(
        command=("bin/jobs", "-q"), volumes=("uploads:/data", "spool:/spool"),
        stop_signal="SIGQUIT", memory="2g", cpus=None, log=LogSettings(driver="json-file"),
        labels=(("team", "jobs"), ("tier", "1")))


def test_a_role_s_env_is_the_app_s_with_the_role_s_names_replacing_the_app_s(
        tmp_path: Path) -> None:
    inventory = load(tmp_path, roles=role(env={"plain": {"QUEUE": "mail", "ONLY": "x"},
                                               "secret": ["LOG_LEVEL", "MAIL_TOKEN"]}))

    env = role_env(inventory.env, inventory.roles[0])

    assert env == EnvSettings(plain=(("QUEUE", "mail"), ("ONLY", "x")),
                              secret=("DATABASE_URL", "LOG_LEVEL", "MAIL_TOKEN"))


def test_a_role_s_secrets_are_read_like_the_app_s_and_never_shown(tmp_path: Path) -> None:
    inventory = load(tmp_path, roles=role(env={"secret": ["MAIL_TOKEN"]}))
    worker = inventory.roles[0]
    environ = {"DATABASE_URL": "postgres://db", "MAIL_TOKEN": "t0ken-value"}

    resolved = resolve_role_env(inventory, worker, environ)

    assert resolved.text == ("LOG_LEVEL=info\nQUEUE=all\nDATABASE_URL=postgres://db\n"
                             "MAIL_TOKEN=t0ken-value\n")
    assert "t0ken-value" not in repr(resolved) and "t0ken-value" not in resolved.masked()
    assert resolved.mask("sent with t0ken-value") == "sent with ******"
    # The history's masking knows the role's secrets too.
    assert secret_values_in(inventory, environ) == ("postgres://db", "t0ken-value")
    with pytest.raises(InputError, match=r"roles\.worker\.env\.secret .*MAIL_TOKEN is not set"):
        resolve_role_env(inventory, worker, {"DATABASE_URL": "x"})
    with pytest.raises(InputError, match="MAIL_TOKEN is set but empty") as caught:
        resolve_role_env(inventory, worker, {**environ, "MAIL_TOKEN": ""})
    assert "t0ken" not in str(caught.value)


def test_no_hook_gets_a_role_s_secret(tmp_path: Path) -> None:
    # Failed before roles' secrets were in secret_variables: the hook inherited MAIL_TOKEN.
    inventory = load(tmp_path, roles=role(env={"secret": ["MAIL_TOKEN"]}))
    operator = {"PATH": "/bin", "DATABASE_URL": "postgres://db", "MAIL_TOKEN": "t0ken-value"}

    env = hooks.hook_environment(operator, inventory, hook="pre_deploy", task="deploy",
                                 tag="v2")

    assert "MAIL_TOKEN" not in env and "DATABASE_URL" not in env
    assert "t0ken-value" not in env.values()
    assert set(inventory.secret_variables) == {"DATABASE_URL", "MAIL_TOKEN"}


def test_check_lists_each_role_s_settings_and_never_a_secret_s_value(tmp_path: Path) -> None:
    inventory = load(tmp_path, roles=role(env={"plain": {"QUEUE": "mail"},
                                               "secret": ["MAIL_TOKEN"]},
                                          container={"memory": "1g"}, count=2))

    lines = [line for line in settings_lines(inventory, {"MAIL_TOKEN": "t0ken-value"})
             if line.startswith("roles")]

    assert lines == [
        "roles.worker.cmd: bin/jobs",
        "roles.worker.hosts: 203.0.113.10, web-b, jobs-a",
        "roles.worker.count: 2",
        "roles.worker.stop_signal: SIGTERM",
        "roles.worker.stop_timeout: 30",
        "roles.worker.env.plain.QUEUE: 'mail'",
        "roles.worker.env.secret.MAIL_TOKEN: <secret> (set in this environment)",
        "roles.worker.container.volumes: (none)",
        "roles.worker.container.memory: 1g",
        "roles.worker.container.cpus: (not set)",
        "roles.worker.container.log: (not set)",
        "roles.worker.container.labels: (none)",
        "roles.worker.check.running: 5.0",
    ]
    assert "roles: (none)" in settings_lines(load(tmp_path, roles={}, hosts=BASE["hosts"][:2]))


def test_the_reference_hosts_yaml_documents_every_key_of_a_role() -> None:
    text = (REPO_ROOT / "hosts.yaml").read_text(encoding="utf-8")
    inventory = load_inventory(REPO_ROOT / "hosts.yaml")
    data = yaml.safe_load(text)

    # One worker role, small, with every key of a role set (so that each is documented).
    assert list(data["roles"]) == ["worker"]
    own = {field.name for field in dataclasses.fields(RoleSettings)} - {"name"}
    assert set(data["roles"]["worker"]) == own
    assert "{cmd: [argv], timeout: SECONDS}" in text and "{running: SECONDS}" in text
    assert [host.name for host in inventory.hosts if not host.web] == ["jobs-a"]
    assert inventory.roles[0].hosts == ("web-b", "jobs-a")


def test_the_schema_describes_roles_and_worker_only_hosts() -> None:
    schema = inventory_schema()
    properties = schema["properties"]
    assert isinstance(properties, dict)
    roles = properties["roles"]
    one = roles["additionalProperties"]
    assert one["required"] == ["cmd"]
    assert set(one["properties"]) == {field.name for field in dataclasses.fields(RoleSettings)
                                      } - {"name"}
    assert "command" not in one["properties"]["container"]["properties"]
    assert "web" in properties["hosts"]["items"]["oneOf"][1]["properties"]
    assert "web" in roles["propertyNames"]["not"]["enum"]
