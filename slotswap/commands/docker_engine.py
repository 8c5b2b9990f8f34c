"""A server's Docker engine: the command that asks its platform and version, the parser of
its answer, and what a version means for the slots' exposure. Nothing here runs anything."""

from __future__ import annotations

import re


def server_engine() -> list[str]:
    """OS/architecture and version of a server's Docker engine (parse_engine)."""
    return ["docker", "info", "--format", "{{.OSType}}/{{.Architecture}} {{.ServerVersion}}"]


# Docker reports the kernel's names; images use Go's.
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "i686": "386"}


def parse_platform(text: str) -> str | None:
    os_type, _, architecture = text.strip().partition("/")
    if not os_type or not architecture:
        return None
    return f"{os_type}/{_ARCHITECTURES.get(architecture, architecture)}"


def parse_engine(text: str) -> tuple[str | None, str | None]:
    """Pure: (platform, version) from server_engine's answer (`linux/x86_64 20.10.24+dfsg1`);
    None for what it does not say."""
    platform, _, version = text.strip().partition(" ")
    return parse_platform(platform), version.strip() or None


# Docker Engine versions at which a host on the server's local network can no longer reach
# a container directly (to its address, or to 127.0.0.1 at the server's MAC), past the
# published port and HAProxy: 28.0.0 drops such packets (moby/moby#49325, closing
# moby/moby#45610); 28.3.3 puts those rules back after a firewalld reload (CVE-2025-54388).
DIRECT_ACCESS_CLOSED = (28, 0, 0)
DIRECT_ACCESS_FIREWALLD_FIXED = (28, 3, 3)


def direct_access_risk(version: str) -> str | None:
    """Pure: why a Docker Engine of this version (`docker info`'s ServerVersion) lets a host on
    the server's local network reach the slots' containers directly, bypassing HAProxy,
    though their ports are published on 127.0.0.1 only; None when it does not, or when the
    version cannot be read (nothing is claimed then)."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if not match:
        return None
    number = tuple(int(part or 0) for part in match.groups())
    if number < DIRECT_ACCESS_CLOSED:
        return ("a host on the server's local network can reach the slots' containers "
                "directly, bypassing HAProxy, though their ports are published on 127.0.0.1 "
                "only (moby/moby#45610, fixed in Docker 28.0.0)")
    if number < DIRECT_ACCESS_FIREWALLD_FIXED:
        return ("after a firewalld reload a host on the server's local network can reach "
                "the slots' containers directly, bypassing HAProxy (CVE-2025-54388, fixed in "
                "Docker 28.3.3)")
    return None
