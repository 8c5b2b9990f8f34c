"""HTTPS: a certificate from environment variables (https.files.*_secret), when a server's
certificate is renewed (certs.why_renew), an install HAProxy refuses (tls.install) and the
redirect to a non-default HTTPS port."""

from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path

import pytest

from slotswap.cli.check import settings_lines
from slotswap.commands.runtime_api import RuntimeApiError, raise_for_api_error
from slotswap.config import layout
from slotswap.config.https import CertificateFiles, HttpsSettings
from slotswap.config.inventory import Inventory, InventoryError
from slotswap.config.loader import load_inventory
from slotswap.fleet import certs
from slotswap.https import install as tls
from slotswap.https.acme import AcmeError
from slotswap.https.files import (
    FILES_SOURCE,
    STAND_IN_SOURCE,
    CertificateBundle,
    CertificateError,
    acme_source,
    load_files,
)
from slotswap.server.haproxy_config import Login, redirect_names, render_config
from testbed.private_ca import issue, make_ca
from tests.unit.fake_server import FakeServer

NAMES = ("www.example.com", "example.com")
BASE = "app: webapp\nimage: r.example/webapp\nhosts: [192.0.2.1]\n"


@pytest.fixture(scope="module")
def pair() -> tuple[str, str]:
    return issue(make_ca(), list(NAMES))


def load(tmp_path: Path, text: str) -> Inventory:
    (tmp_path / "hosts.yaml").write_text(BASE + text)
    return load_inventory(tmp_path / "hosts.yaml")


# -- https.files from the environment ------------------------------------------------------

def test_chain_and_key_from_the_environment_are_the_same_as_from_files(
        tmp_path: Path, pair: tuple[str, str]) -> None:
    chain, key = pair
    (tmp_path / "chain.pem").write_text(chain)
    (tmp_path / "key.pem").write_text(key)
    (tmp_path / "key.pem").chmod(0o600)
    from_files = load_files(CertificateFiles(tmp_path / "chain.pem", tmp_path / "key.pem"),
                            NAMES)
    inventory = load(tmp_path, "https: {names: [www.example.com, example.com], files: "
                               "{chain_secret: TLS_CHAIN, key_secret: TLS_KEY}}\n")
    assert inventory.https is not None and inventory.https.files is not None
    from_env = load_files(inventory.https.files, NAMES, {"TLS_CHAIN": chain, "TLS_KEY": key})
    assert from_env.haproxy_pem() == from_files.haproxy_pem()
    assert from_env.source == FILES_SOURCE
    # One from a file, the other from the environment: the key the secret part.
    mixed = CertificateFiles(chain=tmp_path / "chain.pem", key_secret="TLS_KEY")
    assert load_files(mixed, NAMES, {"TLS_KEY": key}).haproxy_pem() == from_files.haproxy_pem()
    assert key not in repr(from_env) and "PRIVATE KEY" not in repr(from_env)


@pytest.mark.parametrize(("files", "problem"), [
    ("{chain: c.pem, chain_secret: TLS_CHAIN, key_secret: TLS_KEY}",
     "https.files.chain: give one of chain (a file) or chain_secret"),
    ("{chain_secret: TLS_CHAIN}", "https.files.key: required key is missing (or key_secret"),
    ("{chain_secret: TLS_CHAIN, key: k.pem, key_secret: TLS_KEY}",
     "https.files.key: give one of key (a file) or key_secret"),
    ("{chain_secret: 1TLS, key_secret: TLS_KEY}",
     "https.files.chain_secret: expected a variable name"),
    ("{chain_secret: TLS_CHAIN, key_secret: TLS-KEY}",
     "https.files.key_secret: expected a variable name"),
])
def test_the_environment_form_is_validated(tmp_path: Path, files: str, problem: str) -> None:
    with pytest.raises(InventoryError, match=re.escape(problem)):
        load(tmp_path, f"https: {{names: [a.example], files: {files}}}\n")


