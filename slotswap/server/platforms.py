"""The servers' platform (OS/architecture), for builds on a machine of another kind (an arm64
laptop, amd64 servers): `up` reads it from each server's Docker and records it on this
machine; `build` builds for it unless the inventory's build.platform says otherwise."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from slotswap.config.inventory import Inventory

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


# What Docker (the classic builder, BuildKit, the registry) says when it cannot build for
# the platform asked: no base image for it, a binary of another architecture run without
# emulation, a daemon or platform it does not know.
_CANNOT_BUILD = re.compile(
    r"exec format error|no match(?:ing manifest)? for (?:platform|\S+ in the manifest)"
    r"|does not match the specified platform|only supported on a Docker daemon with "
    r"experimental features|unknown operating system or architecture|failed to parse platform"
    r"|multiple platforms feature is currently not supported", re.IGNORECASE)


def build_failure(output: str, platform: str | None, image_ref: str) -> str:
    """Pure: the one line a failed `docker build` ends with; when its output shows that this
    machine's Docker cannot build for the platform, that line names it and what to do."""
    match = _CANNOT_BUILD.search(output) if platform else None
    if match is None:
        return f"docker build of {image_ref} failed (its output is above)"
    return (f"this machine's Docker cannot build {image_ref} for {platform} "
            f"({match.group(0)}): set up emulation for it (QEMU: `docker run --privileged "
            "--rm tonistiigi/binfmt --install all`) and a builder that uses it (docker buildx), "
            "build on a machine of that platform, or set build.platform")


def built_for_another(built: str, wanted: str) -> str | None:
    """Pure: the message when `docker build --platform` made an image of another platform
    than wanted (Docker's classic builder takes a base image it has, of its own platform,
    and runs its steps natively); None when OS and architecture match, or when the image's
    platform is unknown (`built` empty)."""
    if not built.strip() or built.strip().split("/")[:2] == wanted.split("/")[:2]:
        return None
    return (f"this machine's Docker built an image for {built.strip()}, not {wanted} (a base "
            f"image of its own platform was used, nothing was pushed): build with a builder "
            "that honours --platform (docker buildx, with QEMU emulation: `docker run "
            "--privileged --rm tonistiigi/binfmt --install all`), on a machine of that "
            "platform, or set build.platform")
