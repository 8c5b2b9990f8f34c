"""Certificates from an ACME CA (RFC 8555: Let's Encrypt, or any other), issued from the
operator's machine with the `acme` library (certbot's own).

The CA's HTTP-01 challenges are answered by HAProxy on every server at once, statelessly:
`GET /.well-known/acme-challenge/TOKEN` answers `TOKEN.THUMBPRINT`, where THUMBPRINT is the
account key's JWK thumbprint, a constant of the config (see templates/haproxy.cfg.j2). So
whichever server the CA reaches answers, nothing is written per challenge, and the account
key never leaves this machine.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from slotswap.config.https import AcmeSettings
from slotswap.https.files import (
    AcmeError,
    CertificateBundle,
    acme_source,
    check_private_file,
    new_private_key,
    private_key_pem,
    write_private,
)

USER_AGENT = "slotswap"
ISSUE_TIMEOUT = 120  # seconds for the CA to validate every name and issue
NETWORK_TIMEOUT = 30  # seconds for each request to the CA
Progress = Callable[[str], None]


def _one_line(message: str) -> AcmeError:
    """The CA's words (which may span lines) as one line of error."""
    return AcmeError(" ".join(message.split()))


def load_account_key(settings: AcmeSettings, *, create: bool = True) -> jose.JWKRSA:
    """The ACME account key, created (RSA 2048, mode 0600) the first time."""
    path = settings.account_key
    if not path.exists():
        if not create:
            raise AcmeError(f"https.acme.account_key: {path} does not exist")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write_private(path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode())
    check_private_file(path, "https.acme.account_key")
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise AcmeError(f"https.acme.account_key: {path} is not an unencrypted PEM private "
                        f"key ({error})") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AcmeError(f"https.acme.account_key: {path} must be an RSA key")
    return jose.JWKRSA(key=key)


def thumbprint(key: jose.JWK) -> str:
    """The key authorization's second half: base64url(SHA-256 JWK thumbprint), RFC 7638."""
    return jose.b64encode(key.thumbprint()).decode()


def _client(settings: AcmeSettings, key: jose.JWKRSA) -> client.ClientV2:
    verify: bool | str = str(settings.ca_bundle) if settings.ca_bundle else True
    network = client.ClientNetwork(key, user_agent=USER_AGENT, verify_ssl=verify,
                                   timeout=NETWORK_TIMEOUT)  # type: ignore[arg-type]
    directory = client.ClientV2.get_directory(settings.directory, network)
    acme = client.ClientV2(directory, net=network)
    registration = messages.NewRegistration.from_data(
        email=settings.contact, terms_of_service_agreed=True)
    try:
        acme.new_account(registration)
    except errors.ConflictError as existing:  # this key has an account already
        acme.query_registration(messages.RegistrationResource(
            uri=existing.location, body=messages.Registration()))
    return acme


def unreachable_reason(error: BaseException, directory: str) -> str:
    """Why the CA at `directory` could not be reached, in a few plain words, from the error
    at the root of what requests raised (its own words are `HTTPSConnectionPool(host=...):
    Max retries exceeded with url: ... (Caused by ...)`)."""
    root = error
    while (inner := root.__cause__ or root.__context__) is not None:
        root = inner
    if isinstance(root, ssl.SSLCertVerificationError):
        why = getattr(root, "verify_message", None) or root.reason or "not trusted"
        return (f"its HTTPS certificate is not trusted (certificate verify failed: {why}); "
                "https.acme.ca_bundle names the CA that signed it")
    if isinstance(root, ssl.SSLError):
        return f"the TLS handshake failed ({root.reason or root})"
    if isinstance(root, socket.gaierror):
        return f"the name {urlsplit(directory).hostname} does not resolve"
    if isinstance(root, TimeoutError | requests.Timeout):
        return f"no answer within {NETWORK_TIMEOUT} seconds"
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    if isinstance(root, OSError) and root.strerror:
        return root.strerror[:1].lower() + root.strerror[1:]
    return str(root) or type(root).__name__


def challenges_to_answer(authorizations: Iterable[messages.AuthorizationResource]
                         ) -> dict[str, messages.ChallengeBody]:
    """The HTTP-01 challenge to answer, by name, of each authorization still `pending`. A CA
    may hand an order authorizations this account won lately, `valid` already (RFC 8555
    7.1.4; Let's Encrypt does): answering one of their challenges is refused."""
    found = {}
    for authorization in authorizations:
        if authorization.body.status != messages.STATUS_PENDING:
            continue
        for challenge in authorization.body.challenges:
            if isinstance(challenge.chall, challenges.HTTP01):
                found[authorization.body.identifier.value] = challenge
                break
    return found


def issue(settings: AcmeSettings, names: tuple[str, ...], progress: Progress
          ) -> CertificateBundle:
    """A new certificate for `names`, with a new private key. The servers' HAProxy must
    already answer the challenges for this account key (fab up renders that rule)."""
    try:
        key = load_account_key(settings)
        acme = _client(settings, key)
        certificate_key = private_key_pem(new_private_key())
        csr = crypto_util.make_csr(certificate_key.encode(), list(names))
        order = acme.new_order(csr)
        pending = challenges_to_answer(order.authorizations)
        for challenge in pending.values():
            acme.answer_challenge(challenge, challenge.response(key))
        reused = [name for name in names if name not in pending]
        if pending:
            progress(f"ACME: {settings.directory} validates {', '.join(pending)} over HTTP")
        if reused:
            progress(f"ACME: {', '.join(reused)} validated already (the CA reuses this "
                     "account's authorization)")
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=ISSUE_TIMEOUT)
        order = acme.poll_and_finalize(order, deadline)
    except AcmeError:
        raise
    except errors.ValidationError as error:
        problems = "; ".join(
            f"{authz.body.identifier.value}: {challenge.error.detail if challenge.error else '?'}"
            for authz in error.failed_authzrs for challenge in authz.body.challenges
            if challenge.error is not None)
        raise _one_line(f"the ACME CA could not validate the names ({problems}); nothing "
                        "was changed on any server") from None
    except (errors.Error, messages.Error) as error:
        raise _one_line(f"the ACME CA at {settings.directory} refused: {error}; nothing was "
                        "changed on any server") from None
    except requests.RequestException as error:
        raise _one_line(f"cannot reach the ACME CA at {settings.directory}: "
                        f"{unreachable_reason(error, settings.directory)}; nothing was "
                        "changed on any server") from None
    except OSError as error:  # the account key's file or folder
        raise _one_line(f"https.acme.account_key: {error}; nothing was changed on any "
                        "server") from None
    progress("ACME: certificate issued")
    return CertificateBundle(chain_pem=order.fullchain_pem, key_pem=certificate_key,
                             source=acme_source(settings.directory))
