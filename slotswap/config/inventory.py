"""The inventory file (hosts.yaml): loading, validation and the settings it yields.

The whole file is checked before any server is contacted, so a typo fails the deploy on
the operator's machine instead of half-way through a rollout. Every error is a single line
``<file>: <key path>: <what was expected>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from slotswap.config.app_env import name_problem, value_problem
from slotswap.core.validation import (
    InputError,
    validate_app_name,
    validate_host_address,
    validate_image_reference,
    validate_image_repository,
    validate_remote_dir,
    validate_tag,
    validate_url_path,
)

__all__ = [
    "DEFAULT_SSH_PORT",
    "DEFAULT_SSH_USER",
    "SLOTS",
    "BuildSettings",
    "DeliverySettings",
    "EnvSettings",
    "HaproxySettings",
    "HealthcheckSettings",
    "HookSettings",
    "Host",
    "Inventory",
    "InventoryError",
    "JumpHost",
    "SshSettings",
    "Timeouts",
    "load_inventory",
    "parse_inventory",
]

SLOTS = ("web1", "web2")
# With healthcheck.port, a slot's check port is published on its slot port plus this.
CHECK_PORT_OFFSET = 100
# App images kept on each server after a deploy: the live one and the previous one (which a
# rollback starts without pulling) at least.
MIN_KEEP_IMAGES = 2
DEFAULT_KEEP_IMAGES = 3
DELIVERY_MODES = ("registry", "ssh")
# Where the kit keeps its files on a server when the inventory sets no remote_dir: state
# (locks, history) and config (HAProxy's config, the env files), each in a folder per app.
DEFAULT_STATE_ROOT = "/var/lib/slotswap"
DEFAULT_CONFIG_ROOT = "/etc/slotswap"
# A login that is not root, with no remote_dir, keeps them in this folder of its home (found
# on the server): <home>/.slotswap/<app>/state and .../config, as remote_dir would.
HOME_FOLDER = ".slotswap"
# Metadata of an Inventory field that the server, not the file, gives.
FROM_SERVER = "from_server"
# Seconds; the lock is renewed every lease/3 seconds, judged in whole seconds by the server.
MIN_LOCK_LEASE = 3
MAX_LOCK_LEASE = 3600
MAX_DELIVERY_CONCURRENCY = 64

_SSH_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_MAX_SHOWN_VALUE = 60
_DEFAULT_APP_PORT = 3000
# Used when neither the inventory nor ~/.ssh/config (ssh.config) gives a user or port.
DEFAULT_SSH_USER = "root"
DEFAULT_SSH_PORT = 22
# [user@]host[:port], an IPv6 address in brackets: the form of ssh -J.
_JUMP = re.compile(
    r"(?:(?P<user>[^@]*)@)?(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^@:\[\]]*))(?::(?P<port>[0-9]{1,5}))?"
)


class InventoryError(InputError):
    """The inventory file is missing, unreadable or invalid; `key` is the key path of the
    problem (e.g. ``hosts[0].port``) when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class JumpHost:
    """A host the SSH connection goes through (ssh -J); None fields are left to
    ~/.ssh/config (when ssh.config is on), then to the defaults."""

    address: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True)
class Host:
    address: str  # IP or DNS name used to SSH and to reach http_port
    name: str  # display name; defaults to address
    user: str | None = None  # per-host ssh overrides (None = use ssh section)
    port: int | None = None
    jump: JumpHost | None = None
    accept_unknown_hosts: bool | None = None


@dataclass(frozen=True)
class SshSettings:
    # user/port None: ~/.ssh/config's User/Port for the host (ssh.config), else root and 22.
    user: str | None = None
    port: int | None = None
    identity: Path | None = None  # private key file; None = ssh-agent / default keys
    known_hosts: Path | None = None  # None = ~/.ssh/known_hosts
    connect_timeout: float = 10.0
    # A connection that sends and gets nothing acknowledged for dead_after seconds is dead;
    # keepalive: seconds of silence after which a keepalive message is sent (so that a
    # silent network is noticed even while nothing else is sent).
    keepalive: float = 5.0
    dead_after: float = 15.0
    accept_unknown_hosts: bool = False  # True: accept (loudly) keys not in known_hosts
    jump: JumpHost | None = None
    config: bool = True  # read ~/.ssh/config and /etc/ssh/ssh_config


@dataclass(frozen=True)
class EnvSettings:
    """The app's environment as the inventory declares it (values of secrets are read at
    deploy time: see slotswap.config.app_env.resolve_app_env)."""

    plain: tuple[tuple[str, str], ...] = ()  # (name, value as written to the env file)
    secret: tuple[str, ...] = ()  # names read from the operator's environment

    @property
    def empty(self) -> bool:
        return not self.plain and not self.secret


@dataclass(frozen=True)
class HaproxySettings:
    image: str = "haproxy:2.8"
    http_port: int = 80
    # HAProxy runs on the server's own network (so that a new HAProxy container can take
    # over the public port before the old one lets go of it); it reaches each slot's
    # container on one of these ports of the server's loopback (127.0.0.1), web1's first.
    slot_ports: tuple[int, int] = (18081, 18082)
    # Networks (CIDR) of proxies in front of HAProxy (a cloud load balancer) whose
    # Forwarded, X-Forwarded-* and X-Real-IP headers reach the app; anyone else's are removed.
    trusted_proxies: tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildSettings:
    context: Path
    dockerfile: Path
    platform: str | None = None  # e.g. linux/amd64; None: the servers' as `up` recorded it
    args: tuple[tuple[str, str], ...] = ()  # --build-arg NAME=value (they end up in the image)


@dataclass(frozen=True)
class HealthcheckSettings:
    path: str = "/health"
    host: str | None = None  # the Host header of the checks (apps that check it)
    status: tuple[int, ...] = (200,)  # answers that count as healthy
    interval: float = 0.5  # seconds between checks of a slot that passes them
    rise: int = 2  # passes in a row before a slot is up
    fall: int = 3  # failures in a row before a slot is down
    port: int | None = None  # None: app_port


