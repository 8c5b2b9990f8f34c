"""The `container` section (options of the app's containers) and `release` (the command
run once per deploy in a one-off container)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting

_VOLUME = re.compile(
    r"(?P<source>[A-Za-z0-9][A-Za-z0-9_.-]{0,127}|/[A-Za-z0-9_./-]*)"
    r":(?P<target>/[A-Za-z0-9_./-]*)(?::(?P<mode>ro|rw))?")
_SIGNAL = re.compile(r"SIG[A-Z0-9]{2,10}|[0-9]{1,2}")
_MEMORY = re.compile(r"[0-9]{1,12}[bkmg]?")
_LOG_DRIVER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_OPTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LABEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def _driver(value: object, key: str, _: Context) -> str:
    return values.matching(value, key, _LOG_DRIVER, "a log driver",
                           "a log driver name such as json-file")


def _options(value: object, key: str, _: Context) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise values.Invalid(key, "expected a mapping of option: value, got "
                                  f"{values.describe(value)}")
    checked = []
    for name, item in value.items():
        if not isinstance(name, str) or not _OPTION_NAME.fullmatch(name):
            raise values.Invalid(f"{key}.{name}", "expected an option name")
        checked.append((name, values.text_value(item, f"{key}.{name}")))
    return tuple(checked)


@dataclass(frozen=True)
class LogSettings:
    driver: str = setting(Kind(_driver, {"type": "string"}), required=True)
    options: tuple[tuple[str, str], ...] = setting(
        Kind(_options, {"type": "object", "additionalProperties": kinds.TEXT}), (),
        blank="empty")


def _parse_log(section: dict[str, object], key: str, context: Context) -> LogSettings:
    return LogSettings(**parse_fields(LogSettings, section, key, context))


def _volumes(value: object, key: str, _: Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise values.Invalid(key, "expected a list of NAME:/path or /host:/path "
                                  f"(optionally :ro), got {values.describe(value)}")
    checked = []
    for index, volume in enumerate(value):
        text = values.string(volume, f"{key}[{index}]", "a volume")
        if not _VOLUME.fullmatch(text) or "/.." in text:
            raise values.Invalid(f"{key}[{index}]", "expected NAME:/path or /host/path:/path, "
                                 f"optionally :ro or :rw, got {values.describe(text)}")
        checked.append(text)
    return tuple(checked)


def _stop_signal(value: object, key: str, _: Context) -> str:
    if not isinstance(value, str) or not _SIGNAL.fullmatch(value):
        raise values.Invalid(key, "expected a signal such as SIGQUIT, got "
                                  f"{values.describe(value)}")
    return value


def _memory(value: object, key: str, _: Context) -> str:
    memory = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(memory, str) or not _MEMORY.fullmatch(memory):
        raise values.Invalid(key, f"expected a size such as 512m or 2g, got "
                                  f"{values.describe(memory)}")
    return memory


def _cpus(value: object, key: str, _: Context) -> float:
    cpus = values.positive_number(value, key)
    if cpus > 1024:
        raise values.Invalid(key, f"expected at most 1024 CPUs, got {cpus:g}")
    return cpus


def _labels(value: object, key: str, _: Context) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise values.Invalid(key, f"expected a mapping, got {values.describe(value)}")
    checked = []
    for name, item in value.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) \
                or name.startswith("slotswap."):
            raise values.Invalid(f"{key}.{name}", "expected a label name of lowercase letters, "
                                 "digits, '.', '_' or '-' (slotswap.* is the kit's own)")
        checked.append((name, values.text_value(item, f"{key}.{name}")))
    return tuple(checked)


@dataclass(frozen=True)
class ContainerSettings:
    """Options of the app's containers (both slots, the release command, exec): each
    becomes a `docker run` option, never a free-form flag."""

    # argv after the image; empty: the image's own
    command: tuple[str, ...] = setting(
        kinds.WORDS, (), blank="empty",
        description="argv after the image (no shell); default: the image's own.")
    # NAME:/path[:ro] or /host/path:/path[:ro]
    volumes: tuple[str, ...] = setting(
        Kind(_volumes, {"type": "array", "items": {
            "type": "string", "pattern": "^[^:]+:/[^:]*(:(ro|rw))?$"}}),
        (), blank="empty", description="NAME:/path or /host/path:/path, optionally :ro.")
    stop_signal: str | None = setting(
        Kind(_stop_signal, {"type": "string", "pattern": kinds.pattern(_SIGNAL)}), None,
        blank="null")
    memory: str | None = setting(  # e.g. 512m
        Kind(_memory, {"type": ["string", "integer"], "pattern": kinds.pattern(_MEMORY)}),
        None, blank="null")
    cpus: float | None = setting(
        Kind(_cpus, {"type": "number", "exclusiveMinimum": 0, "maximum": 1024}), None,
        blank="null")
    log: LogSettings | None = setting(kinds.section(LogSettings, _parse_log, optional=True),
                                      None, blank="null")
    labels: tuple[tuple[str, str], ...] = setting(
        Kind(_labels, {"type": "object", "additionalProperties": kinds.TEXT}), (),
        blank="empty")


def parse_container(section: dict[str, object], key: str, context: Context) -> ContainerSettings:
    # The command last: the order of earlier versions' checks.
    return ContainerSettings(**parse_fields(
        ContainerSettings, section, key, context,
        order=("volumes", "stop_signal", "memory", "cpus", "log", "labels", "command")))


@dataclass(frozen=True)
class ReleaseSettings:
    """A command run once per deploy, before any traffic moves (database migrations)."""

    # Missing in a release section: null, which the check refuses.
    command: tuple[str, ...] = setting(
        Kind(kinds.WORDS.check, {**kinds.WORDS.schema, "minItems": 1}), (), file_default=None)
    timeout: float = setting(kinds.SECONDS, 600.0)


def parse_release(section: dict[str, object], key: str, context: Context) -> ReleaseSettings:
    if not section:
        return ReleaseSettings()
    return ReleaseSettings(**parse_fields(ReleaseSettings, section, key, context))
