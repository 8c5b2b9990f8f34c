"""The `container` section (options of the app's containers) and `release` (the command
run once per deploy in a one-off container)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slotswap.config import values


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
class ReleaseSettings:
    """A command run once per deploy, before any traffic moves (database migrations)."""

    command: tuple[str, ...] = ()
    timeout: float = 600.0


CONTAINER_KEYS = ("command", "volumes", "stop_signal", "memory", "cpus", "log", "labels")


LOG_KEYS = ("driver", "options")


RELEASE_KEYS = ("command", "timeout")


_VOLUME = re.compile(
    r"(?P<source>[A-Za-z0-9][A-Za-z0-9_.-]{0,127}|/[A-Za-z0-9_./-]*)"
    r":(?P<target>/[A-Za-z0-9_./-]*)(?::(?P<mode>ro|rw))?")


_SIGNAL = re.compile(r"SIG[A-Z0-9]{2,10}|[0-9]{1,2}")


_MEMORY = re.compile(r"[0-9]{1,12}[bkmg]?")


_LOG_DRIVER = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


_OPTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


_LABEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def parse_container(section: dict[str, object]) -> ContainerSettings:
    volumes = section.get("volumes") or []
    if not isinstance(volumes, list):
        raise values.Invalid("container.volumes", "expected a list of NAME:/path or /host:/path "
                       f"(optionally :ro), got {values.describe(volumes)}")
    checked_volumes = []
    for index, volume in enumerate(volumes):
        text = values.string(volume, f"container.volumes[{index}]", "a volume")
        if not _VOLUME.fullmatch(text) or "/.." in text:
            raise values.Invalid(f"container.volumes[{index}]", "expected NAME:/path or "
                           f"/host/path:/path, optionally :ro or :rw, got {values.describe(text)}")
        checked_volumes.append(text)
    stop_signal = section.get("stop_signal")
    if stop_signal is not None and (not isinstance(stop_signal, str)
                                    or not _SIGNAL.fullmatch(stop_signal)):
        raise values.Invalid("container.stop_signal", "expected a signal such as SIGQUIT, got "
                       f"{values.describe(stop_signal)}")
    memory = section.get("memory")
    if memory is not None:
        memory = str(memory) if isinstance(memory, int) and not isinstance(memory, bool) \
            else memory
        if not isinstance(memory, str) or not _MEMORY.fullmatch(memory):
            raise values.Invalid("container.memory", "expected a size such as 512m or 2g, got "
                           f"{values.describe(memory)}")
    cpus = section.get("cpus")
    if cpus is not None:
        cpus = values.positive_number(cpus, "container.cpus")
        if cpus > 1024:
            raise values.Invalid("container.cpus", f"expected at most 1024 CPUs, got {cpus:g}")
    log = None
    if section.get("log") is not None:
        fields = values.mapping(section["log"], "container.log", LOG_KEYS, required=("driver",))
        driver = values.string(fields["driver"], "container.log.driver", "a log driver")
        if not _LOG_DRIVER.fullmatch(driver):
            raise values.Invalid("container.log.driver", f"expected a log driver name such as "
                           f"json-file, got {values.describe(driver)}")
        options = fields.get("options") or {}
        if not isinstance(options, dict):
            raise values.Invalid("container.log.options", "expected a mapping of option: value, "
                           f"got {values.describe(options)}")
        checked = []
        for name, value in options.items():
            if not isinstance(name, str) or not _OPTION_NAME.fullmatch(name):
                raise values.Invalid(f"container.log.options.{name}", "expected an option name")
            checked.append((name, values.text_value(value, f"container.log.options.{name}")))
        log = LogSettings(driver=driver, options=tuple(checked))
    labels = section.get("labels") or {}
    if not isinstance(labels, dict):
        raise values.Invalid("container.labels",
                             f"expected a mapping, got {values.describe(labels)}")
    checked_labels = []
    for name, value in labels.items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) \
                or name.startswith("slotswap."):
            raise values.Invalid(f"container.labels.{name}", "expected a label name of lowercase "
                           "letters, digits, '.', '_' or '-' (slotswap.* is the kit's own)")
        checked_labels.append((name, values.text_value(value, f"container.labels.{name}")))
    return ContainerSettings(
        command=values.words(section["command"], "container.command") if section.get("command")
        else (),
        volumes=tuple(checked_volumes), stop_signal=stop_signal, memory=memory, cpus=cpus,
        log=log, labels=tuple(checked_labels))


def parse_release(section: dict[str, object]) -> ReleaseSettings:
    defaults = ReleaseSettings()
    if not section:
        return defaults
    return ReleaseSettings(
        command=values.words(section.get("command"), "release.command"),
        timeout=values.positive_number(section.get("timeout", defaults.timeout), "release.timeout"))
