"""The ACME client against a CA that answers as RFC 8555 lets it (authorizations this account
won already), and a CA that cannot be reached (one plain sentence, not requests' words)."""

from __future__ import annotations

import itertools
import socket
import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from acme import challenges, messages

from slotswap.config.https import AcmeSettings
from slotswap.https import acme as acme_client
from slotswap.https.acme import AcmeError, issue

NAMES = ("www.example.com", "example.com")
DIRECTORY = "https://ca.example/dir"


def authorization(name: str, status: messages.Status) -> messages.AuthorizationResource:
    challenge = messages.ChallengeBody(
        chall=challenges.HTTP01(token=b"t" * 32), uri=f"https://ca.example/chall/{name}",
        status=status)
    return messages.AuthorizationResource(
        uri=f"https://ca.example/authz/{name}",
        body=messages.Authorization(
            identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name),
            challenges=[challenge], status=status))


class ReusingCa:
    """An order whose authorizations have the given statuses; answering the challenge of one
    that is not pending is refused, as pebble and Let's Encrypt refuse it."""

    def __init__(self, statuses: dict[str, messages.Status]) -> None:
        self.authorizations = [authorization(name, status) for name, status in statuses.items()]
        self.answered: list[str] = []

    def new_order(self, csr: bytes) -> SimpleNamespace:
        return SimpleNamespace(authorizations=self.authorizations)

    def answer_challenge(self, challenge: messages.ChallengeBody, response: object) -> None:
        if challenge.status != messages.STATUS_PENDING:
            raise messages.Error(typ="urn:ietf:params:acme:error:malformed",
                                 detail=f"Cannot update challenge with status "
                                        f"{challenge.status}, only status pending")
        self.answered.append(challenge.uri.rsplit("/", 1)[-1])

    def poll_and_finalize(self, order: object, deadline: object) -> SimpleNamespace:
        return SimpleNamespace(fullchain_pem="CHAIN")


def settings(tmp_path: Path) -> AcmeSettings:
    return AcmeSettings(directory=DIRECTORY, account_key=tmp_path / "account.pem")


@pytest.mark.parametrize("statuses", [
    {"www.example.com": messages.STATUS_PENDING, "example.com": messages.STATUS_PENDING},
    {"www.example.com": messages.STATUS_VALID, "example.com": messages.STATUS_PENDING},
    {"www.example.com": messages.STATUS_VALID, "example.com": messages.STATUS_VALID},
])
def test_only_the_challenges_of_pending_authorizations_are_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        statuses: dict[str, messages.Status]) -> None:
    ca = ReusingCa(statuses)
    monkeypatch.setattr(acme_client, "_client", lambda settings, key: ca)
    said: list[str] = []
    bundle = issue(settings(tmp_path), NAMES, said.append)
    assert bundle.chain_pem == "CHAIN"
    pending = [n for n, s in statuses.items() if s == messages.STATUS_PENDING]
    assert ca.answered == pending
    reused = [n for n, s in statuses.items() if s == messages.STATUS_VALID]
    if reused:
        assert f"ACME: {', '.join(reused)} validated already" in "\n".join(said)


def test_a_ca_that_refuses_the_connection_is_said_in_one_sentence(tmp_path: Path) -> None:
    directory = "https://127.0.0.1:1/dir"  # nothing listens on port 1 of loopback
    with pytest.raises(AcmeError) as raised:
        issue(AcmeSettings(directory=directory, account_key=tmp_path / "account.pem"), NAMES,
              lambda line: None)
    assert str(raised.value) == (f"cannot reach the ACME CA at {directory}: connection "
                                 "refused; nothing was changed on any server")


def untrusted(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate "
                                            f"verify failed: {message}")
    error.verify_message = message  # set by the ssl module on a real handshake
    return error


def chained(*errors: BaseException) -> BaseException:
    """The outermost of `errors`, each caused by the next (as requests raises them)."""
    for outer, inner in itertools.pairwise(errors):
        outer.__cause__ = inner
    return errors[0]


@pytest.mark.parametrize(("error", "reason"), [
    (chained(requests.ConnectionError("HTTPSConnectionPool(host='ca.example', port=443): Max "
                                      "retries exceeded with url: /dir (Caused by ...)"),
             socket.gaierror(-2, "Name or service not known")),
     "the name ca.example does not resolve"),
    (chained(requests.ConnectTimeout("HTTPSConnectionPool(...)"), TimeoutError("timed out")),
     "no answer within 30 seconds"),
    (chained(requests.exceptions.SSLError("HTTPSConnectionPool(...)"),
             untrusted("self-signed certificate")),
     "its HTTPS certificate is not trusted (certificate verify failed: self-signed "
     "certificate); https.acme.ca_bundle names the CA that signed it"),
    (chained(requests.ConnectionError("HTTPSConnectionPool(...)"),
             OSError(101, "Network is unreachable")),
     "network is unreachable"),
])
def test_why_a_ca_cannot_be_reached_is_said_plainly(error: BaseException, reason: str) -> None:
    assert acme_client.unreachable_reason(error, DIRECTORY) == reason

