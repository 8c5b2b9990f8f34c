"""The inventory file (hosts.yaml): loading, validation and the settings it yields.

The whole file is checked before any server is contacted, so a typo fails the deploy on
the operator's machine instead of half-way through a rollout. Every error is a single line
``<file>: <key path>: <what was expected>``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from slotswap.config import values
from slotswap.config.build import BUILD_KEYS, parse_build
from slotswap.config.container import (
    CONTAINER_KEYS,
    RELEASE_KEYS,
    parse_container,
    parse_release,
)
from slotswap.config.delivery import parse_delivery
from slotswap.config.env import ENV_KEYS, parse_env
from slotswap.config.haproxy import HAPROXY_KEYS, parse_haproxy
from slotswap.config.healthcheck import HEALTHCHECK_KEYS, parse_healthcheck
from slotswap.config.hooks import HOOK_KEYS, parse_hooks
from slotswap.config.hosts import parse_hosts
from slotswap.config.https import parse_https
from slotswap.config.inventory import (
    DEFAULT_KEEP_IMAGES,
    MIN_KEEP_IMAGES,
    Inventory,
    InventoryError,
)
from slotswap.config.registry import parse_registry
from slotswap.config.ssh import SSH_KEYS, parse_ssh
from slotswap.config.timeouts import TIMEOUT_KEYS, WATCH_KEYS, parse_timeouts, parse_watch
from slotswap.core.validation import (
    validate_app_name,
    validate_image_repository,
    validate_remote_dir,
)

_DEFAULT_APP_PORT = 3000


TOP_KEYS = (
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


REQUIRED_TOP_KEYS = ("app", "image", "hosts")


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


def parse_inventory(data: object, path: Path) -> Inventory:
    """Validate already-parsed YAML ``data`` that was read from ``path``.

    ``path`` is named in error messages as given; relative paths in the data are taken
    from its folder.
    """
    if data is None:
        raise InventoryError(f"{path}: the file is empty; expected at least app, image and hosts")
    if not isinstance(data, dict):
        raise InventoryError(
            f"{path}: expected a mapping of settings at the top level, got {values.describe(data)}"
        )
    try:
        return _inventory(data, path.absolute())
    except values.Invalid as error:
        raise InventoryError(f"{path}: {error}", key=error.key) from None


def _inventory(data: dict[object, object], path: Path) -> Inventory:
    # Sections are checked in the order the reference hosts.yaml lists them, so the first
    # error reported is usually the first one in the file.
    top = values.mapping(data, "", TOP_KEYS, required=REQUIRED_TOP_KEYS)
    base = path.parent
    app = values.checked(validate_app_name, top["app"], "app", "an app name")
    image = values.checked(
        validate_image_repository, top["image"], "image", "an image repository without tag"
    )
    build = parse_build(values.section(top, "build", BUILD_KEYS), base)
    app_port = values.port(top.get("app_port", _DEFAULT_APP_PORT), "app_port")
    healthcheck = parse_healthcheck(values.section(top, "healthcheck", HEALTHCHECK_KEYS))
    env = parse_env(values.section(top, "env", ENV_KEYS))
    ssh = parse_ssh(values.section(top, "ssh", SSH_KEYS), base)
    haproxy = parse_haproxy(values.section(top, "haproxy", HAPROXY_KEYS))
    timeouts = parse_timeouts(values.section(top, "timeouts", TIMEOUT_KEYS))
    keep_images = values.integer(top.get("keep_images", DEFAULT_KEEP_IMAGES), "keep_images",
                           MIN_KEEP_IMAGES, 1000)
    hooks = parse_hooks(values.section(top, "hooks", HOOK_KEYS), base)
    delivery = parse_delivery(top.get("delivery"))
    https = parse_https(top.get("https"), haproxy, base)
    remote_dir = (values.checked(validate_remote_dir, top["remote_dir"], "remote_dir",
                           "an absolute folder path on the servers")
                  if top.get("remote_dir") is not None else None)
    container = parse_container(values.section(top, "container", CONTAINER_KEYS))
    release = parse_release(values.section(top, "release", RELEASE_KEYS))
    registry = parse_registry(top.get("registry"))
    watch = parse_watch(values.section(top, "watch", WATCH_KEYS))
    hosts = parse_hosts(top["hosts"], ssh)
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
