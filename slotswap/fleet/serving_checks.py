"""The first pass of the tasks that change what an app's HAProxy answers without a swap
(`maintenance.*`, `certs.renew`): once every server is locked, each is checked at once for
a second HAProxy that listens for the app beside the first (half-moved, or an HAProxy
hand-over cut short: server.half_moved.refuse_half_moved), where a change would reach one of
them only. A refusal on any server ends the run before any server changes, naming it."""

from __future__ import annotations

from slotswap.config.inventory import Inventory
from slotswap.fleet.runner import CONCURRENCY, Done, at_once
from slotswap.remote.protocol import ServerLike
from slotswap.server.half_moved import refuse_half_moved


def refuse_two_haproxys(servers: list[ServerLike], inventory: Inventory) -> list[Done[None]]:
    """refuse_half_moved on every server at once (one `docker inspect` each, and one `test
    -f` where the shared HAProxy's container is); each server's refusal is its Done."""
    return at_once(servers, lambda server: refuse_half_moved(
        server, server.with_folders(inventory)), workers=CONCURRENCY)
