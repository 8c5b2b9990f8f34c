"""The `hooks` section: programs run on the operator's machine around a deploy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import values


@dataclass(frozen=True)
class HookSettings:
    """Programs run on the operator's machine around a deploy (see slotswap.cli.hooks)."""

    pre_deploy: Path | None = None
    post_success: Path | None = None
    post_failure: Path | None = None


HOOK_KEYS = ("pre_deploy", "post_success", "post_failure")


def parse_hooks(section: dict[str, object], base: Path) -> HookSettings:
    programs = {name: _hook_program(section[name], f"hooks.{name}", base)
                for name in HOOK_KEYS if section.get(name) is not None}
    return HookSettings(**programs)


def _hook_program(value: object, key: str, base: Path) -> Path:
    path = values.path(value, key, base)
    if not path.is_file():
        raise values.Invalid(key, f"expected an executable file, but {path} is not a file")
    if not os.access(path, os.X_OK):
        raise values.Invalid(key, f"{path} is not executable (chmod +x it)")
    return path
