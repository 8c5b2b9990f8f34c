"""The `roles` section: the app's other processes (queue workers, schedulers), each a
command of the app's image run in containers of its own beside the web slots, with its own
stop signal and stop timeout (the time a job gets to finish), environment, container options
and a health check that is not HTTP. Design: docs/roles-design.md.

Checked after `hosts` (a role names the hosts it runs on); a host with `web: false` (no web
slots, no HAProxy) must run at least one role.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from slotswap.config import kinds, values
from slotswap.config.container import ContainerSettings, parse_container
from slotswap.config.env import EnvSettings, parse_env
from slotswap.config.fields import (
    Context,
    Kind,
    checked_section,
    parse_fields,
    section_schema,
    setting,
    settings,
)
from slotswap.config.hosts import Host

# Like the app's name, shorter: it is the middle of its containers' names
# (<app>-<role>-<generation>-<n>) and their slotswap.role label.
ROLE_NAME = re.compile(r"[a-z][a-z0-9-]{0,22}[a-z0-9]|[a-z]")
# Names the kit gives its own containers (the slots, HAProxy, the release command, exec, the
# carrier of a folder move) in their slotswap.role label or the middle of their names: a
# role of that name would be taken for one of them.
RESERVED_ROLES = ("web", "release", "haproxy", "app", "exec", "carrier", "one-off")
# A role's container is judged by this when the role sets no check.
DEFAULT_RUNNING_SECONDS = 5.0
DEFAULT_CHECK_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 30
MAX_STOP_TIMEOUT = 3600
MAX_COUNT = 16
# A role's own keys that its `container` section may not set again.
OWN_CONTAINER_KEYS = {"command": "cmd", "stop_signal": "stop_signal"}

_CMD = Kind(kinds.WORDS.check, {**kinds.WORDS.schema, "minItems": 1})


@dataclass(frozen=True)
class CommandCheck:
    """Healthy once `cmd` (run with `docker exec` in the new container, no shell) exits 0;
    tried again until `timeout` seconds have passed."""

    cmd: tuple[str, ...] = setting(_CMD, (), file_default=None,
                                   description="argv run in the new container (docker exec).")
    timeout: float = setting(kinds.SECONDS, DEFAULT_CHECK_TIMEOUT,
                             description="Seconds the command has to exit 0.")


@dataclass(frozen=True)
class RunningCheck:
    """Healthy once the container has run `running` seconds without a restart."""

    running: float = setting(kinds.SECONDS, DEFAULT_RUNNING_SECONDS, required=True,
                             description="Seconds running without a restart.")


RoleCheck = CommandCheck | RunningCheck


def _check(value: object, key: str, context: Context) -> RoleCheck:
    if value is None:
        return RunningCheck()
    if isinstance(value, dict) and "cmd" in value and "running" in value:
        raise values.Invalid(key, "either cmd (with timeout) or running, not both")
    if isinstance(value, dict) and "running" in value:
        return RunningCheck(**parse_fields(
            RunningCheck, checked_section(RunningCheck, value, key), key, context))
    if isinstance(value, dict) and "cmd" in value:
        return CommandCheck(**parse_fields(
            CommandCheck, checked_section(CommandCheck, value, key), key, context))
    raise values.Invalid(key, "expected {cmd: [argv], timeout: SECONDS} or {running: "
                              f"SECONDS}}, got {values.describe(value)}")


CHECK = Kind(_check, {"oneOf": [{"type": "null"},
                                section_schema(CommandCheck, nullable=False),
                                section_schema(RunningCheck, nullable=False)]})


def _hosts(value: object, key: str, context: Context) -> tuple[str, ...]:
    known = _host_names(context)
    if value is None:
        return known
    if not isinstance(value, list) or not value:
        raise values.Invalid(key, "expected a non-empty list of names of hosts (leave the key "
                                  f"out for every host), got {values.describe(value)}")
    names: list[str] = []
    for index, name in enumerate(value):
        item_key = f"{key}[{index}]"
        text = values.string(name, item_key, "a host's name")
        if text not in known:
            raise values.Invalid(item_key, f"{text!r} is not the name of a host of `hosts` "
                                           f"(their names: {', '.join(known)})")
        if text in names:
            raise values.Invalid(item_key, f"{text!r} is already {key}[{names.index(text)}]")
        names.append(text)
    return tuple(names)


def _host_names(context: Context) -> tuple[str, ...]:
    hosts = _top_level(context, "hosts")
    assert isinstance(hosts, tuple)
    return tuple(host.name for host in hosts)


def _top_level(context: Context, key: str) -> object:
    """A top-level section checked before the roles (they are checked last but one)."""
    top = context.outer
    while top is not None and key not in top.parsed:
        top = top.outer
    assert top is not None, f"roles are checked after {key}"
    return top.parsed[key]


def _container(value: object, key: str, context: Context) -> ContainerSettings:
    if value is None:
        return ContainerSettings()
    section = checked_section(ContainerSettings, value, key)
    for name, own in OWN_CONTAINER_KEYS.items():
        if name in section:
            raise values.Invalid(values.child(key, name),
                                 f"a role sets this with its own key `{own}`")
    options = parse_container(section, key, context)
    app = _top_level(context, "container")
    assert isinstance(app, ContainerSettings)
    mounted = {_target(volume): volume for volume in app.volumes}
    for index, volume in enumerate(options.volumes):
        same = mounted.get(_target(volume))
        if same is not None and same != volume:
            raise values.Invalid(f"{key}.volumes[{index}]", f"{_target(volume)} is mounted "
                                 f"already by the app's container.volumes ({same}); a role "
                                 "adds volumes, it cannot replace one")
    return options


def _target(volume: str) -> str:
    return volume.split(":")[1]


def _container_schema() -> dict[str, object]:
    schema = section_schema(ContainerSettings)
    properties = schema["properties"]
    assert isinstance(properties, dict)
    return {**schema, "properties": {name: item for name, item in properties.items()
                                     if name not in OWN_CONTAINER_KEYS}}


_STOP_SIGNAL = settings(ContainerSettings)["stop_signal"].kind


@dataclass(frozen=True)
class RoleSettings:
    """One role: `name` is its key in the `roles` mapping; `hosts` the names of the hosts it
    runs on, every host's when the file names none."""

    name: str
    cmd: tuple[str, ...] = setting(_CMD, required=True,
                                   description="argv after the app's image (no shell).")
    hosts: tuple[str, ...] = setting(
        Kind(_hosts, {"type": ["array", "null"], "minItems": 1, "uniqueItems": True,
                      "items": {"type": "string"}}), (), blank="null", file_default=None,
        description="Names of hosts of `hosts` it runs on. Default: every host.")
    count: int = setting(kinds.integer(1, MAX_COUNT), 1,
                         description="Containers of the role on each of its hosts.")
    stop_signal: str = setting(_STOP_SIGNAL, "SIGTERM",
                               description="The signal that asks a container to finish.")
    stop_timeout: int = setting(
        kinds.integer(1, MAX_STOP_TIMEOUT), DEFAULT_STOP_TIMEOUT,
        description="Seconds a container gets to finish its job after the stop signal, "
        "before it is killed.")
    env: EnvSettings = setting(kinds.section(EnvSettings, parse_env), factory=EnvSettings,
                               blank="null", file_default=None,
                               description="Variables on top of the app's env (same shape).")
    container: ContainerSettings = setting(
        Kind(_container, _container_schema()), factory=ContainerSettings, blank="null",
        file_default=None, description="Container options on top of the app's `container` "
        "(volumes and labels added, the others replaced).")
    check: RoleCheck = setting(
        CHECK, factory=RunningCheck, blank="null", file_default=None,
        description=f"When a new container counts as healthy. Default: running "
        f"{DEFAULT_RUNNING_SECONDS:g} s without a restart.")


