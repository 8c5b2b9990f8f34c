"""The shared HAProxy's assembled generation under the local HAProxy binary (no sandbox;
docs/apps-design.md, build step 3): three apps laid out as a server keeps them (`current`
a symlink to the generation's folder, each app's files in apps/<app>/), HAProxy started as
the shared container runs it (`-f current/haproxy.cfg -f current/backends`).

- shop: HTTPS (shop.test, *.shop.test), the HTTP-to-HTTPS redirect, HSTS, ACME;
- admin: HTTPS (admin.test, special.shop.test: an exact name inside shop's wildcard), no
  redirect, ACME with another thumbprint;
- blog: HTTP only (blog.test).

Each app has two slot servers (test_fallback_routing's App) answering `app=<name>
version=<v>`. Everything listens on free ports of 127.0.0.1 and stops with the module."""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from slotswap.config.inventory import Inventory
from slotswap.config.layout import HAPROXY_ADMIN_DIR_INSIDE, HAPROXY_CONFIG_DIR_INSIDE
from slotswap.https.files import CertificateBundle, placeholder
from slotswap.server import maintenance
from slotswap.server.haproxy_config import Login
from slotswap.server.proxy_assembly import (
    Generation,
    assemble,
    inventory_shared_values,
    render_fragment,
)
from slotswap.server.proxy_registry import Registration
from tests.unit.fake_server import make_inventory
from tests.unit.test_fallback_routing import HAPROXY_BINARY, App, api, free_ports, wait_for

CURL = "/usr/bin/curl"
FILES = {"chain": "certs/fullchain.pem", "key": "certs/privkey.pem"}
NAMES = {"shop": ("shop.test", "*.shop.test"), "admin": ("admin.test", "special.shop.test"),
         "blog": ("blog.test",)}
THUMBPRINTS = {"shop": "shop-thumbprint", "admin": "admin-thumbprint"}
TIMEOUT = 10


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


def get(port: int, host: str | None, path: str = "/", *, tls: bool = False) -> Answer:
    """One HTTP/1.1 GET with this Host (over TLS: with no SNI, so only Host routes)."""
    if tls:
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=TIMEOUT, context=insecure())
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        connection.putrequest("GET", path, skip_host=True)
        if host is not None:
            connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                      response.read().decode())
    finally:
        connection.close()


def status_without_host(port: int) -> tuple[int, str]:
    """An HTTP/1.0 request with no Host at all (HTTP/1.1 requires one): status, Location."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b"".join(iter(lambda: sock.recv(65536), b"")).decode("latin-1")
    head = data.split("\r\n\r\n", 1)[0].split("\r\n")
    location = next((line.split(": ", 1)[1] for line in head
                     if line.lower().startswith("location:")), "")
    return int(head[0].split()[1]), location


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def served_certificate(port: int, sni: str | None) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock, \
            insecure().wrap_socket(sock, server_hostname=sni) as tls:
        certificate = tls.getpeercert(binary_form=True)
    assert certificate is not None
    return certificate


def der(bundle: CertificateBundle) -> bytes:
    return bundle.leaf.public_bytes(serialization.Encoding.DER)


def registration(inventory: Inventory, *, default: bool = False) -> Registration:
    return Registration(
        app=inventory.app, names=inventory.route_names, default=default,
        https=inventory.https is not None, slot_ports=inventory.haproxy.slot_ports,
        check_ports=None, shared_settings={}, drain=1.0, kit_version="test",
        by="test@local", at="2026-01-01T00:00:00Z")


def lay_out(root: Path, generation: Generation) -> None:
    """The generation's folder beside `current`, as the server keeps it, with every path of
    the container's in `root`; `current` (re)pointed at it."""
    folder = root / generation.name
    for path, text in generation.files.items():
        text = text.replace(f"{HAPROXY_CONFIG_DIR_INSIDE}/", f"{root}/")
        text = text.replace(f"{HAPROXY_ADMIN_DIR_INSIDE}/", f"{root}/")
        # Not root's to drop to here: the workers stay this test's user.
        text = "".join(line for line in text.splitlines(keepends=True)
                       if line.strip().split(" ")[0] not in ("uid", "gid"))
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    current = root / "current"
    current.unlink(missing_ok=True)
    current.symlink_to(generation.name)


def haproxy_args(root: Path) -> list[str]:
    return ["-f", str(root / "current" / "haproxy.cfg"), "-f", str(root / "current" / "backends")]


@dataclass
class Server:
    """One laid-out shared HAProxy."""

    root: Path
    http: int
    https: int
    generation: Generation
    certificates: dict[str, CertificateBundle]

    @property
    def admin(self) -> Path:
        return self.root / "admin.sock"