@dataclass(frozen=True)
class LogSettings:
    driver: str
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ContainerSettings:
    """Options of the app's containers (both slots, the release command, exec): each
    becomes a `docker run` option, never a free-form flag."""

    command: tuple[str, ...] = ()  # argv after the image; empty: the image's own
    volumes: tuple[str, ...] = ()  # NAME:/path[:ro] or /host/path:/path[:ro]
    stop_signal: str | None = None
    memory: str | None = None  # e.g. 512m
    cpus: float | None = None
    log: LogSettings | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RegistrySettings:
    """A login the servers use to pull the app's image: the password is read from the
    operator's environment variable `password_secret` (see slotswap.server.registry_login)."""

    user: str
    password_secret: str
    server: str | None = None  # None: the registry the `image` names


@dataclass(frozen=True)
class ReleaseSettings:
    """A command run once per deploy, before any traffic moves (database migrations)."""

    command: tuple[str, ...] = ()
    timeout: float = 600.0


@dataclass(frozen=True)
class Timeouts:
    healthy: float = 60.0  # seconds for the new slot to pass HAProxy's checks
    drain: float = 30.0  # seconds for the old slot's sessions to finish
    stop: int = 10  # seconds docker stop waits before SIGKILL
    watch: float = 5.0  # seconds the old slot stays running, drained, after the switch
    command: float = 60.0  # deadline of every remote command that has none of its own
    lease: int = 60  # seconds a run's lock lives unrenewed; renewed every lease/3 seconds


@dataclass(frozen=True)
class WatchSettings:
    """How the new slots are watched after their switch (timeouts.watch: for how long)."""

    # False: one window for the whole rollout (each server's old slot stays up, drained,
    # until timeouts.watch after the last switch); True: each server watched in turn.
    each: bool = False
    # A new slot whose share of requests answered 5xx or failed (HAProxy's counters) is
    # this much above the old slot's share before the switch is switched back.
    max_error_rate: float = 0.05
    min_requests: int = 20  # requests a new slot must have had before its rate is judged


@dataclass(frozen=True)
class HookSettings:
    """Programs run on the operator's machine around a deploy (see slotswap.cli.hooks)."""

    pre_deploy: Path | None = None
    post_success: Path | None = None
    post_failure: Path | None = None


@dataclass(frozen=True)
class DeliverySettings:
    """How IMAGE:TAG reaches the servers before the first swap: `registry` (each server pulls
    it) or `ssh` (streamed from the operator's Docker over each server's SSH connection);
    `concurrency` servers at a time."""

    mode: str = "registry"
    concurrency: int = 8


LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_ACME_ACCOUNT_KEY = "~/.config/slotswap/acme-account.pem"
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate of the operator's: the chain (the server's certificate first) and its
    private key, PEM, each from a file on the operator's machine or from an environment
    variable of the run (`chain_secret`, `key_secret` name it; a CI secret): one of the two
    for each. The variables' values are read when a task needs them, never shown."""

    chain: Path | None = None
    key: Path | None = None
    chain_secret: str | None = None
    key_secret: str | None = None


@dataclass(frozen=True)
class AcmeSettings:
    """A certificate from an ACME CA (RFC 8555), issued from the operator's machine; HAProxy
    answers the CA's HTTP-01 challenges on every server (see slotswap.acme)."""

    directory: str = LETS_ENCRYPT_DIRECTORY
    contact: str | None = None  # an e-mail address for the CA's notices
    account_key: Path = Path(DEFAULT_ACME_ACCOUNT_KEY)  # created (0600) when missing
    ca_bundle: Path | None = None  # trust for the directory's own HTTPS (a private CA)


@dataclass(frozen=True)
class HttpsSettings:
    port: int = 443
    names: tuple[str, ...] = ()  # the names clients use; the certificate covers them all
    files: CertificateFiles | None = None
    acme: AcmeSettings | None = None
    redirect: bool = True  # plain HTTP answers a redirect to HTTPS (not the ACME challenges)
    hsts: int = 0  # Strict-Transport-Security max-age in seconds; 0: no header
    renew_days: int = 30  # `certs.renew` renews a certificate with fewer days left


@dataclass(frozen=True)
class Inventory:
    path: Path  # absolute path of the file it came from
    app: str
    image: str  # repository without tag
    build: BuildSettings
    app_port: int
    healthcheck: HealthcheckSettings
    ssh: SshSettings
    haproxy: HaproxySettings
    timeouts: Timeouts
    hosts: tuple[Host, ...]
    env: EnvSettings = EnvSettings()
    keep_images: int = DEFAULT_KEEP_IMAGES  # app images kept on each server, in use included
    hooks: HookSettings = HookSettings()
    delivery: DeliverySettings = DeliverySettings()
    https: HttpsSettings | None = None  # None: plain HTTP only
    # A folder on the servers for all the kit's files; None: the system folders
    # DEFAULT_STATE_ROOT and DEFAULT_CONFIG_ROOT for root, HOME_FOLDER in the home of any
    # other login (login_home).
    remote_dir: str | None = None
    # Not a key of the file (FROM_SERVER): the home of the SSH login on one server when that
    # login is not root, as the server says (Server.with_folders sets it); None for root.
    login_home: str | None = field(default=None, metadata={FROM_SERVER: True})
    container: ContainerSettings = ContainerSettings()
    release: ReleaseSettings = ReleaseSettings()
    registry: RegistrySettings | None = None
    watch: WatchSettings = WatchSettings()

    @property
    def kit_dir(self) -> str | None:
        """The folder of the kit's files on a server (remote_dir, else the non-root login's
        <home>/.slotswap); None: root's system folders."""
        if self.remote_dir is not None:
            return self.remote_dir
        return None if self.login_home is None else f"{self.login_home}/{HOME_FOLDER}"

    @property
    def state_dir(self) -> str:
        """The app's state on a server: its lock and history (kept by `fab down`)."""
        if self.kit_dir is None:
            return f"{DEFAULT_STATE_ROOT}/{self.app}"
        return f"{self.kit_dir}/{self.app}/state"

    @property
    def config_dir(self) -> str:
        """The app's config on a server: HAProxy's config and the slots' env files (removed
        by `fab down`); a folder only the login can open."""
        if self.kit_dir is None:
            return f"{DEFAULT_CONFIG_ROOT}/{self.app}"
        return f"{self.kit_dir}/{self.app}/config"

    def image_ref(self, tag: str) -> str:
        """The full image reference for ``tag``, e.g. ``registry:5000/acme/webapp:v1``."""
        return f"{self.image}:{validate_tag(tag)}"

    def container_name(self, slot: str) -> str:
        """The container name of ``slot``, which must be one of SLOTS."""
        if slot not in SLOTS:
            raise InputError(f"unknown slot {slot!r}: expected one of {', '.join(SLOTS)}")
        return f"{self.app}-{slot}"

    def slot_port(self, slot: str) -> int:
        """The port of the server's loopback on which HAProxy reaches ``slot``'s container."""
        self.container_name(slot)  # the slot's name checked
        return self.haproxy.slot_ports[SLOTS.index(slot)]

    def slot_check_port(self, slot: str) -> int | None:
        """With healthcheck.port, the loopback port on which HAProxy checks ``slot``."""
        if self.healthcheck.port is None:
            return None
        return self.slot_port(slot) + CHECK_PORT_OFFSET

    def slot_published_ports(self, slot: str) -> tuple[tuple[int, int], ...]:
        """(server port, container port) pairs of ``slot`` on the server's loopback: the
        app's port, and the health check's when it has one of its own."""
        pairs = [(self.slot_port(slot), self.app_port)]
        check_port = self.slot_check_port(slot)
        if check_port is not None and self.healthcheck.port is not None:
            pairs.append((check_port, self.healthcheck.port))
        return tuple(pairs)

    @property
    def secret_variables(self) -> tuple[str, ...]:
        """Every variable of the operator's environment that holds a secret: the app's
        (env.secret) and each one a `*_secret` setting names (the registry's password, a
        certificate's chain and key). What a hook must never inherit. Found by walking the
        settings, so that a `*_secret` setting added later is in it from the start."""
        return tuple(dict.fromkeys([*self.env.secret, *_named_secrets(self)]))

    @property
    def network(self) -> str:
        return self.app

    @property
    def haproxy_container(self) -> str:
        return f"{self.app}-haproxy"


