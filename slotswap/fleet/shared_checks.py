"""The shared `up`'s first pass (several apps on one server, docs/apps-design.md decision 2):
before any server changes, every web server's registry is read (one round trip each, all
servers at once) and the app's inventory checked there as each server's own `up` checks it
(proxy_up.planned: the contradictions with the other apps' registrations, another app's
own HAProxy, a shared HAProxy run from another login's folders; the app's own HAProxy is
what its `up` moves from, refused only where its move refuses it: proxy_move.move_refusal,
one `docker inspect` more). A contradiction on any
server ends the run in its one line naming that server (exit 2), a refusal or an unreadable
server as that server's result: nothing was changed anywhere. Each server's `up` checks
again under the shared HAProxy's lock (another app's run may change its registry between);
`up --dry-run` runs the same pass before it plans any server.
"""

from __future__ import annotations

from slotswap.config.inventory import Inventory
from slotswap.config.layout import ProxyError
from slotswap.fleet.runner import CONCURRENCY, Done, at_once
from slotswap.remote.protocol import ServerLike
from slotswap.server.locking import new_owner
from slotswap.server.proxy_files import read_registry
from slotswap.server.proxy_move import inspect_for_move, move_refusal
from slotswap.server.proxy_up import planned

FIRST_PASS_LINE = ("before any server changes: every web server's registry read and the app's "
                   "inventory checked against the other apps there (a contradiction on any "
                   "server: exit 2, nothing changed anywhere); each server checks again under "
                   "its shared HAProxy's lock")


def check_on(server: ServerLike, inventory: Inventory) -> None:
    """The app's `up` checked on one server's registry, read now; raises what its `up`
    would raise before any change (ProxyContradiction: exit 2)."""
    inventory = server.with_folders(inventory)
    # The app's own HAProxy is no refusal here (its `up` moves the server to the shared
    # one), but what its move refuses is (a cut upgrade of it, on the app's network, told
    # to stop with no shared HAProxy): one `docker inspect` more.
    refusal = move_refusal(server.name, inventory, inspect_for_move(server, inventory))
    if refusal is not None:
        raise ProxyError(refusal)
    planned(server, inventory, read_registry(server, inventory), new_owner("up"), None,
            moving=True)


def check_every_server(servers: list[ServerLike], inventory: Inventory) -> list[Done[None]]:
    """check_on on every web server at once (a worker-only host has no shared HAProxy to
    check); the first contradiction in the inventory's order is raised once all are read,
    any other refusal is that server's Done."""
    web = [server for server in servers if server.host.web]
    return at_once(web, lambda server: check_on(server, inventory),
                   workers=CONCURRENCY)
