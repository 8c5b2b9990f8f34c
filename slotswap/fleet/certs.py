"""The fleet's certificate: what `up` puts in place, what each server serves (`certs`), and
its renewal (`certs.renew`): issued once, installed on every server with no reload. A
worker-only host (web: false) has no HAProxy: HTTPS leaves it out (https_hosts)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from slotswap.config.https import AcmeSettings, CertificateFiles, HttpsSettings
from slotswap.config.inventory import Inventory
from slotswap.config.layout import haproxy_dir
from slotswap.core.output import say, warn
from slotswap.core.validation import InputError
from slotswap.fleet.errors import EXIT_CONNECT
from slotswap.fleet.every_server import on_every_server
from slotswap.fleet.outcomes import ServerResult
from slotswap.fleet.runner import in_turn, servers_of
from slotswap.fleet.serving_checks import refuse_two_haproxys
from slotswap.https import install as tls
from slotswap.https.files import (
    EXPIRED,
    EXPIRING,
    FILES_SOURCE,
    NOT_YET_VALID,
    CertificateBundle,
    acme_source,
    covers,
    expiry_warning,
    load_files,
    placeholder,
)
from slotswap.remote.protocol import ServerLike
from slotswap.server.locking import new_owner
from slotswap.server.proxy_locks import holding, shared_lock

Progress = Callable[[str], None]


def issue(settings: AcmeSettings, names: tuple[str, ...], progress: Progress
          ) -> CertificateBundle:
    """slotswap.https.acme.issue, imported only here: the ACME client (acme, josepy,
    requests) costs every other run 0.1 s of start-up."""
    from slotswap.https import acme as acme_client

    return acme_client.issue(settings, names, progress)


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
        return files_bundle(https, https.files)
    return placeholder(https.names)


def files_bundle(https: HttpsSettings, files: CertificateFiles) -> CertificateBundle:
    """The operator's certificate (refused when expired or not yet valid), with a warning
    when it has fewer than https.renew_days left."""
    bundle = load_files(files, https.names)
    warning = expiry_warning(files, bundle, https.renew_days)
    if warning:
        warn(warning)
    return bundle


@dataclass(frozen=True)
class ServerCertificate:
    name: str
    address: str
    served: tls.ServedCertificate | None
    error: str = ""
    source: str | None = None  # where the kit got it (None: not recorded)


def https_hosts(inventory: Inventory) -> Inventory:
    """The inventory with only the servers HTTPS is on: those with web slots (a worker-only
    host, web: false, has no HAProxy and no certificate)."""
    return dataclasses.replace(inventory, hosts=inventory.web_hosts)


def read_fleet(inventory: Inventory) -> list[ServerCertificate]:
    """What each server's HAProxy serves, and where that came from (read-only)."""
    found = []
    servers = servers_of(https_hosts(inventory))
    for done in in_turn(servers, lambda server: read_one(server, inventory)):
        server = done.server
        found.append(done.value if done.value is not None else ServerCertificate(
            server.name, server.host.address, None, str(done.error)))
    return found


def read_one(server: ServerLike, inventory: Inventory) -> ServerCertificate:
    """What the server's HAProxy serves, and where that came from."""
    return ServerCertificate(
        server.name, server.host.address, tls.served(server),
        source=tls.installed_source(server, haproxy_dir(server.with_folders(inventory))))


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


@dataclass(frozen=True)
class Renewal:
    """What certs.renew does, decided before any server is changed (its dry run prints it):
    with files, the operator's certificate; with ACME, why each server's is due (one
    certificate is then issued for all), or the results the run ends with at once (nothing
    due, or a server that cannot be read)."""

    bundle: CertificateBundle | None  # files: the certificate; ACME: issued by the run
    due: dict[str, str]  # ACME: server -> why its certificate is replaced
    ends: list[ServerResult] | None = None  # the run ends with these, changing nothing
    said: str = ""  # ... and says this


def plan_renewal(inventory: Inventory, *, force: bool) -> Renewal:
    """Read-only: the files checked (refused when expired or not yet valid), or with ACME
    what each server serves now. With haproxy.shared, the app's own certificate in each
    server's shared HAProxy (the layout seam's paths; docs/apps-design.md, decision 4)."""
    https = https_of(inventory)
    if https.files is not None:
        return Renewal(files_bundle(https, https.files), {})
    fleet = read_fleet(inventory)
    unreadable = [c for c in fleet if c.error]
    if unreadable:
        return Renewal(None, {}, [ServerResult(c.name, f"nothing was changed: {c.error}", False,
                                               EXIT_CONNECT) for c in unreadable])
    reasons = {c.name: why_renew(https, c.served, c.source) for c in fleet}
    due = {name: why for name, why in reasons.items() if why}
    if not due and not force:
        days = min(c.served.days_left() or 0 for c in fleet if c.served)
        return Renewal(None, {}, [ServerResult(c.name, "unchanged", True) for c in fleet],
                       f"every server's certificate is good for {days:.0f} more days; "
                       "nothing to do (--force renews anyway)")
    return Renewal(None, due)