def _named_secrets(settings: object) -> Iterator[str]:
    """The values of every `*_secret` field in a tree of settings (dataclasses, tuples)."""
    if isinstance(settings, tuple):
        for item in settings:
            yield from _named_secrets(item)
        return
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return
    for setting in dataclasses.fields(settings):
        value = getattr(settings, setting.name)
        if setting.name.endswith("_secret") and isinstance(value, str):
            yield value
        else:
            yield from _named_secrets(value)


class _Invalid(Exception):
    """A problem at one key path; parse_inventory adds the file name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


# -- reading the file --------------------------------------------------------------------


def load_inventory(path: str | Path = "hosts.yaml") -> Inventory:
    """Read, parse and validate the inventory file at ``path``."""
    path = Path(path).expanduser()
    data = _parse_yaml(_read_text(path), path)
    return parse_inventory(data, path)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError(f"{path}: inventory file not found") from None
    except IsADirectoryError:
        raise InventoryError(f"{path}: is a directory, expected an inventory YAML file") from None
    except UnicodeDecodeError as error:
        raise InventoryError(f"{path}: not UTF-8 text (bad byte at offset {error.start})") from None
    except OSError as error:
        raise InventoryError(f"{path}: cannot read: {error.strerror or error}") from None


def _parse_yaml(text: str, path: Path) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InventoryError(f"{path}: {_describe_yaml_error(error, text)}") from None


def _describe_yaml_error(error: yaml.YAMLError, text: str) -> str:
    if isinstance(error, yaml.reader.ReaderError):
        # The reader reports a character offset into the text rather than a line.
        line = text.count("\n", 0, error.position) + 1
        return (
            f"YAML syntax error at line {line}: {error.reason} (character #x{error.character:04x})"
        )
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or " ".join(str(error).split())
    if mark is None:
        return f"YAML syntax error: {problem}"
    return f"YAML syntax error at line {mark.line + 1}, column {mark.column + 1}: {problem}"


# -- value checks --------------------------------------------------------------------------


def _describe(value: object) -> str:
    """Show a value in an error message, on one line and briefly."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    shown = repr(value)
    if len(shown) > _MAX_SHOWN_VALUE:
        shown = shown[: _MAX_SHOWN_VALUE - 3] + "..."
    if isinstance(value, str | int | float):
        return shown
    return f"{shown} ({type(value).__name__})"


def _child(parent: str, name: object) -> str:
    return f"{parent}.{name}" if parent else str(name)


def _mapping(
    value: object, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, object]:
    """Check that ``value`` is a mapping with only ``allowed`` keys and all ``required`` ones."""
    if not isinstance(value, dict):
        raise _Invalid(
            key, f"expected a mapping with keys {', '.join(allowed)}, got {_describe(value)}"
        )
    for name in value:
        if name not in allowed:
            raise _Invalid(_child(key, name), _unknown_key_problem(name, allowed))
    for name in required:
        if name not in value:
            raise _Invalid(_child(key, name), "required key is missing")
    return value


