"""The app's registration on a server whose HAProxy is shared (several apps on one server,
docs/apps-design.md, decisions 1 and 7), asked by every task that puts a version of the app
in rotation there (deploy, rollback, maintenance): it is read under the app's lock, in the
round trip that takes it (slotswap.server.locking.acquire's `read`), and a server where it
is missing (the app's `up` never ran there, or its `down` finished) or says `leaving` (its
`down` was cut short) is refused before any server changes. A leaving app is in no
generation again, whoever assembles the next one: a version deployed into its backend would
be dropped by the next shared change of any app, and its names would answer 404. Only a run
holding the app's lock writes its registration, so what is read stays true for the run.
"""

from __future__ import annotations

from slotswap.config.inventory import Inventory
from slotswap.config.layout import ProxyError, registration_path
from slotswap.remote.protocol import ServerLike
from slotswap.server.proxy_registry import parse_registration


class NotOnSharedProxy(ProxyError):
    """The app is not, or no longer wholly, on the server's shared HAProxy: nothing was
    changed (exit 1)."""


def registration_to_read(server: ServerLike, inventory: Inventory) -> str | None:
    """The app's registration on the server, where one must be present: with haproxy.shared
    on a web host (a worker-only host has no HAProxy); None elsewhere."""
    if not inventory.haproxy.shared or not server.host.web:
        return None
    return registration_path(server.with_folders(inventory), inventory.app)


def refusal(name: str, inventory: Inventory, path: str, text: str | None) -> ProxyError | None:
    """Pure: why the server `name` is refused, from its registration's text (None: no file);
    None when the app is present there. A file that is not a registration is its own
    one-line error (RegistryFileError)."""
    app = inventory.app
    if text is None:
        return NotOnSharedProxy(f"{name}: {app} is not on the shared HAProxy here: run `fab "
                                "up`; nothing was changed")
    try:
        registration = parse_registration(text, f"{name}: {path}", app)
    except ProxyError as error:
        return error
    if registration.state == "leaving":
        return NotOnSharedProxy(f"{name}: {app} is leaving the shared HAProxy (a down cut "
                                "short): run `fab down` to finish it, or `fab up` to bring it "
                                "back; nothing was changed")
    return None


def refuse_unregistered(server: ServerLike, inventory: Inventory) -> None:
    """The dry runs' check, as the run's (a read of its own: a dry run takes no lock):
    raises the refusal of the server, if any."""
    path = registration_to_read(server, inventory)
    if path is None:
        return
    error = refusal(server.name, inventory, path, server.read_file(path))
    if error is not None:
        raise error
