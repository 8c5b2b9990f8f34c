"""A server whose app still has its own HAProxy while its inventory says `haproxy.shared`
(a move not done yet, or cut short: server/proxy_move.py) refused by the tasks that change
what the shared HAProxy serves for the app (maintenance, certificates): a change sent to the
shared HAProxy alone would not reach the old one, which serves too, and the next `up` may
take the shared one away and move again from the old one's files."""

from __future__ import annotations

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.layout import ProxyError
from slotswap.remote.protocol import ServerLike


def refuse_half_moved(server: ServerLike, inventory: Inventory) -> None:
    """One `docker inspect` with haproxy.shared; nothing in today's layout."""
    if not inventory.haproxy.shared:
        return
    name = inventory.haproxy_container
    if name in docker.parse_inspect(server.run(docker.inspect_containers(name),
                                               check=False).stdout):
        raise ProxyError(f"{server.name}: half-moved: {name} still serves {inventory.app} "
                         "here, not (only) the shared HAProxy; run `fab up` to move it; "
                         "nothing was changed")
