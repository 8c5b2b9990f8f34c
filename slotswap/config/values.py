"""The checks every section of the inventory shares: one value at one key path, each
failure an `Invalid` naming the key and what was expected (`describe` shows what was found).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from slotswap.core.validation import InputError, validate_host_address


class Invalid(Exception):
    """A problem at one key path; parse_inventory adds the file name."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


_MAX_SHOWN_VALUE = 60


def describe(value: object) -> str:
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


def child(parent: str, name: object) -> str:
    return f"{parent}.{name}" if parent else str(name)


def mapping(
    value: object, key: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict[str, object]:
    """Check that ``value`` is a mapping with only ``allowed`` keys and all ``required`` ones."""
    if not isinstance(value, dict):
        raise Invalid(
            key, f"expected a mapping with keys {', '.join(allowed)}, got {describe(value)}"
        )
    for name in value:
        if name not in allowed:
            raise Invalid(child(key, name), _unknown_key_problem(name, allowed))
    for name in required:
        if name not in value:
            raise Invalid(child(key, name), "required key is missing")
    return value


def _unknown_key_problem(name: object, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(str(name), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed keys: {', '.join(allowed)}"


def string(value: object, key: str, expected: str) -> str:
    if not isinstance(value, str) or not value:
        hint = " (put it in quotes)" if isinstance(value, int | float) else ""
        raise Invalid(key, f"expected {expected}, got {describe(value)}{hint}")
    return value


def matching(value: object, key: str, regex: re.Pattern[str] | str, what: str,
             expected: str) -> str:
    """A non-empty string (else "expected `what`") that `regex` matches in full (else
    "expected `expected`, got ...")."""
    text = string(value, key, what)
    if not re.fullmatch(regex, text):
        raise Invalid(key, f"expected {expected}, got {describe(text)}")
    return text


def checked(validator: Callable[[str], str], value: object, key: str, expected: str) -> str:
    """Run one of slotswap.core.validation's checks, reporting failures at ``key``."""
    text = string(value, key, expected)
    try:
        return validator(text)
    except InputError as error:
        raise Invalid(key, str(error)) from None


def integer(value: object, key: str, low: int, high: int) -> int:
    # bool is an int subclass; "port: yes" must not become port 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Invalid(key, f"expected an integer from {low} to {high}, got {describe(value)}")
    return value


def port(value: object, key: str) -> int:
    return integer(value, key, 1, 65535)


def positive_number(value: object, key: str) -> float:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    # YAML spells infinity and NaN as .inf and .nan; neither is a usable timeout.
    if not is_number or (isinstance(value, float) and not math.isfinite(value)) or value <= 0:
        raise Invalid(key, f"expected a number of seconds greater than 0, got {describe(value)}")
    return float(value)


def non_negative_number(value: object, key: str) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    try:
        return positive_number(value, key)
    except Invalid:
        raise Invalid(key, f"expected a number of seconds, 0 or more, got {describe(value)}") \
            from None


def positive_integer(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise Invalid(
            key, f"expected a whole number of seconds greater than 0, got {describe(value)}"
        )
    return value


def path(value: object, key: str, base: Path) -> Path:
    """A path from the file: '~' expanded, relative paths taken from the file's folder."""
    text = string(value, key, "a file or folder path")
    try:
        path = Path(text).expanduser()
    except RuntimeError:
        raise Invalid(
            key, f"cannot expand '~' in {text!r}: unknown user or no home folder"
        ) from None
    return path if path.is_absolute() else base / path


def boolean(value: object, key: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(key, f"expected true or false, got {describe(value)}")
    return value


def words(value: object, key: str) -> tuple[str, ...]:
    """An argv: a list of strings, one word each (never split or run by a shell)."""
    if not isinstance(value, list) or not value:
        raise Invalid(key, "expected a list of words, e.g. [bin/migrate, --verbose] (an argv: "
                       f"no shell runs it), got {describe(value)}")
    words = []
    for index, word in enumerate(value):
        text = string(word, f"{key}[{index}]", "a word")
        if any(character in text for character in "\0\n\r"):
            raise Invalid(f"{key}[{index}]", "a word cannot hold a line break or NUL")
        words.append(text)
    return tuple(words)


def text_value(value: object, key: str) -> str:
    text = env_value(value, key)
    if any(character in text for character in "\0\n\r"):
        raise Invalid(key, "a value cannot hold a line break or NUL")
    return text


def env_value(value: object, key: str) -> str:
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
        raise Invalid(
            key, f"expected a string, number or boolean, got {describe(value)}{hint}"
        )
    return text


SSH_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")


def ssh_user(value: object, key: str) -> str:
    user = string(value, key, "an SSH user name")
    if not SSH_USER.fullmatch(user):
        raise Invalid(
            key,
            "expected an SSH user name of 1-32 lowercase letters, digits, '_', '.' or '-', "
            f"starting with a letter or '_', got {describe(user)}",
        )
    return user


def address(value: object, key: str) -> str:
    return checked(validate_host_address, value, key, "a host name or IP address")


HEADER_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(:[0-9]{1,5})?")


# The kit sets PORT itself (from app_port); a second source for it would be ambiguous.
RESERVED_NAMES = frozenset({"PORT"})

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def name_problem(name: object) -> str | None:
    """What is wrong with an environment variable name, or None."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        return (
            "expected a variable name of letters, digits and '_', not starting with a digit, "
            f"got {name!r}"
        )
    if name in RESERVED_NAMES:
        return f"{name} is set by slotswap itself (from app_port); it cannot be set here"
    return None
