"""A server whose app still has its own HAProxy while its inventory says `haproxy.shared`
(a move not done yet, or cut short: server/proxy_move.py) refused by the tasks that change
what the shared HAProxy serves for the app (maintenance, certificates): a change sent to the
shared HAProxy alone would not reach the old one, which serves too, and the next `up` may
take the shared one away and move again from the old one's files."""

from __future__ import annotations

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.layout import PROXY_CONTAINER, ProxyError, registration_path
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


def refuse_moved_back(server: ServerLike, inventory: Inventory,
                      found: dict[str, docker.ContainerInfo]) -> None:
    """Today's `up` (no haproxy.shared) where the app has no HAProxy of its own but the shared
    one runs (`found`: both inspected): refused in one line when the shared one has the app
    (moved there): an own HAProxy started beside it on the same ports would split their
    connections, and would start with no slot in rotation. One `test` on that path only."""
    if inventory.haproxy_container in found or PROXY_CONTAINER not in found:
        return
    if server.run(["test", "-f", registration_path(inventory, inventory.app)],
                  check=False).ok:
        raise ProxyError(f"{server.name}: {inventory.app} is on the shared HAProxy (moved "
                         "there from its own); going back to an HAProxy of its own is not "
                         "available: set haproxy.shared: true again, or `down` it with "
                         "haproxy.shared first; nothing was changed")
