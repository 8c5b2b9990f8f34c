"""The kit's own version, as installed (what a server's shared HAProxy records of the run
that assembled its config)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "slotswap"


def kit_version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"