def _role(name: object, value: object, key: str, context: Context) -> RoleSettings:
    item_key = values.child(key, name)
    if not isinstance(name, str) or not ROLE_NAME.fullmatch(name):
        raise values.Invalid(item_key, "expected a role name of 1-24 lowercase letters, digits "
                             "or '-', starting with a letter and not ending with '-'")
    if name in RESERVED_ROLES:
        raise values.Invalid(item_key, f"{name!r} is a name the kit uses for its own "
                             f"containers ({', '.join(RESERVED_ROLES)}); choose another")
    section = checked_section(RoleSettings, value if value is not None else {}, item_key)
    return RoleSettings(name=name, **parse_fields(RoleSettings, section, item_key, context))


def parse_roles(value: object, key: str, context: Context) -> tuple[RoleSettings, ...]:
    """The roles in the file's order (none: the web slots alone), then the check that each
    host without web slots runs one."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise values.Invalid(key, "expected a mapping of role names to their settings "
                                  f"(cmd, hosts, count...), got {values.describe(value)}")
    roles = tuple(_role(name, item, key, context) for name, item in value.items())
    _check_web_hosts(roles, context)
    return roles


def _check_web_hosts(roles: tuple[RoleSettings, ...], context: Context) -> None:
    hosts = context.parsed["hosts"]
    assert isinstance(hosts, tuple)
    if all(not host.web for host in hosts):
        raise values.Invalid("hosts", "every host has web: false; at least one must run the "
                                      "app's web slots")
    for index, host in enumerate(hosts):
        if not host.web and not any(host.name in role.hosts for role in roles):
            raise values.Invalid(f"hosts[{index}].web", f"{host.name} has no web slots and "
                                 "runs no role: name it in a role's hosts, or leave web out")


ROLES = Kind(parse_roles, {
    "type": ["object", "null"],
    "propertyNames": {"pattern": kinds.pattern(ROLE_NAME), "not": {"enum": list(RESERVED_ROLES)}},
    "additionalProperties": section_schema(RoleSettings, nullable=False),
})


# -- what a role's containers are made with --------------------------------------------------


def roles_on(roles: tuple[RoleSettings, ...], host: Host) -> tuple[RoleSettings, ...]:
    """The roles that run on `host`, in the file's order."""
    return tuple(role for role in roles if host.name in role.hosts)


