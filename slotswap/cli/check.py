"""`slotswap check`: the inventory and the templates, checked without contacting a server.

It prints the settings as the kit resolves them (defaults filled in, relative paths made
absolute, secrets masked), renders every template, and on an error names the key path and
the line of the file it is on.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import jinja2
import yaml

from slotswap.config.app_env import SECRET_MARK
from slotswap.config.env import EnvSettings
from slotswap.config.inventory import (
    DEFAULT_CONFIG_ROOT,
    DEFAULT_STATE_ROOT,
    FROM_FILE_SHAPE,
    FROM_SERVER,
    HOME_FOLDER,
    Inventory,
    InventoryError,
)
from slotswap.config.roles import OWN_CONTAINER_KEYS, RoleSettings
from slotswap.core.validation import InputError

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def key_parts(key: str) -> list[str | int]:
    """`hosts[0].jump` -> ['hosts', 0, 'jump']."""
    return [int(index) if index else name for name, index in _PART.findall(key)]


def key_line(text: str, key: str) -> int | None:
    """The line (from 1) where the key path is written in the YAML text: the deepest part of
    it that the file has (a missing key: the line of the mapping that lacks it)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in key_parts(key):
        if isinstance(part, int) and isinstance(node, yaml.SequenceNode):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        elif isinstance(part, str) and isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == part), None)
            if found is None:
                break
            line = found[0].start_mark.line + 1
            node = found[1]
        else:
            break
    return line


def located(error: InventoryError, path: Path) -> str:
    """The error with the line of its key, as `FILE:LINE: KEY: problem`."""
    message = str(error)
    if error.key is None:
        return message
    try:
        line = key_line(path.read_text(encoding="utf-8"), error.key)
    except OSError:
        return message
    prefix = f"{path}: "
    if line is None or not message.startswith(prefix):
        return message
    return f"{path}:{line}: {message[len(prefix):]}"


def settings_lines(inventory: Inventory, environ: Mapping[str, str] = os.environ) -> Iterator[str]:
    """`key: value` lines of every setting, secrets masked (their names and whether this
    environment has them: never their values)."""
    for field in dataclasses.fields(inventory):
        value = getattr(inventory, field.name)
        if field.metadata.get(FROM_SERVER) or field.metadata.get(FROM_FILE_SHAPE):
            continue
        if field.name == "remote_dir" and value is None:
            yield (f"remote_dir: (not set: root keeps the kit's files in {DEFAULT_STATE_ROOT}/"
                   f"{inventory.app} and {DEFAULT_CONFIG_ROOT}/{inventory.app}, any other login "
                   f"in ~/{HOME_FOLDER}/{inventory.app} of its home on each server)")
        elif field.name == "env":
            yield from _env_lines("env", inventory.env, environ)
        elif field.name == "roles":
            yield from _role_lines(value, environ)
        elif field.name == "hosts":
            for index, host in enumerate(value):
                yield from _lines(f"hosts[{index}]", host, environ)
        else:
            yield from _lines(field.name, value, environ)


def _env_lines(key: str, env: EnvSettings, environ: Mapping[str, str]) -> Iterator[str]:
    if env.empty:
        yield f"{key}: (none)"
    for name, value in env.plain:
        yield f"{key}.plain.{name}: {value!r}"
    for name in env.secret:
        yield f"{key}.secret.{name}: {SECRET_MARK} ({_whether_set(name, environ)})"


def _role_lines(roles: tuple[RoleSettings, ...], environ: Mapping[str, str]) -> Iterator[str]:
    if not roles:
        yield "roles: (none)"
    for role in roles:
        key = f"roles.{role.name}"
        for field in dataclasses.fields(role):
            if field.name == "env":
                yield from _env_lines(f"{key}.env", role.env, environ)
            elif field.name == "container":  # less the keys the role sets itself
                for option in dataclasses.fields(role.container):
                    if option.name not in OWN_CONTAINER_KEYS:
                        yield from _lines(f"{key}.container.{option.name}",
                                          getattr(role.container, option.name), environ)
            elif field.name != "name":
                yield from _lines(f"{key}.{field.name}", getattr(role, field.name), environ)


def _whether_set(variable: str, environ: Mapping[str, str]) -> str:
    return "set in this environment" if variable in environ else "NOT SET in this environment"


def _lines(key: str, value: object, environ: Mapping[str, str]) -> Iterator[str]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from _lines(f"{key}.{field.name}", getattr(value, field.name), environ)
    elif key.endswith("_secret") and isinstance(value, str):
        # The name of an environment variable holding a secret: whether it is set, never
        # its value.
        yield f"{key}: {value} ({_whether_set(value, environ)})"
    elif value is None:
        yield f"{key}: (not set)"
    elif isinstance(value, tuple) and all(isinstance(item, str) for item in value):
        yield f"{key}: {', '.join(value) or '(none)'}"
    elif isinstance(value, bool):
        yield f"{key}: {'true' if value else 'false'}"
    else:
        yield f"{key}: {value}"


def render_templates(inventory: Inventory) -> list[str]:
    """Render every template the kit uses for this inventory; return their names. A
    template that does not render is bad input, named with its line."""
    from slotswap.config.layout import CONFIG_NAME, ProxyError
    from slotswap.server.haproxy_config import Login, render_config
    from slotswap.server.proxy_assembly import (
        BACKEND_TEMPLATE,
        inventory_shared_values,
        render_fragment,
    )

    name = BACKEND_TEMPLATE if inventory.haproxy.shared else f"{CONFIG_NAME}.j2"
    try:
        if inventory.haproxy.shared:
            # The app's backend in the shared HAProxy, with the shared settings as this
            # inventory has them (`up` takes the server's).
            render_fragment(inventory, inventory_shared_values(inventory))
        else:
            # The login's uid/gid are read on each server by `up`; any will do to render.
            render_config(inventory, Login(0, 0))
    except ProxyError as error:
        raise InputError(str(error)) from None
    except jinja2.TemplateSyntaxError as error:
        raise InputError(f"{error.filename or name}:{error.lineno}: {error.message}") from None
    except jinja2.TemplateError as error:
        raise InputError(f"{name}: {error}") from None
    return [name]
