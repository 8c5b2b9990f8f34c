"""HTTPS on the servers: the certificate file HAProxy loads, installed and replaced with no
reload (HAProxy's runtime API: `set ssl cert`, then `commit ssl cert`, HAProxy 2.2+), and
read back from the running HAProxy.

On each server the certificate (chain and key, one PEM file) is `<config dir>/certs/site.pem`
(with haproxy.shared: `apps/<app>/site.pem` in the shared HAProxy's folder, config.layout),
mode 0600 in a 0700 folder, written over the SSH connection and never on a command line or
in the output. The file is what a restarted HAProxy loads; the runtime API is what the
running one serves.
"""

from __future__ import annotations

import contextlib
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

from slotswap.commands.runtime_api import RuntimeApiError, refusal
from slotswap.config.inventory import Inventory
from slotswap.config.layout import cert_in, cert_in_haproxy, cert_source_in
from slotswap.https.files import (
    PLACEHOLDER_ORGANIZATION,
    CertificateBundle,
    Validity,
    fingerprint,
    validity,
)
from slotswap.remote.protocol import ServerLike

Progress = Callable[[str], None]


class TlsError(RuntimeApiError):
    """HAProxy's runtime API refused the certificate (a server's failure, as any refusal of
    its runtime API: exit 1, the later servers untouched)."""


@dataclass(frozen=True)
class ServedCertificate:
    """What the running HAProxy serves, from `show ssl cert <file>`."""

    serial: str
    not_after: datetime.datetime | None
    names: tuple[str, ...]
    issuer: str
    not_before: datetime.datetime | None = None

    @property
    def placeholder(self) -> bool:
        return PLACEHOLDER_ORGANIZATION in self.issuer

    def days_left(self, now: datetime.datetime | None = None) -> float | None:
        if self.not_after is None:
            return None
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).total_seconds() / 86400

    def validity(self, renew_days: int, now: datetime.datetime | None = None) -> Validity:
        return validity(self.not_before, self.not_after, renew_days, now)


def _openssl_time(value: str | None) -> datetime.datetime | None:
    """OpenSSL's form of a time, as `show ssl cert` prints it: `Sep  8 17:30:00 2027 GMT`."""
    if not value:
        return None
    return datetime.datetime.strptime(" ".join(value.split()), "%b %d %H:%M:%S %Y %Z",
                                      ).replace(tzinfo=datetime.UTC)


def parse_show_ssl_cert(text: str) -> ServedCertificate:
    """`show ssl cert FILE`: `Key: value` lines (Serial, notAfter, Subject Alternative
    Name, Issuer, ...)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition(": ")
        if separator and key not in fields:
            fields[key.strip()] = value.strip()
    if "Serial" not in fields:
        raise RuntimeApiError(f"unexpected `show ssl cert` answer: {text[:200]!r}")
    names = tuple(part.strip().removeprefix("DNS:")
                  for part in fields.get("Subject Alternative Name", "").split(",")
                  if part.strip().startswith("DNS:"))
    return ServedCertificate(serial=fields["Serial"].upper().lstrip("0") or "0",
                             not_after=_openssl_time(fields.get("notAfter")), names=names,
                             issuer=fields.get("Issuer", ""),
                             not_before=_openssl_time(fields.get("notBefore")))


def served(server: ServerLike) -> ServedCertificate:
    return parse_show_ssl_cert(
        server.runtime_api(f"show ssl cert {cert_in_haproxy(server.inventory)}"))


def installed_fingerprint(server: ServerLike, config_dir: str) -> str | None:
    """The digest of the certificate file on the server (`config_dir`: the folder of the
    HAProxy that serves the app, layout.haproxy_dir); None when there is none."""
    text = server.read_file(cert_in(config_dir, server.inventory))
    return fingerprint(text) if text else None


def installed_source(server: ServerLike, config_dir: str) -> str | None:
    """Where the server's certificate came from; None when the kit recorded nothing."""
    text = server.read_file(cert_source_in(config_dir, server.inventory))
    return (text.strip() or None) if text else None


