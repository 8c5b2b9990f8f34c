"""The `https` section: the names, the certificate (files or ACME) and HTTPS's options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slotswap.config import kinds, values
from slotswap.config.fields import (
    Context,
    Kind,
    checked_section,
    parse_fields,
    section_schema,
    setting,
)
from slotswap.config.haproxy import HaproxySettings

LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"
DEFAULT_ACME_ACCOUNT_KEY = "~/.config/slotswap/acme-account.pem"
_DNS_NAME = re.compile(
    r"(?=.{1,253}$)(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _directory(value: object, key: str, _: Context) -> str:
    return values.matching(value, key, r"https://[^\s\\\"']+",
                           "the https:// URL of an ACME directory", "an https:// URL")


def _contact(value: object, key: str, _: Context) -> str:
    return values.matching(value, key, r"[^@\s:]+@[^@\s:]+", "an e-mail address",
                           "an e-mail address")


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate of the operator's: the chain (the server's certificate first) and its
    private key, PEM, each from a file on the operator's machine or from an environment
    variable of the run (`chain_secret`, `key_secret` name it; a CI secret): one of the two
    for each. The variables' values are read when a task needs them, never shown."""

    chain: Path | None = setting(kinds.PATH, None,
                                 description="PEM chain, the server's certificate first.")
    key: Path | None = setting(kinds.PATH, None, description="PEM private key, mode 0600.")
    chain_secret: str | None = setting(
        kinds.ENV_NAME, None, description="Instead of chain: the environment variable of the "
        "run that holds the PEM chain.")
    key_secret: str | None = setting(
        kinds.ENV_NAME, None, description="Instead of key: the environment variable of the "
        "run that holds the PEM private key (a CI secret).")


def _certificate_files(value: object, key: str, context: Context) -> CertificateFiles:
    """Each of chain and key: a path (`chain`) or the environment variable holding the PEM
    text (`chain_secret`), not both."""
    fields = checked_section(CertificateFiles, value, key)
    found: dict[str, object] = {}
    for part in ("chain", "key"):
        secret = f"{part}_secret"
        if (part in fields) == (secret in fields):
            raise values.Invalid(f"{key}.{part}", (
                f"give one of {part} (a file) or {secret} (an environment variable holding "
                "the PEM text), not both" if part in fields else "required key is missing "
                f"(or {secret}, an environment variable holding the PEM text)"))
        found.update(parse_fields(CertificateFiles, fields, key, context,
                                  order=(part if part in fields else secret,)))
    return CertificateFiles(**found)  # type: ignore[arg-type]


def _one_of(*names: str) -> dict[str, object]:
    return {"oneOf": [{"required": [name]} for name in names]}


_FILES = section_schema(CertificateFiles, nullable=False)
_FILES["allOf"] = [_one_of("chain", "chain_secret"), _one_of("key", "key_secret")]


@dataclass(frozen=True)
class AcmeSettings:
    """A certificate from an ACME CA (RFC 8555), issued from the operator's machine; HAProxy
    answers the CA's HTTP-01 challenges on every server (see slotswap.https.acme)."""

    directory: str = setting(Kind(_directory, {"type": "string", "pattern": "^https://"}),
                             LETS_ENCRYPT_DIRECTORY)
    contact: str | None = setting(  # an e-mail address for the CA's notices
        Kind(_contact, {"type": "string"}), None, blank="null",
        description="E-mail address for the CA's notices.")
    account_key: Path = setting(  # created (0600) when missing
        kinds.PATH, Path(DEFAULT_ACME_ACCOUNT_KEY), file_default=DEFAULT_ACME_ACCOUNT_KEY)
    ca_bundle: Path | None = setting(  # trust for the directory's own HTTPS (a private CA)
        kinds.PATH, None, description="Trust for the directory's own HTTPS (a private CA).")


def _acme(value: object, key: str, context: Context) -> AcmeSettings:
    fields = checked_section(AcmeSettings, value or {}, key)
    return AcmeSettings(**parse_fields(AcmeSettings, fields, key, context))


def dns_name(value: object, key: str, *, wildcard: bool) -> str:
    """A host name as the kit takes it: lower case, `*.` a one-label wildcard (when allowed);
    raises values.Invalid at ``key``. Also the check of names read back from a server."""
    name = values.string(value, key, "a DNS name such as www.example.com")
    if not _DNS_NAME.fullmatch(name) or (name.startswith("*") and not wildcard):
        allowed = " (a wildcard *.example.com only with https.files)" if not wildcard else ""
        raise values.Invalid(key, f"expected a lowercase DNS name{allowed}, "
                                  f"got {values.describe(name)}")
    return name