def _unknown_key_problem(name: object, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed keys: {', '.join(allowed)}"


def _section(data: dict[str, object], name: str, allowed: tuple[str, ...]) -> dict[str, object]:
    """An optional sub-section; absent or left empty means all defaults."""
    value = data.get(name)
    return {} if value is None else _mapping(value, name, allowed)


def _string(value: object, key: str, expected: str) -> str:
    if not isinstance(value, str) or not value:
        hint = " (put it in quotes)" if isinstance(value, int | float) else ""
        raise _Invalid(key, f"expected {expected}, got {_describe(value)}{hint}")
    return value


def _checked(validator: Callable[[str], str], value: object, key: str, expected: str) -> str:
    """Run one of slotswap.core.validation's checks, reporting failures at ``key``."""
    text = _string(value, key, expected)
    try:
        return validator(text)
    except InputError as error:
        raise _Invalid(key, str(error)) from None


def _integer(value: object, key: str, low: int, high: int) -> int:
    # bool is an int subclass; "port: yes" must not become port 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Invalid(key, f"expected an integer from {low} to {high}, got {_describe(value)}")
    return value


def _port(value: object, key: str) -> int:
    return _integer(value, key, 1, 65535)


def _positive_number(value: object, key: str) -> float:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    # YAML spells infinity and NaN as .inf and .nan; neither is a usable timeout.
    if not is_number or (isinstance(value, float) and not math.isfinite(value)) or value <= 0:
        raise _Invalid(key, f"expected a number of seconds greater than 0, got {_describe(value)}")
    return float(value)


def _non_negative_number(value: object, key: str) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    try:
        return _positive_number(value, key)
    except _Invalid:
        raise _Invalid(key, f"expected a number of seconds, 0 or more, got {_describe(value)}") \
            from None


def _positive_integer(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Invalid(
            key, f"expected a whole number of seconds greater than 0, got {_describe(value)}"
        )
    return value


def _path(value: object, key: str, base: Path) -> Path:
    """A path from the file: '~' expanded, relative paths taken from the file's folder."""
    text = _string(value, key, "a file or folder path")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise _Invalid(
            key, f"cannot expand '~' in {text!r}: unknown user or no home folder"
        ) from None
    return path if path.is_absolute() else base / path


def _ssh_user(value: object, key: str) -> str:
    user = _string(value, key, "an SSH user name")
    if not _SSH_USER.fullmatch(user):
        raise _Invalid(
            key,
            "expected an SSH user name of 1-32 lowercase letters, digits, '_', '.' or '-', "
            f"starting with a letter or '_', got {_describe(user)}",
        )
    return user


def _boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(key, f"expected true or false, got {_describe(value)}")
    return value


def _jump_host(value: object, key: str) -> JumpHost:
    expected = "a jump host as [user@]host[:port], e.g. 'deploy@bastion.example.com:22'"
    text = _string(value, key, expected)
    match = _JUMP.fullmatch(text)
    if match is None:
        raise _Invalid(
            key, f"expected {expected} (an IPv6 address in brackets), got {_describe(text)}"
        )
    user, port = match["user"], match["port"]
    return JumpHost(
        address=_address(match["ipv6"] if match["ipv6"] is not None else match["host"], key),
        user=_ssh_user(user, key) if user is not None else None,
        port=_port(int(port), key) if port is not None else None,
    )


def _host_name(value: object, key: str) -> str:
    name = _string(value, key, "a host display name")
    if not _HOST_NAME.fullmatch(name):
        raise _Invalid(
            key,
            "expected a name of 1-63 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit, got {_describe(name)}",
        )
    return name


# -- sections ------------------------------------------------------------------------------

_TOP_KEYS = (
    "app",
    "image",
    "build",
    "app_port",
    "healthcheck",
    "env",
    "ssh",
    "haproxy",
    "timeouts",
    "keep_images",
    "hooks",
    "hosts",
    "delivery",
    "https",
    "remote_dir",
    "container",
    "release",
    "registry",
    "watch",
)
_REQUIRED_TOP_KEYS = ("app", "image", "hosts")
_BUILD_KEYS = ("context", "dockerfile", "platform", "args")
_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?")
_HEALTHCHECK_KEYS = ("path", "host", "status", "interval", "rise", "fall", "port")
_CONTAINER_KEYS = ("command", "volumes", "stop_signal", "memory", "cpus", "log", "labels")
_LOG_KEYS = ("driver", "options")
_RELEASE_KEYS = ("command", "timeout")
_REGISTRY_KEYS = ("server", "user", "password_secret")
_SSH_KEYS = (
    "user",
    "port",
    "identity",
    "known_hosts",
    "connect_timeout",
    "keepalive",
    "dead_after",
    "accept_unknown_hosts",
    "jump",
    "config",
)
_ENV_KEYS = ("plain", "secret")
# stats_port: no longer used (the runtime API is a unix socket, see tasks/admin_channel.py);
# still accepted, and ignored, so that inventories written for earlier versions load.
_HAPROXY_KEYS = ("image", "http_port", "slot_ports", "trusted_proxies", "stats_port")
_TIMEOUT_KEYS = ("healthy", "drain", "stop", "watch", "command", "lease")
_WATCH_KEYS = ("each", "max_error_rate", "min_requests")
_HOOK_KEYS = ("pre_deploy", "post_success", "post_failure")
_DELIVERY_KEYS = ("mode", "concurrency")
_HOST_KEYS = ("address", "name", "user", "port", "jump", "accept_unknown_hosts")
_HTTPS_KEYS = ("port", "names", "files", "acme", "redirect", "hsts", "renew_days")
_CERT_FILE_KEYS = ("chain", "key", "chain_secret", "key_secret")
_ACME_KEYS = ("directory", "contact", "account_key", "ca_bundle")


def _build_settings(section: dict[str, object], base: Path) -> BuildSettings:
    context = _path(section.get("context", "."), "build.context", base)
    # Like `docker build`, an omitted Dockerfile is the one at the root of the context.
    if "dockerfile" in section:
        dockerfile = _path(section["dockerfile"], "build.dockerfile", base)
    else:
        dockerfile = context / "Dockerfile"
    platform = section.get("platform")
    if platform is not None and (not isinstance(platform, str)
                                 or not _PLATFORM.fullmatch(platform)):
        raise _Invalid("build.platform", "expected OS/ARCH such as linux/amd64 or linux/arm64, "
                       f"got {_describe(platform)}")
    args = section.get("args") or {}
    if not isinstance(args, dict):
        raise _Invalid("build.args", f"expected a mapping of NAME: value, got {_describe(args)}")
    checked = []
    for name, value in args.items():
        problem = name_problem(name)
        if problem is not None:
            raise _Invalid(f"build.args.{name}", problem)
        if name == "VERSION":
            raise _Invalid("build.args.VERSION", "is the kit's own: the tag being built")
        checked.append((str(name), _text_value(value, f"build.args.{name}")))
    return BuildSettings(context=context, dockerfile=dockerfile, platform=platform,
                         args=tuple(checked))


def _healthcheck_settings(section: dict[str, object]) -> HealthcheckSettings:
    defaults = HealthcheckSettings()
    path = section.get("path", defaults.path)
    host = None
    if section.get("host") is not None:
        host = _string(section["host"], "healthcheck.host", "a host name for the Host header")
        if not _HEADER_HOST.fullmatch(host):
            raise _Invalid("healthcheck.host", "expected a host name, optionally with :port, "
                           f"got {_describe(host)}")
    status = section.get("status", list(defaults.status))
    if isinstance(status, int) and not isinstance(status, bool):
        status = [status]
    if not isinstance(status, list) or not status:
        raise _Invalid("healthcheck.status", "expected an HTTP status or a list of them, got "
                       f"{_describe(status)}")
    codes = tuple(_integer(code, f"healthcheck.status[{index}]", 100, 599)
                  for index, code in enumerate(status))
    interval = _positive_number(section.get("interval", defaults.interval),
                                "healthcheck.interval")
    if not 0.1 <= interval <= 60:
        raise _Invalid("healthcheck.interval", f"expected 0.1 to 60 seconds, got {interval:g}")
    return HealthcheckSettings(
        path=_checked(validate_url_path, path, "healthcheck.path",
                      "a URL path such as /health"),
        host=host, status=codes, interval=interval,
        rise=_integer(section.get("rise", defaults.rise), "healthcheck.rise", 1, 10),
        fall=_integer(section.get("fall", defaults.fall), "healthcheck.fall", 1, 10),
        port=_port(section["port"], "healthcheck.port") if section.get("port") else None,
    )


_HEADER_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?")
_VOLUME = re.compile(
    r"(?P<source>[A-Za-z0-9][A-Za-z0-9_.-]{0,127}|/[A-Za-z0-9_./-]*)"
    r":(?P<target>/[A-Za-z0-9_./-]*)(?::(?P<mode>ro|rw))?")
_SIGNAL = re.compile(r"SIG[A-Z0-9]{2,10}|[0-9]{1,2}")
_MEMORY = re.compile(r"[0-9]{1,12}[bkmg]?")
_LOG_DRIVER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_OPTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def _words(value: object, key: str) -> tuple[str, ...]:
    """An argv: a list of strings, one word each (never split or run by a shell)."""
    if not isinstance(value, list) or not value:
        raise _Invalid(key, "expected a list of words, e.g. [bin/migrate, --verbose] (an argv: "
                       f"no shell runs it), got {_describe(value)}")
    words = []
    for index, word in enumerate(value):
        text = _string(word, f"{key}[{index}]", "a word")
        if any(character in text for character in "\0\n\r"):
            raise _Invalid(f"{key}[{index}]", "a word cannot hold a line break or NUL")
        words.append(text)
    return tuple(words)


def _text_value(value: object, key: str) -> str:
    text = _env_value(value, key)
    if any(character in text for character in "\0\n\r"):
        raise _Invalid(key, "a value cannot hold a line break or NUL")
    return text


def _container_settings(section: dict[str, object]) -> ContainerSettings:
    volumes = section.get("volumes") or []
    if not isinstance(volumes, list):
        raise _Invalid("container.volumes", "expected a list of NAME:/path or /host:/path "
                       f"(optionally :ro), got {_describe(volumes)}")
    checked_volumes = []
    for index, volume in enumerate(volumes):
        text = _string(volume, f"container.volumes[{index}]", "a volume")
        if not _VOLUME.fullmatch(text) or "/.." in text:
            raise _Invalid(f"container.volumes[{index}]", "expected NAME:/path or "
                           f"/host/path:/path, optionally :ro or :rw, got {_describe(text)}")
        checked_volumes.append(text)
    stop_signal = section.get("stop_signal")
    if stop_signal is not None and (not isinstance(stop_signal, str)
                                    or not _SIGNAL.fullmatch(stop_signal)):
        raise _Invalid("container.stop_signal", "expected a signal such as SIGQUIT, got "
                       f"{_describe(stop_signal)}")
    memory = section.get("memory")
    if memory is not None:
        memory = str(memory) if isinstance(memory, int) and not isinstance(memory, bool) \
            else memory
        if not isinstance(memory, str) or not _MEMORY.fullmatch(memory):
            raise _Invalid("container.memory", "expected a size such as 512m or 2g, got "
                           f"{_describe(memory)}")
    cpus = section.get("cpus")
    if cpus is not None:
        cpus = _positive_number(cpus, "container.cpus")
        if cpus > 1024:
            raise _Invalid("container.cpus", f"expected at most 1024 CPUs, got {cpus:g}")
    log = None
    if section.get("log") is not None:
        fields = _mapping(section["log"], "container.log", _LOG_KEYS, required=("driver",))
        driver = _string(fields["driver"], "container.log.driver", "a log driver")
        if not _LOG_DRIVER.fullmatch(driver):
            raise _Invalid("container.log.driver", f"expected a log driver name such as "
                           f"json-file, got {_describe(driver)}")
        options = fields.get("options") or {}
        if not isinstance(options, dict):
            raise _Invalid("container.log.options", "expected a mapping of option: value, "
                           f"got {_describe(options)}")
        checked = []
        for name, value in options.items():
            if not isinstance(name, str) or not _OPTION_NAME.fullmatch(name):
                raise _Invalid(f"container.log.options.{name}", "expected an option name")
            checked.append((name, _text_value(value, f"container.log.options.{name}")))
        log = LogSettings(driver=driver, options=tuple(checked))
    labels = section.get("labels") or {}
    if not isinstance(labels, dict):
        raise _Invalid("container.labels", f"expected a mapping, got {_describe(labels)}")
    checked_labels = []
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) \
                or name.startswith("slotswap."):
            raise _Invalid(f"container.labels.{name}", "expected a label name of lowercase "
                           "letters, digits, '.', '_' or '-' (slotswap.* is the kit's own)")
        checked_labels.append((name, _text_value(value, f"container.labels.{name}")))
    return ContainerSettings(
        command=_words(section["command"], "container.command") if section.get("command")
        else (),
        volumes=tuple(checked_volumes), stop_signal=stop_signal, memory=memory, cpus=cpus,
        log=log, labels=tuple(checked_labels))


def _registry_settings(value: object) -> RegistrySettings | None:
    if value is None:
        return None
    section = _mapping(value, "registry", _REGISTRY_KEYS, required=("user", "password_secret"))
    user = _string(section["user"], "registry.user", "a registry user name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}", user):
        raise _Invalid("registry.user", f"expected a user name, got {_describe(user)}")
    secret = section["password_secret"]
    problem = name_problem(secret)
    if problem is not None:
        raise _Invalid("registry.password_secret", problem)
    server = None
    if section.get("server") is not None:
        server = _string(section["server"], "registry.server", "a registry host[:port]")
        if not _HEADER_HOST.fullmatch(server):
            raise _Invalid("registry.server", "expected a registry host[:port] such as "
                           f"registry.example.com:5000, got {_describe(server)}")
    return RegistrySettings(user=user, password_secret=str(secret), server=server)


def _release_settings(section: dict[str, object]) -> ReleaseSettings:
    defaults = ReleaseSettings()
    if not section:
        return defaults
    return ReleaseSettings(
        command=_words(section.get("command"), "release.command"),
        timeout=_positive_number(section.get("timeout", defaults.timeout), "release.timeout"))


def _optional_path(section: dict[str, object], name: str, key: str, base: Path) -> Path | None:
    return _path(section[name], key, base) if name in section else None


def _ssh_settings(section: dict[str, object], base: Path) -> SshSettings:
    defaults = SshSettings()
    return SshSettings(
        user=_ssh_user(section["user"], "ssh.user") if "user" in section else None,
        port=_port(section["port"], "ssh.port") if "port" in section else None,
        identity=_optional_path(section, "identity", "ssh.identity", base),
        known_hosts=_optional_path(section, "known_hosts", "ssh.known_hosts", base),
        connect_timeout=_positive_number(
            section.get("connect_timeout", defaults.connect_timeout), "ssh.connect_timeout"
        ),
        keepalive=_positive_number(section.get("keepalive", defaults.keepalive), "ssh.keepalive"),
        dead_after=_positive_number(
            section.get("dead_after", defaults.dead_after), "ssh.dead_after"
        ),
        accept_unknown_hosts=_boolean(
            section.get("accept_unknown_hosts", defaults.accept_unknown_hosts),
            "ssh.accept_unknown_hosts",
        ),
        jump=_jump_host(section["jump"], "ssh.jump") if "jump" in section else None,
        config=_boolean(section.get("config", defaults.config), "ssh.config"),
    )


def _env_value(value: object, key: str) -> str:
    """A plain value as the app will see it. YAML has already turned unquoted yes/on/true
    into booleans and 0755 into 493; the reference hosts.yaml says to quote such values."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float) and math.isfinite(value):
        text = repr(value)
    elif isinstance(value, str):
        text = value
    else:
        hint = ' (write "" for an empty value)' if value is None else " (put it in quotes)"
        raise _Invalid(
            key, f"expected a string, number or boolean, got {_describe(value)}{hint}"
        )
    return text


def _env_settings(section: dict[str, object]) -> EnvSettings:
    plain_section = section.get("plain")
    plain: list[tuple[str, str]] = []
    if plain_section is not None:
        if not isinstance(plain_section, dict):
            raise _Invalid(
                "env.plain",
                f"expected a mapping of NAME: value, got {_describe(plain_section)}",
            )
        for name, value in plain_section.items():
            key = _child("env.plain", name)
            problem = name_problem(name)
            if problem is not None:
                raise _Invalid(key, problem)
            text = _env_value(value, key)
            problem = value_problem(str(name), text)
            if problem is not None:
                raise _Invalid(key, problem)
            plain.append((str(name), text))
    secret_list = section.get("secret")
    if secret_list is None:
        secret_list = []
    if not isinstance(secret_list, list):
        raise _Invalid(
            "env.secret", f"expected a list of variable names, got {_describe(secret_list)}"
        )
    plain_names = {name for name, _ in plain}
    secret: list[str] = []
    for index, name in enumerate(secret_list):
        key = f"env.secret[{index}]"
        problem = name_problem(name)
        if problem is not None:
            raise _Invalid(key, problem)
        if name in plain_names:
            raise _Invalid(key, f"{name} is also in env.plain; a variable is plain or secret")
        if name in secret:
            raise _Invalid(key, f"{name} is already env.secret[{secret.index(name)}]")
        secret.append(name)
    return EnvSettings(plain=tuple(plain), secret=tuple(secret))


def _haproxy_settings(section: dict[str, object]) -> HaproxySettings:
    defaults = HaproxySettings()
    image = _checked(
        validate_image_reference,
        section.get("image", defaults.image),
        "haproxy.image",
        "an image reference such as haproxy:2.8",
    )
    http_port = _port(section.get("http_port", defaults.http_port), "haproxy.http_port")
    ports = section.get("slot_ports", list(defaults.slot_ports))
    if not isinstance(ports, list) or len(ports) != 2:
        raise _Invalid("haproxy.slot_ports", f"must be a list of two ports (web1's, web2's), "
                                             f"got {ports!r}")
    # Room above each for its check port (healthcheck.port).
    first, second = (_integer(port, f"haproxy.slot_ports[{index}]", 1, 65535 - CHECK_PORT_OFFSET)
                     for index, port in enumerate(ports))
    if first == second or http_port in (first, second):
        raise _Invalid("haproxy.slot_ports", f"must be two ports that differ from each other "
                                             f"and from haproxy.http_port, got {ports!r}")
    return HaproxySettings(image=image, http_port=http_port, slot_ports=(first, second),
                           trusted_proxies=_networks(section.get("trusted_proxies", []),
                                                     "haproxy.trusted_proxies"))


def _networks(value: object, key: str) -> tuple[str, ...]:
    """A list of networks in CIDR form (an address alone is its /32 or /128), normalised."""
    if not isinstance(value, list):
        raise _Invalid(key, f"expected a list of networks such as 10.0.0.0/8, got "
                            f"{_describe(value)}")
    networks = []
    for index, item in enumerate(value):
        text = _string(item, f"{key}[{index}]", "a network such as 10.0.0.0/8")
        try:
            # Digits, dots, colons and a slash only: ipaddress would also take a zone
            # ("fe80::1%eth0"), which no config line may carry.
            if not re.fullmatch(r"[0-9A-Fa-f:.]+(/[0-9]+)?", text):
                raise ValueError(text)
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise _Invalid(f"{key}[{index}]", f"expected a network in CIDR form such as "
                           f"10.0.0.0/8 or 192.0.2.7/32, got {_describe(text)}") from None
        address = ipaddress.ip_interface(text).ip
        if address != network.network_address:
            raise _Invalid(f"{key}[{index}]", f"{text} has bits set after its first "
                           f"{network.prefixlen}: write {network} for that network, or "
                           f"{address}/{network.max_prefixlen} for that address alone")
        networks.append(str(network))
    return tuple(networks)


def _timeouts(section: dict[str, object]) -> Timeouts:
    defaults = Timeouts()
    return Timeouts(
        healthy=_positive_number(section.get("healthy", defaults.healthy), "timeouts.healthy"),
        drain=_positive_number(section.get("drain", defaults.drain), "timeouts.drain"),
        stop=_positive_integer(section.get("stop", defaults.stop), "timeouts.stop"),
        watch=_non_negative_number(section.get("watch", defaults.watch), "timeouts.watch"),
        command=_positive_number(section.get("command", defaults.command), "timeouts.command"),
        lease=_integer(section.get("lease", defaults.lease), "timeouts.lease", MIN_LOCK_LEASE,
                       MAX_LOCK_LEASE),
    )


def _watch_settings(section: dict[str, object]) -> WatchSettings:
    defaults = WatchSettings()
    rate = section.get("max_error_rate", defaults.max_error_rate)
    if (isinstance(rate, bool) or not isinstance(rate, int | float)
            or not 0 <= rate <= 1):
        raise _Invalid("watch.max_error_rate",
                       f"expected a share from 0 to 1 (0.05: 5%), got {_describe(rate)}")
    return WatchSettings(
        each=_boolean(section.get("each", defaults.each), "watch.each"),
        max_error_rate=float(rate),
        min_requests=_integer(section.get("min_requests", defaults.min_requests),
                              "watch.min_requests", 1, 1_000_000),
    )


def _hook_program(value: object, key: str, base: Path) -> Path:
    path = _path(value, key, base)
    if not path.is_file():
        raise _Invalid(key, f"expected an executable file, but {path} is not a file")
    if not os.access(path, os.X_OK):
        raise _Invalid(key, f"{path} is not executable (chmod +x it)")
    return path


def _hook_settings(section: dict[str, object], base: Path) -> HookSettings:
    programs = {name: _hook_program(section[name], f"hooks.{name}", base)
                for name in _HOOK_KEYS if section.get(name) is not None}
    return HookSettings(**programs)


def _delivery_settings(value: object) -> DeliverySettings:
    """`delivery: ssh` is short for `delivery: {mode: ssh}`."""
    defaults = DeliverySettings()
    if value is None:
        return defaults
    if not isinstance(value, str | dict):
        raise _Invalid("delivery", f"expected {' or '.join(DELIVERY_MODES)}, or a mapping with "
                       f"keys {', '.join(_DELIVERY_KEYS)}, got {_describe(value)}")
    section = {"mode": value} if isinstance(value, str) else _mapping(
        value, "delivery", _DELIVERY_KEYS)
    key = "delivery.mode" if isinstance(value, dict) else "delivery"
    mode = section.get("mode", defaults.mode)
    if mode not in DELIVERY_MODES:
        raise _Invalid(key, f"expected one of {', '.join(DELIVERY_MODES)}, got {_describe(mode)}")
    concurrency = section.get("concurrency", defaults.concurrency)
    if (isinstance(concurrency, bool) or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_DELIVERY_CONCURRENCY):
        raise _Invalid("delivery.concurrency", "expected a number of servers at a time from 1 "
                       f"to {MAX_DELIVERY_CONCURRENCY}, got {_describe(concurrency)}")
    return DeliverySettings(mode=str(mode), concurrency=concurrency)


def _dns_name(value: object, key: str, *, wildcard: bool) -> str:
    name = _string(value, key, "a DNS name such as www.example.com")
    if not _DNS_NAME.fullmatch(name) or (name.startswith("*") and not wildcard):
        allowed = " (a wildcard *.example.com only with https.files)" if not wildcard else ""
        raise _Invalid(key, f"expected a lowercase DNS name{allowed}, got {_describe(name)}")
    return name


def _certificate_files(value: object, base: Path) -> CertificateFiles:
    """Each of chain and key: a path (`chain`) or the environment variable holding the PEM
    text (`chain_secret`), not both."""
    fields = _mapping(value, "https.files", _CERT_FILE_KEYS)
    found: dict[str, object] = {}
    for part in ("chain", "key"):
        secret = f"{part}_secret"
        if (part in fields) == (secret in fields):
            raise _Invalid(f"https.files.{part}", (
                f"give one of {part} (a file) or {secret} (an environment variable holding "
                "the PEM text), not both" if part in fields else "required key is missing "
                f"(or {secret}, an environment variable holding the PEM text)"))
        if part in fields:
            found[part] = _path(fields[part], f"https.files.{part}", base)
        else:
            problem = name_problem(fields[secret])
            if problem is not None:
                raise _Invalid(f"https.files.{secret}", problem)
            found[secret] = str(fields[secret])
    return CertificateFiles(**found)  # type: ignore[arg-type]


def _https_settings(value: object, haproxy: HaproxySettings, base: Path) -> HttpsSettings | None:
    if value is None:
        return None
    section = _mapping(value, "https", _HTTPS_KEYS, required=("names",))
    defaults = HttpsSettings()
    if ("files" in section) == ("acme" in section):
        raise _Invalid("https", "expected exactly one of files (a certificate and key of "
                       "yours) or acme (certificates from an ACME CA such as Let's Encrypt)")
    files = acme = None
    if "files" in section:
        files = _certificate_files(section["files"], base)
    else:
        fields = _mapping(section["acme"] or {}, "https.acme", _ACME_KEYS)
        directory = _string(fields.get("directory", LETS_ENCRYPT_DIRECTORY),
                            "https.acme.directory", "the https:// URL of an ACME directory")
        if not re.fullmatch(r"https://[^\s\\\"']+", directory):
            raise _Invalid("https.acme.directory",
                           f"expected an https:// URL, got {_describe(directory)}")
        contact = None
        if fields.get("contact") is not None:
            contact = _string(fields["contact"], "https.acme.contact", "an e-mail address")
            if not re.fullmatch(r"[^@\s:]+@[^@\s:]+", contact):
                raise _Invalid("https.acme.contact",
                               f"expected an e-mail address, got {_describe(contact)}")
        acme = AcmeSettings(
            directory=directory, contact=contact,
            account_key=_path(fields.get("account_key", DEFAULT_ACME_ACCOUNT_KEY),
                              "https.acme.account_key", base),
            ca_bundle=_optional_path(fields, "ca_bundle", "https.acme.ca_bundle", base))
    names = section["names"]
    if not isinstance(names, list) or not names:
        raise _Invalid("https.names", "expected a list of the DNS names clients use, got "
                       f"{_describe(names)}")
    checked = tuple(_dns_name(name, f"https.names[{index}]", wildcard=files is not None)
                    for index, name in enumerate(names))
    port = _port(section.get("port", defaults.port), "https.port")
    if port == haproxy.http_port:
        raise _Invalid("https.port", f"must differ from haproxy.http_port, got {port}")
    if port in haproxy.slot_ports:
        raise _Invalid("https.port", f"must differ from haproxy.slot_ports, got {port}")
    hsts = section.get("hsts", defaults.hsts)
    if isinstance(hsts, bool) or not isinstance(hsts, int) or not 0 <= hsts <= 63_072_000:
        raise _Invalid("https.hsts", "expected a max-age in seconds from 0 (no header) to "
                       f"63072000 (2 years), got {_describe(hsts)}")
    return HttpsSettings(
        port=port, names=checked, files=files, acme=acme,
        redirect=_boolean(section.get("redirect", defaults.redirect), "https.redirect"),
        hsts=hsts,
        renew_days=_integer(section.get("renew_days", defaults.renew_days), "https.renew_days",
                            1, 89),
    )


# -- hosts ---------------------------------------------------------------------------------


def _address(value: object, key: str) -> str:
    return _checked(validate_host_address, value, key, "a host name or IP address")


def _host(entry: object, key: str) -> Host:
    if isinstance(entry, str):
        address = _address(entry, key)
        return Host(address=address, name=address)
    if not isinstance(entry, dict):
        raise _Invalid(
            key,
            "expected a host address or a mapping with keys "
            f"{', '.join(_HOST_KEYS)}, got {_describe(entry)}",
        )
    fields = _mapping(entry, key, _HOST_KEYS, required=("address",))
    address = _address(fields["address"], f"{key}.address")
    accept = fields.get("accept_unknown_hosts")
    return Host(
        address=address,
        name=_host_name(fields["name"], f"{key}.name") if "name" in fields else address,
        user=_ssh_user(fields["user"], f"{key}.user") if "user" in fields else None,
        port=_port(fields["port"], f"{key}.port") if "port" in fields else None,
        jump=_jump_host(fields["jump"], f"{key}.jump") if "jump" in fields else None,
        accept_unknown_hosts=(
            _boolean(accept, f"{key}.accept_unknown_hosts")
            if "accept_unknown_hosts" in fields
            else None
        ),
    )


def _same_address_key(address: str) -> str:
    """A form of the address in which equal addresses compare equal."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower()


def _check_unique(hosts: list[Host], ssh: SshSettings) -> None:
    # Behind different jump hosts the same (private) address can be two machines.
    seen_targets: dict[tuple[str, int, str], int] = {}
    seen_names: dict[str, int] = {}
    for index, host in enumerate(hosts):
        port = host.port or ssh.port or DEFAULT_SSH_PORT
        jump = host.jump or ssh.jump
        target = (_same_address_key(host.address), port, str(jump or ""))
        if target in seen_targets:
            through = f" through jump host {jump}" if jump else ""
            raise _Invalid(
                f"hosts[{index}]",
                f"duplicate of hosts[{seen_targets[target]}] "
                f"(same address {host.address} and SSH port {port}{through})",
            )
        if host.name in seen_names:
            raise _Invalid(
                f"hosts[{index}].name",
                f"{host.name!r} is already the name of hosts[{seen_names[host.name]}]",
            )
        seen_targets[target] = index
        seen_names[host.name] = index


def _hosts(value: object, ssh: SshSettings) -> tuple[Host, ...]:
    if not isinstance(value, list) or not value:
        raise _Invalid(
            "hosts",
            "expected a non-empty list of host addresses or {address, name, user, port} "
            f"mappings, got {_describe(value)}",
        )
    hosts = [_host(entry, f"hosts[{index}]") for index, entry in enumerate(value)]
    _check_unique(hosts, ssh)
    return tuple(hosts)


# -- the whole file ------------------------------------------------------------------------


def parse_inventory(data: object, path: Path) -> Inventory:
    """Validate already-parsed YAML ``data`` that was read from ``path``.

    ``path`` is named in error messages as given; relative paths in the data are taken
    from its folder.
    """
    if data is None:
        raise InventoryError(f"{path}: the file is empty; expected at least app, image and hosts")
    if not isinstance(data, dict):
        raise InventoryError(
            f"{path}: expected a mapping of settings at the top level, got {_describe(data)}"
        )
    try:
        return _inventory(data, path.absolute())
    except _Invalid as error:
        raise InventoryError(f"{path}: {error}", key=error.key) from None


def _inventory(data: dict[object, object], path: Path) -> Inventory:
    # Sections are checked in the order the reference hosts.yaml lists them, so the first
    # error reported is usually the first one in the file.
    top = _mapping(data, "", _TOP_KEYS, required=_REQUIRED_TOP_KEYS)
    base = path.parent
    app = _checked(validate_app_name, top["app"], "app", "an app name")
    image = _checked(
        validate_image_repository, top["image"], "image", "an image repository without tag"
    )
    build = _build_settings(_section(top, "build", _BUILD_KEYS), base)
    app_port = _port(top.get("app_port", _DEFAULT_APP_PORT), "app_port")
    healthcheck = _healthcheck_settings(_section(top, "healthcheck", _HEALTHCHECK_KEYS))
    env = _env_settings(_section(top, "env", _ENV_KEYS))
    ssh = _ssh_settings(_section(top, "ssh", _SSH_KEYS), base)
    haproxy = _haproxy_settings(_section(top, "haproxy", _HAPROXY_KEYS))
    timeouts = _timeouts(_section(top, "timeouts", _TIMEOUT_KEYS))
    keep_images = _integer(top.get("keep_images", DEFAULT_KEEP_IMAGES), "keep_images",
                           MIN_KEEP_IMAGES, 1000)
    hooks = _hook_settings(_section(top, "hooks", _HOOK_KEYS), base)
    delivery = _delivery_settings(top.get("delivery"))
    https = _https_settings(top.get("https"), haproxy, base)
    remote_dir = (_checked(validate_remote_dir, top["remote_dir"], "remote_dir",
                           "an absolute folder path on the servers")
                  if top.get("remote_dir") is not None else None)
    container = _container_settings(_section(top, "container", _CONTAINER_KEYS))
    release = _release_settings(_section(top, "release", _RELEASE_KEYS))
    registry = _registry_settings(top.get("registry"))
    watch = _watch_settings(_section(top, "watch", _WATCH_KEYS))
    hosts = _hosts(top["hosts"], ssh)
    return Inventory(
        path=path,
        app=app,
        image=image,
        build=build,
        app_port=app_port,
        healthcheck=healthcheck,
        ssh=ssh,
        haproxy=haproxy,
        timeouts=timeouts,
        hosts=hosts,
        env=env,
        keep_images=keep_images,
        hooks=hooks,
        delivery=delivery,
        https=https,
        remote_dir=remote_dir,
        container=container,
        release=release,
        registry=registry,
        watch=watch,
    )