SECRETS = CertificateFiles(chain_secret="TLS_CHAIN", key_secret="TLS_KEY")


def test_an_unset_or_empty_variable_is_named(pair: tuple[str, str]) -> None:
    chain, _ = pair
    with pytest.raises(CertificateError, match=r"https\.files\.key_secret: TLS_KEY is not set "
                                               r"in the environment of this run; export it"):
        load_files(SECRETS, NAMES, {"TLS_CHAIN": chain})
    with pytest.raises(CertificateError, match=r"TLS_CHAIN is empty in the environment"):
        load_files(SECRETS, NAMES, {"TLS_CHAIN": "", "TLS_KEY": "x"})


def test_a_variable_without_pem_is_refused_without_showing_its_value(
        pair: tuple[str, str]) -> None:
    chain, key = pair
    with pytest.raises(CertificateError) as not_a_key:
        load_files(SECRETS, NAMES, {"TLS_CHAIN": chain, "TLS_KEY": "hunter2-not-a-key"})
    assert "the environment variable TLS_KEY holds no unencrypted PEM private key" \
        in str(not_a_key.value)
    assert "hunter2" not in str(not_a_key.value)
    with pytest.raises(CertificateError, match=r"TLS_CHAIN holds no PEM certificate$"):
        load_files(SECRETS, NAMES, {"TLS_CHAIN": "hunter2", "TLS_KEY": key})
    _, other_key = issue(make_ca(), list(NAMES))
    with pytest.raises(CertificateError) as mismatch:
        load_files(SECRETS, NAMES, {"TLS_CHAIN": chain, "TLS_KEY": other_key})
    assert "the certificate in the environment variable TLS_CHAIN was not made for the key " \
        "in the environment variable TLS_KEY" in str(mismatch.value)
    assert "PRIVATE KEY" not in str(mismatch.value)


def test_check_names_the_variables_and_whether_they_are_set_never_their_values(
        tmp_path: Path, pair: tuple[str, str]) -> None:
    _, key = pair
    inventory = load(tmp_path, "https: {names: [a.example], files: "
                               "{chain_secret: TLS_CHAIN, key_secret: TLS_KEY}}\n")
    lines = list(settings_lines(inventory, {"TLS_KEY": key}))
    assert "https.files.chain_secret: TLS_CHAIN (NOT SET in this environment)" in lines
    assert "https.files.key_secret: TLS_KEY (set in this environment)" in lines
    assert "https.files.chain: (not set)" in lines
    assert not any("PRIVATE KEY" in line or "CERTIFICATE" in line for line in lines)


# -- certs.why_renew ---------------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.UTC)


def served(days: float, names: tuple[str, ...] = NAMES, issuer: str = "/CN=R3"
           ) -> tls.ServedCertificate:
    return tls.ServedCertificate(serial="1A", not_after=NOW + datetime.timedelta(days=days),
                                 names=names, issuer=issuer)


def acme_https(tmp_path: Path) -> HttpsSettings:
    inventory = load(tmp_path, "https: {names: [www.example.com, example.com], acme: "
                               "{directory: 'https://ca.example/dir', account_key: a.pem}}\n")
    assert inventory.https is not None
    return inventory.https


def test_renewed_when_fewer_than_renew_days_are_left(tmp_path: Path) -> None:
    https = acme_https(tmp_path)
    source = acme_source("https://ca.example/dir")
    assert certs.why_renew(https, served(31), source) is None
    assert certs.why_renew(https, served(29), source) == "29 days are left (renewal under 30)"


def test_renewed_when_there_is_none_the_stand_in_or_a_name_is_missing(tmp_path: Path) -> None:
    https = acme_https(tmp_path)
    assert certs.why_renew(https, None) == "it serves none"
    stand_in = served(7, issuer="CN=example.com,O=slotswap placeholder")
    assert certs.why_renew(https, stand_in, STAND_IN_SOURCE) == \
        "it serves the stand-in certificate"
    assert certs.why_renew(https, served(80, names=("www.example.com",))) == \
        "it does not cover example.com"


