"""The `https` section: the names, the certificate (files or ACME) and HTTPS's options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import values
from slotswap.config.env import name_problem
from slotswap.config.haproxy import HaproxySettings

LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"


DEFAULT_ACME_ACCOUNT_KEY = "~/.config/slotswap/acme-account.pem"


_DNS_NAME = re.compile(
    r"(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate of the operator's: the chain (the server's certificate first) and its
    private key, PEM, each from a file on the operator's machine or from an environment
    variable of the run (`chain_secret`, `key_secret` name it; a CI secret): one of the two
    for each. The variables' values are read when a task needs them, never shown."""

    chain: Path | None = None
    key: Path | None = None
    chain_secret: str | None = None
    key_secret: str | None = None


@dataclass(frozen=True)
class AcmeSettings:
    """A certificate from an ACME CA (RFC 8555), issued from the operator's machine; HAProxy
    answers the CA's HTTP-01 challenges on every server (see slotswap.https.acme)."""

    directory: str = LETS_ENCRYPT_DIRECTORY
    contact: str | None = None  # an e-mail address for the CA's notices
    account_key: Path = Path(DEFAULT_ACME_ACCOUNT_KEY)  # created (0600) when missing
    ca_bundle: Path | None = None  # trust for the directory's own HTTPS (a private CA)


@dataclass(frozen=True)
class HttpsSettings:
    port: int = 443
    names: tuple[str, ...] = ()  # the names clients use; the certificate covers them all
    files: CertificateFiles | None = None
    acme: AcmeSettings | None = None
    redirect: bool = True  # plain HTTP answers a redirect to HTTPS (not the ACME challenges)
    hsts: int = 0  # Strict-Transport-Security max-age in seconds; 0: no header
    renew_days: int = 30  # `certs.renew` renews a certificate with fewer days left


HTTPS_KEYS = ("port", "names", "files", "acme", "redirect", "hsts", "renew_days")


CERT_FILE_KEYS = ("chain", "key", "chain_secret", "key_secret")


ACME_KEYS = ("directory", "contact", "account_key", "ca_bundle")


def parse_https(value: object, haproxy: HaproxySettings, base: Path) -> HttpsSettings | None:
    if value is None:
        return None
    section = values.mapping(value, "https", HTTPS_KEYS, required=("names",))
    defaults = HttpsSettings()
    if ("files" in section) == ("acme" in section):
        raise values.Invalid("https", "expected exactly one of files (a certificate and key of "
                       "yours) or acme (certificates from an ACME CA such as Let's Encrypt)")
    files = acme = None
    if "files" in section:
        files = _certificate_files(section["files"], base)
    else:
        fields = values.mapping(section["acme"] or {}, "https.acme", ACME_KEYS)
        directory = values.string(fields.get("directory", LETS_ENCRYPT_DIRECTORY),
                            "https.acme.directory", "the https:// URL of an ACME directory")
        if not re.fullmatch(r"https://[^\s\\\"']+", directory):
            raise values.Invalid("https.acme.directory",
                           f"expected an https:// URL, got {values.describe(directory)}")
        contact = None
        if fields.get("contact") is not None:
            contact = values.string(fields["contact"], "https.acme.contact", "an e-mail address")
            if not re.fullmatch(r"[^@\s:]+@[^@\s:]+", contact):
                raise values.Invalid("https.acme.contact",
                               f"expected an e-mail address, got {values.describe(contact)}")
        acme = AcmeSettings(
            directory=directory, contact=contact,
            account_key=values.path(fields.get("account_key", DEFAULT_ACME_ACCOUNT_KEY),
                              "https.acme.account_key", base),
            ca_bundle=values.optional_path(fields, "ca_bundle", "https.acme.ca_bundle", base))
    names = section["names"]
    if not isinstance(names, list) or not names:
        raise values.Invalid("https.names", "expected a list of the DNS names clients use, got "
                       f"{values.describe(names)}")
    checked = tuple(_dns_name(name, f"https.names[{index}]", wildcard=files is not None)
                    for index, name in enumerate(names))
    port = values.port(section.get("port", defaults.port), "https.port")
    if port == haproxy.http_port:
        raise values.Invalid("https.port", f"must differ from haproxy.http_port, got {port}")
    if port in haproxy.slot_ports:
        raise values.Invalid("https.port", f"must differ from haproxy.slot_ports, got {port}")
    hsts = section.get("hsts", defaults.hsts)
    if isinstance(hsts, bool) or not isinstance(hsts, int) or not 0 <= hsts <= 63_072_000:
        raise values.Invalid("https.hsts", "expected a max-age in seconds from 0 (no header) to "
                       f"63072000 (2 years), got {values.describe(hsts)}")
    return HttpsSettings(
        port=port, names=checked, files=files, acme=acme,
        redirect=values.boolean(section.get("redirect", defaults.redirect), "https.redirect"),
        hsts=hsts,
        renew_days=values.integer(section.get("renew_days", defaults.renew_days),
                                  "https.renew_days", 1, 89),
    )


def _certificate_files(value: object, base: Path) -> CertificateFiles:
    """Each of chain and key: a path (`chain`) or the environment variable holding the PEM
    text (`chain_secret`), not both."""
    fields = values.mapping(value, "https.files", CERT_FILE_KEYS)
    found: dict[str, object] = {}
    for part in ("chain", "key"):
        secret = f"{part}_secret"
        if (part in fields) == (secret in fields):
            raise values.Invalid(f"https.files.{part}", (
                f"give one of {part} (a file) or {secret} (an environment variable holding "
                "the PEM text), not both" if part in fields else "required key is missing "
                f"(or {secret}, an environment variable holding the PEM text)"))
        if part in fields:
            found[part] = values.path(fields[part], f"https.files.{part}", base)
        else:
            problem = name_problem(fields[secret])
            if problem is not None:
                raise values.Invalid(f"https.files.{secret}", problem)
            found[secret] = str(fields[secret])
    return CertificateFiles(**found)  # type: ignore[arg-type]


def _dns_name(value: object, key: str, *, wildcard: bool) -> str:
    name = values.string(value, key, "a DNS name such as www.example.com")
    if not _DNS_NAME.fullmatch(name) or (name.startswith("*") and not wildcard):
        allowed = " (a wildcard *.example.com only with https.files)" if not wildcard else ""
        raise values.Invalid(key, f"expected a lowercase DNS name{allowed}, "
                                  f"got {values.describe(name)}")
    return name
