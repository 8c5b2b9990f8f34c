"""The `hosts` section: the servers, each an address or a mapping with per-host SSH
overrides; no two the same machine or the same name."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from slotswap.config import kinds, values
from slotswap.config.fields import (
    Context,
    Kind,
    checked_section,
    keys,
    parse_fields,
    section_schema,
    setting,
)
from slotswap.config.ssh import DEFAULT_SSH_PORT, JUMP_HOST, JumpHost, SshSettings

_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _host_name(value: object, key: str, _: Context) -> str:
    return values.matching(value, key, _HOST_NAME, "a host display name",
                           "a name of 1-63 letters, digits, '_', '.' or '-', "
                           "starting with a letter or digit")


def _address(value: object, key: str, _: Context) -> str:
    return values.address(value, key)


@dataclass(frozen=True)
class Host:
    # IP or DNS name used to SSH and to reach http_port
    address: str = setting(Kind(_address, {"type": "string", "minLength": 1}), required=True)
    # display name; defaults to address
    name: str = setting(Kind(_host_name, {"type": "string", "pattern": kinds.pattern(_HOST_NAME)}))
    # per-host ssh overrides (None = use ssh section)
    user: str | None = setting(kinds.SSH_USER, None)
    port: int | None = setting(kinds.PORT, None)
    jump: JumpHost | None = setting(JUMP_HOST, None)
    accept_unknown_hosts: bool | None = setting(kinds.BOOLEAN, None)
    # false: a worker-only host (no web slots, no HAProxy), which runs roles alone
    web: bool = setting(kinds.BOOLEAN, True)


def parse_hosts(value: object, key: str, context: Context) -> tuple[Host, ...]:
    """The hosts, each an address or a mapping; checked against the ssh section parsed
    before them (two entries that reach the same machine)."""
    if not isinstance(value, list) or not value:
        raise values.Invalid(
            key,
            "expected a non-empty list of host addresses or {address, name, user, port} "
            f"mappings, got {values.describe(value)}",
        )
    hosts = [_host(entry, f"{key}[{index}]", context) for index, entry in enumerate(value)]
    ssh = context.parsed["ssh"]
    assert isinstance(ssh, SshSettings)
    _check_unique(hosts, ssh)
    return tuple(hosts)


HOSTS = Kind(parse_hosts, {
    "type": "array", "minItems": 1,
    "items": {"oneOf": [{"type": "string", "minLength": 1}, section_schema(Host, nullable=False)]},
})


def _host(entry: object, key: str, context: Context) -> Host:
    if isinstance(entry, str):
        address = values.address(entry, key)
        return Host(address=address, name=address)
    if not isinstance(entry, dict):
        raise values.Invalid(
            key,
            "expected a host address or a mapping with keys "
            f"{', '.join(keys(Host))}, got {values.describe(entry)}",
        )
    found = parse_fields(Host, checked_section(Host, entry, key), key, context)
    return Host(**{"name": found["address"], **found})


def _same_address_key(address: str) -> str:
    """A form of the address in which equal addresses compare equal."""
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower()


def _check_unique(hosts: list[Host], ssh: SshSettings) -> None:
    # Behind different jump hosts the same (private) address can be two machines.
    seen_targets: dict[tuple[str, int, str], int] = {}
    seen_names: dict[str, int] = {}
    for index, host in enumerate(hosts):
        port = host.port or ssh.port or DEFAULT_SSH_PORT
        jump = host.jump or ssh.jump
        target = (_same_address_key(host.address), port, str(jump or ""))
        if target in seen_targets:
            through = f" through jump host {jump}" if jump else ""
            raise values.Invalid(
                f"hosts[{index}]",
                f"duplicate of hosts[{seen_targets[target]}] "
                f"(same address {host.address} and SSH port {port}{through})",
            )
        if host.name in seen_names:
            raise values.Invalid(
                f"hosts[{index}].name",
                f"{host.name!r} is already the name of hosts[{seen_names[host.name]}]",
            )
        seen_targets[target] = index
        seen_names[host.name] = index
