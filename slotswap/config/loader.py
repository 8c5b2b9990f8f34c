"""The inventory file (hosts.yaml): loading, validation and the settings it yields.

The whole file is checked before any server is contacted, so a typo fails the deploy on
the operator's machine instead of half-way through a rollout. Every error is a single line
``<file>: <key path>: <what was expected>``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from slotswap.config import values
from slotswap.config.fields import Context, checked_section, parse_fields
from slotswap.config.inventory import SHARED_KEYS, Inventory, InventoryError

# Sections are checked in the order the reference hosts.yaml lists them, hosts last (they
# are checked against ssh), so the first error reported is usually the first one in the file;
# roles after hosts (a role names the hosts it runs on).
CHECK_ORDER = (
    "app", "image", "build", "app_port", "healthcheck", "env", "ssh", "haproxy", "timeouts",
    "keep_images", "hooks", "delivery", "https", "names", "remote_dir", "container", "release",
    "registry", "watch", "hosts", "roles")


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
    top = checked_section(Inventory, data, "")
    found = parse_fields(Inventory, top, "", Context(path.parent), order=CHECK_ORDER)
    return Inventory(path=path, shared_keys_written=keys_written(top, SHARED_KEYS),
                     **found)  # type: ignore[arg-type]


def keys_written(top: dict[str, object], wanted: tuple[str, ...]) -> tuple[str, ...]:
    """Pure: which of the `section.key` paths `wanted` the file writes (with any value but
    null: a null key is the default, as if not written)."""
    written = []
    for path in wanted:
        section, _, key = path.partition(".")
        held = top.get(section)
        if isinstance(held, dict) and held.get(key) is not None:
            written.append(path)
    return tuple(written)
