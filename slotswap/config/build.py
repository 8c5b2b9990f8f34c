"""The `build` section: what `build` builds the app's image from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting

_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?")


def _platform(value: object, key: str, _: Context) -> str:
    if not isinstance(value, str) or not _PLATFORM.fullmatch(value):
        raise values.Invalid(key, "expected OS/ARCH such as linux/amd64 or linux/arm64, got "
                                  f"{values.describe(value)}")
    return value


def _args(value: object, key: str, _: Context) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise values.Invalid(key, "expected a mapping of NAME: value, got "
                                  f"{values.describe(value)}")
    checked = []
    for name, item in value.items():
        problem = values.name_problem(name)
        if problem is not None:
            raise values.Invalid(f"{key}.{name}", problem)
        if name == "VERSION":
            raise values.Invalid(f"{key}.VERSION", "is the kit's own: the tag being built")
        checked.append((str(name), values.text_value(item, f"{key}.{name}")))
    return tuple(checked)


@dataclass(frozen=True)
class BuildSettings:
    context: Path = setting(kinds.PATH, file_default=".")
    # Like `docker build`, an omitted Dockerfile is the one at the root of the context.
    dockerfile: Path = setting(kinds.PATH, description="Default: <context>/Dockerfile.")
    # e.g. linux/amd64; None: the servers' as `up` recorded it
    platform: str | None = setting(
        Kind(_platform, {"type": "string", "pattern": kinds.pattern(_PLATFORM)}), None,
        blank="null", description="OS/ARCH to build for (linux/amd64, linux/arm64). Default: "
        "the servers' platform as `up` recorded it, else this machine's.")
    # --build-arg NAME=value (they end up in the image)
    args: tuple[tuple[str, str], ...] = setting(
        Kind(_args, {"type": "object", "additionalProperties": kinds.TEXT}), (), blank="empty",
        description="--build-arg NAME=value; they end up in the image: no secrets.")


def parse_build(section: dict[str, object], key: str, context: Context) -> BuildSettings:
    found = parse_fields(BuildSettings, section, key, context)
    if "dockerfile" not in found:
        build_context = found["context"]
        assert isinstance(build_context, Path)
        found["dockerfile"] = build_context / "Dockerfile"
    return BuildSettings(**found)  # type: ignore[arg-type]
