"""HTTPS per app on the sandbox's shared HAProxy (several apps on one server, issue 23,
decision 4): `shop` with a certificate from files (a
private CA made here), `admin` with one from the sandbox's ACME CA (pebble), on the same
three servers. Each name is served with its own certificate (chosen by SNI); renewing one
app's certificate changes only that one, with no reload, and fails no request of the other
under load; `up --dry-run` shows each app's certificate steps and changes nothing; a new
certificate from files reaches a running HAProxy by `up`, with no reload.

Ports 8088 and 8443, never 80 and 443 (the fleet's own HAProxy of other modules binds them):
pebble's HTTP-01 validation goes to 8088, where the shared HAProxy routes it by Host to
admin's backend, which answers with admin's account thumbprint."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

from testbed import sandbox
from testbed.loadgen import LoadGenerator, TlsTarget
from testbed.private_ca import PrivateCa, issue, make_ca
from tests.integration.test_https import haproxy_pids, https_get

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
HTTP, HTTPS = 8088, 8443
SHOP = "shop.test"
# The generation the shared HAProxy's `current` names (its folder from the container's mount).
CURRENT = ("readlink \"$(docker inspect slotswap-proxy --format '{{range .Mounts}}{{if eq "
           ".Destination \"/usr/local/etc/haproxy\"}}{{.Source}}{{end}}{{end}}')/current\"")


@dataclasses.dataclass
class HttpsApps:
    box: Sandbox
    folder: Path
    inventories: dict[str, Path]
    ca: PrivateCa
    ca_file: Path
    acme: sandbox.AcmeCa
    roots: Path  # pebble's root: what admin's certificate chains to

    def fab(self, app: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.box.fab(*args, inventory=self.inventories[app])

    def shop_certificate(self, address: str) -> dict:
        status, body, certificate = https_get(address, SHOP, self.ca_file, port=HTTPS,
                                              headers={"Host": SHOP})
        assert status == 200 and "version=v1" in body, body
        return certificate

    def admin_certificate(self, address: str, name: str) -> dict:
        status, _, certificate = https_get(address, name, self.roots, port=HTTPS)
        assert status == 200
        return certificate

    def serials(self) -> dict[str, tuple[str, str]]:
        """Each server's (shop's serial, admin's serial), as its HTTPS port serves them."""
        return {address: (self.shop_certificate(address)["serialNumber"],
                          self.admin_certificate(address, name)["serialNumber"])
                for address, name in zip(self.box.addresses, self.acme.names, strict=True)}

    def worker_pids(self) -> dict[str, str]:
        """Each server's shared HAProxy worker (a reload would change it)."""
        return haproxy_pids(self.inventories["shop"])


def write_shop_files(folder: Path, ca: PrivateCa) -> None:
    chain, key = issue(ca, [SHOP], days=80)
    (folder / "fullchain.pem").write_text(chain)
    (folder / "privkey.pem").write_text(key)
    (folder / "privkey.pem").chmod(0o600)


@pytest.fixture(scope="module")
def apps(sandbox_env: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsApps]:
    box = sandbox_env
    folder = tmp_path_factory.mktemp("shared-https")
    ca = make_ca()
    (folder / "ca.pem").write_text(ca.pem)
    acme = sandbox.start_acme_ca(sandbox.server_nodes(len(box.addresses)), http_port=HTTP)
    roots = folder / "pebble-roots.pem"
    roots.write_text(acme.roots_pem())
    inventories = {}
    for app, ports in {"shop": [18181, 18182], "admin": [18183, 18184]}.items():
        (folder / app).mkdir()
        data = yaml.safe_load(box.inventory_copy(folder / app).read_text())
        image = data["haproxy"]["image"]
        data["app"] = app
        if app == "shop":  # shop's inventory sets the shared settings; admin's leaves them out
            write_shop_files(folder / app, ca)
            data["haproxy"] = {"shared": True, "slot_ports": ports, "image": image,
                               "http_port": HTTP}
            data["https"] = {"names": [SHOP], "port": HTTPS,
                             "files": {"chain": "fullchain.pem", "key": "privkey.pem"}}
        else:
            data["haproxy"] = {"shared": True, "slot_ports": ports}
            data["https"] = {"names": list(acme.names), "acme": {
                "directory": acme.directory, "ca_bundle": str(acme.ca_bundle),
                "account_key": str(folder / app / "account.pem")}}
        path = folder / app / "hosts.yaml"
        path.write_text(yaml.safe_dump(data))
        inventories[app] = path
    here = HttpsApps(box, folder, inventories, ca, folder / "ca.pem", acme, roots)
    try:
        for app in ("shop", "admin"):
            result = here.fab(app, "up")
            assert result.returncode == 0, result.stdout + result.stderr
            assert here.fab(app, "deploy", "--tag", "v1").returncode == 0
        yield here
    finally:
        for app in ("admin", "shop"):
            here.fab(app, "down")
        sandbox.stop_acme_ca()