@dataclass
class Apps:
    inventories: dict[str, Inventory]
    fragments: dict[str, str]
    certificates: dict[str, CertificateBundle]
    slots: list[App]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    """The three apps' slots, running, with their inventories, fragments and certificates."""
    if not Path(HAPROXY_BINARY).exists():
        pytest.fail(f"{HAPROXY_BINARY} is needed (apt-get install haproxy)")
    folder = tmp_path_factory.mktemp("projects")
    ports = free_ports(6)
    slot_ports = {"shop": ports[0:2], "admin": ports[2:4], "blog": ports[4:6]}
    slots = [App(port, f"v{index + 1}", app) for app, pair in slot_ports.items()
             for index, port in enumerate(pair)]
    https = {"shop": {"names": list(NAMES["shop"]), "files": FILES, "hsts": 600},
             "admin": {"names": list(NAMES["admin"]), "files": FILES, "redirect": False}}
    inventories = {}
    for app, pair in slot_ports.items():
        settings: dict[str, Any] = {"https": https[app]} if app in https \
            else {"names": list(NAMES[app])}
        inventories[app] = make_inventory(
            folder / app, app=app, healthcheck={"path": "/health"},
            haproxy={"shared": True, "slot_ports": pair}, **settings)
    certificates = {app: placeholder(NAMES[app]) for app in https}
    certificates["fallback"] = placeholder(("invalid",), days=3650)
    try:
        yield Apps(inventories, {}, certificates, slots)
    finally:
        for slot in slots:
            slot.stop()


