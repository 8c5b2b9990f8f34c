"""--dry-run of an HTTPS app's certificate steps in the shared `up` (server/proxy_certs.py
`place`, as proxy_up.up_shared and the move call it; docs/apps-design.md, decision 4):
printed as fleet/dry_run.py prints certs.renew's.

Decided as the run decides, from what the server has (read-only: the app's certificate file,
and where the running generation lists it, `show ssl cert` of it): nothing, the file alone
(before HAProxy checks the generation, which loads it), or `set ssl cert` + `commit ssl
cert` and then the file (no reload; after the check, under the other apps' locks). With
ACME no certificate is asked for in a dry run, as in today's layout: a certificate there is
kept, a server with none gets the stand-in, and the CA is asked after every server's `up`.
"""

from __future__ import annotations

from slotswap.config.inventory import Inventory
from slotswap.config.layout import cert_in, cert_in_haproxy, cert_source_in, haproxy_dir
from slotswap.fleet.dry_run import ServerPlan
from slotswap.https import install as tls
from slotswap.https.files import CertificateBundle, fingerprint
from slotswap.remote.protocol import ServerLike

ACME_AFTER = ("after every server's `up` the ACME CA is asked for a certificate where a "
              "server has only the stand-in or one due for renewal (not in a dry run: "
              "`certs.renew --dry-run` then shows it)")


def certificate_steps(plan: ServerPlan, server: ServerLike, inventory: Inventory,
                      certificate: CertificateBundle | None, listed: bool, *,
                      copied_from: str | None = None) -> None:
    """What proxy_certs.place does on this server: `certificate` is the run's
    (fleet.certs.material_for_up: the files, or with ACME the stand-in); `listed`: the
    running generation lists the app's certificate (proxy_certs.running_lists_certificate),
    so HAProxy serves that file and a new one goes in through the runtime API;
    `copied_from`: a file the run copies over the app's certificate first where it is there
    (the move: the old HAProxy's)."""
    https = inventory.https
    if https is None or certificate is None:
        return
    folder = haproxy_dir(inventory)
    path = cert_in(folder, inventory)
    text = server.read_file(copied_from) if copied_from is not None else None
    if text is None:
        text = server.read_file(path)
    on_server = fingerprint(text) if text else None
    if https.files is None and on_server:
        plan.steps.append(f"HTTPS (ACME): {path} is kept as it is (issued by the CA, or the "
                          f"stand-in until it is); {ACME_AFTER}")
        return
    serving = tls.parse_show_ssl_cert(server.runtime_api(
        f"show ssl cert {cert_in_haproxy(inventory)}")) if listed else None
    same_file, same_served = tls.is_in_place(certificate, on_server, serving, running=listed)
    what = ("the files of https.files" if https.files is not None
            else f"a stand-in; {ACME_AFTER}")
    if same_file and same_served:
        plan.steps.append(f"HTTPS: {path} is this certificate already ({what}): unchanged")
        return
    plan.summary += ("; its certificate installed with no reload" if listed
                     else "; its certificate installed")
    plan.steps.append(f"HTTPS: the app's certificate goes in: {what}")
    if not same_served:
        inside = cert_in_haproxy(inventory)
        plan.api("show ssl cert")
        plan.steps[-1] += "  (another app's certificate change left open is aborted first)"
        plan.api(tls.set_line(inside, "<the certificate and its key (PEM), never shown>"
                              ).replace("\n", ""))
        plan.api(tls.commit_line(inside))
    if not same_file:
        plan.write(path, 0o600, "the certificate and its key (PEM), what HAProxy loads"
                   + (" at its next start" if listed else " at the check and the reload "
                      "or start"))
        if certificate.source:
            plan.write(cert_source_in(folder, inventory), 0o600,
                       f"where it came from: {certificate.source}")
