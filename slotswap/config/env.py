"""The `env` section: the app's plain variables and the names of its secrets, and what a
value must be to reach the app through docker's env file (the rules are described in
slotswap.config.app_env, which renders that file)."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting

# docker reads the file with Go's bufio.Scanner, whose default limit is 64 KiB per line,
# newline included: longer lines make `docker run` fail with "token too long".
MAX_LINE_BYTES = 64 * 1024 - 1


def value_problem(name: str, value: str) -> str | None:
    """What stops ``value`` from reaching the app unchanged through an env file, or None.

    The message never contains the value: it may be a secret.
    """
    if "\n" in value or "\r" in value:
        return "the value contains a line break, which docker's --env-file cannot carry"
    if "\0" in value:
        return "the value contains a NUL character, which no environment variable can hold"
    try:
        size = len(f"{name}={value}".encode())
    except UnicodeEncodeError:
        return "the value is not valid UTF-8 text"
    if size > MAX_LINE_BYTES:
        return (f"the value makes a line of {size} bytes; docker's --env-file reads at most "
                f"{MAX_LINE_BYTES}")
    return None


def _plain(value: object, key: str, _: Context) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise values.Invalid(key, f"expected a mapping of NAME: value, got "
                                  f"{values.describe(value)}")
    plain = []
    for name, item in value.items():
        item_key = values.child(key, name)
        problem = values.name_problem(name)
        if problem is not None:
            raise values.Invalid(item_key, problem)
        text = values.env_value(item, item_key)
        problem = value_problem(str(name), text)
        if problem is not None:
            raise values.Invalid(item_key, problem)
        plain.append((str(name), text))
    return tuple(plain)


def _secret(value: object, key: str, context: Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise values.Invalid(key, f"expected a list of variable names, got "
                                  f"{values.describe(value)}")
    plain = context.parsed.get("plain", ())
    assert isinstance(plain, tuple)
    plain_names = {name for name, _ in plain}
    secret: list[str] = []
    for index, name in enumerate(value):
        item_key = f"{key}[{index}]"
        problem = values.name_problem(name)
        if problem is not None:
            raise values.Invalid(item_key, problem)
        if name in plain_names:
            raise values.Invalid(item_key,
                                 f"{name} is also in env.plain; a variable is plain or secret")
        if name in secret:
            raise values.Invalid(item_key, f"{name} is already env.secret[{secret.index(name)}]")
        secret.append(name)
    return tuple(secret)


@dataclass(frozen=True)
class EnvSettings:
    """The app's environment as the inventory declares it (values of secrets are read at
    deploy time: see slotswap.config.app_env.resolve_app_env)."""

    # (name, value as written to the env file)
    plain: tuple[tuple[str, str], ...] = setting(
        Kind(_plain, {"type": ["object", "null"], "propertyNames": kinds.ref("envName"),
                      "additionalProperties": {"type": ["string", "number", "boolean"]}}),
        (), blank="null", description="NAME: value, written as given.")
    # names read from the operator's environment
    secret: tuple[str, ...] = setting(
        Kind(_secret, {"type": ["array", "null"], "items": kinds.ref("envName"),
                       "uniqueItems": True}),
        (), blank="null",
        description="Names whose values come from the deploying operator's environment.")

    @property
    def empty(self) -> bool:
        return not self.plain and not self.secret


def parse_env(section: dict[str, object], key: str, context: Context) -> EnvSettings:
    return EnvSettings(**parse_fields(EnvSettings, section, key, context))
