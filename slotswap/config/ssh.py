"""The `ssh` section: how the kit logs in to the servers, and jump hosts (ssh -J)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import values

# Used when neither the inventory nor ~/.ssh/config (ssh.config) gives a user or port.
DEFAULT_SSH_USER = "root"


DEFAULT_SSH_PORT = 22


# [user@]host[:port], an IPv6 address in brackets: the form of ssh -J.
_JUMP = re.compile(
    r"(?:(?P<user>[^@]*)@)?(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^@:\[\]]*))(?::(?P<port>[0-9]{1,5}))?"
)


@dataclass(frozen=True)
class JumpHost:
    """A host the SSH connection goes through (ssh -J); None fields are left to
    ~/.ssh/config (when ssh.config is on), then to the defaults."""

    address: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{host}{port}"


@dataclass(frozen=True)
class SshSettings:
    # user/port None: ~/.ssh/config's User/Port for the host (ssh.config), else root and 22.
    user: str | None = None
    port: int | None = None
    identity: Path | None = None  # private key file; None = ssh-agent / default keys
    known_hosts: Path | None = None  # None = ~/.ssh/known_hosts
    connect_timeout: float = 10.0
    # A connection that sends and gets nothing acknowledged for dead_after seconds is dead;
    # keepalive: seconds of silence after which a keepalive message is sent (so that a
    # silent network is noticed even while nothing else is sent).
    keepalive: float = 5.0
    dead_after: float = 15.0
    accept_unknown_hosts: bool = False  # True: accept (loudly) keys not in known_hosts
    jump: JumpHost | None = None
    config: bool = True  # read ~/.ssh/config and /etc/ssh/ssh_config


SSH_KEYS = (
    "user",
    "port",
    "identity",
    "known_hosts",
    "connect_timeout",
    "keepalive",
    "dead_after",
    "accept_unknown_hosts",
    "jump",
    "config",
)


def parse_ssh(section: dict[str, object], base: Path) -> SshSettings:
    defaults = SshSettings()
    return SshSettings(
        user=values.ssh_user(section["user"], "ssh.user") if "user" in section else None,
        port=values.port(section["port"], "ssh.port") if "port" in section else None,
        identity=values.optional_path(section, "identity", "ssh.identity", base),
        known_hosts=values.optional_path(section, "known_hosts", "ssh.known_hosts", base),
        connect_timeout=values.positive_number(
            section.get("connect_timeout", defaults.connect_timeout), "ssh.connect_timeout"
        ),
        keepalive=values.positive_number(section.get("keepalive", defaults.keepalive),
                                         "ssh.keepalive"),
        dead_after=values.positive_number(
            section.get("dead_after", defaults.dead_after), "ssh.dead_after"
        ),
        accept_unknown_hosts=values.boolean(
            section.get("accept_unknown_hosts", defaults.accept_unknown_hosts),
            "ssh.accept_unknown_hosts",
        ),
        jump=jump_host(section["jump"], "ssh.jump") if "jump" in section else None,
        config=values.boolean(section.get("config", defaults.config), "ssh.config"),
    )


def jump_host(value: object, key: str) -> JumpHost:
    expected = "a jump host as [user@]host[:port], e.g. 'deploy@bastion.example.com:22'"
    text = values.string(value, key, expected)
    match = _JUMP.fullmatch(text)
    if match is None:
        raise values.Invalid(
            key, f"expected {expected} (an IPv6 address in brackets), got {values.describe(text)}"
        )
    user, port = match["user"], match["port"]
    return JumpHost(
        address=values.address(match["ipv6"] if match["ipv6"] is not None else match["host"], key),
        user=values.ssh_user(user, key) if user is not None else None,
        port=values.port(int(port), key) if port is not None else None,
    )