def test_each_name_is_served_over_https_with_its_own_certificate(apps: HttpsApps) -> None:
    shop_serials = set()
    for address, name in zip(apps.box.addresses, apps.acme.names, strict=True):
        shop = apps.shop_certificate(address)
        assert {v for _, v in shop["subjectAltName"]} == {SHOP}
        shop_serials.add(shop["serialNumber"])
        admin = apps.admin_certificate(address, name)
        assert {v for _, v in admin["subjectAltName"]} == set(apps.acme.names)
        assert "Pebble" in str(admin["issuer"])
    assert len(shop_serials) == 1  # the operator's one file, on every server
    shown = yaml.safe_load(apps.fab("admin", "certs", "--json").stdout)
    assert {server["source"] for server in shown["servers"]} == {
        f"acme {apps.acme.directory}"}
    shown = yaml.safe_load(apps.fab("shop", "certs", "--json").stdout)
    assert {server["source"] for server in shown["servers"]} == {"files"}


def test_renewing_one_app_changes_only_its_certificate_under_load_on_the_other(
        apps: HttpsApps) -> None:
    before, pids = apps.serials(), apps.worker_pids()
    load = LoadGenerator(apps.box.addresses, port=HTTPS, host=SHOP, clients=2,
                         max_seconds=240, max_requests=200_000,
                         tls=TlsTarget(SHOP, str(apps.ca_file)))
    with load:
        renewed = apps.fab("admin", "certs.renew", "--force")
    report = load.stop()
    print(report.summary())
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert report.sent > 0 and report.failed == 0, report.failures
    after = apps.serials()
    for address in apps.box.addresses:
        assert after[address][0] == before[address][0]  # shop's: unchanged
        assert after[address][1] != before[address][1]  # admin's: the new one
    assert apps.worker_pids() == pids  # no reload, no restart
    assert "nothing to do" in apps.fab("admin", "certs.renew").stdout


def test_up_dry_run_shows_each_app_s_certificate_steps_and_changes_nothing(
        apps: HttpsApps, tmp_path: Path) -> None:
    """shop with a new certificate from files: on each server `set ssl cert` and `commit
    ssl cert` (the running HAProxy lists it), no reload; admin (ACME): its certificate kept,
    no CA asked. Nothing changes: the certificates served, the workers, `current`."""
    before, pids = apps.serials(), apps.worker_pids()
    current = {address: apps.box.ssh(address, CURRENT).strip() for address in apps.box.addresses}
    renewed = tmp_path / "hosts.yaml"
    renewed.write_text(apps.inventories["shop"].read_text())
    write_shop_files(tmp_path, apps.ca)
    result = apps.box.fab("up", "--dry-run", inventory=renewed)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text
    servers = len(apps.box.addresses)
    inside = "/usr/local/etc/haproxy/apps/shop/site.pem"
    assert text.count(f"runtime API> set ssl cert {inside} <<<") == servers, text
    assert text.count(f"runtime API> commit ssl cert {inside}") == servers, text
    assert text.count("its certificate installed with no reload") == servers, text
    assert "HUP" not in text and "BEGIN" not in text  # no reload; no key printed
    acme = apps.fab("admin", "up", "--dry-run")
    text = acme.stdout + acme.stderr
    assert acme.returncode == 0, text
    assert text.count("HTTPS (ACME): ") == servers and "is kept as it is" in text, text
    assert "ssl cert" not in text
    assert apps.serials() == before and apps.worker_pids() == pids
    assert {address: apps.box.ssh(address, CURRENT).strip()
            for address in apps.box.addresses} == current


def test_a_new_certificate_from_files_reaches_the_running_haproxy_by_up_with_no_reload(
        apps: HttpsApps) -> None:
    before, pids = apps.serials(), apps.worker_pids()
    write_shop_files(apps.inventories["shop"].parent, apps.ca)
    result = apps.fab("shop", "up")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "certificate installed with no reload" in result.stdout + result.stderr
    after = apps.serials()
    for address in apps.box.addresses:
        assert after[address][0] != before[address][0]
        assert after[address][1] == before[address][1]
    assert apps.worker_pids() == pids