def start_server(root: Path, apps: Apps, default: str | None = None) -> Iterator[Server]:
    """The shared HAProxy for the three apps in `root`, on free ports, until the caller's
    generator is closed."""
    http_port, https_port = free_ports(2)
    shared = {**inventory_shared_values(apps.inventories["shop"]),
              "haproxy.http_port": http_port, "https.port": https_port}
    fragments = {app: render_fragment(inventory, shared, thumbprint=THUMBPRINTS.get(app))
                 for app, inventory in apps.inventories.items()}
    generation = assemble([registration(inventory, default=app == default)
                           for app, inventory in apps.inventories.items()],
                          fragments, shared, Login(os.getuid(), os.getgid()))
    for app in apps.inventories:
        (root / "apps" / app).mkdir(parents=True)
        (root / "apps" / app / "maintenance.map").touch()
        if app in apps.certificates:
            (root / "apps" / app / "site.pem").write_text(apps.certificates[app].haproxy_pem())
    (root / "fallback.pem").write_text(apps.certificates["fallback"].haproxy_pem())
    (root / "maintenance.lua").write_text(maintenance.shared_service_script())
    lay_out(root, generation)
    process = subprocess.Popen([HAPROXY_BINARY, "-db", *haproxy_args(root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        server = Server(root, http_port, https_port, generation, apps.certificates)

        def serving() -> bool:
            assert process.poll() is None, process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                return get(http_port, "blog.test").status == 200
            except OSError:
                return False

        wait_for(serving)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def server(apps: Apps, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from start_server(tmp_path_factory.mktemp("proxy"), apps)


@pytest.fixture
def server_with_default(apps: Apps, tmp_path: Path) -> Iterator[Server]:
    yield from start_server(tmp_path, apps, default="shop")


def test_haproxy_checks_the_generation_as_valid(server: Server) -> None:
    checked = subprocess.run([HAPROXY_BINARY, "-c", *haproxy_args(server.root)],
                             capture_output=True, text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    # Its only warnings: no backend's state file yet (a first start, as a new app's).
    warnings = [line for line in checked.stderr.splitlines() if "[WARNING]" in line]
    assert len(warnings) == 3 and all("Can't open server state file" in line
                                      for line in warnings), checked.stderr
    assert (server.root / "current").resolve() == server.root / server.generation.name


def test_the_host_header_routes_in_any_case_and_with_a_port(server: Server) -> None:
    admin = get(server.http, "ADMIN.Test:8080")
    assert (admin.status, admin.body) == (200, "app=admin version=v1\n")
    # The app's backend says which name was asked for, as the client wrote it.
    assert admin.headers["x-seen-host"] == "ADMIN.Test:8080"
    assert get(server.http, "Blog.TEST").body == "app=blog version=v1\n"
    assert get(server.https, f"SHOP.test:{server.https}", tls=True).body \
        == "app=shop version=v1\n"


def test_a_wildcard_covers_one_label_and_an_exact_name_beats_another_app_s_wildcard(
        server: Server) -> None:
    assert get(server.https, "a.shop.test", tls=True).body == "app=shop version=v1\n"
    assert get(server.http, "a.b.shop.test").status == 404
    assert get(server.https, "a.b.shop.test", tls=True).status == 404
    # special.shop.test is admin's exact name, inside shop's *.shop.test.
    assert get(server.http, "special.shop.test").body == "app=admin version=v1\n"
    assert get(server.https, "Special.Shop.Test", tls=True).body == "app=admin version=v1\n"


def test_an_unknown_or_missing_host_gets_404(server: Server) -> None:
    assert get(server.http, "unknown.test").status == 404
    assert get(server.http, "shop.test.").status == 404  # a trailing dot matches no name
    assert get(server.http, "127.0.0.1").status == 404
    assert status_without_host(server.http) == (404, "")


def test_with_a_default_app_other_names_go_to_it(server_with_default: Server) -> None:
    server = server_with_default
    assert get(server.https, "unknown.test", tls=True).body == "app=shop version=v1\n"
    # Over HTTP, shop redirects a name that is not its own to its first name.
    unknown = get(server.http, "unknown.test", "/a?b=1")
    assert (unknown.status, unknown.headers["location"]) \
        == (301, f"https://shop.test:{server.https}/a?b=1")
    assert status_without_host(server.http) == (301, f"https://shop.test:{server.https}/")
    # Other apps' names still route to them; an unknown SNI gets the default app's cert.
    assert get(server.http, "blog.test").body == "app=blog version=v1\n"
    assert served_certificate(server.https, "unknown.test") \
        == der(server.certificates["shop"])
    assert served_certificate(server.https, None) == der(server.certificates["shop"])


def curl_http2(server: Server, name: str) -> tuple[str, str]:
    """curl over HTTP/2 and TLS to `name` (SNI and :authority both that name): the body and
    the HTTP version it used."""
    if not Path(CURL).exists():
        pytest.fail(f"{CURL} is needed (apt-get install curl)")
    result = subprocess.run(
        [CURL, "-sS", "--http2", "-k", "--max-time", str(TIMEOUT), "--resolve",
         f"{name}:{server.https}:127.0.0.1", "-w", "%{http_version}",
         f"https://{name}:{server.https}/"],
        capture_output=True, text=True, timeout=TIMEOUT + 5, check=True)
    body, _, version = result.stdout.rpartition("\n")
    return body + "\n", version


def test_http2_routes_by_authority(server: Server) -> None:
    assert curl_http2(server, "shop.test") == ("app=shop version=v1\n", "2")
    assert curl_http2(server, "a.shop.test") == ("app=shop version=v1\n", "2")
    assert curl_http2(server, "admin.test") == ("app=admin version=v1\n", "2")
    assert curl_http2(server, "special.shop.test") == ("app=admin version=v1\n", "2")


def test_sni_chooses_each_app_s_certificate_and_the_fallback_otherwise(server: Server) -> None:
    shop, admin = der(server.certificates["shop"]), der(server.certificates["admin"])
    fallback = der(server.certificates["fallback"])
    assert served_certificate(server.https, "shop.test") == shop
    assert served_certificate(server.https, "x.shop.test") == shop
    assert served_certificate(server.https, "admin.test") == admin
    # An exact name before a wildcard, across certificates.
    assert served_certificate(server.https, "special.shop.test") == admin
    assert served_certificate(server.https, "unknown.test") == fallback
    assert served_certificate(server.https, "blog.test") == fallback  # HTTP only
    assert served_certificate(server.https, None) == fallback


def test_only_the_app_that_asks_for_it_is_redirected_to_https(server: Server) -> None:
    shop = get(server.http, "A.Shop.Test:8080", "/x?y=1")
    assert (shop.status, shop.headers["location"]) \
        == (301, f"https://a.shop.test:{server.https}/x?y=1")
    assert get(server.http, "admin.test").body == "app=admin version=v1\n"
    assert get(server.http, "blog.test").body == "app=blog version=v1\n"
    # HSTS over HTTPS, for shop alone.
    assert get(server.https, "shop.test", tls=True).headers["strict-transport-security"] \
        == "max-age=600"
    assert "strict-transport-security" not in get(server.https, "admin.test", tls=True).headers


def test_each_app_answers_acme_with_its_own_thumbprint(server: Server) -> None:
    path = "/.well-known/acme-challenge/token123"
    assert get(server.http, "shop.test", path).body == "token123.shop-thumbprint"
    assert get(server.http, "x.shop.test", path).body == "token123.shop-thumbprint"
    assert get(server.http, "admin.test", path).body == "token123.admin-thumbprint"
    assert get(server.http, "blog.test", path).body == "app=blog version=v1\n"  # no ACME


def test_maintenance_of_one_app_leaves_the_others_serving(server: Server) -> None:
    map_path = server.root / "apps" / "admin" / "maintenance.map"
    page = "<h1>Back soon</h1>\n<p>admin only</p>\n"
    lines = [f"add map {map_path} {key} {value}"
             for key, value in maintenance.map_entries(page, 60)]
    assert api(server.admin, "; ".join(lines)).strip() == ""
    try:
        admin = get(server.http, "admin.test")
        assert (admin.status, admin.body, admin.headers["retry-after"]) == (503, page, "60")
        assert get(server.https, "special.shop.test", tls=True).status == 503
        assert get(server.https, "shop.test", tls=True).body == "app=shop version=v1\n"
        assert get(server.http, "blog.test").body == "app=blog version=v1\n"
    finally:
        api(server.admin, f"clear map {map_path}")
    assert get(server.http, "admin.test").body == "app=admin version=v1\n"

