"""The kinds of value several sections share (a port, seconds, a path, a variable's name...):
each the check slotswap.config.values makes, with its message, and the JSON Schema of it.
`DEFS` holds the schema's shared definitions, which the kinds refer to."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from slotswap.config import values
from slotswap.config.fields import Context, Kind, checked_section, section_schema, setting


def pattern(regex: re.Pattern[str]) -> str:
    """A regular expression the checks match whole (fullmatch), as a JSON Schema pattern."""
    return f"^({regex.pattern})$" if "|" in regex.pattern else f"^{regex.pattern}$"


DEFS: dict[str, dict[str, object]] = {
    "seconds": {"type": "number", "exclusiveMinimum": 0},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "sshUser": {"type": "string", "pattern": pattern(values.SSH_USER)},
    "path": {"type": "string", "minLength": 1},
    "jump": {"type": "string", "minLength": 1,
             "description": "[user@]host[:port] of a jump host, like ssh -J"},
    "envName": {"type": "string", "pattern": pattern(values.NAME)},
}
# A value the kit writes as text (a build argument, a label): YAML's scalars.
TEXT = {"type": ["string", "number", "boolean"]}


def ref(name: str) -> dict[str, object]:
    """The schema that refers to one of DEFS."""
    assert name in DEFS, name
    return {"$ref": f"#/$defs/{name}"}


SECONDS = Kind(lambda value, key, _: values.positive_number(value, key), ref("seconds"))
SECONDS_OR_ZERO = Kind(lambda value, key, _: values.non_negative_number(value, key),
                       {"type": "number", "minimum": 0})
WHOLE_SECONDS = Kind(lambda value, key, _: values.positive_integer(value, key),
                     {"type": "integer", "minimum": 1})
PORT = Kind(lambda value, key, _: values.port(value, key), ref("port"))
BOOLEAN = Kind(lambda value, key, _: values.boolean(value, key), {"type": "boolean"})
PATH = Kind(lambda value, key, context: values.path(value, key, context.base), ref("path"))
SSH_USER = Kind(lambda value, key, _: values.ssh_user(value, key), ref("sshUser"))
WORDS = Kind(lambda value, key, _: values.words(value, key),
             {"type": "array", "items": {"type": "string"}})


def _env_name(value: object, key: str, _: Context) -> str:
    problem = values.name_problem(value)
    if problem is not None:
        raise values.Invalid(key, problem)
    return str(value)


ENV_NAME = Kind(_env_name, ref("envName"))


def integer(low: int, high: int) -> Kind:
    return Kind(lambda value, key, _: values.integer(value, key, low, high),
                {"type": "integer", "minimum": low, "maximum": high})


def checked(validator: Callable[[str], str], expected: str,
            schema: Mapping[str, object] | None = None) -> Kind:
    """A string that one of slotswap.core.validation's checks accepts."""
    return Kind(lambda value, key, _: values.checked(validator, value, key, expected),
                schema or {"type": "string"})


def section(cls: type, parse: Callable[[dict[str, object], str, Context], object], *,
            optional: bool = False) -> Kind:
    """A section of `cls`'s keys, parsed by `parse`; null or missing: all defaults (or, when
    `optional`, none: the settings are None)."""

    def check(value: object, key: str, context: Context) -> object:
        if value is None:
            return None if optional else parse({}, key, context)
        return parse(checked_section(cls, value, key), key, context)

    return Kind(check, section_schema(cls))



def section_setting(cls: type, parse: Callable[[dict[str, object], str, Context], object],
                    description: str | None = None, *, default: bool = False) -> Any:
    """A field of the inventory that is a section of `cls`'s keys, which the file may leave
    out (all defaults); with `default`, code that builds an Inventory may too."""
    return setting(section(cls, parse), factory=cls if default else None, file_default=None,
                   blank="null", description=description)
