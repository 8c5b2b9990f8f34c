"""`--hosts NAME[,NAME]`: a task on some servers of the inventory only (a canary first)."""

from __future__ import annotations

import dataclasses

from slotswap.config.inventory import Inventory
from slotswap.core.validation import InputError


def parse_host_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise InputError(f"--hosts expects server names separated by commas, got {text!r}")
    return names


def select_hosts(inventory: Inventory, text: str | None) -> Inventory:
    """The inventory with only the servers named (by name or address), in the inventory's
    order whatever the order given; every name must be one of its servers."""
    if text is None:
        return inventory
    wanted = parse_host_names(text)
    known = {key for host in inventory.hosts for key in (host.name, host.address)}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise InputError(
            f"--hosts: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not in "
            f"{inventory.path.name} (its servers: "
            f"{', '.join(host.name for host in inventory.hosts)})")
    chosen = tuple(host for host in inventory.hosts
                   if host.name in wanted or host.address in wanted)
    return dataclasses.replace(inventory, hosts=chosen)
