"""The servers' platform (OS/architecture), for builds on a machine of another kind (an arm64
laptop, amd64 servers): `up` reads it from each server's Docker and records it on this
machine; `build` builds for it unless the inventory's build.platform says otherwise."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from slotswap.inventory import Inventory

# What `up` saw on each server during this run, by server name.
observed: dict[str, str] = {}


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "slotswap"


def record_path(inventory: Inventory) -> Path:
    digest = hashlib.sha256(str(inventory.path).encode()).hexdigest()[:16]
    return cache_folder() / f"platform-{inventory.app}-{digest}.txt"


def record(inventory: Inventory, seen: dict[str, str]) -> str | None:
    """Keep the servers' platform for `build`; None (and nothing kept) when they differ."""
    platforms = set(seen.values())
    if len(platforms) != 1:
        return None
    platform = platforms.pop()
    path = record_path(inventory)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(platform + "\n")
    except OSError:
        return None  # a cache: building for the local platform is the fallback
    return platform


def recorded(inventory: Inventory) -> str | None:
    try:
        return record_path(inventory).read_text().strip() or None
    except OSError:
        return None


def for_build(inventory: Inventory) -> tuple[str | None, str]:
    """The platform to build for, and where that choice comes from."""
    if inventory.build.platform:
        return inventory.build.platform, "build.platform"
    platform = recorded(inventory)
    if platform:
        return platform, "the servers' platform, as `up` found it"
    return None, "this machine's own platform (`up` has not recorded the servers')"
