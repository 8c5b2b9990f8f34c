"""A small, bounded HTTP load generator for the sandbox: the demo, the tests and the benchmark.

Each client opens a new connection per request (as a browser population would over time),
spread round-robin over the servers; it counts failures, the versions answered, and the
longest stretch with no successful answer. Bounded in time and in request count.
"""

from __future__ import annotations

import http.client
import ipaddress
import itertools
import multiprocessing
import re
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from testbed.sandbox import SUBNET as SANDBOX_SUBNET

VERSION_PATTERN = re.compile(r"version=(\S+)")
# Steady load, as in the testbed's measurements (~700 req/s), leaving CPU for the servers
# that share this machine. None: as fast as the clients go.
DEFAULT_RATE = 700.0


@dataclass
class LoadReport:
    sent: int = 0
    failed: int = 0
    seconds: float = 0.0
    versions: Counter[str] = field(default_factory=Counter)
    versions_by_target: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # the first few, for messages
    longest_gap: float = 0.0  # seconds with no successful answer, across all targets
    # Every answer's HTTP status ("200", "503", ...), or the error that came instead
    # ("ConnectionRefusedError", ...): what a maintenance page or a broken version shows.
    outcomes: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        versions = ", ".join(f"{v}: {n}" for v, n in sorted(self.versions.items()))
        return (f"{self.sent} requests in {self.seconds:.1f}s ({rate:.0f}/s), "
                f"{self.failed} failed, longest gap without a success "
                f"{self.longest_gap * 1000:.0f} ms; versions seen: {versions or 'none'}")


def check_target_allowed(address: str, allowed_networks: tuple[str, ...]) -> None:
    """Load goes only to loopback or to the sandbox's own addresses."""
    ip = ipaddress.ip_address(address)
    if ip.is_loopback or any(ip in ipaddress.ip_network(n) for n in allowed_networks):
        return
    raise ValueError(f"refusing to send load to {address}: only loopback and "
                     f"{', '.join(allowed_networks)} are allowed")


@dataclass(frozen=True)
class TlsTarget:
    """HTTPS load: the name the certificate must be valid for (sent as SNI and checked), and
    the only CA trusted."""

    server_name: str
    ca_file: str

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)


class AddressedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to one address while checking the certificate for a name that may resolve
    elsewhere (the sandbox has no DNS for its servers' names)."""

    def __init__(self, address: str, tls: TlsTarget, port: int, timeout: float) -> None:
        super().__init__(tls.server_name, port, timeout=timeout, context=tls.context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class LoadGenerator:
    def __init__(self, targets: list[str], *, port: int = 80, clients: int = 4,
                 max_seconds: float = 300.0, max_requests: int = 500_000,
                 rate: float | None = DEFAULT_RATE,
                 allowed_networks: tuple[str, ...] = (SANDBOX_SUBNET,), path: str = "/",
                 tls: TlsTarget | None = None, host: str | None = None):
        for target in targets:
            check_target_allowed(target, allowed_networks)
        self.targets, self.port, self.clients, self.path = targets, port, clients, path
        self.tls = tls  # HTTPS: to each target's address, with this name and trust
        self.host = host  # the Host header (an app of a shared HAProxy), else the target's
        self.max_seconds, self.max_requests = max_seconds, max_requests
        # Each client paces itself so that all of them together send about `rate` per second.
        self.client_interval = clients / rate if rate else 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._report = LoadReport(versions_by_target={t: Counter() for t in targets})
        self._successes: list[float] = []
        self._threads: list[threading.Thread] = []
        self._started = 0.0
        self._turn = itertools.count()

    def start(self) -> LoadGenerator:
        self._started = time.monotonic()
        for index in range(self.clients):
            thread = threading.Thread(target=self._client, name=f"load-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> LoadReport:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        report = self._report
        report.seconds = time.monotonic() - self._started
        marks = sorted([self._started, *self._successes, self._started + report.seconds])
        report.longest_gap = max((b - a for a, b in itertools.pairwise(marks)), default=0.0)
        return report

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _client(self) -> None:
        deadline = self._started + self.max_seconds
        next_send = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self._report.sent >= self.max_requests:
                    return
                self._report.sent += 1
                target = self.targets[next(self._turn) % len(self.targets)]
            self._one_request(target)
            next_send += self.client_interval
            pause = next_send - time.monotonic()
            if pause > 0:
                self._stop.wait(pause)
            else:
                next_send = time.monotonic()  # behind: no burst to catch up

    def _one_request(self, target: str) -> None:
        connection: http.client.HTTPConnection
        if self.tls is None:
            connection = http.client.HTTPConnection(target, self.port, timeout=5)
        else:
            connection = AddressedHTTPSConnection(target, self.tls, self.port, timeout=5)
        try:
            headers = {"Connection": "close", **({"Host": self.host} if self.host else {})}
            connection.request("GET", self.path, headers=headers)
            response = connection.getresponse()
            body = response.read().decode(errors="replace")
            error = None if response.status == 200 else f"HTTP {response.status}"
            outcome = str(response.status)
        except (OSError, http.client.HTTPException) as exc:
            body, error = "", f"{type(exc).__name__}: {exc}"
            outcome = type(exc).__name__
        finally:
            connection.close()
        now = time.monotonic()
        with self._lock:
            self._report.outcomes[outcome] += 1
            if error is not None:
                self._report.failed += 1
                if len(self._report.failures) < 20:
                    self._report.failures.append(
                        f"{target} at +{now - self._started:.2f}s: {error}")
                return
            self._successes.append(now)
            match = VERSION_PATTERN.search(body)
            version = match.group(1) if match else "?"
            self._report.versions[version] += 1
            self._report.versions_by_target[target][version] += 1


class LoadGeneratorProcess:
    """A LoadGenerator in a child process, for callers that deploy in-process (the benchmark):
    its client threads then do not compete with the deploy for the interpreter lock."""

    def __init__(self, targets: list[str], **options: object):
        LoadGenerator(targets, **options)  # type: ignore[arg-type]  # refuses bad targets now
        self.targets, self.options = targets, options
        context = multiprocessing.get_context("fork")
        self._parent_end, child_end = context.Pipe()
        self._process = context.Process(target=self._run, args=(child_end,), daemon=True)

    def _run(self, connection: Connection) -> None:
        generator = LoadGenerator(self.targets, **self.options).start()  # type: ignore[arg-type]
        connection.send("started")
        connection.poll(generator.max_seconds + 5)  # the stop request, or the time bound
        connection.send(generator.stop())

    def start(self) -> LoadGeneratorProcess:
        self._process.start()
        self._parent_end.recv()
        return self

    def stop(self) -> LoadReport:
        self._parent_end.send("stop")
        report = self._parent_end.recv()
        self._process.join(timeout=10)
        return report

    def __enter__(self) -> LoadGeneratorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self.stop()
