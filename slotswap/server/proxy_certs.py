"""An HTTPS app's certificate in the server's shared HAProxy (several apps on one server,
docs/apps-design.md, decision 4): `apps/<app>/site.pem` (+ `site.source`), the file the
generation's crt-list names, in place before HAProxy checks a generation that lists it.

Where the running generation lists it already, a new certificate goes in as in today's
layout (https/install.py: `set ssl cert` + `commit ssl cert`, no reload), after the new
generation passed its check; else only the file is written, before the check, and the
reload or start that follows loads it. With ACME a certificate there (issued, or the
stand-in) is kept: `certs.after_up` replaces it when due.
"""

from __future__ import annotations

from collections.abc import Callable

from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    CERTS_LIST_NAME,
    cert_in_haproxy,
    generation_dir,
    haproxy_dir,
    proxy_running_path,
)
from slotswap.https import install as tls
from slotswap.https.files import CertificateBundle
from slotswap.remote.protocol import ServerLike

Progress = Callable[[str], None]


def running_lists_certificate(server: ServerLike, inventory: Inventory, *,
                              running: bool) -> bool:
    """The generation the running shared HAProxy was seen running (`.running`) lists the
    app's certificate in its crt-list: HAProxy serves that file, and a new one must reach
    it through the runtime API. `running`: the container runs."""
    if not running:
        return False
    sha = (server.read_file(proxy_running_path(inventory)) or "").strip()
    if not sha:
        return False
    listed = server.read_file(f"{generation_dir(inventory, sha)}/{CERTS_LIST_NAME}") or ""
    return cert_in_haproxy(inventory) in listed.split()


def wanted(server: ServerLike, inventory: Inventory,
           certificate: CertificateBundle | None) -> CertificateBundle | None:
    """The certificate `up` puts in place, None when the app's stays: no HTTPS, or with ACME
    one already there (issued by the CA, or the stand-in until it is)."""
    https = inventory.https
    if https is None or certificate is None:
        return None
    if https.files is None and tls.installed_fingerprint(server, haproxy_dir(inventory)):
        return None
    return certificate


def place(server: ServerLike, inventory: Inventory, certificate: CertificateBundle | None,
          progress: Progress, *, listed: bool) -> bool:
    """The certificate in place (tls.install: through the runtime API when `listed`, then
    the file); True when something changed."""
    bundle = wanted(server, inventory, certificate)
    if bundle is None:
        return False
    return tls.install(server, inventory, haproxy_dir(inventory), bundle, progress,
                       running=listed)
