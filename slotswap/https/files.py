"""TLS certificates on the operator's machine: read and check the files an inventory names,
describe a certificate, and the one PEM file HAProxy loads (chain, then key).

Nothing here talks to a server: see slotswap.https.install for installing a certificate, and
slotswap.https.acme for getting one from an ACME CA.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from slotswap.config.https import CertificateFiles
from slotswap.core.validation import InputError

PLACEHOLDER_ORGANIZATION = "slotswap placeholder"  # in the subject of a stand-in certificate
# Where a certificate came from, recorded beside it on each server (see slotswap.https.install): a
# server whose certificate came from elsewhere than the inventory now says gets a new one.
FILES_SOURCE = "files"
STAND_IN_SOURCE = "stand-in"


def acme_source(directory: str) -> str:
    """The source of a certificate issued by the ACME CA at `directory`."""
    return f"acme {directory}"


class AcmeError(RuntimeError):
    """The ACME CA refused, or could not be reached: nothing was changed on any server. Here,
    not in slotswap.https.acme, so that catching it imports no ACME client."""


class CertificateError(InputError):
    """A certificate or key on the operator's machine is missing, unsafe or does not fit."""


@dataclass(frozen=True)
class CertificateBundle:
    """A certificate chain and its private key, PEM text."""

    chain_pem: str
    key_pem: str = field(repr=False)
    source: str = ""  # FILES_SOURCE, STAND_IN_SOURCE or acme_source(...)

    def haproxy_pem(self) -> str:
        """The file HAProxy's `crt` loads: the chain, then the key, no blank line (the
        runtime API's payload ends at the first blank line)."""
        lines = [line for line in (self.chain_pem + "\n" + self.key_pem).splitlines() if line]
        return "\n".join(lines) + "\n"

    @property
    def leaf(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.chain_pem.encode())

    def info(self) -> CertificateInfo:
        return describe(self.leaf)


EXPIRED, NOT_YET_VALID, EXPIRING, VALID = "expired", "not yet valid", "expiring", "valid"


@dataclass(frozen=True)
class Validity:
    """Whether clients accept a certificate today, and how long they will."""

    state: str  # EXPIRED, NOT_YET_VALID (every client refuses it), EXPIRING, VALID
    words: str  # "expired on 2020-01-31 00:00 UTC", "12 days left (until 2027-01-05), ..."
    days_left: float | None

    @property
    def refused(self) -> bool:
        return self.state in (EXPIRED, NOT_YET_VALID)


def validity(not_before: datetime.datetime | None, not_after: datetime.datetime | None,
             renew_days: int, now: datetime.datetime | None = None) -> Validity:
    """A certificate valid from `not_before` to `not_after` (UTC; None: not known), today:
    EXPIRING when fewer than `renew_days` are left."""
    now = now or datetime.datetime.now(datetime.UTC)
    if not_after is not None and not_after <= now:
        return Validity(EXPIRED, f"expired on {not_after:%Y-%m-%d %H:%M} UTC",
                        (not_after - now).total_seconds() / 86400)
    if not_before is not None and not_before > now:
        return Validity(NOT_YET_VALID, f"is not valid before {not_before:%Y-%m-%d %H:%M} UTC",
                        None)
    if not_after is None:
        return Validity(VALID, "no expiry known", None)
    days = (not_after - now).total_seconds() / 86400
    words = f"{days:.0f} days left (until {not_after:%Y-%m-%d})"
    if days < renew_days:
        return Validity(EXPIRING, f"{words}, fewer than https.renew_days ({renew_days})", days)
    return Validity(VALID, words, days)


@dataclass(frozen=True)
class CertificateInfo:
    names: tuple[str, ...]
    issuer: str
    not_after: datetime.datetime  # UTC
    serial: str  # upper-case hex, as HAProxy shows it
    not_before: datetime.datetime | None = None  # UTC

    def days_left(self, now: datetime.datetime | None = None) -> float:
        now = now or datetime.datetime.now(datetime.UTC)
        return (self.not_after - now).total_seconds() / 86400

    def validity(self, renew_days: int, now: datetime.datetime | None = None) -> Validity:
        return validity(self.not_before, self.not_after, renew_days, now)

    @property
    def placeholder(self) -> bool:
        return PLACEHOLDER_ORGANIZATION in self.issuer


