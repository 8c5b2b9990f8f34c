"""The one description of a key of the inventory: each field of a section's class carries a
`Setting` (its `Kind`: how a value from the file is checked, with the kit's messages, and how
the JSON Schema shows it; its description; what a missing or null key means). The parser
(`parse_fields`) and the schema (slotswap.config.schema) both read it, so the two cannot
drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slotswap.config import values

# The key of a field's metadata that holds its Setting.
SETTING = "setting"


class _NoDefault:
    """A setting's file_default when it has none (dataclasses.MISSING, a dataclass field's
    default, would mean "no default" to the Setting dataclass itself)."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT = _NoDefault()
# What takes a field's default: only a missing key ("absent"; null is checked, and refused
# where a value is expected), a missing or null key ("null"), or any empty or false value
# ("empty": [], {}, 0, false).
Blank = Literal["absent", "null", "empty"]


@dataclass(frozen=True)
class Context:
    """What a check may need besides the value: the inventory's folder (relative paths are
    taken from it), the fields of the same section checked before, and the enclosing one's."""

    base: Path
    parsed: dict[str, object] = field(default_factory=dict)
    outer: Context | None = None  # the enclosing section's (the top level's for a section)


Check = Callable[[object, str, Context], object]


@dataclass(frozen=True)
class Kind:
    """How one key's value is checked (`check(value, key, context)` returns the value the
    settings hold, or raises values.Invalid) and how the JSON Schema describes it."""

    check: Check
    schema: Mapping[str, object]


@dataclass(frozen=True)
class Setting:
    """What a field of a section's class is as a key of the file (see `setting`)."""

    kind: Kind
    description: str | None = None
    blank: Blank = "absent"
    # A value the file is taken to hold when the key is blank, checked like one it holds
    # (e.g. build.context's "."); None here with blank="null": the kind is given null.
    file_default: object = NO_DEFAULT
    required: bool = False


def setting(kind: Kind, default: object = dataclasses.MISSING, *,
            factory: Callable[[], object] | None = None, description: str | None = None,
            blank: Blank = "absent", file_default: object = NO_DEFAULT,
            required: bool = False) -> Any:
    """A dataclass field that is a key of the inventory (the field's own default stays the
    Python default: a class built in code needs no file)."""
    metadata = {SETTING: Setting(kind, description, blank, file_default, required)}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def settings(cls: type) -> dict[str, Setting]:
    """The keys of a section's class that the file may set, by name, in the class's order."""
    return {item.name: item.metadata[SETTING] for item in dataclasses.fields(cls)
            if SETTING in item.metadata}


def keys(cls: type) -> tuple[str, ...]:
    """The keys a section accepts, in the order an error message lists them: the class's
    settings, unless it says otherwise (a `KEYS` class variable), then its former keys."""
    own = getattr(cls, "KEYS", None) or tuple(settings(cls))
    return (*own, *former_keys(cls))


def former_keys(cls: type) -> Mapping[str, Setting]:
    """Keys a section still accepts, and ignores, so that inventories written for earlier
    versions load (a `FORMER_KEYS` class variable)."""
    return getattr(cls, "FORMER_KEYS", {})


def required(cls: type) -> tuple[str, ...]:
    found = settings(cls)
    return tuple(name for name in keys(cls) if name in found and found[name].required)


def checked_section(cls: type, value: object, key: str) -> dict[str, object]:
    """`value` as a mapping of `cls`'s keys only, its required ones all there."""
    return values.mapping(value, key, keys(cls), required=required(cls))


def parse_fields(cls: type, section: Mapping[str, object], key: str, outer: Context,
                 order: tuple[str, ...] | None = None) -> dict[str, object]:
    """Check each setting of `cls` that `section` holds (in `order`, default the class's),
    each with its kind, and return them by name; a blank key without a file default has the
    class's default."""
    found: dict[str, object] = {}
    context = Context(outer.base, found, outer)
    described = settings(cls)
    defaults = _defaults(cls)
    for name in order or tuple(described):
        item = described[name]
        value = section.get(name, dataclasses.MISSING)
        if _is_blank(value, item.blank):
            if item.file_default is NO_DEFAULT:
                # The class's default, for the checks of the keys after it (e.g. ports that
                # must differ); none: the key is left out.
                if name in defaults:
                    found[name] = defaults[name]
                continue
            value = item.file_default
        found[name] = item.kind.check(value, values.child(key, name), context)
    return found


def _defaults(cls: type) -> dict[str, object]:
    found = {}
    for item in dataclasses.fields(cls):
        if item.default is not dataclasses.MISSING:
            found[item.name] = item.default
        elif item.default_factory is not dataclasses.MISSING:
            found[item.name] = item.default_factory()
    return found


def _is_blank(value: object, blank: Blank) -> bool:
    if value is dataclasses.MISSING:
        return True
    if blank == "null":
        return value is None
    return blank == "empty" and not value


# -- the JSON Schema -----------------------------------------------------------------------


def section_schema(cls: type, *, nullable: bool = True) -> dict[str, object]:
    """The JSON Schema of a section: an object of `cls`'s keys (or null: all defaults)."""
    schema: dict[str, object] = {"type": ["object", "null"] if nullable else "object",
                                 "additionalProperties": False}
    # A key the parser is given as null when missing, and refuses, is required too.
    needed = [name for name, item in settings(cls).items() if item.required or (
        item.blank == "absent" and item.file_default is None)]
    if needed:
        schema["required"] = [name for name in keys(cls) if name in needed]
    described = {**settings(cls), **former_keys(cls)}
    defaults = {item.name: item.default for item in dataclasses.fields(cls)}
    schema["properties"] = {
        name: setting_schema(described[name], defaults.get(name, dataclasses.MISSING))
        for name in keys(cls)}
    return schema


def setting_schema(item: Setting, default: object = dataclasses.MISSING) -> dict[str, object]:
    """One key's schema: its kind's, with its default (as the file would spell it) and its
    description."""
    schema = dict(item.kind.schema)
    shown = _as_json(item.file_default if item.file_default is not NO_DEFAULT
                     else default)
    if shown is not None and "default" not in schema:
        schema["default"] = shown
    if item.description:
        schema["description"] = item.description
    return schema


def _as_json(value: object) -> object:
    """A default as JSON shows it; None for one that is not worth showing (none, empty, a
    section's own defaults)."""
    if isinstance(value, tuple | list):
        return [_as_json(item) for item in value] if value else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # seconds as a file would give them: 60, not 60.0
    if isinstance(value, bool | int | float | str):
        return value
    return None