def renewal_lines(https: HttpsSettings, renewal: Renewal) -> list[str]:
    """The dry run's words for what the run does before it changes a server."""
    if renewal.said:
        return [renewal.said]
    if renewal.bundle is not None:
        info = renewal.bundle.info()
        return [f"your files: the certificate for {', '.join(info.names)} (serial "
                f"{info.serial}, until {info.not_after:%Y-%m-%d}), on every server that has "
                "another"]
    assert https.acme is not None
    return [*(f"{name}: renewing: {why}" for name, why in renewal.due.items()),
            f"on this machine: one certificate for {', '.join(https.names)} issued by "
            f"{https.acme.directory} (its HTTP-01 challenges answered by every server's "
            "HAProxy; nothing is written on a server for them), then installed on every "
            "server"]


def renew(inventory: Inventory, *, force: bool) -> list[ServerResult]:
    """Renew the fleet's certificate when a server needs it (or --force): with ACME one new
    certificate for every server; with files, the files, where a server has others. Raises
    AcmeError, before any server is changed, when the CA cannot be reached or refuses."""
    https = https_of(inventory)
    renewal = plan_renewal(inventory, force=force)
    if renewal.said:
        say(renewal.said)
    if renewal.ends is not None:
        return renewal.ends
    for name, why in renewal.due.items():
        say(f"{name}: renewing: {why}")
    # A CA that refuses raises AcmeError: no server was touched.
    bundle = renewal.bundle or issue(https.acme, https.names, say)  # type: ignore[arg-type]

    def install(server: ServerLike, inv: Inventory, progress: Progress) -> str:
        # A shared HAProxy has one certificate transaction for all its apps: its lock keeps
        # another app's install (its up, its renewal) out of this one's.
        with (holding(server, server.with_folders(inv), new_owner("certs.renew"),
                      shared_lock(server.with_folders(inv)))
              if inv.haproxy.shared else contextlib.nullcontext()):
            installed = tls.install(server, inv, haproxy_dir(inv), bundle, progress,
                                    running=True)
        return "certificate installed" if installed else "unchanged"

    # A second HAProxy beside the first would serve the old certificate: refused before
    # any change.
    return on_every_server(https_hosts(inventory), install, "certs.renew",
                           first=refuse_two_haproxys)


def after_up(inventory: Inventory) -> list[ServerResult]:
    """After `up`: with ACME, the first real certificate where a server has only the
    stand-in (or an expiring one)."""
    if inventory.https is None or inventory.https.acme is None:
        return []
    return renew(inventory, force=False)


SHORT_STATES = {EXPIRED: "EXPIRED", NOT_YET_VALID: "NOT YET VALID"}


def describe_fleet(fleet: list[ServerCertificate], renew_days: int
                   ) -> tuple[list[tuple[str, ...]], bool, list[str]]:
    """Rows of `certs`, whether every server could be read, and a warning for each server
    whose certificate clients refuse (expired, not yet valid) or that is due for renewal."""
    rows, ok, warnings = [], True, []
    for entry in fleet:
        served = entry.served
        if served is None:
            ok = False
            rows.append((entry.name, entry.address, "-", "-", "-", f"ERROR {entry.error}"))
            continue
        today = served.validity(renew_days)
        left = SHORT_STATES.get(today.state) or (
            f"{today.days_left:.0f} days" if today.days_left is not None else "-")
        rows.append((entry.name, entry.address, ",".join(served.names) or "-",
                     served.issuer or "-",
                     f"{served.not_after:%Y-%m-%d}" if served.not_after else "-", left))
        if today.refused:
            warnings.append(f"WARNING: {entry.name}: the certificate it serves {today.words}: "
                            "every HTTPS client refuses it")
        elif today.state == EXPIRING:
            warnings.append(f"WARNING: {entry.name}: the certificate it serves has "
                            f"{today.words}")
    return rows, ok, warnings


def document(fleet: list[ServerCertificate], renew_days: int) -> dict[str, object]:
    """`certs --json`."""
    servers = []
    for entry in fleet:
        served = entry.served
        servers.append({
            "validity": served.validity(renew_days).state if served else None,
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