def describe(certificate: x509.Certificate) -> CertificateInfo:
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = tuple(san.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = ()
    return CertificateInfo(names=names, issuer=certificate.issuer.rfc4514_string(),
                           not_after=certificate.not_valid_after_utc,
                           serial=f"{certificate.serial_number:X}",
                           not_before=certificate.not_valid_before_utc)


def fingerprint(pem: str) -> str:
    """A short digest of a PEM file's content, to tell whether a server has this very one."""
    return hashlib.sha256(pem.encode()).hexdigest()[:16]


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CertificateError(f"{what}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CertificateError(f"{what}: cannot read {path}: {error}") from None


def check_private_file(path: Path, what: str) -> None:
    """A private key must be readable by its owner only, as ssh demands of its keys."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise CertificateError(
            f"{what}: {path} has mode {mode:04o}, readable by others; chmod 600 it (nothing "
            "was changed on any server)")


@dataclass(frozen=True)
class _Pem:
    """One part of https.files as read: its text and how to name it in an error."""

    text: str = field(repr=False)  # a private key, maybe: never shown
    key: str  # the inventory key it came from
    where: str  # "/path/privkey.pem" or "the environment variable TLS_KEY"
    secret: bool  # from the environment: nothing of its value goes into a message


def _read_part(files: CertificateFiles, part: str, environ: Mapping[str, str]) -> _Pem:
    variable = getattr(files, f"{part}_secret")
    if variable is None:
        path: Path = getattr(files, part)
        return _Pem(_read(path, f"https.files.{part}"), f"https.files.{part}", str(path), False)
    key = f"https.files.{part}_secret"
    value = environ.get(variable, "")
    if not value.strip():
        raise CertificateError(
            f"{key}: {variable} is {'empty' if variable in environ else 'not set'} in the "
            "environment of this run; export it with the PEM text first (nothing was changed "
            "on any server)")
    return _Pem(value, key, f"the environment variable {variable}", True)


def load_files(files: CertificateFiles, names: tuple[str, ...],
               environ: Mapping[str, str] | None = None) -> CertificateBundle:
    """The chain and key the inventory names (files, or environment variables of this run),
    checked: a key file private to its owner, the certificate made for that key, covering
    every name of https.names and valid today (an expired one would fail every client on
    every server). No message holds any of a variable's value."""
    environ = os.environ if environ is None else environ
    chain, key_part = _read_part(files, "chain", environ), _read_part(files, "key", environ)
    if files.key is not None:
        check_private_file(files.key, "https.files.key")
    try:
        certificates = x509.load_pem_x509_certificates(chain.text.encode())
    except ValueError as error:
        detail = "" if chain.secret else f" ({error})"
        raise CertificateError(f"{chain.key}: {chain.where} holds no PEM certificate"
                               f"{detail}") from None
    try:
        key = serialization.load_pem_private_key(key_part.text.encode(), password=None)
    except (ValueError, TypeError) as error:
        detail = "" if key_part.secret else f" ({error})"
        raise CertificateError(f"{key_part.key}: {key_part.where} holds no unencrypted PEM "
                               f"private key{detail}") from None
    leaf = certificates[0]
    if leaf.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise CertificateError(
            f"https.files: the certificate in {chain.where} was not made for the key in "
            f"{key_part.where} (nothing was changed on any server)")
    missing = [name for name in names if not covers(describe(leaf).names, name)]
    if missing:
        raise CertificateError(
            f"{chain.key}: the certificate does not cover {', '.join(missing)} (it is "
            f"for {', '.join(describe(leaf).names) or 'no DNS name'})")
    today = describe(leaf).validity(renew_days=0)
    if today.refused:
        raise CertificateError(
            f"{chain.key}: the certificate in {chain.where} {today.words}: every HTTPS client "
            "would refuse it (nothing was changed on any server)")
    return CertificateBundle(chain_pem=chain.text, key_pem=key_part.text, source=FILES_SOURCE)


def expiry_warning(files: CertificateFiles, bundle: CertificateBundle, renew_days: int
                   ) -> str | None:
    """What to tell the operator when the certificate of https.files has fewer than
    `renew_days` left (installed all the same: it is still valid)."""
    today = bundle.info().validity(renew_days)
    if today.state != EXPIRING:
        return None
    key = "https.files.chain_secret" if files.chain_secret else "https.files.chain"
    return f"WARNING: {key}: the certificate has {today.words}: put a renewed one in its place"


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def covers(certificate_names: tuple[str, ...], name: str) -> bool:
    """Whether a certificate for `certificate_names` is valid for `name` (one wildcard
    label, as browsers match it)."""
    for candidate in certificate_names:
        if candidate == name:
            return True
        wildcard_match = (candidate.startswith("*.") and "." in name
                          and not name.startswith("*")
                          and name.split(".", 1)[1] == candidate[2:])
        if wildcard_match:
            return True
    return False


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def placeholder(names: tuple[str, ...], days: int = 7) -> CertificateBundle:
    """A self-signed stand-in, so that HAProxy can start with HTTPS on before the CA has
    issued the real certificate (HAProxy refuses a `crt` it cannot load)."""
    key = new_private_key()
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, names[0].lstrip("*.")),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, PLACEHOLDER_ORGANIZATION),
    ])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateBundle(
        chain_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=private_key_pem(key), source=STAND_IN_SOURCE)


def write_private(path: Path, text: str) -> None:
    """Create or replace a file only its owner may read (its folder made 0700 if new)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
