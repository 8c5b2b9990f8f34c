"""Certificates on the operator's machine (files checked before any server is contacted),
the inventory's https section, and the template with HTTPS on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slotswap.certificates import (
    CertificateError,
    covers,
    load_files,
    placeholder,
)
from slotswap.inventory import CertificateFiles, InventoryError, load_inventory
from slotswap.proxy import Login, render_config
from testbed.private_ca import issue, make_ca

NAMES = ("www.example.com", "example.com")


def write_pair(folder: Path, names: tuple[str, ...] = NAMES, mode: int = 0o600
               ) -> CertificateFiles:
    chain, key = issue(make_ca(), list(names))
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


FIXTURES = Path(__file__).parent / "fixtures"


def test_show_ssl_cert_as_haproxy_2_6_answers_it() -> None:
    from datetime import UTC, datetime

    from slotswap.tls import parse_show_ssl_cert

    served = parse_show_ssl_cert((FIXTURES / "haproxy-2.6-show-ssl-cert.txt").read_text())
    assert served.serial == "36CA6A9A383BBDF71050A8411017FCDAD96D0C12"
    assert served.not_after == datetime(2026, 12, 17, 19, 26, 5, tzinfo=UTC)
    assert served.names == ("s1.fleet.test", "s2.fleet.test")
    assert served.issuer == "/CN=slotswap test CA" and not served.placeholder


def test_show_ssl_cert_of_an_unknown_file_is_an_error() -> None:
    from slotswap.haproxy import RuntimeApiError
    from slotswap.tls import parse_show_ssl_cert

    with pytest.raises(RuntimeApiError, match="unexpected `show ssl cert` answer"):
        parse_show_ssl_cert("Can't display the certificate: Not found or the certificate is "
                            "a bundle!\n\n")
