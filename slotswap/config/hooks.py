"""The `hooks` section: programs run on the operator's machine around a deploy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting


def _hook_program(value: object, key: str, context: Context) -> Path:
    path = values.path(value, key, context.base)
    if not path.is_file():
        raise values.Invalid(key, f"expected an executable file, but {path} is not a file")
    if not os.access(path, os.X_OK):
        raise values.Invalid(key, f"{path} is not executable (chmod +x it)")
    return path


_PROGRAM = Kind(_hook_program, kinds.ref("path"))


@dataclass(frozen=True)
class HookSettings:
    """Programs run on the operator's machine around a deploy (see slotswap.cli.hooks)."""

    pre_deploy: Path | None = setting(_PROGRAM, None, blank="null")
    post_success: Path | None = setting(_PROGRAM, None, blank="null")
    post_failure: Path | None = setting(_PROGRAM, None, blank="null")


def parse_hooks(section: dict[str, object], key: str, context: Context) -> HookSettings:
    return HookSettings(**parse_fields(HookSettings, section, key, context))
