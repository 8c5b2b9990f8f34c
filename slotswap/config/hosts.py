"""The `hosts` section: the servers, each an address or a mapping with per-host SSH
overrides; no two the same machine or the same name."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from slotswap.config import values
from slotswap.config.ssh import DEFAULT_SSH_PORT, JumpHost, SshSettings, jump_host


@dataclass(frozen=True)
class Host:
    address: str  # IP or DNS name used to SSH and to reach http_port
    name: str  # display name; defaults to address
    user: str | None = None  # per-host ssh overrides (None = use ssh section)
    port: int | None = None
    jump: JumpHost | None = None
    accept_unknown_hosts: bool | None = None


_HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


HOST_KEYS = ("address", "name", "user", "port", "jump", "accept_unknown_hosts")


def parse_hosts(value: object, ssh: SshSettings) -> tuple[Host, ...]:
    if not isinstance(value, list) or not value:
        raise values.Invalid(
            "hosts",
            "expected a non-empty list of host addresses or {address, name, user, port} "
            f"mappings, got {values.describe(value)}",
        )
    hosts = [_host(entry, f"hosts[{index}]") for index, entry in enumerate(value)]
    _check_unique(hosts, ssh)
    return tuple(hosts)


def _host(entry: object, key: str) -> Host:
    if isinstance(entry, str):
        address = values.address(entry, key)
        return Host(address=address, name=address)
    if not isinstance(entry, dict):
        raise values.Invalid(
            key,
            "expected a host address or a mapping with keys "
            f"{', '.join(HOST_KEYS)}, got {values.describe(entry)}",
        )
    fields = values.mapping(entry, key, HOST_KEYS, required=("address",))
    address = values.address(fields["address"], f"{key}.address")
    accept = fields.get("accept_unknown_hosts")
    return Host(
        address=address,
        name=_host_name(fields["name"], f"{key}.name") if "name" in fields else address,
        user=values.ssh_user(fields["user"], f"{key}.user") if "user" in fields else None,
        port=values.port(fields["port"], f"{key}.port") if "port" in fields else None,
        jump=jump_host(fields["jump"], f"{key}.jump") if "jump" in fields else None,
        accept_unknown_hosts=(
            values.boolean(accept, f"{key}.accept_unknown_hosts")
            if "accept_unknown_hosts" in fields
            else None
        ),
    )


def _host_name(value: object, key: str) -> str:
    name = values.string(value, key, "a host display name")
    if not _HOST_NAME.fullmatch(name):
        raise values.Invalid(
            key,
            "expected a name of 1-63 letters, digits, '_', '.' or '-', "
            f"starting with a letter or digit, got {values.describe(name)}",
        )
    return name


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
