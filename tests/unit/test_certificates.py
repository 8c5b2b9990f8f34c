"""Certificates on the operator's machine (files checked before any server is contacted),
the inventory's https section, and the template with HTTPS on."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest

from slotswap.config.https import CertificateFiles
from slotswap.config.inventory import InventoryError
from slotswap.config.loader import load_inventory
from slotswap.https import files as certificates
from slotswap.https.files import (
    CertificateError,
    covers,
    load_files,
    placeholder,
)
from slotswap.server.haproxy_config import Login, render_config
from testbed.private_ca import issue, make_ca
from tests.unit.fake_server import FIXTURES

NAMES = ("www.example.com", "example.com")


def write_pair(folder: Path, names: tuple[str, ...] = NAMES, mode: int = 0o600,
               valid: tuple[datetime.datetime, datetime.datetime] | None = None,
               days: int = 20) -> CertificateFiles:
    chain, key = issue(make_ca(), list(names), valid=valid, days=days)
    (folder / "chain.pem").write_text(chain)
    (folder / "key.pem").write_text(key)
    (folder / "key.pem").chmod(mode)
    return CertificateFiles(folder / "chain.pem", folder / "key.pem")


def test_files_that_fit_are_read_and_make_one_pem_without_blank_lines(tmp_path: Path) -> None:
    bundle = load_files(write_pair(tmp_path), NAMES)
    pem = bundle.haproxy_pem()
    assert "\n\n" not in pem and pem.endswith("-----END PRIVATE KEY-----\n")
    assert pem.index("BEGIN CERTIFICATE") < pem.index("BEGIN PRIVATE KEY")
    assert set(bundle.info().names) == set(NAMES)


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match="has mode 0644, readable by others; chmod 600"):
        load_files(write_pair(tmp_path, mode=0o644), NAMES)


def test_a_certificate_for_another_key_is_refused(tmp_path: Path) -> None:
    files = write_pair(tmp_path)
    other_chain, _ = issue(make_ca(), list(NAMES))
    files.chain.write_text(other_chain)
    with pytest.raises(CertificateError, match="was not made for the key"):
        load_files(files, NAMES)


def test_a_certificate_missing_a_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CertificateError, match=r"does not cover example\.com"):
        load_files(write_pair(tmp_path, names=("www.example.com",)), NAMES)


def test_missing_and_garbage_files_are_named(tmp_path: Path) -> None:
    files = write_pair(tmp_path)
    with pytest.raises(CertificateError, match=r"https\.files\.chain: .* does not exist"):
        load_files(CertificateFiles(tmp_path / "nope.pem", files.key), NAMES)
    files.chain.write_text("hello\n")
    with pytest.raises(CertificateError, match="holds no PEM certificate"):
        load_files(files, NAMES)


JANUARY_2020 = (datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
                datetime.datetime(2020, 1, 31, tzinfo=datetime.UTC))


def test_an_expired_certificate_is_refused(tmp_path: Path) -> None:
    files = write_pair(tmp_path, valid=JANUARY_2020)
    with pytest.raises(CertificateError) as refused:
        load_files(files, NAMES)
    assert str(refused.value) == (
        f"https.files.chain: the certificate in {files.chain} expired on 2020-01-31 00:00 UTC: "
        "every HTTPS client would refuse it (nothing was changed on any server)")


def test_a_certificate_not_yet_valid_is_refused(tmp_path: Path) -> None:
    start = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=3)
    files = write_pair(tmp_path, valid=(start, start + datetime.timedelta(days=90)))
    with pytest.raises(CertificateError,
                       match=f"is not valid before {start:%Y-%m-%d %H:%M} UTC: every HTTPS "
                             "client would refuse it"):
        load_files(files, NAMES)


def test_a_certificate_near_its_end_is_installed_with_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from slotswap.fleet import certs

    write_pair(tmp_path, days=12)
    (tmp_path / "hosts.yaml").write_text(
        "app: webapp\nimage: r.example/webapp\nhosts: [192.0.2.1]\nhttps: {names: "
        "[www.example.com, example.com], files: {chain: chain.pem, key: key.pem}}\n")
    bundle = certs.material_for_up(load_inventory(tmp_path / "hosts.yaml"))
    assert bundle is not None and set(bundle.info().names) == set(NAMES)
    warning = capsys.readouterr().err
    assert warning.startswith("WARNING: https.files.chain: the certificate has 12 days left "
                              "(until ")
    assert warning.rstrip().endswith(", fewer than https.renew_days (30): put a renewed one "
                                     "in its place")
    write_pair(tmp_path, days=80)
    certs.material_for_up(load_inventory(tmp_path / "hosts.yaml"))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(("days_ago", "days_on", "state", "words"), [
    (40, -10, "expired", "expired on 2026-11-23 12:00 UTC"),
    (-2, 90, "not yet valid", "is not valid before 2026-12-05 12:00 UTC"),
    (60, 12, "expiring",
     "12 days left (until 2026-12-15), fewer than https.renew_days (30)"),
    (10, 80, "valid", "80 days left (until 2027-02-21)"),
])
def test_validity_says_whether_clients_accept_a_certificate_today(
        days_ago: int, days_on: int, state: str, words: str) -> None:
    now = datetime.datetime(2026, 12, 3, 12, tzinfo=datetime.UTC)
    today = certificates.validity(now - datetime.timedelta(days=days_ago),
                                     now + datetime.timedelta(days=days_on), 30, now)
    assert (today.state, today.words) == (state, words)
    assert today.refused is (state in ("expired", "not yet valid"))


@pytest.mark.parametrize(("names", "name", "expected"), [
    (("*.example.com",), "www.example.com", True),
    (("*.example.com",), "example.com", False),
    (("*.example.com",), "a.b.example.com", False),
    (("example.com",), "example.com", True),
])
def test_wildcards_cover_one_label(names: tuple[str, ...], name: str, expected: bool) -> None:
    assert covers(names, name) is expected


def test_the_stand_in_certificate_says_so() -> None:
    info = placeholder(NAMES).info()
    assert info.placeholder and set(info.names) == set(NAMES)


BASE = "app: webapp\nimage: r.example/webapp\nhosts: [192.0.2.1]\n"


@pytest.mark.parametrize(("https", "problem"), [
    ("{names: [a.example]}", "https: expected exactly one of files"),
    ("{names: [a.example], files: {chain: c}}", "https.files.key: required key is missing"),
    ("{names: [], acme: {}}", "https.names: expected a list of the DNS names"),
    ("{names: ['*.a.example'], acme: {}}", "https.names[0]: expected a lowercase DNS name"),
    ("{names: [a.example], acme: {directory: 'http://ca'}}",
     "https.acme.directory: expected an https:// URL"),
    ("{names: [a.example], acme: {contact: nobody}}", "https.acme.contact: expected an e-mail"),
    ("{names: [a.example], acme: {}, port: 80}", "https.port: must differ"),
    ("{names: [a.example], acme: {}, hsts: -1}", "https.hsts: expected a max-age"),
])
def test_the_https_section_is_validated(tmp_path: Path, https: str, problem: str) -> None:
    (tmp_path / "hosts.yaml").write_text(BASE + f"https: {https}\n")
    with pytest.raises(InventoryError, match=re.escape(problem)):
        load_inventory(tmp_path / "hosts.yaml")


def test_the_config_gets_tls_redirect_hsts_and_the_acme_answer(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(
        BASE + "https: {names: [a.example], hsts: 31536000, acme: {account_key: acct.pem}}\n")
    config = render_config(load_inventory(tmp_path / "hosts.yaml"), Login(0, 0))
    assert "bind 0.0.0.0:443 ssl crt /usr/local/etc/haproxy/certs/site.pem alpn h2,http/1.1" \
        in config
    assert "ssl-min-ver TLSv1.2" in config
    assert ("http-request redirect location https://a.example%[pathq] code 301 "
            "if !{ ssl_fc }") in config
    assert 'Strict-Transport-Security "max-age=31536000"' in config
    assert "option forwardfor" in config
    answer = next(line for line in config.splitlines() if "acme-challenge" in line)
    assert answer.strip().startswith("http-request return status 200")
    assert oct((tmp_path / "acct.pem").stat().st_mode & 0o777) == "0o600"  # made once
    # The ACME answer comes before the redirect: the CA's plain-HTTP request is answered.
    assert config.index("acme-challenge") < config.index("redirect location https")


def test_without_https_the_config_has_no_tls(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(BASE)
    config = render_config(load_inventory(tmp_path / "hosts.yaml"), Login(0, 0))
    assert "ssl crt" not in config and "ssl-default" not in config
    assert "redirect" not in config
    assert "X-Forwarded-Proto %[ssl_fc,iif(https,http)]" in config




def test_show_ssl_cert_as_haproxy_2_6_answers_it() -> None:
    from datetime import UTC, datetime

    from slotswap.https.install import parse_show_ssl_cert

    served = parse_show_ssl_cert((FIXTURES / "haproxy-2.6-show-ssl-cert.txt").read_text())
    assert served.serial == "36CA6A9A383BBDF71050A8411017FCDAD96D0C12"
    assert served.not_after == datetime(2026, 12, 17, 19, 26, 5, tzinfo=UTC)
    assert served.names == ("s1.fleet.test", "s2.fleet.test")
    assert served.issuer == "/CN=slotswap test CA" and not served.placeholder


def test_show_ssl_cert_of_an_unknown_file_is_an_error() -> None:
    from slotswap.commands.runtime_api import RuntimeApiError
    from slotswap.https.install import parse_show_ssl_cert

    with pytest.raises(RuntimeApiError, match="unexpected `show ssl cert` answer"):
        parse_show_ssl_cert("Can't display the certificate: Not found or the certificate is "
                            "a bundle!\n\n")


def test_certs_says_which_servers_serve_a_certificate_clients_refuse_or_soon_will() -> None:
    from slotswap.fleet import certs
    from slotswap.https.install import parse_show_ssl_cert

    text = (FIXTURES / "haproxy-2.6-show-ssl-cert.txt").read_text()
    served = parse_show_ssl_cert(text)  # from Nov 27 18:26:05 2026 to Dec 17 19:26:05 2026
    assert served.not_before == datetime.datetime(2026, 11, 27, 18, 26, 5, tzinfo=datetime.UTC)
    earlier = parse_show_ssl_cert(text.replace("notBefore: Nov 27 18:26:05 2026",
                                               "notBefore: Nov 27 18:26:05 2099"))
    expired = parse_show_ssl_cert(text.replace("notAfter: Dec 17 19:26:05 2026",
                                               "notAfter: Jan 31 00:00:00 2020"))
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=12, hours=1)
    expiring = parse_show_ssl_cert(text.replace("notAfter: Dec 17 19:26:05 2026",
                                                f"notAfter: {soon:%b %d %H:%M:%S %Y}"))
    fleet = [certs.ServerCertificate(name, "192.0.2.1", cert)
             for name, cert in (("s1", expired), ("s2", earlier), ("s3", expiring))]
    rows, ok, warnings = certs.describe_fleet(fleet, renew_days=30)
    assert ok and [row[-1] for row in rows] == ["EXPIRED", "NOT YET VALID", "12 days"]
    assert warnings == [
        "WARNING: s1: the certificate it serves expired on 2020-01-31 00:00 UTC: every HTTPS "
        "client refuses it",
        "WARNING: s2: the certificate it serves is not valid before 2099-11-27 18:26 UTC: "
        "every HTTPS client refuses it",
        f"WARNING: s3: the certificate it serves has 12 days left (until {soon:%Y-%m-%d}), "
        "fewer than https.renew_days (30)"]
    document = certs.document(fleet, renew_days=30)
    assert [s["validity"] for s in document["servers"]] == [  # type: ignore[attr-defined]
        "expired", "not yet valid", "expiring"]
