"""The rendered config's backend under the local HAProxy binary (no sandbox): after the kit's
switch line, every new request goes to the new slot; once the new slot accepts connections
and closes them unanswered (Docker's loopback proxy in front of an app that died, before any
check fails), a GET or HEAD is answered by the old slot through its fallback line, and a
POST fails without ever being sent to either slot a second time.

Everything listens on free ports of 127.0.0.1 and stops with the test."""

from __future__ import annotations

import contextlib
import http.client
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from slotswap.commands import runtime_api as haproxy
from slotswap.config.inventory import Inventory
from slotswap.server import maintenance
from slotswap.server.haproxy_config import Login, render_config
from slotswap.server.swap_plan import switch_line
from tests.unit.fake_server import make_inventory

HAPROXY_BINARY = "/usr/sbin/haproxy"


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


class App:
    """A slot's app: answers `version=<v>` (`app=<app> version=<v>` with an app's name),
    counts the requests by method (checks apart); X-Seen-Host: the X-Forwarded-Host it got."""

    def __init__(self, port: int, version: str, app: str | None = None) -> None:
        seen: Counter[str] = Counter()
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                if self.path != "/health":
                    seen[self.command] += 1
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                body = f"{f'app={app} ' if app else ''}version={version}\n".encode()
                # HAProxy may close a connection before the answer (a check, a retry).
                with contextlib.suppress(ConnectionError):
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("X-Seen-Host", self.headers.get("X-Forwarded-Host", "-"))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(body)

            do_GET = do_HEAD = do_POST = answer

            def log_message(self, *_: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class DeadApp:
    """What Docker's proxy does for a container whose app is gone: accept, close, no answer."""

    def __init__(self, port: int) -> None:
        self.accepted = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.sock.accept()
                self.accepted += 1
                connection.recv(65536)
                connection.close()

    def stop(self) -> None:
        self.sock.close()


def api(socket_path: Path, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(socket_path))
        sock.sendall(command.encode() + b"\n")
        return b"".join(iter(lambda: sock.recv(65536), b"")).decode()


def request(port: int, method: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, "/", body=b"x" if method == "POST" else None)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def write_local_config(folder: Path, inventory: Inventory) -> None:
    """The rendered config and its files in `folder`, for the local HAProxy binary: every
    path of the container's (its folder, the admin socket's) in `folder`."""
    config = render_config(inventory, Login(0, 0))
    config = config.replace("/usr/local/etc/haproxy/", f"{folder}/")
    config = config.replace("/run/slotswap-admin/", f"{folder}/")
    # Not root's to drop to here: the workers stay this test's user.
    config = "\n".join(line for line in config.splitlines()
                       if line.strip().split(" ")[0] not in ("uid", "gid")) + "\n"
    (folder / "maintenance.map").touch()
    (folder / "maintenance.lua").write_text(
        maintenance.service_script().replace("/usr/local/etc/haproxy/", f"{folder}/"))
    (folder / "haproxy.cfg").write_text(config)


@pytest.fixture
def haproxy_with_slots(tmp_path: Path) -> Iterator[tuple[int, Path, dict[str, int]]]:
    if not Path(HAPROXY_BINARY).exists():
        pytest.fail(f"{HAPROXY_BINARY} is needed (apt-get install haproxy)")
    http_port, web1, web2 = free_ports(3)
    inventory = make_inventory(tmp_path, healthcheck={"path": "/health"},
                               haproxy={"http_port": http_port, "slot_ports": [web1, web2]})
    write_local_config(tmp_path, inventory)
    process = subprocess.Popen([HAPROXY_BINARY, "-db", "-f", str(tmp_path / "haproxy.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield http_port, tmp_path / "admin.sock", {"web1": web1, "web2": web2}
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_new_slot_that_dies_in_the_window_costs_no_get_and_never_resends_a_post(
        haproxy_with_slots: tuple[int, Path, dict[str, int]]) -> None:
    port, admin, slots = haproxy_with_slots
    wait_for(admin.exists)
    old, new = App(slots["web1"], "v1"), App(slots["web2"], "v2")
    try:
        # web1 serves v1; web2 passed its checks (as the swap waits for): then the switch.
        api(admin, "set server webapp/web1 state ready; set server webapp/web2 state drain")

        def stats() -> dict[str, haproxy.ServerStat]:
            return haproxy.parse_show_stat(api(admin, "show stat webapp 4 -1"))

        wait_for(lambda: stats()["web1"].status == "UP" and stats()["web2"].status == "DRAIN")
        fallback = haproxy.fallback_name("web1") in stats()
        api(admin, switch_line("webapp", "web2", "web1", fallback=fallback))
        # Every new request goes to the new slot while it answers.
        assert [request(port, "GET") for _ in range(20)] == [(200, "version=v2\n")] * 20
        assert old.seen == Counter()
        # Its app dies; HAProxy's checks have not seen it yet (held as they were).
        api(admin, "disable health webapp/web2")
        new.stop()
        dead = DeadApp(slots["web2"])
        try:
            answers = Counter(request(port, method) for method in ["GET", "HEAD"] * 20)
            assert answers == Counter({(200, "version=v1\n"): 20, (200, ""): 20})
            accepted_before_posts = dead.accepted
            posts = [request(port, "POST")[0] for _ in range(5)]
            assert posts == [502] * 5
            # Each POST reached the dead slot once and was never sent anywhere again.
            assert dead.accepted - accepted_before_posts == 5
            assert old.seen["POST"] == 0
        finally:
            dead.stop()
    finally:
        old.stop()
        with contextlib.suppress(OSError):
            new.stop()
