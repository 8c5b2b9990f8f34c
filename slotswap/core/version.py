"""The kit's own version, as installed (what a server's shared HAProxy records of the run
that assembled its config)."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "slotswap"


@functools.cache
def kit_version() -> str:
    """Read once per process: the installed package does not change under a run."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (not installed)"
