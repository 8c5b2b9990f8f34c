"""The `build` section: what `build` builds the app's image from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import values
from slotswap.config.env import name_problem


@dataclass(frozen=True)
class BuildSettings:
    context: Path
    dockerfile: Path
    platform: str | None = None  # e.g. linux/amd64; None: the servers' as `up` recorded it
    args: tuple[tuple[str, str], ...] = ()  # --build-arg NAME=value (they end up in the image)


BUILD_KEYS = ("context", "dockerfile", "platform", "args")


_PLATFORM = re.compile(r"[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?")


def parse_build(section: dict[str, object], base: Path) -> BuildSettings:
    context = values.path(section.get("context", "."), "build.context", base)
    # Like `docker build`, an omitted Dockerfile is the one at the root of the context.
    if "dockerfile" in section:
        dockerfile = values.path(section["dockerfile"], "build.dockerfile", base)
    else:
        dockerfile = context / "Dockerfile"
    platform = section.get("platform")
    if platform is not None and (not isinstance(platform, str)
                                 or not _PLATFORM.fullmatch(platform)):
        raise values.Invalid("build.platform", "expected OS/ARCH such as linux/amd64 or "
                             f"linux/arm64, got {values.describe(platform)}")
    args = section.get("args") or {}
    if not isinstance(args, dict):
        raise values.Invalid("build.args",
                             f"expected a mapping of NAME: value, got {values.describe(args)}")
    checked = []
    for name, value in args.items():
        problem = name_problem(name)
        if problem is not None:
            raise values.Invalid(f"build.args.{name}", problem)
        if name == "VERSION":
            raise values.Invalid("build.args.VERSION", "is the kit's own: the tag being built")
        checked.append((str(name), values.text_value(value, f"build.args.{name}")))
    return BuildSettings(context=context, dockerfile=dockerfile, platform=platform,
                         args=tuple(checked))
