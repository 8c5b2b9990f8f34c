"""The `env` section: the app's plain variables and the names of its secrets, and what a
variable's name and value must be to reach the app through docker's env file (the rules are
described in slotswap.config.app_env, which renders that file)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slotswap.config import values

# The kit sets PORT itself (from app_port); a second source for it would be ambiguous.
RESERVED_NAMES = frozenset({"PORT"})
# docker reads the file with Go's bufio.Scanner, whose default limit is 64 KiB per line,
# newline included: longer lines make `docker run` fail with "token too long".
MAX_LINE_BYTES = 64 * 1024 - 1

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name_problem(name: object) -> str | None:
    """What is wrong with an environment variable name, or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return (
            "expected a variable name of letters, digits and '_', not starting with a digit, "
            f"got {name!r}"
        )
    if name in RESERVED_NAMES:
        return f"{name} is set by slotswap itself (from app_port); it cannot be set here"
    return None


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


@dataclass(frozen=True)
class EnvSettings:
    """The app's environment as the inventory declares it (values of secrets are read at
    deploy time: see slotswap.config.app_env.resolve_app_env)."""

    plain: tuple[tuple[str, str], ...] = ()  # (name, value as written to the env file)
    secret: tuple[str, ...] = ()  # names read from the operator's environment

    @property
    def empty(self) -> bool:
        return not self.plain and not self.secret


ENV_KEYS = ("plain", "secret")


def parse_env(section: dict[str, object]) -> EnvSettings:
    plain_section = section.get("plain")
    plain: list[tuple[str, str]] = []
    if plain_section is not None:
        if not isinstance(plain_section, dict):
            raise values.Invalid(
                "env.plain",
                f"expected a mapping of NAME: value, got {values.describe(plain_section)}",
            )
        for name, value in plain_section.items():
            key = values.child("env.plain", name)
            problem = name_problem(name)
            if problem is not None:
                raise values.Invalid(key, problem)
            text = values.env_value(value, key)
            problem = value_problem(str(name), text)
            if problem is not None:
                raise values.Invalid(key, problem)
            plain.append((str(name), text))
    secret_list = section.get("secret")
    if secret_list is None:
        secret_list = []
    if not isinstance(secret_list, list):
        raise values.Invalid(
            "env.secret",
            f"expected a list of variable names, got {values.describe(secret_list)}",
        )
    plain_names = {name for name, _ in plain}
    secret: list[str] = []
    for index, name in enumerate(secret_list):
        key = f"env.secret[{index}]"
        problem = name_problem(name)
        if problem is not None:
            raise values.Invalid(key, problem)
        if name in plain_names:
            raise values.Invalid(key,
                                 f"{name} is also in env.plain; a variable is plain or secret")
        if name in secret:
            raise values.Invalid(key, f"{name} is already env.secret[{secret.index(name)}]")
        secret.append(name)
    return EnvSettings(plain=tuple(plain), secret=tuple(secret))