def role_container(app: ContainerSettings, role: RoleSettings) -> ContainerSettings:
    """The options of a role's containers: the app's, with the role's volumes and labels
    added (a label of the same name replaced), the role's memory, cpus and log replacing the
    app's when it sets them, and the role's own command and stop signal."""
    own = role.container
    labels = dict(app.labels) | dict(own.labels)
    return replace(
        app, command=role.cmd, stop_signal=role.stop_signal,
        volumes=tuple(dict.fromkeys([*app.volumes, *own.volumes])),
        memory=own.memory or app.memory, cpus=own.cpus or app.cpus, log=own.log or app.log,
        labels=tuple(labels.items()))


def role_env(app: EnvSettings, role: RoleSettings) -> EnvSettings:
    """The environment of a role's containers: the app's variables and the role's on top (a
    name the role sets replaces the app's, plain or secret as the role says)."""
    own = {name for name, _ in role.env.plain} | set(role.env.secret)
    return EnvSettings(
        plain=(*((name, value) for name, value in app.plain if name not in own),
               *role.env.plain),
        secret=tuple(dict.fromkeys([*(name for name in app.secret if name not in own),
                                    *role.env.secret])))


def role_secret_names(roles: tuple[RoleSettings, ...]) -> tuple[str, ...]:
    """The variables of the operator's environment that roles read as secrets."""
    return tuple(dict.fromkeys(name for role in roles for name in role.env.secret))

