"""The simulated server's HAProxy (simulated_server.py): its backends as the config declares
them (simulated_backends.py: each line's admin and operational state, health checks with
rise and fall on a simulated clock, counters), maps and certificates by path, the runtime
API's answers in the recorded formats, a restart from the config and the server-state
files; and the clock itself, which the modules that poll are put on (patch_time)."""

from __future__ import annotations

import functools
import re
import threading
import time as real_time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from slotswap.commands import runtime_api as haproxy
from tests.unit.fake_server import FIXTURES
from tests.unit.simulated_backends import (
    FIRST_BACKEND_ID,
    STAT_HEADER,
    STATE_HEADER,
    Line,
    SimBackend,
    UnknownCommand,
    backend_sections,
    parse_state_file,
    stat_row,
)

if TYPE_CHECKING:
    from tests.unit.simulated_docker import Container


class SimClock:
    """Monotonic and wall time of the simulation; sleeping advances it (and runs every
    HAProxy's checks due meanwhile). Patched into the modules that poll (patch_time)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.lock = threading.RLock()
        self.haproxies: list[SimHaproxy] = []
        self.window_closing = threading.Event()  # patch_time sets it in WatchWindow.close

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        """Until `seconds` after the call, on the simulation's clock: threads that sleep at
        the same time wake at the same time (the watches of several servers in one window
        each poll every interval, not once per interval times the number of servers, as
        they would if each sleep added to the clock)."""
        until = self.now + max(0.0, seconds)
        if threading.current_thread().name.startswith("watch-"):
            # A watch in the window polls only once the rollout waits for the window to
            # close: how many looks it takes meanwhile does not hang on how threads meet.
            self.window_closing.wait(timeout=5)
        with self.lock:
            self.advance(max(0.0, until - self.now))

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds
            for proxy in self.haproxies:
                proxy.run_checks(self.now)


class SimTime:
    """A stand-in for the `time` module in a patched module: the clock's time, the real
    module's everything else."""

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.monotonic, self.sleep, self.time = clock.monotonic, clock.sleep, clock.time

    def perf_counter(self) -> float:
        return self.clock.now

    def clock_gettime(self, which: int) -> float:  # the lease's clock (CLOCK_BOOTTIME)
        return self.clock.now

    def __getattr__(self, name: str) -> Any:
        return getattr(real_time, name)


POLLING_MODULES = ("slotswap.server.swap", "slotswap.server.swap_retire",
                   "slotswap.fleet.server_run", "slotswap.fleet.watch_window",
                   "slotswap.server.lease", "slotswap.server.polling",
                   "slotswap.server.role_run", "slotswap.server.role_swap")


def patch_time(monkeypatch: Any, clock: SimClock) -> None:
    import importlib
    for name in POLLING_MODULES:
        monkeypatch.setattr(importlib.import_module(name), "time", SimTime(clock))
    from slotswap.fleet.watch_window import WatchWindow
    close = getattr(WatchWindow.close, "unpatched", WatchWindow.close)

    def closing(window: WatchWindow) -> None:
        clock.window_closing.set()
        try:
            close(window)
        finally:
            clock.window_closing.clear()

    closing.unpatched = close  # type: ignore[attr-defined]
    monkeypatch.setattr(WatchWindow, "close", closing)

# -- HAProxy --------------------------------------------------------------------------------

MAP_REFERENCE = re.compile(r"\bmap(?:_str)?\(([^),\s]+)\)")
UNKNOWN_MAP = "Unknown map identifier. Please use #<id> or <file>.\n\n"  # recorded


@functools.cache
def config_parts(config: str) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], tuple[str, ...]]:
    """A config's backends (name, section lines), in the order declared, and every map file
    it refers to (in order, each once): parsed once per config text."""
    sections = tuple((name, tuple(lines)) for name, lines in backend_sections(config).items())
    return sections, tuple(dict.fromkeys(MAP_REFERENCE.findall(config)))


def parse_map(text: str) -> dict[str, str]:
    """A map file's `key value` lines."""
    return dict(line.split(" ", 1) for line in text.splitlines() if " " in line)