def _names(value: object, key: str, context: Context) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise values.Invalid(key, "expected a list of the DNS names clients use, got "
                                  f"{values.describe(value)}")
    wildcard = context.parsed.get("files") is not None
    return tuple(dns_name(name, f"{key}[{index}]", wildcard=wildcard)
                 for index, name in enumerate(value))


def _port(value: object, key: str, context: Context) -> int:
    port = values.port(value, key)
    assert context.outer is not None
    haproxy = context.outer.parsed["haproxy"]
    assert isinstance(haproxy, HaproxySettings)
    if port == haproxy.http_port:
        raise values.Invalid(key, f"must differ from haproxy.http_port, got {port}")
    if port in haproxy.slot_ports:
        raise values.Invalid(key, f"must differ from haproxy.slot_ports, got {port}")
    return port


def _hsts(value: object, key: str, _: Context) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 63_072_000:
        raise values.Invalid(key, "expected a max-age in seconds from 0 (no header) to "
                                  f"63072000 (2 years), got {values.describe(value)}")
    return value


# HAProxy's HTTPS port when the inventory leaves https.port out (also the shared HAProxy's,
# when no app on the server sets it).
DEFAULT_HTTPS_PORT = 443


@dataclass(frozen=True)
class HttpsSettings:
    port: int = setting(Kind(_port, kinds.ref("port")), DEFAULT_HTTPS_PORT,
                        file_default=DEFAULT_HTTPS_PORT)
    names: tuple[str, ...] = setting(  # the names clients use; the certificate covers them all
        Kind(_names, {"type": "array", "minItems": 1, "items": {"type": "string"}}), (),
        required=True, description="The DNS names clients use; the certificate covers them all.")
    files: CertificateFiles | None = setting(Kind(_certificate_files, _FILES), None)
    acme: AcmeSettings | None = setting(Kind(_acme, section_schema(AcmeSettings)), None)
    redirect: bool = setting(  # plain HTTP answers a redirect to HTTPS (not the ACME challenges)
        kinds.BOOLEAN, True, description="Plain HTTP answers 301 to HTTPS (except ACME "
        "challenges): to the Host's name when it is one of names, else to the first name.")
    hsts: int = setting(  # Strict-Transport-Security max-age in seconds; 0: no header
        Kind(_hsts, {"type": "integer", "minimum": 0, "maximum": 63_072_000}), 0,
        description="Strict-Transport-Security max-age in seconds; 0: no header.")
    # `certs.renew` renews a certificate with fewer days left
    renew_days: int = setting(kinds.integer(1, 89), 30)


def parse_https(section: dict[str, object], key: str, context: Context) -> HttpsSettings:
    if ("files" in section) == ("acme" in section):
        raise values.Invalid(key, "expected exactly one of files (a certificate and key of "
                                  "yours) or acme (certificates from an ACME CA such as "
                                  "Let's Encrypt)")
    return HttpsSettings(**parse_fields(
        HttpsSettings, section, key, context,
        order=("files", "acme", "names", "port", "hsts", "redirect", "renew_days")))


def _route_names(value: object, key: str, context: Context) -> tuple[str, ...]:
    """The top-level `names`: the host names an HTTP-only app answers in the server's shared
    HAProxy (an HTTPS app's are https.names: one list for each app, never both)."""
    haproxy = context.parsed["haproxy"]
    assert isinstance(haproxy, HaproxySettings)
    if value is None:
        if haproxy.shared and context.parsed.get("https") is None and not haproxy.default:
            raise values.Invalid(key, "required with haproxy.shared: true and no https "
                                      "section: the host names routed to this app (or "
                                      "haproxy.default: true, for every name no app claims)")
        return ()
    if not isinstance(value, list) or not value:
        raise values.Invalid(key, "expected a list of the DNS names clients use, got "
                                  f"{values.describe(value)}")
    if context.parsed.get("https") is not None:
        raise values.Invalid(key, "with an https section, the app's names are https.names: "
                                  "remove names")
    if not haproxy.shared:
        raise values.Invalid(key, "only with haproxy.shared: true (the shared HAProxy routes "
                                  "by them; an app's own HAProxy answers every name)")
    names = tuple(dns_name(name, f"{key}[{index}]", wildcard=True)
                  for index, name in enumerate(value))
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise values.Invalid(key, f"{repeated[0]} is listed twice")
    return names


NAMES = Kind(_route_names, {"type": ["array", "null"], "minItems": 1,
                            "items": {"type": "string", "pattern": kinds.pattern(_DNS_NAME)}})

_SECTION = kinds.section(HttpsSettings, parse_https, optional=True)
HTTPS = Kind(_SECTION.check, {**_SECTION.schema, **_one_of("files", "acme")})
