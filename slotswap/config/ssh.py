"""The `ssh` section: how the kit logs in to the servers, and jump hosts (ssh -J)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting

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


JUMP_HOST = Kind(lambda value, key, _: jump_host(value, key), kinds.ref("jump"))


@dataclass(frozen=True)
class SshSettings:
    # user/port None: ~/.ssh/config's User/Port for the host (ssh.config), else root and 22.
    user: str | None = setting(kinds.SSH_USER, None,
                               description="Default: ~/.ssh/config's User, else root.")
    port: int | None = setting(kinds.PORT, None,
                               description="Default: ~/.ssh/config's Port, else 22.")
    identity: Path | None = setting(  # None = ssh-agent / default keys
        kinds.PATH, None, description="Private key file; ssh-agent keys are always tried.")
    known_hosts: Path | None = setting(kinds.PATH, None,
                                       description="Default: ~/.ssh/known_hosts.")
    connect_timeout: float = setting(kinds.SECONDS, 10.0)
    # A connection that sends and gets nothing acknowledged for dead_after seconds is dead;
    # keepalive: seconds of silence after which a keepalive message is sent (so that a
    # silent network is noticed even while nothing else is sent).
    keepalive: float = setting(kinds.SECONDS, 5.0,
                               description="Seconds of silence before a keepalive goes out.")
    dead_after: float = setting(
        kinds.SECONDS, 15.0, description="Seconds of unanswered traffic after which the "
        "connection is taken for lost.")
    # True: accept (loudly) keys not in known_hosts
    accept_unknown_hosts: bool = setting(kinds.BOOLEAN, False)
    jump: JumpHost | None = setting(JUMP_HOST, None)
    config: bool = setting(kinds.BOOLEAN, True,
                           description="Read ~/.ssh/config and /etc/ssh/ssh_config.")


def parse_ssh(section: dict[str, object], key: str, context: Context) -> SshSettings:
    return SshSettings(**parse_fields(SshSettings, section, key, context))