class SimHaproxy:
    """HAProxy's process: its backends (simulated_backends.SimBackend) as the config declares
    them, every map by its path, the certificates by theirs, and the runtime API. `backend`
    is the app's, the one `lines`, `show_stat()` and `serve()` address where HAProxy runs
    one app (the shared HAProxy has one per app: `backends`)."""

    def __init__(self, backend: str, config: str, clock: SimClock,
                 checks_pass: Callable[[int], tuple[bool, str]]) -> None:
        self.backend, self.clock, self.checks_pass = backend, clock, checks_pass
        self.config = config
        self.backends: dict[str, SimBackend] = {}
        self.maps: dict[str, dict[str, str]] = {}
        # The certificate file HAProxy serves (PEM), and the one a `set ssl cert` staged;
        # in the shared HAProxy, one per path (`certs`).
        self.cert: str | None = None
        self.certs: dict[str, str] = {}
        self.cert_pending: str | None = None
        self.cert_pending_for = ""  # the file its transaction is for
        self.restarts = 0
        self.pid = 7  # a new process (a start, a reload's workers) has the next one
        self.ran: set[str] = set()  # every config a process of it started from
        self.warnings: list[str] = []  # the last start's, as HAProxy logs them
        self.start(None)

    def take_over(self, other: SimHaproxy) -> None:
        """Everything `other` runs with (a clone of its server), on this one's clock."""
        self.config, self.pid, self.ran = other.config, other.pid, set(other.ran)
        self.backends = {name: backend.copy(self.clock, self.checks_pass)
                         for name, backend in other.backends.items()}
        self.maps = {path: dict(entries) for path, entries in other.maps.items()}
        self.cert, self.certs, self.cert_pending = other.cert, dict(other.certs), \
            other.cert_pending
        self.cert_pending_for = other.cert_pending_for

    @property
    def own(self) -> SimBackend:
        """The app's backend."""
        return self.backends[self.backend]

    @property
    def lines(self) -> dict[str, Line]:
        return self.own.lines

    def start(self, state_file: str | None, maps: dict[str, str] | None = None,
              cert: str | None = None, *, read: Callable[[str], str | None] | None = None,
              certs: dict[str, str] | None = None) -> None:
        """A new process: each backend's lines from the config, then what its server-state
        file says (the global one, `state_file`, or its own, `local`, read by its path with
        `read`: a missing one is a warning); each map the config names from its file (`maps`:
        path in HAProxy -> the file's text, `key value` lines; a file not given, empty); the
        certificate from its file, or each by its path (`certs`; no transaction)."""
        self.pid += 1
        self.ran.add(self.config)
        sections, map_paths = config_parts(self.config)
        assert sections, "the config has no backend"
        self.backends = {name: SimBackend(name, self.clock, self.checks_pass, iid=iid,
                                          section=section)
                         for iid, (name, section) in enumerate(sections,
                                                               start=FIRST_BACKEND_ID)}
        self.warnings = []
        for name, backend in self.backends.items():
            text = state_file
            if backend.state_file is not None:
                text = read(backend.state_file) if read else None
                if text is None:
                    self.warnings.append(f"Proxy '{name}': Can't open server state file "
                                         f"'{backend.state_file}': No such file or directory.")
            backend.load_state(parse_state_file(text, name) if text else [])
        self.maps = {path: {} for path in map_paths}
        self.maps.update((path, parse_map(text)) for path, text in (maps or {}).items())
        self.cert, self.cert_pending, self.certs = cert, None, dict(certs or {})

    # -- checks ------------------------------------------------------------------------
    def run_checks(self, until: float) -> None:
        for backend in self.backends.values():
            backend.run_checks(until)

    # -- what a request gets ------------------------------------------------------------
    def load_recorded(self, stat_text: str, state_text: str, *, admin_from_stat: bool) -> None:
        """The app's backend as a recorded `show stat` and `show servers state` show it
        (SimBackend.load_recorded)."""
        backend = SimBackend(self.backend, self.clock, self.checks_pass)
        backend.load_recorded(stat_text, state_text, admin_from_stat=admin_from_stat)
        self.backends = {self.backend: backend}

    def usable(self) -> list[Line]:
        return self.own.usable()

    def serve(self, container_at: Callable[[int], Container | None],
              healthy: Callable[[Container], bool]) -> Container | None:
        """One request to the app: the container that answers it, or None."""
        return self.own.serve(container_at, healthy)

    def status(self, line: Line) -> str:
        return self.own.status(line)

    def show_stat(self) -> str:
        return self.own.show_stat()

    def show_servers_state(self) -> str:
        return self.own.show_servers_state()

    # -- the runtime API ---------------------------------------------------------------
    def answer(self, command: str) -> str:
        if command.split(" ", 3)[1:3] == ["ssl", "cert"]:
            return self.ssl_cert(command)
        if "; " in command:
            return "".join(self.answer(part) for part in command.split("; "))
        words = command.split()
        if words[:2] == ["show", "stat"] and len(words) > 2:
            backend = self.backends.get(words[2])
            if backend is None:
                return "No such proxy.\n\n"  # recorded
            if command == haproxy.command_show_stat(backend.name):
                return backend.show_stat() + "\n"
        if words[:3] == ["show", "servers", "state"] and len(words) > 3:
            backend = self.backends.get(words[3])
            if backend is None:
                return "Can't find backend.\n\n"  # recorded
            return backend.show_servers_state() + "\n"
        if command == "show servers state":  # every backend, in the config's order
            return "\n".join(["1", STATE_HEADER, *(row for backend in self.backends.values()
                                                   for row in backend.state_rows())]) + "\n\n"
        if command == "show stat":  # every proxy: the frontend, each backend's servers, its own
            frontend = {"pxname": "http", "svname": "FRONTEND", "iid": "2", "status": "OPEN"}
            rows = [STAT_HEADER, stat_row(frozenset(frontend)).format_map(frontend)]
            for backend in self.backends.values():
                rows += [*backend.stat_rows(), backend.backend_row()]
            return "\n".join(rows) + "\n\n"
        if command == "show info":
            return show_info().replace("\nPid: 8\n", f"\nPid: {self.pid}\n")
        if words[:2] == ["set", "server"] and len(words) > 3:
            name, _, line_name = words[2].partition("/")
            backend = self.backends.get(name)
            if backend is None:
                return "No such backend.\n\n"  # recorded
            line = backend.lines.get(line_name)
            if line is None:
                return "No such server.\n\n"  # recorded
            return backend.set_server(line, words[3:])
        if words[:2] in (["show", "map"], ["add", "map"], ["set", "map"], ["del", "map"],
                         ["clear", "map"]) and len(words) > 2:
            return self.map_command(words)
        raise UnknownCommand(f"runtime API: {command!r}")

    def map_command(self, words: list[str]) -> str:
        """A map by its path (the file the config names): HAProxy 2.6's answers, recorded
        (fixtures/show_map_two_apps_hosts.txt and the add/clear ones)."""
        entries = self.maps.get(words[2])
        if entries is None:
            return UNKNOWN_MAP
        if words[0] == "show":
            return "".join(f"0x0 {k} {v}\n" for k, v in entries.items()) + "\n"
        if words[0] in ("add", "set"):
            entries[words[3]] = " ".join(words[4:])
        elif words[0] == "clear":
            entries.clear()
        else:
            entries.pop(words[3], None)
        return "\n"

    def ssl_cert(self, command: str) -> str:
        """`set`, `commit`, `abort` and `show ssl cert FILE`, HAProxy 2.6's answers (one
        transaction at a time; a file of `certs`, else the one the config names, `crt`);
        `show ssl cert` alone: the open transaction's file, then every file."""
        first, _, payload = command.partition("\n")
        if first.strip() == "show ssl cert":
            open_one = (f"# transaction\n*{self.cert_pending_for}\n"
                        if self.cert_pending is not None else "")
            return open_one + "# filename\n" + "".join(f"{path}\n" for path in self.certs)
        verb, path = first.split()[0], first.split()[3]
        if verb == "set" and first.endswith(" <<"):
            answer = "updated" if self.cert_pending is not None else "created"
            self.cert_pending = payload.strip("\n") + "\n"
            self.cert_pending_for = self.cert_pending_for if answer == "updated" else path
            return f"Transaction {answer} for certificate {path}!\n"
        if verb == "commit":
            if self.cert_pending is None:
                return f"No ongoing transaction! !\nCan't commit {path}!\n"
            if path in self.certs:
                self.certs[path] = self.cert_pending
            else:
                self.cert = self.cert_pending
            self.cert_pending = None
            return f"Committing {path}.\nSuccess!\n"
        if verb == "abort":
            if self.cert_pending is None:
                return "No ongoing transaction!\n"
            self.cert_pending = None
            return f"Transaction aborted for certificate '{path}'!\n"
        pem = self.certs.get(path, self.cert)
        if verb == "show" and pem is not None:
            return show_ssl_cert(path, pem)
        raise UnknownCommand(f"runtime API: {first!r}")


