"""A server where an app is half-moved between its own HAProxy and the shared one (a move
not done yet, or cut short: server/proxy_move.py), refused by the tasks that change what an
HAProxy serves for the app (deploys: slotswap.server.slots; maintenance, certificates): a
change sent to one HAProxy alone would not reach the other, which serves too (both listen
on the public ports, SO_REUSEPORT), and two versions of the app would be in rotation.

Half-moved, whatever the inventory says now (an operator may turn `haproxy.shared` off
after a move was cut): the app registered on the shared HAProxy (`slotswap-proxy` there)
while its own HAProxy's container is there too, or, with today's layout, the app registered
on the shared one at all. The registration is the signal: a move writes it before the
shared HAProxy may load the app's backend and takes it back only once that backend is out
of `current` (proxy_move.take_back), so the shared HAProxy never serves the app without it;
it is one `test -f`, asked only where `slotswap-proxy` exists.

The same holds while a hand-over of the HAProxy that serves the app (a new image) is cut
short: its new container, under its temporary name, may listen beside the old one until the
next `up` ends it; deploys, maintenance and certificates refuse it (cut_hand_over_line)."""

from __future__ import annotations

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    PROXY_CONTAINER,
    ProxyError,
    next_container,
    registration_path,
)
from slotswap.remote.protocol import ServerLike


def registered_on_shared(server: ServerLike, inventory: Inventory) -> bool:
    """The app's registration on this login's shared HAProxy is there (one `test -f`)."""
    path = registration_path(server.with_folders(inventory), inventory.app)
    return server.run(["test", "-f", path], check=False).ok


def half_moved_line(server: ServerLike, inventory: Inventory, own: bool) -> str:
    """The one line of a refusal on a half-moved server (`own`: the app's own HAProxy's
    container is there too), without its "nothing was changed"."""
    if inventory.haproxy.shared:
        return (f"{server.name}: half-moved: {inventory.haproxy_container} still serves "
                f"{inventory.app} here, not (only) the shared HAProxy; run `fab up` to move "
                "it")
    if own:
        return (f"{server.name}: half-moved: {inventory.app} is registered on the shared "
                f"HAProxy and {inventory.haproxy_container} is there too (a move cut "
                "short): set haproxy.shared: true again and run `fab up` to end the move")
    return (f"{server.name}: {inventory.app} is on the shared HAProxy (moved there from its "
            "own); going back to an HAProxy of its own is not available: set "
            "haproxy.shared: true again, or `down` it with haproxy.shared first")


def half_moved(server: ServerLike, inventory: Inventory,
               found: dict[str, docker.ContainerInfo]) -> bool:
    """`found` (the app's own HAProxy and the shared one, inspected) says the app is served by
    both, or, with today's layout, by the shared one: the app's registration there asked
    only where the shared HAProxy's container is."""
    if PROXY_CONTAINER not in found:
        return False
    if inventory.haproxy.shared and inventory.haproxy_container not in found:
        return False  # the shared layout as it should be
    return registered_on_shared(server, inventory)


def cut_hand_over_line(server_name: str, temporary: str) -> str:
    """The one line of a refusal where the new container of an HAProxy hand-over cut short
    (an image upgrade: haproxy_handover, proxy_handover) runs beside the one that serves."""
    return (f"{server_name}: {temporary} is left from an HAProxy upgrade that was cut short; "
            "run `fab up` to finish or undo it")


def refuse_half_moved(server: ServerLike, inventory: Inventory) -> None:
    """Maintenance, certificates: refused where two HAProxys may serve the app, a change
    reaching one only: half-moved, or a hand-over of the HAProxy that serves it cut short
    (its new container under its temporary name). One `docker inspect` (and one `test -f`
    where the shared HAProxy's container is), with haproxy.shared or not."""
    temporary = next_container(inventory)
    names = (inventory.haproxy_container, PROXY_CONTAINER, temporary)
    found = docker.parse_inspect(server.run(docker.inspect_containers(*names),
                                            check=False).stdout)
    if temporary in found:
        raise ProxyError(f"{cut_hand_over_line(server.name, temporary)}; nothing was changed")
    own = inventory.haproxy_container in found
    # With haproxy.shared the old HAProxy serves, registered or not (a move not done yet).
    if (inventory.haproxy.shared and own) or half_moved(server, inventory, found):
        raise ProxyError(f"{half_moved_line(server, inventory, own)}; nothing was changed")


def refuse_moved_back(server: ServerLike, inventory: Inventory,
                      found: dict[str, docker.ContainerInfo]) -> None:
    """Today's `up` (no haproxy.shared) where the shared HAProxy runs (`found`: both
    inspected) and has the app (moved there, or a move cut while both serve): refused in one
    line, whether or not the app's own HAProxy is there: an own HAProxy started or kept
    beside it on the same ports would split their connections, and a deploy would swap only
    one of them. One `test -f` on that path only."""
    if half_moved(server, inventory, found):
        own = inventory.haproxy_container in found
        raise ProxyError(f"{half_moved_line(server, inventory, own)}; nothing was changed")