def test_a_certificate_from_another_source_is_replaced(tmp_path: Path) -> None:
    https = acme_https(tmp_path)
    assert certs.why_renew(https, served(80), FILES_SOURCE) == (
        "it came from files, the inventory says acme https://ca.example/dir")
    assert certs.why_renew(https, served(80), acme_source("https://staging.example/dir"))
    assert certs.why_renew(https, served(80), None) is None  # not recorded: names and days


def test_force_renews_a_certificate_that_is_not_due(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = load(tmp_path, "https: {names: [www.example.com, example.com], acme: "
                               "{directory: 'https://ca.example/dir', account_key: a.pem}}\n")
    good = certs.ServerCertificate("s1", "192.0.2.1", served(80),
                                   source=acme_source("https://ca.example/dir"))
    monkeypatch.setattr(certs, "read_fleet", lambda inv: [good])
    issued: list[tuple[str, ...]] = []

    def fake_issue(settings: object, names: tuple[str, ...], progress: object) -> None:
        issued.append(names)
        raise AcmeError("stop here")

    monkeypatch.setattr(certs, "issue", fake_issue)
    assert [r.text for r in certs.renew(inventory, force=False)] == ["unchanged"]
    assert issued == []
    with pytest.raises(AcmeError, match="stop here"):
        certs.renew(inventory, force=True)
    assert issued == [NAMES]


def test_the_acme_dry_run_says_why_and_asks_the_ca_for_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = load(tmp_path, "https: {names: [www.example.com, example.com], acme: "
                               "{directory: 'https://ca.example/dir', account_key: a.pem}}\n")
    due = certs.ServerCertificate("s1", "192.0.2.1", served(10),
                                  source=acme_source("https://ca.example/dir"))
    monkeypatch.setattr(certs, "read_fleet", lambda inv: [due])
    monkeypatch.setattr(certs, "issue", lambda *args: pytest.fail("the CA was asked"))
    renewal = certs.plan_renewal(inventory, force=False)
    assert renewal.bundle is None and renewal.ends is None
    lines = certs.renewal_lines(inventory.https, renewal)  # type: ignore[arg-type]
    assert lines[0] == "s1: renewing: 10 days are left (renewal under 30)"
    assert "issued by https://ca.example/dir" in lines[1]
    good = dataclasses.replace(due, served=served(80))
    monkeypatch.setattr(certs, "read_fleet", lambda inv: [good])
    quiet = certs.plan_renewal(inventory, force=False)
    assert [r.text for r in quiet.ends or []] == ["unchanged"]
    assert certs.renewal_lines(inventory.https, quiet)[0].startswith(  # type: ignore[arg-type]
        "every server's certificate is good for 80 more days; nothing to do")
    assert certs.plan_renewal(inventory, force=True).ends is None


# -- tls.install: what HAProxy serves, not only the file ------------------------------------

def show_ssl_cert(bundle: CertificateBundle) -> str:
    info = bundle.info()
    return (f"Filename: {layout.cert_path_in_haproxy()}\nStatus: Used\nSerial: {info.serial}\n"
            f"notAfter: {info.not_after:%b %d %H:%M:%S %Y} GMT\n"
            f"Subject Alternative Name: {', '.join('DNS:' + n for n in info.names)}\n"
            f"Issuer: /CN=slotswap test CA\n")


class TlsServer(FakeServer):
    """The certificate file on the server and what its HAProxy serves; `sent` has the first
    line of every runtime-API command."""

    def __init__(self, serving: CertificateBundle) -> None:
        super().__init__()
        self.serving, self.pending = serving, None
        self.refuse_commit = False
        self.lose_commit_answer = False  # the commit runs, its answer never comes
        self.commit_fails = False  # HAProxy could not build the new certificate's contexts

    def runtime_api(self, command: str) -> str:
        self.sent.append(command.split("\n", 1)[0])
        if command.startswith("show ssl cert "):
            return show_ssl_cert(self.serving)
        if command.startswith("set ssl cert "):
            self.pending = command
            return "Transaction created for certificate\n"
        if command.startswith("commit ssl cert "):
            if self.refuse_commit:
                raise RuntimeApiError(f"s1: HAProxy refused `{command}`: out of memory")
            if self.commit_fails:  # ssl_ckch.c: no error marker, "Failed!" at the end
                return f"Committing {command.split()[-1]}\nunable to build SSL_CTX\nFailed!\n"
            self.serving, self.pending = self.bundle_set, None
            if self.lose_commit_answer:
                raise RuntimeApiError(f"s1: runtime API `{command}`: no answer from HAProxy "
                                      "within 10s")
            return "Success!\n"
        if command.startswith("abort ssl cert "):
            return "Transaction aborted\n" if self.pending else "No ongoing transaction!\n"
        raise AssertionError(command)

    bundle_set: CertificateBundle


def bundle_for(names: tuple[str, ...] = NAMES) -> CertificateBundle:
    chain, key = issue(make_ca(), list(names))
    return CertificateBundle(chain, key, FILES_SOURCE)


CONFIG_DIR = "/etc/slotswap/webapp/haproxy"
CERT_FILE = layout.cert_path_on_server(CONFIG_DIR)


def install(server: TlsServer, bundle: CertificateBundle) -> bool:
    server.bundle_set = bundle
    return tls.install(server, None, CONFIG_DIR, bundle, lambda line: None,  # type: ignore[arg-type]
                       running=True)


def test_a_refused_commit_leaves_the_file_and_the_next_run_installs_again() -> None:
    old, new = bundle_for(), bundle_for()
    server = TlsServer(serving=old)
    server.files[CERT_FILE] = old.haproxy_pem()
    server.refuse_commit = True
    with pytest.raises(tls.TlsError, match="could not commit the new certificate"):
        install(server, new)
    assert server.files[CERT_FILE] == old.haproxy_pem()  # what a restart loads: still the old
    assert server.sent[-1].startswith("abort ssl cert")
    server.refuse_commit = False
    assert install(server, new) is True
    assert server.serving is new and server.files[CERT_FILE] == new.haproxy_pem()
    assert server.files[layout.source_path_on_server(CONFIG_DIR)] == "files\n"
    assert install(server, new) is False  # unchanged: the file and what HAProxy serves


def test_a_commit_haproxy_answers_failed_is_a_refusal() -> None:
    old, new = bundle_for(), bundle_for()
    server = TlsServer(serving=old)
    server.files[CERT_FILE] = old.haproxy_pem()
    server.commit_fails = True
    with pytest.raises(tls.TlsError, match=r"could not commit.*Failed!") as refused:
        install(server, new)
    assert "\n" not in str(refused.value)
    assert server.serving is old and server.files[CERT_FILE] == old.haproxy_pem()
    assert server.sent[-1].startswith("abort ssl cert")


def test_a_commit_whose_answer_was_lost_is_read_back_not_reported_failed() -> None:
    """The commit ran, its answer was lost: HAProxy serves the new certificate, so the
    install goes on (the file written), instead of an error saying it could not commit."""
    old, new = bundle_for(), bundle_for()
    server = TlsServer(serving=old)
    server.files[CERT_FILE] = old.haproxy_pem()
    server.lose_commit_answer = True
    assert install(server, new) is True
    assert server.serving is new and server.files[CERT_FILE] == new.haproxy_pem()
    assert not any(c.startswith("abort ssl cert") for c in server.sent)


def test_a_file_in_place_that_haproxy_does_not_serve_is_not_unchanged() -> None:
    old, new = bundle_for(), bundle_for()
    server = TlsServer(serving=old)
    server.files[CERT_FILE] = new.haproxy_pem()  # written, then the runtime API refused
    assert install(server, new) is True
    assert server.serving is new
    assert any(c.startswith("commit ssl cert") for c in server.sent)


@pytest.mark.parametrize(("command", "answer"), [
    # HAProxy 2.6 (ssl_ckch.c): a commit with no transaction (a restart between `set` and
    # `commit` lost it), a payload it cannot load. Both were taken for a success: the kit
    # said the certificate was installed while HAProxy served the old one.
    ("commit ssl cert /c.pem", "No ongoing transaction! !\nCan't commit /c.pem!\n"),
    ("set ssl cert /c.pem <<", "unable to load the payload\nCan't update /c.pem!\n"),
])
def test_haproxys_refusals_of_a_certificate_are_errors(command: str, answer: str) -> None:
    with pytest.raises(RuntimeApiError, match="Can't") as refused:
        raise_for_api_error(command, answer)
    assert "\n" not in str(refused.value)  # said in one line


def test_is_in_place_compares_the_file_and_the_serial_served() -> None:
    bundle = bundle_for()
    pem_digest = tls.fingerprint(bundle.haproxy_pem())
    serving = tls.parse_show_ssl_cert(show_ssl_cert(bundle))
    other = tls.parse_show_ssl_cert(show_ssl_cert(bundle_for()))
    assert tls.is_in_place(bundle, pem_digest, serving, running=True) == (True, True)
    assert tls.is_in_place(bundle, pem_digest, other, running=True) == (True, False)
    assert tls.is_in_place(bundle, None, None, running=False) == (False, True)


# -- the redirect to HTTPS -------------------------------------------------------------------

@pytest.mark.parametrize(("https", "port"), [
    ("{names: [a.example, b.example], acme: {account_key: a.pem}}", ""),
    ("{names: [a.example, b.example], acme: {account_key: a.pem}, port: 8443}", ":8443"),
])
def test_the_redirect_goes_to_one_of_the_names_on_the_https_port(
        tmp_path: Path, https: str, port: str) -> None:
    """Whatever the Host header's port; to its name only when it is one of https.names, else
    to the first name."""
    config = render_config(load(tmp_path, f"haproxy: {{http_port: 8080}}\nhttps: {https}\n"),
                           Login(0, 0))
    rules = [line.strip() for line in config.splitlines()
             if "https_name" in line or "redirect" in line]
    assert rules[-3:] == [
        "acl https_name req.fhdr(host),field(1,:),lower -m str a.example b.example",
        f"http-request redirect location https://%[req.fhdr(host),field(1,:),lower]{port}"
        "%[pathq] code 301 if !{ ssl_fc } https_name",
        f"http-request redirect location https://a.example{port}%[pathq] code 301 "
        "if !{ ssl_fc }",
    ]
    assert "http-request redirect scheme" not in config


def test_a_wildcard_name_matches_one_label_and_is_never_a_redirect_target() -> None:
    assert redirect_names(("*.shop.example", "shop.example")) == [
        ("str", ["shop.example"]), ("reg", ["^[a-z0-9-]+[.]shop[.]example$"])]
    pattern = re.compile(redirect_names(("*.shop.example",))[0][1][0])
    assert pattern.match("eu.shop.example")
    for host in ("shop.example", "a.b.shop.example", "evil.example/x.shop.example",
                 "eu.shop.example.evil", "euxshop.example"):
        assert not pattern.match(host), host


def test_with_wildcard_names_only_another_host_is_refused(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    (tmp_path / "k.pem").chmod(0o600)
    config = render_config(load(tmp_path, "https: {names: ['*.shop.example'], files: "
                                          "{chain: c.pem, key: k.pem}}\n"), Login(0, 0))
    assert "http-request deny deny_status 400 if !{ ssl_fc }" in config
    assert "https://*" not in config