def write_file(server: ServerLike, config_dir: str, bundle: CertificateBundle) -> None:
    server.write_private_file(cert_in(config_dir, server.inventory), bundle.haproxy_pem())
    if bundle.source:
        server.write_private_file(cert_source_in(config_dir, server.inventory),
                                  bundle.source + "\n")


def set_line(path: str, pem: str) -> str:
    """The runtime-API line that stages `pem` (chain and key) for the served file `path`
    (layout.cert_in_haproxy)."""
    return f"set ssl cert {path} <<\n{pem}"


def commit_line(path: str) -> str:
    return f"commit ssl cert {path}"


def replace_served(server: ServerLike, bundle: CertificateBundle) -> None:
    """The running HAProxy serves the new certificate from its next handshake on: no reload,
    no connection dropped. The payload (the private key) never appears in an error."""
    path = cert_in_haproxy(server.inventory)
    if server.inventory.haproxy.shared:
        abort_stale_transaction(server, path)
    try:
        staged = server.runtime_api(set_line(path, bundle.haproxy_pem()))
    except RuntimeApiError as error:
        raise TlsError(f"{server.name}: HAProxy refused the new certificate for {path}: "
                       f"{_answer_of(error)}") from None
    other = transaction_of(staged)
    if other is not None and other != path:
        # Another app's change began in between, and HAProxy put this certificate into that
        # transaction: aborted, so that neither commits it (the other's run then fails and
        # says so; its certificate stays as it was).
        with contextlib.suppress(RuntimeApiError):
            server.runtime_api(f"abort ssl cert {app_certificate(server, other)}")
        raise TlsError(f"{server.name}: another certificate's change ({other}) was under way "
                       f"in HAProxy; {path} was not changed; run again")
    try:
        committed = server.runtime_api(commit_line(path))
        if "Success!" not in committed:  # "Committing X\n...Failed!": no error marker
            raise refusal(commit_line(path), committed)
    except RuntimeApiError as error:
        if serves(server, bundle):
            return  # the commit ran, its answer was lost
        with contextlib.suppress(RuntimeApiError):  # said below; the next run tries again
            server.runtime_api(f"abort ssl cert {path}")
        raise TlsError(f"{server.name}: HAProxy could not commit the new certificate for "
                       f"{path}: {_answer_of(error)}") from None


# HAProxy keeps one certificate transaction at a time, for every file it serves: a `set ssl
# cert` of another file while one is open goes into that one (2.6: "Transaction updated for
# certificate <the other file>!"), and `commit` would serve it under the other's names. With
# the shared HAProxy each app's run changes its own file, so each checks for another's first.
TRANSACTION_ANSWER = re.compile(r"Transaction (?:created|updated) for certificate (\S+)!")


def transaction_of(answer: str) -> str | None:
    """The file a `set ssl cert` answer says its transaction is for (None: not said)."""
    found = TRANSACTION_ANSWER.search(answer)
    return found.group(1) if found else None


def open_transaction(listing: str) -> str | None:
    """`show ssl cert` (no argument): the file of the transaction open now, listed under
    `# transaction` with a `*` in front (None: none)."""
    lines = listing.splitlines()
    if "# transaction" not in lines:
        return None
    following = lines[lines.index("# transaction") + 1:]
    return next((line[1:].strip() for line in following[:1] if line.startswith("*")), None)


def abort_stale_transaction(server: ServerLike, path: str) -> None:
    """Another app's certificate change left open in the shared HAProxy, aborted before this
    one begins. Every install of the kit on a shared HAProxy holds its lock (the shared
    `up`, `certs.renew`), so an open one is a run's that stopped between `set` and `commit`:
    left, it would refuse every other app's install until that app's next run."""
    other = open_transaction(server.runtime_api("show ssl cert"))
    if other is not None and other != path:
        server.runtime_api(f"abort ssl cert {app_certificate(server, other)}")


