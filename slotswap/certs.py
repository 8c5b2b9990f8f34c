"""The fleet's certificate: what `up` puts in place, what each server serves (`certs`), and
its renewal (`certs.renew`): issued once, installed on every server with no reload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from slotswap import rollout, tls
from slotswap.acme_client import issue
from slotswap.certificates import (
    FILES_SOURCE,
    CertificateBundle,
    acme_source,
    covers,
    load_files,
    placeholder,
)
from slotswap.inventory import HttpsSettings, Inventory
from slotswap.output import say
from slotswap.proxy import config_dir
from slotswap.remote import Server
from slotswap.validation import InputError

Progress = Callable[[str], None]


def https_of(inventory: Inventory) -> HttpsSettings:
    if inventory.https is None:
        raise InputError(f"{inventory.path}: no https section: HTTPS is off for this inventory")
    return inventory.https


def material_for_up(inventory: Inventory) -> CertificateBundle | None:
    """Checked before any server is contacted: the operator's files, or with ACME a
    stand-in for servers that have no certificate yet."""
    https = inventory.https
    if https is None:
        return None
    if https.files is not None:
        return load_files(https.files, https.names)
    return placeholder(https.names)


@dataclass(frozen=True)
class ServerCertificate:
    name: str
    address: str
    served: tls.ServedCertificate | None
    error: str = ""
    source: str | None = None  # where the kit got it (None: not recorded)


def read_fleet(inventory: Inventory) -> list[ServerCertificate]:
    """What each server's HAProxy serves, and where that came from (read-only)."""
    found = []
    for server in rollout.servers_of(inventory):
        try:
            found.append(ServerCertificate(
                server.name, server.host.address, tls.served(server),
                source=tls.installed_source(
                    server, config_dir(server.with_folders(inventory)))))
        except rollout.OPERATION_ERRORS as error:
            found.append(ServerCertificate(server.name, server.host.address, None, str(error)))
        finally:
            server.close()
    return found


def wanted_source(https: HttpsSettings) -> str:
    """Where the inventory says the certificate comes from."""
    if https.acme is not None:
        return acme_source(https.acme.directory)
    return FILES_SOURCE


def why_renew(https: HttpsSettings, served: tls.ServedCertificate | None,
              source: str | None = None) -> str | None:
    """Why a server's certificate must be replaced; None when it is good for long enough.
    One from another source than the inventory's (files, now acme; another ACME directory)
    is replaced; one whose source the kit did not record is judged by its names and days."""
    if served is None:
        return "it serves none"
    if served.placeholder:
        return "it serves the stand-in certificate"
    if source is not None and source != wanted_source(https):
        return f"it came from {source}, the inventory says {wanted_source(https)}"
    missing = [name for name in https.names if not covers(served.names, name)]
    if missing:
        return f"it does not cover {', '.join(missing)}"
    days = served.days_left()
    if days is not None and days < https.renew_days:
        return f"{days:.0f} days are left (renewal under {https.renew_days})"
    return None


def renew(inventory: Inventory, *, force: bool) -> list[rollout.ServerResult]:
    """Renew the fleet's certificate when a server needs it (or --force): with ACME one new
    certificate for every server; with files, the files, where a server has others. Raises
    AcmeError, before any server is changed, when the CA cannot be reached or refuses."""
    https = https_of(inventory)
    if https.files is not None:
        bundle = load_files(https.files, https.names)
    else:
        fleet = read_fleet(inventory)
        unreadable = [c for c in fleet if c.error]
        if unreadable:
            return [rollout.ServerResult(c.name, f"nothing was changed: {c.error}", False,
                                         rollout.EXIT_CONNECT) for c in unreadable]
        reasons = {c.name: why_renew(https, c.served, c.source) for c in fleet}
        due = {name: why for name, why in reasons.items() if why}
        if not due and not force:
            days = min(c.served.days_left() or 0 for c in fleet if c.served)
            say(f"every server's certificate is good for {days:.0f} more days; nothing to do "
                "(--force renews anyway)")
            return [rollout.ServerResult(c.name, "unchanged", True) for c in fleet]
        for name, why in due.items():
            say(f"{name}: renewing: {why}")
        # A CA that refuses raises AcmeError: no server was touched.
        bundle = issue(https.acme, https.names, say)  # type: ignore[arg-type]

    def install(server: Server, inv: Inventory, progress: Progress) -> str:
        installed = tls.install(server, inv, config_dir(inv), bundle, progress, running=True)
        return "certificate installed" if installed else "unchanged"

    return rollout.on_every_server(inventory, install, "certs.renew")


def after_up(inventory: Inventory) -> list[rollout.ServerResult]:
    """After `up`: with ACME, the first real certificate where a server has only the
    stand-in (or an expiring one)."""
    if inventory.https is None or inventory.https.acme is None:
        return []
    return renew(inventory, force=False)


def describe_fleet(fleet: list[ServerCertificate]) -> tuple[list[tuple[str, ...]], bool]:
    """Rows of `certs` and whether every server could be read."""
    rows, ok = [], True
    for entry in fleet:
        served = entry.served
        if served is None:
            ok = False
            rows.append((entry.name, entry.address, "-", "-", "-", f"ERROR {entry.error}"))
            continue
        days = served.days_left()
        rows.append((entry.name, entry.address, ",".join(served.names) or "-",
                     served.issuer or "-",
                     f"{served.not_after:%Y-%m-%d}" if served.not_after else "-",
                     f"{days:.0f} days" if days is not None else "-"))
    return rows, ok


def document(fleet: list[ServerCertificate]) -> dict[str, object]:
    """`certs --json`."""
    servers = []
    for entry in fleet:
        served = entry.served
        servers.append({
            "name": entry.name, "address": entry.address,
            "names": list(served.names) if served else None,
            "issuer": served.issuer if served else None,
            "serial": served.serial if served else None,
            "not_after": served.not_after.isoformat() if served and served.not_after else None,
            "days_left": round(served.days_left() or 0, 1) if served else None,
            "source": entry.source,
            "error": entry.error or None})
    return {"task": "certs", "ok": all(s["error"] is None for s in servers),
            "servers": servers}