@functools.cache
def show_info() -> str:
    return (FIXTURES / "show_info_2.6.12.txt").read_text()


@functools.cache
def show_ssl_cert(path: str, pem: str) -> str:
    """`show ssl cert FILE` of a certificate file (chain and key), as the recording shows it
    (haproxy-2.6-show-ssl-cert.txt)."""
    leaf = x509.load_pem_x509_certificate(pem.encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    serial = f"{leaf.serial_number:X}"
    serial = serial.zfill(len(serial) + len(serial) % 2)  # whole bytes
    when = "%b %d %H:%M:%S %Y GMT"
    return (f"Filename: {path}\nStatus: Used\nSerial: {serial}\n"
            f"notBefore: {leaf.not_valid_before_utc.strftime(when)}\n"
            f"notAfter: {leaf.not_valid_after_utc.strftime(when)}\n"
            "Subject Alternative Name: "
            f"{', '.join('DNS:' + n for n in names.get_values_for_type(x509.DNSName))}\n"
            f"Algorithm: EC256\nSHA1 FingerPrint: {leaf.fingerprint(hashes.SHA1()).hex().upper()}\n"
            f"Subject: {slashed(leaf.subject)}\nIssuer: {slashed(leaf.issuer)}\n"
            "OCSP Response Key: \n\n")  # and the empty line that ends every answer


def slashed(name: x509.Name) -> str:
    """A distinguished name as HAProxy shows it: `/CN=shop.test/O=slotswap placeholder`, in
    the certificate's order (recorded: fixtures/apps_show_ssl_cert_shop.txt)."""
    return "".join(f"/{rdn.rfc4514_string()}" for rdn in name.rdns)