# An app's certificate as the shared HAProxy names it: nothing else is ever aborted.
_APP_CERTIFICATE = re.compile(r"/usr/local/etc/haproxy/apps/([a-z][a-z0-9-]{0,31})/site\.pem")


def app_certificate(server: ServerLike, name: str) -> str:
    """`name` (read from HAProxy's answer) when it is an app's certificate of the shared
    HAProxy, to go into a runtime-API line; else refused, nothing sent."""
    if not _APP_CERTIFICATE.fullmatch(name):
        raise TlsError(f"{server.name}: HAProxy has a certificate change open for "
                       f"{name[:120]!r}, which is not an app's; nothing was changed")
    return name


def serves(server: ServerLike, bundle: CertificateBundle) -> bool:
    """HAProxy serves `bundle` now (False also when it does not answer)."""
    try:
        return served(server).serial == bundle.info().serial
    except RuntimeApiError:
        return False


def _answer_of(error: RuntimeApiError) -> str:
    """HAProxy's answer, without the command it answered (`HAProxy refused `CMD`: ANSWER`),
    which may hold a private key."""
    text = str(error)
    return text.rsplit("`: ", 1)[-1].strip() if "`: " in text else "no answer"


def is_in_place(bundle: CertificateBundle | None, file_fingerprint: str | None,
                serving: ServedCertificate | None, *, running: bool) -> tuple[bool, bool]:
    """(the file is `bundle`, the running HAProxy serves it): the file alone does not say
    what HAProxy serves (a runtime-API change that failed after the file was written).
    `bundle` None: one not issued yet, which no server has."""
    if bundle is None:
        return False, not running
    same_file = file_fingerprint == fingerprint(bundle.haproxy_pem())
    same_served = not running or (serving is not None
                                  and serving.serial == bundle.info().serial)
    return same_file, same_served


def in_place_on(server: ServerLike, config_dir: str, bundle: CertificateBundle | None, *,
                running: bool) -> tuple[bool, bool]:
    """is_in_place, from what the server has (read-only): what `install` and its dry run
    decide from."""
    return is_in_place(bundle, installed_fingerprint(server, config_dir),
                       served(server) if running else None, running=running)


def install(server: ServerLike, inventory: Inventory, config_dir: str, bundle: CertificateBundle,
            progress: Progress, *, running: bool) -> bool:
    """Put `bundle` into HAProxy when it runs (the runtime API) and then into the file a
    restart loads: a refusal leaves both as they were. Once the file is written, what
    HAProxy serves is read again (a restart in between loaded the old file). Returns False
    when the server had that very certificate already, in its file and (running) in what
    HAProxy serves. With haproxy.shared the app's own certificate in the shared HAProxy
    (apps/<app>/site.pem: the layout seam's cert_in and cert_in_haproxy; docs/apps-design.md,
    decision 4), which `running` HAProxy must list already (its generation's crt-list)."""
    same_file, same_served = in_place_on(server, config_dir, bundle, running=running)
    if same_file and same_served:
        return False
    if not same_served:
        replace_served(server, bundle)
    if not same_file:
        write_file(server, config_dir, bundle)
        if running and not serves(server, bundle):
            # HAProxy restarted before the file was written and loaded the old one: now
            # that a restart loads the new file, the running HAProxy is given it again.
            replace_served(server, bundle)
            if not serves(server, bundle):
                raise TlsError(f"{server.name}: HAProxy still serves the old certificate "
                               "after the new one was given again; the file a restart "
                               "loads is the new one; run `certs.renew` again")
    info = bundle.info()
    progress(f"certificate for {', '.join(info.names)} (serial {info.serial}, until "
             f"{info.not_after:%Y-%m-%d}) installed" + (" with no reload" if running else ""))
    return True
