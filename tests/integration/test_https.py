"""HTTPS on the sandbox fleet: a certificate from files (a private CA made here) and from an
ACME CA (pebble, Let's Encrypt's test CA, in the sandbox), requests that trust only that CA,
deploys and renewals under HTTPS load, and the errors that must change nothing."""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from cryptography import x509

from slotswap.config.layout import cert_path_on_server, haproxy_dir
from slotswap.config.loader import load_inventory
from slotswap.https import install as tls
from slotswap.https.files import CertificateBundle
from slotswap.remote.server import Server
from testbed import sandbox
from testbed.loadgen import AddressedHTTPSConnection, LoadGenerator, TlsTarget
from testbed.private_ca import PrivateCa, issue, make_ca
from tests.integration.conftest import FORGED_HEADERS, forwarded_by_haproxy, seen_headers

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox


@dataclass(frozen=True)
class HttpsFleet:
    box: Sandbox
    inventory: Path
    folder: Path
    names: list[str]
    ca_file: Path
    ca: PrivateCa


def names_of(box: Sandbox) -> list[str]:
    return [sandbox.server_dns_name(node) for node in sandbox.server_nodes(len(box.addresses))]


def https_get(address: str, name: str, ca_file: Path, path: str = "/", port: int = 443,
              headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    connection = AddressedHTTPSConnection(address, TlsTarget(name, str(ca_file)), port, 10)
    try:
        connection.connect()
        certificate = connection.sock.getpeercert()  # type: ignore[union-attr]
        connection.request("GET", path, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read().decode(), certificate
    finally:
        connection.close()


def http_get(address: str, path: str = "/", host: str | None = "s1.fleet.test"
             ) -> http.client.HTTPResponse:
    """GET over plain HTTP with that Host header; host None: HTTP/1.0 with none at all."""
    connection = http.client.HTTPConnection(address, 80, timeout=10)
    if host is None:
        connection._http_vsn_str = "HTTP/1.0"  # 1.1 without Host is a bad request
        connection.putrequest("GET", path, skip_host=True)
        connection.endheaders()
    else:
        connection.request("GET", path, headers={"Host": host, "Connection": "close"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def https_load(box: Sandbox, name: str, ca_file: Path) -> LoadGenerator:
    return LoadGenerator(box.addresses, port=443, clients=4, max_seconds=240,
                         max_requests=400_000, tls=TlsTarget(name, str(ca_file)))


def haproxy_pids(inventory: Path) -> dict[str, str]:
    """Each server's HAProxy worker process ID (a reload would change it)."""
    inv = load_inventory(inventory)
    pids = {}
    for host in inv.hosts:
        server = Server(host, inv)
        try:
            info = server.runtime_api("show info")
        finally:
            server.close()
        pids[host.name] = re.search(r"^Pid: (\d+)$", info, re.MULTILINE).group(1)
    return pids


def containers_everywhere(box: Sandbox) -> dict[str, str]:
    return {address: box.containers(address) for address in box.addresses}


def certs_folder(inventory: Path) -> str:
    """The folder of the certificate file on each server."""
    return cert_path_on_server(haproxy_dir(load_inventory(inventory))).rsplit("/", 1)[0]


def cert_files_everywhere(box: Sandbox, inventory: Path) -> dict[str, str]:
    """Each server's certificate files, by digest: equal only if none was written."""
    folder = certs_folder(inventory)
    return {address: box.ssh(address, f"sha256sum {folder}/*") for address in box.addresses}


def serials_everywhere(fleet: HttpsFleet, names: Sequence[str], roots: Path) -> dict[str, str]:
    """The serial of the certificate each server's HTTPS port presents."""
    return {address: https_get(address, name, roots)[2]["serialNumber"]
            for address, name in zip(fleet.box.addresses, names, strict=True)}


@pytest.fixture(scope="module")
def https_fleet(fleet_on_v1: Sandbox, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[HttpsFleet]:
    box = fleet_on_v1
    folder = tmp_path_factory.mktemp("https")
    ca = make_ca()
    names = names_of(box)
    # Good for longer than https.renew_days: only "none there" or "from elsewhere" makes
    # the ACME test below replace it.
    chain, key = issue(ca, names, days=80)
    (folder / "fullchain.pem").write_text(chain)
    (folder / "privkey.pem").write_text(key)
    (folder / "privkey.pem").chmod(0o600)
    (folder / "ca.pem").write_text(ca.pem)
    inventory = box.inventory_copy(folder, https={
        "names": names, "files": {"chain": "fullchain.pem", "key": "privkey.pem"}})
    assert box.fab("up", inventory=inventory).returncode == 0
    yield HttpsFleet(box, inventory, folder, names, folder / "ca.pem", ca)
    assert box.fab("up").returncode == 0  # plain HTTP again for the other modules


def test_every_server_answers_https_with_the_certificate_from_files(
        https_fleet: HttpsFleet) -> None:
    fleet = https_fleet
    for address, name in zip(fleet.box.addresses, fleet.names, strict=True):
        status, body, certificate = https_get(address, name, fleet.ca_file)
        assert status == 200 and body.startswith("version=v1")
        sans = {value for kind, value in certificate["subjectAltName"] if kind == "DNS"}
        assert sans == set(fleet.names)
    folder = certs_folder(fleet.inventory)
    for address in fleet.box.addresses:
        modes = fleet.box.ssh(address, f"stat -c '%a %n' {folder} {folder}/site.pem").split()
        assert modes == ["700", folder, "600", f"{folder}/site.pem"]


def test_plain_http_is_redirected_and_the_app_sees_the_client(https_fleet: HttpsFleet) -> None:
    fleet = https_fleet
    address = fleet.box.addresses[0]
    response = http_get(address, "/some/page?x=1")
    assert response.status == 301
    assert response.headers["Location"] == "https://s1.fleet.test/some/page?x=1"
    # A Host header with a port: the redirect goes to the HTTPS port, not that one.
    response = http_get(address, "/some/page?x=1", host="s1.fleet.test:80")
    assert response.headers["Location"] == "https://s1.fleet.test/some/page?x=1"
    status, body, _ = https_get(address, fleet.names[0], fleet.ca_file, "/forwarded")
    assert status == 200
    assert body.strip() == f"for={sandbox.BRIDGE_IP} proto=https"


def test_the_redirect_goes_only_to_the_names_of_the_certificate(https_fleet: HttpsFleet
                                                                ) -> None:
    """A Host among https.names keeps its name (any case, any port); any other Host, or
    none, goes to the first name: never where a client's Host header says."""
    fleet = https_fleet
    first, second = fleet.names[0], fleet.names[1]
    expected = {
        first: first, second: second, f"{second}:80": second, second.upper(): second,
        "evil.example": first, "evil.example:80": first, f"{first}.evil.example": first,
        f"x{first}": first, "": first, None: first,
    }
    for host, name in expected.items():
        response = http_get(fleet.box.addresses[0], "/some/page?x=1", host=host)
        assert (host, response.status) == (host, 301)
        assert (host, response.headers["Location"]) == (host, f"https://{name}/some/page?x=1")


def test_forged_forwarding_headers_never_reach_the_app(https_fleet: HttpsFleet) -> None:
    fleet = https_fleet
    status, body, _ = https_get(fleet.box.addresses[0], fleet.names[0], fleet.ca_file,
                                "/headers", headers=FORGED_HEADERS)
    assert status == 200
    assert seen_headers(body) == forwarded_by_haproxy(sandbox.BRIDGE_IP, "https",
                                                      fleet.names[0], 443)


def test_a_deploy_under_https_load_fails_no_request(https_fleet: HttpsFleet) -> None:
    fleet = https_fleet
    with https_load(fleet.box, fleet.names[0], fleet.ca_file) as load:
        result = fleet.box.fab("deploy", "--tag", "v2", inventory=fleet.inventory)
    report = load.stop()
    assert result.returncode == 0
    assert report.failed == 0, report.failures
    assert report.sent > 100
    assert set(report.versions) == {"v1", "v2"} or set(report.versions) == {"v2"}
    assert fleet.box.fab("deploy", "--tag", "v1", inventory=fleet.inventory).returncode == 0


def test_certs_shows_what_every_server_serves(https_fleet: HttpsFleet) -> None:
    fleet = https_fleet
    result = fleet.box.fab("certs", "--json", inventory=fleet.inventory)
    assert result.returncode == 0, result.stderr
    document = yaml.safe_load(result.stdout)
    assert [s["name"] for s in document["servers"]] == ["s1", "s2", "s3"]
    for server in document["servers"]:
        assert sorted(server["names"]) == sorted(fleet.names)
        assert "slotswap test CA" in server["issuer"]
        assert server["days_left"] > 18


def test_a_key_others_can_read_is_refused_and_nothing_changes(https_fleet: HttpsFleet,
                                                             tmp_path: Path) -> None:
    fleet = https_fleet
    (fleet.folder / "privkey.pem").chmod(0o644)
    try:
        before = containers_everywhere(fleet.box)
        result = fleet.box.fab("up", inventory=fleet.inventory)
        assert result.returncode == 2
        assert "has mode 0644, readable by others; chmod 600 it" in result.stderr
        assert containers_everywhere(fleet.box) == before
    finally:
        (fleet.folder / "privkey.pem").chmod(0o600)


def test_a_certificate_for_another_key_is_refused_and_nothing_changes(
        https_fleet: HttpsFleet, tmp_path: Path) -> None:
    fleet = https_fleet
    other_chain, _ = issue(make_ca(), fleet.names)
    (tmp_path / "fullchain.pem").write_text(other_chain)
    inventory = yaml.safe_load(fleet.inventory.read_text())
    inventory["https"]["files"] = {"chain": str(tmp_path / "fullchain.pem"),
                                   "key": str(fleet.folder / "privkey.pem")}
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(inventory))
    before = containers_everywhere(fleet.box)
    result = fleet.box.fab("up", inventory=tmp_path / "hosts.yaml")
    assert result.returncode == 2
    assert "was not made for the key" in result.stderr
    assert containers_everywhere(fleet.box) == before


JANUARY_2020 = (datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
                datetime.datetime(2020, 1, 31, tzinfo=datetime.UTC))


def test_an_expired_certificate_is_refused_before_any_server_is_touched(
        https_fleet: HttpsFleet, tmp_path: Path) -> None:
    fleet = https_fleet
    chain, key = issue(fleet.ca, fleet.names, valid=JANUARY_2020)
    (tmp_path / "fullchain.pem").write_text(chain)
    (tmp_path / "privkey.pem").write_text(key)
    (tmp_path / "privkey.pem").chmod(0o600)
    inventory = fleet.box.inventory_copy(tmp_path, https={
        "names": fleet.names, "files": {"chain": "fullchain.pem", "key": "privkey.pem"}})
    before = (containers_everywhere(fleet.box), cert_files_everywhere(fleet.box, inventory),
              serials_everywhere(fleet, fleet.names, fleet.ca_file))
    for task in ("up", "certs.renew"):
        refused = fleet.box.fab(task, inventory=inventory)
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [
            f"error: https.files.chain: the certificate in {tmp_path / 'fullchain.pem'} expired "
            "on 2020-01-31 00:00 UTC: every HTTPS client would refuse it (nothing was changed "
            "on any server)"]
        assert (containers_everywhere(fleet.box), cert_files_everywhere(fleet.box, inventory),
                serials_everywhere(fleet, fleet.names, fleet.ca_file)) == before


def test_certs_says_which_server_serves_an_expired_certificate(https_fleet: HttpsFleet) -> None:
    fleet = https_fleet
    chain, key = issue(fleet.ca, fleet.names, valid=JANUARY_2020)
    inv = load_inventory(fleet.inventory)
    server = Server(inv.hosts[0], inv)  # put in place behind the kit's back, as by hand
    try:
        tls.replace_served(server, CertificateBundle(chain, key))
    finally:
        server.close()
    try:
        shown = fleet.box.fab("certs", "--json", inventory=fleet.inventory)
        assert shown.returncode == 0
        assert ("WARNING: s1: the certificate it serves expired on 2020-01-31 00:00 UTC: every "
                "HTTPS client refuses it") in shown.stderr
        document = yaml.safe_load(shown.stdout)
        assert [s["validity"] for s in document["servers"]] == ["expired", "valid", "valid"]
    finally:
        assert fleet.box.fab("up", inventory=fleet.inventory).returncode == 0
    assert https_get(fleet.box.addresses[0], fleet.names[0], fleet.ca_file)[0] == 200


def files_of(fleet: HttpsFleet) -> dict[str, str]:
    """https.files of the fixture's inventory, with absolute paths (for a copy elsewhere)."""
    return {"chain": str(fleet.folder / "fullchain.pem"), "key": str(fleet.folder / "privkey.pem")}


def test_the_redirect_goes_to_an_https_port_other_than_443(https_fleet: HttpsFleet,
                                                           tmp_path: Path) -> None:
    fleet = https_fleet
    inventory = fleet.box.inventory_copy(tmp_path, https={
        "names": fleet.names, "port": 8443, "files": files_of(fleet)})
    try:
        assert fleet.box.fab("up", inventory=inventory).returncode == 0
        address = fleet.box.addresses[0]
        for host in ("s1.fleet.test", "s1.fleet.test:80"):
            response = http_get(address, "/some/page?x=1", host=host)
            assert response.status == 301
            assert response.headers["Location"] == "https://s1.fleet.test:8443/some/page?x=1"
        # Another of the names keeps its name, anything else goes to the first one.
        for host, name in {"s2.fleet.test:8080": "s2", "evil.example:8443": "s1", None: "s1"
                           }.items():
            assert http_get(address, "/some/page?x=1", host=host).headers["Location"] == \
                f"https://{name}.fleet.test:8443/some/page?x=1"
        status, body, _ = https_get(address, fleet.names[0], fleet.ca_file, port=8443)
        assert status == 200 and body.startswith("version=v1")
    finally:
        assert fleet.box.fab("up", inventory=fleet.inventory).returncode == 0


CHAIN_VARIABLE, KEY_VARIABLE = "SLOTSWAP_TEST_TLS_CHAIN", "SLOTSWAP_TEST_TLS_KEY"


def test_a_certificate_from_environment_variables_is_installed_and_never_shown(
        https_fleet: HttpsFleet, tmp_path: Path) -> None:
    fleet = https_fleet
    chain, key = issue(fleet.ca, fleet.names, days=80)
    serial = x509.load_pem_x509_certificate(chain.encode()).serial_number
    inventory = fleet.box.inventory_copy(tmp_path, https={
        "names": fleet.names, "files": {"chain_secret": CHAIN_VARIABLE,
                                        "key_secret": KEY_VARIABLE}})
    with_secrets = dataclasses.replace(
        fleet.box, env={**fleet.box.env, CHAIN_VARIABLE: chain, KEY_VARIABLE: key})
    key_body = key.splitlines()[1]  # a line of the private key's base64

    before = containers_everywhere(fleet.box)
    unset = fleet.box.fab("up", inventory=inventory)
    assert unset.returncode == 2
    assert (f"https.files.chain_secret: {CHAIN_VARIABLE} is not set in the environment of "
            "this run") in unset.stderr
    assert containers_everywhere(fleet.box) == before

    checked = with_secrets.fab("check", inventory=inventory)
    planned = with_secrets.fab("up", "--dry-run", inventory=inventory)
    assert checked.returncode == 0 and planned.returncode == 0
    assert f"https.files.key_secret: {KEY_VARIABLE} (set in this environment)" in checked.stdout
    try:
        installed = with_secrets.fab("up", inventory=inventory)
        assert installed.returncode == 0
        for result in (checked, planned, installed):
            assert key_body not in result.stdout + result.stderr
            assert "PRIVATE KEY" not in result.stdout + result.stderr
        for address, name in zip(fleet.box.addresses, fleet.names, strict=True):
            _, _, certificate = https_get(address, name, fleet.ca_file)
            assert int(certificate["serialNumber"], 16) == serial
    finally:
        assert fleet.box.fab("up", inventory=fleet.inventory).returncode == 0


def test_acme_issues_for_every_server_and_renews_with_no_reload_under_load(
        https_fleet: HttpsFleet, tmp_path: Path) -> None:
    fleet = https_fleet
    nodes = sandbox.server_nodes(len(fleet.box.addresses))
    acme = sandbox.start_acme_ca(nodes)
    try:
        acme_settings = {"directory": acme.directory, "ca_bundle": str(acme.ca_bundle),
                         "account_key": str(tmp_path / "account.pem")}
        inventory = fleet.box.inventory_copy(tmp_path, https={
            "names": list(acme.names), "acme": acme_settings})
        # s3 has no certificate (as a new server); s1 and s2 the one from files, good for
        # 80 more days: each must be replaced, for being none or from elsewhere.
        fleet.box.ssh(fleet.box.addresses[-1], f"rm -rf {certs_folder(inventory)}")
        issued = fleet.box.fab("up", inventory=inventory)
        assert issued.returncode == 0
        output = issued.stdout + issued.stderr
        assert "certificate issued" in output
        assert "s1: renewing: it came from files, the inventory says acme " in output
        assert "s3: renewing: it serves the stand-in certificate" in output
        shown = yaml.safe_load(fleet.box.fab("certs", "--json", inventory=inventory).stdout)
        for server in shown["servers"]:
            assert server["source"] == f"acme {acme.directory}"
            assert "Pebble" in server["issuer"]
        roots = tmp_path / "pebble-roots.pem"
        roots.write_text(acme.roots_pem())
        serials = {}
        for address, name in zip(fleet.box.addresses, acme.names, strict=True):
            status, _, certificate = https_get(address, name, roots)
            assert status == 200
            assert {v for k, v in certificate["subjectAltName"]} == set(acme.names)
            serials[address] = certificate["serialNumber"]
        pids = haproxy_pids(inventory)
        # The dry run asks the CA for nothing and changes nothing; it names the steps.
        planned = fleet.box.fab("certs.renew", "--force", "--dry-run", inventory=inventory)
        assert planned.returncode == 0, planned.stderr
        assert "runtime API> commit ssl cert" in planned.stdout
        assert f"issued by {acme.directory}" in planned.stdout
        assert serials_everywhere(fleet, acme.names, roots) == serials
        with https_load(fleet.box, acme.names[0], roots) as load:
            renewed = fleet.box.fab("certs.renew", "--force", inventory=inventory)
        report = load.stop()
        assert renewed.returncode == 0
        assert report.failed == 0, report.failures
        assert haproxy_pids(inventory) == pids  # no reload, no restart
        for address, name in zip(fleet.box.addresses, acme.names, strict=True):
            _, _, certificate = https_get(address, name, roots)
            assert certificate["serialNumber"] != serials[address]
        not_due = fleet.box.fab("certs.renew", inventory=inventory)
        assert not_due.returncode == 0 and "nothing to do" in not_due.stdout

        # A CA that cannot be reached: a clear error, every server keeps its certificate.
        (tmp_path / "unreachable").mkdir()
        unreachable = fleet.box.inventory_copy(tmp_path / "unreachable", https={
            "names": list(acme.names),
            "acme": {"directory": f"https://{sandbox.BRIDGE_IP}:1/dir",
                     "account_key": str(tmp_path / "account.pem")}})
        before = serials_everywhere(fleet, acme.names, roots)
        sentence = (f"error: cannot reach the ACME CA at https://{sandbox.BRIDGE_IP}:1/dir: "
                    "connection refused; nothing was changed on any server")
        for task in ("certs.renew", "up"):  # up: the directory is not the one that issued
            refused = fleet.box.fab(task, *(["--force"] if task == "certs.renew" else []),
                                    inventory=unreachable)
            assert refused.returncode == 1
            assert refused.stderr.strip().splitlines()[-1] == sentence, refused.stderr
            assert serials_everywhere(fleet, acme.names, roots) == before

        # A CA that refuses: it cannot resolve one of the names, so it cannot validate it.
        (tmp_path / "refusing").mkdir()
        unknown = f"nowhere.{sandbox.ACME_DOMAIN}"
        refusing = fleet.box.inventory_copy(tmp_path / "refusing", https={
            "names": [*acme.names, unknown], "acme": acme_settings})
        files, containers = (cert_files_everywhere(fleet.box, inventory),
                             containers_everywhere(fleet.box))
        refused = fleet.box.fab("certs.renew", inventory=refusing)
        assert refused.returncode == 1
        errors = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(errors) == 1, refused.stderr  # one line, no traceback
        assert errors[0].startswith(f"error: the ACME CA could not validate the names "
                                    f"({unknown}: ")
        assert errors[0].endswith("nothing was changed on any server")
        assert serials_everywhere(fleet, acme.names, roots) == before
        assert cert_files_everywhere(fleet.box, inventory) == files
        assert containers_everywhere(fleet.box) == containers
    finally:
        sandbox.stop_acme_ca()
        assert fleet.box.fab("up", inventory=fleet.inventory).returncode == 0


def test_renewals_in_a_row_succeed_when_the_ca_reuses_authorizations(
        https_fleet: HttpsFleet, tmp_path: Path) -> None:
    """Let's Encrypt hands an account its valid authorizations again (RFC 8555 7.1.4): an
    order right after another comes back with every authorization valid already."""
    fleet = https_fleet
    acme = sandbox.start_acme_ca(sandbox.server_nodes(len(fleet.box.addresses)),
                                 authz_reuse=100)
    try:
        inventory = fleet.box.inventory_copy(tmp_path, https={
            "names": list(acme.names),
            "acme": {"directory": acme.directory, "ca_bundle": str(acme.ca_bundle),
                     "account_key": str(tmp_path / "account.pem")}})
        assert fleet.box.fab("up", inventory=inventory).returncode == 0
        roots = tmp_path / "pebble-roots.pem"
        roots.write_text(acme.roots_pem())
        seen = [serials_everywhere(fleet, acme.names, roots)]
        for _ in range(2):
            renewed = fleet.box.fab("certs.renew", "--force", inventory=inventory)
            assert renewed.returncode == 0, renewed.stderr
            assert "validated already (the CA reuses this account's authorization)" in \
                renewed.stdout + renewed.stderr
            seen.append(serials_everywhere(fleet, acme.names, roots))
            assert all(seen[-1][address] != seen[-2][address] for address in seen[-1])
    finally:
        sandbox.stop_acme_ca()
        assert fleet.box.fab("up", inventory=fleet.inventory).returncode == 0
