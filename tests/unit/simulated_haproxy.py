"""The simulated server's HAProxy (simulated_server.py): the app's backend as the kit's
config makes it, each line's admin and operational state, health checks with rise and fall
on a simulated clock, counters, the runtime API's answers in the recorded formats, a
restart from the config and the server-state file; and the clock itself, which the
modules that poll are put on (patch_time)."""

from __future__ import annotations

import functools
import re
import threading
import time as real_time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from tests.unit.fake_server import FIXTURES

if TYPE_CHECKING:
    from tests.unit.simulated_docker import Container

STAT_HEADER = (FIXTURES / "show_stat_live_web2.csv").read_text().splitlines()[0]
STAT_COLUMNS = STAT_HEADER[2:].rstrip(",").split(",")
STATE_HEADER = (FIXTURES / "show_servers_state_live_web1.txt").read_text().splitlines()[1]

# Admin state bits (HAProxy's SRV_ADMF_*): forced maint, config maint (`disabled`), drain.
# and maint because its name does not resolve.
FMAINT, CMAINT, FDRAIN, RMAINT = 0x01, 0x04, 0x08, 0x20


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

class UnknownCommand(AssertionError):
    """The kit sent what the simulator does not know: it must not guess an answer."""


# -- HAProxy --------------------------------------------------------------------------------

@dataclass
class Line:
    """One server line of the backend."""

    name: str
    sid: int
    address: str
    port: int
    check_port: int
    admin: int = 0
    up: bool = True
    health: int = 0
    next_check: float = 0.0
    changed_at: float = 0.0
    check_status: str = "INI"
    check_code: str = ""
    check_desc: str = "Initializing"
    fqdn: str = "-"
    counters: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    @property
    def admin_name(self) -> str:
        if self.admin & FMAINT:
            return "MAINT"
        return "DRAIN" if self.admin & FDRAIN else "READY"


CONFIG_LINE = re.compile(r"^\s*server\s+(\S+)\s+([\d.]+):(\d+)((?:\s+port\s+\d+)?)"
                         r"(\s+disabled)?\s*$")
DEFAULT_SERVER = re.compile(r"default-server check inter (\d+)ms fastinter (\d+)ms "
                            r"downinter (\d+)ms rise (\d+) fall (\d+)")


RECORDED_COUNTERS = ("scur", "req_tot", "hrsp_2xx", "hrsp_5xx", "econ", "eresp", "wretr",
                     "wredis", "chkfail", "chkdown")


def admin_of(status: str) -> int:
    """Admin bits that give this `show stat` status."""
    if status == "MAINT (resolution)":
        return RMAINT
    return FMAINT if status == "MAINT" else FDRAIN if status == "DRAIN" else 0


def state_row(text: str, name: str) -> dict[str, str]:
    """One server's row of `show servers state`, by column."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[1][2:].split()
    rows = [dict(zip(header, line.split(), strict=False)) for line in lines[2:]]
    return next(row for row in rows if row["srv_name"] == name)


class SimHaproxy:
    """The app's backend, its runtime API and its maintenance map."""

    def __init__(self, backend: str, config: str, clock: SimClock,
                 checks_pass: Callable[[int], tuple[bool, str]]) -> None:
        self.backend, self.clock, self.checks_pass = backend, clock, checks_pass
        self.config = config
        self.lines: dict[str, Line] = {}
        self.maps: dict[str, dict[str, str]] = {}
        # The certificate file HAProxy serves (PEM), and the one a `set ssl cert` staged.
        self.cert: str | None = None
        self.cert_pending: str | None = None
        self.restarts = 0
        self.pid = 7  # a new process (a start, a reload's workers) has the next one
        self.ran: set[str] = set()  # every config a process of it started from
        self.start(None)

    def start(self, state_file: str | None, maps: dict[str, str] | None = None,
              cert: str | None = None) -> None:
        """A new process: the config's lines, then what the server-state file says; each
        map from its file (`maps`: path in HAProxy -> the file's text, `key value` lines);
        the certificate from its file (no transaction)."""
        self.pid += 1
        self.ran.add(self.config)
        match = DEFAULT_SERVER.search(self.config)
        assert match, "the config has no default-server line of the kit's"
        inter, fast, down, self.rise, self.fall = (int(g) for g in match.groups())
        self.inter, self.fastinter, self.downinter = inter / 1000, fast / 1000, down / 1000
        self.lines = {}
        for number, found in enumerate(filter(None, map(CONFIG_LINE.match,
                                                         backend_lines(self.config,
                                                                       self.backend))),
                                       start=1):
            name, address, port, check, disabled = found.groups()
            check_port = int(check.split()[-1]) if check.strip() else int(port)
            # A new process counts a server up, to fall at its first failed check.
            self.lines[name] = Line(name, number, address, int(port), check_port,
                                    admin=FMAINT | CMAINT if disabled else 0, up=True,
                                    health=self.rise, next_check=self.clock.now,
                                    changed_at=self.clock.now)
        for row in (parse_state_file(state_file, self.backend) if state_file else []):
            line = self.lines.get(row["srv_name"])
            if line is None:
                continue
            line.admin = int(row["srv_admin_state"])
            line.up = row["srv_op_state"] == "2"
            line.health = self.rise + self.fall - 1 if line.up else 0
            if row["srv_addr"] not in ("-", ""):
                line.address, line.port = row["srv_addr"], int(row["srv_port"])
            if row["srv_check_port"] != "0":
                line.check_port = int(row["srv_check_port"])
        self.maps = {path: dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
                     for path, text in (maps or {}).items()}
        self.cert, self.cert_pending = cert, None

    # -- checks ------------------------------------------------------------------------
    def run_checks(self, until: float) -> None:
        while True:
            due = [line for line in self.lines.values()
                   if not line.admin & FMAINT and line.next_check <= until]
            if not due:
                return
            line = min(due, key=lambda line: line.next_check)
            self.check(line, line.next_check)

    def check(self, line: Line, at: float) -> None:
        top = self.rise + self.fall - 1
        passed, desc = self.checks_pass(line.check_port) if line.address == docker.LOOPBACK \
            else (False, "Connection refused")
        line.check_status, line.check_code, line.check_desc = (
            ("L7OK", "200", "Layer7 check passed") if passed else ("L4CON", "", desc))
        if passed:
            line.health = min(top, line.health + 1)
            if not line.up and line.health >= self.rise:
                line.up, line.health, line.changed_at = True, top, at
        else:
            if line.up:
                line.count("chkfail")
            line.health = max(0, line.health - 1)
            if line.up and line.health < self.rise:
                line.up, line.health, line.changed_at = False, 0, at
                line.count("chkdown")
        steady = (line.up and line.health == top) or (not line.up and line.health == 0)
        interval = self.inter if line.up and steady else self.downinter if steady \
            else self.fastinter
        line.next_check = at + interval

    # -- what a request gets ------------------------------------------------------------
    def load_recorded(self, stat_text: str, state_text: str, *, admin_from_stat: bool) -> None:
        """The lines as a recorded `show stat` and `show servers state` show them. The two
        were read one after the other, not at one instant (fixtures/README.md): a drain may
        be in one and not yet in the other, so the admin state comes from the one asked."""
        states = haproxy.parse_servers_state(state_text)
        self.lines = {}
        checked = next(row for row in haproxy.parse_stat_rows(stat_text) if row["check_rise"])
        self.rise, self.fall = int(checked["check_rise"]), int(checked["check_fall"])
        for sid, row in enumerate(haproxy.parse_stat_rows(stat_text), start=1):
            name = row["svname"]
            if name in ("FRONTEND", "BACKEND"):
                continue
            state = states[name]
            address, _, port = row["addr"].rpartition(":")
            state_port = state_row(state_text, name)
            line = Line(name, sid, address, int(port or state_port["srv_port"]),
                        int(state_port["srv_check_port"]) or int(port or 0),
                        admin=admin_of(row["status"]) if admin_from_stat
                        else state.admin_state, up=state.op_state == 2, fqdn=state.fqdn,
                        health=int(row["check_health"] or 0),
                        changed_at=self.clock.now - int(row["lastchg"] or 0),
                        check_status=row["check_status"], check_code=row["check_code"],
                        check_desc=row["check_desc"])
            line.counters = {key: int(row[key] or 0) for key in RECORDED_COUNTERS}
            self.lines[name] = line

    def usable(self) -> list[Line]:
        """The lines a new request may go to, in order (balance first)."""
        return [line for line in self.lines.values()
                if not line.admin & (FMAINT | FDRAIN | RMAINT) and line.up]

    def serve(self, container_at: Callable[[int], Container | None],
              healthy: Callable[[Container], bool]) -> Container | None:
        """One request: the container that answers it, or None (a 503 or an error)."""
        for line in self.usable():
            container = container_at(line.port) if line.address == docker.LOOPBACK else None
            if container is not None and container.running and healthy(container):
                line.count("req_tot")
                line.count("hrsp_2xx")
                return container
            line.count("econ")
            line.count("wredis")
        return None

    # -- the runtime API ---------------------------------------------------------------
    def answer(self, command: str) -> str:
        if command.split(" ", 3)[1:3] == ["ssl", "cert"]:
            return self.ssl_cert(command)
        if "; " in command:
            return "".join(self.answer(part) for part in command.split("; "))
        words = command.split()
        prefix = f"{self.backend}/"
        if command == haproxy.command_show_stat(self.backend):
            return self.show_stat() + "\n"
        if command in (haproxy.command_show_servers_state(self.backend), "show servers state"):
            return self.show_servers_state() + "\n"  # every backend: the app's is the one
        if command == "show stat":  # every proxy: its frontend listens, then the backend
            frontend = {"pxname": "http-in", "svname": "FRONTEND", "status": "OPEN"}
            return (self.show_stat().replace(
                "\n", "\n" + stat_row(frozenset(frontend)).format_map(frontend) + "\n", 1)
                + "\n")
        if words[:2] == ["show", "stat"] or words[:3] == ["show", "servers", "state"]:
            return (f"Can't find backend '{words[-1]}'.\n" if words[1] == "servers"
                    else "No such proxy.\n")
        if command == "show info":
            return show_info().replace("\nPid: 8\n", f"\nPid: {self.pid}\n")
        if words[:2] == ["set", "server"] and words[2].startswith(prefix):
            line = self.lines.get(words[2][len(prefix):])
            if line is None:
                return "No such server.\n"
            return self.set_server(line, words[3:])
        if words[:2] == ["set", "server"]:
            return "No such backend.\n"
        if words[:2] == ["show", "map"]:
            return "".join(f"0x0 {k} {v}\n" for k, v in self.maps.get(words[2], {}).items())
        if words[:2] in (["add", "map"], ["set", "map"]):
            self.maps.setdefault(words[2], {})[words[3]] = " ".join(words[4:])
            return "\n"
        if words[:2] in (["del", "map"], ["clear", "map"]):
            if words[0] == "clear":
                self.maps[words[2]] = {}
            else:
                self.maps.get(words[2], {}).pop(words[3], None)
            return "\n"
        raise UnknownCommand(f"runtime API: {command!r}")

    def ssl_cert(self, command: str) -> str:
        """`set`, `commit`, `abort` and `show ssl cert FILE`, HAProxy 2.6's answers (one
        transaction at a time; the file the config names, `crt`, the one this knows)."""
        first, _, payload = command.partition("\n")
        verb, path = first.split()[0], first.split()[3]
        if verb == "set" and first.endswith(" <<"):
            answer = "updated" if self.cert_pending is not None else "created"
            self.cert_pending = payload.strip("\n") + "\n"
            return f"Transaction {answer} for certificate {path}!\n"
        if verb == "commit":
            if self.cert_pending is None:
                return f"No ongoing transaction! !\nCan't commit {path}!\n"
            self.cert, self.cert_pending = self.cert_pending, None
            return f"Committing {path}.\nSuccess!\n"
        if verb == "abort":
            if self.cert_pending is None:
                return "No ongoing transaction!\n"
            self.cert_pending = None
            return f"Transaction aborted for certificate '{path}'!\n"
        if verb == "show" and self.cert is not None:
            return show_ssl_cert(path, self.cert)
        raise UnknownCommand(f"runtime API: {first!r}")

    def set_server(self, line: Line, words: list[str]) -> str:
        now = self.clock.now
        if words[:1] == ["state"]:
            was_maint = bool(line.admin & FMAINT)
            # As HAProxy's srv_adm_set_*: the forced bits only; `disabled` in the config
            # (CMAINT) stays a mark, no longer maintenance once FMAINT is cleared.
            line.admin = line.admin & ~(FMAINT | FDRAIN) | {
                "ready": 0, "drain": FDRAIN, "maint": FMAINT}[words[1]]
            line.changed_at = now
            if was_maint and not line.admin & FMAINT:
                line.next_check = now  # its checks were paused in maint
        elif words == ["health", "down"]:
            line.up, line.health, line.changed_at = False, 0, now
            line.next_check = now + self.downinter
        elif words[:1] == ["addr"]:
            line.address, line.port = words[1], int(words[3])
        elif words[:1] == ["check-port"]:
            line.check_port = int(words[1])
        else:
            raise UnknownCommand(f"set server {line.name} {' '.join(words)}")
        return "\n"

    def status(self, line: Line) -> str:
        if line.admin & RMAINT:
            return "MAINT (resolution)"
        if line.admin & FMAINT:
            return "MAINT"
        top = self.rise + self.fall - 1
        if line.up:
            if line.admin & FDRAIN:
                return "DRAIN"
            return "UP" if line.health == top else f"UP {line.health - self.rise + 1}/{self.fall}"
        return "DOWN" if line.health == 0 else f"DOWN {line.health}/{self.rise}"

    def show_stat(self) -> str:
        rows = [STAT_HEADER]
        for line in self.lines.values():
            c = line.counters
            maint = bool(line.admin & FMAINT)
            values = {
                "pxname": self.backend, "svname": line.name, "qcur": "0", "qmax": "0",
                "scur": str(c.get("scur", 0)), "smax": "0", "stot": str(c.get("req_tot", 0)),
                "bin": "0", "bout": "0", "econ": str(c.get("econ", 0)),
                "eresp": str(c.get("eresp", 0)), "wretr": str(c.get("wretr", 0)),
                "wredis": str(c.get("wredis", 0)), "status": self.status(line),
                "weight": "1", "act": "1", "bck": "0", "chkfail": str(c.get("chkfail", 0)),
                "chkdown": str(c.get("chkdown", 0)),
                "lastchg": str(int(self.clock.now - line.changed_at)), "downtime": "0",
                "pid": "1", "iid": "3", "sid": str(line.sid), "lbtot": str(c.get("req_tot", 0)),
                "type": "2", "check_status": "" if maint else line.check_status,
                "check_code": "" if maint else line.check_code,
                "check_duration": "" if maint else "0",
                "hrsp_1xx": "0", "hrsp_2xx": str(c.get("hrsp_2xx", 0)), "hrsp_3xx": "0",
                "hrsp_4xx": "0", "hrsp_5xx": str(c.get("hrsp_5xx", 0)), "hrsp_other": "0",
                "req_tot": str(c.get("req_tot", 0)),
                "check_desc": "" if maint else line.check_desc,
                "check_rise": str(self.rise), "check_fall": str(self.fall),
                "check_health": str(line.health),
                "addr": f"{line.address}:{line.port}" if line.address else "",
                "mode": "http",
            }
            rows.append(stat_row(frozenset(values)).format_map(values))
        return "\n".join(rows) + "\n"

    def show_servers_state(self) -> str:
        rows = ["1", STATE_HEADER]
        for line in self.lines.values():
            check_port = 0 if line.check_port == line.port else line.check_port
            rows.append(
                f"3 {self.backend} {line.sid} {line.name} {line.address or '-'} "
                f"{2 if line.up else 0} {line.admin} 1 1 "
                f"{int(self.clock.now - line.changed_at)} 6 3 {line.health} "
                f"{6 if line.up else 14} 0 0 0 {line.fqdn} {line.port} - 0 {check_port} - - 0")
        return "\n".join(rows) + "\n"


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
            f"Subject: /{leaf.subject.rfc4514_string()}\nIssuer: /{leaf.issuer.rfc4514_string()}\n"
            "OCSP Response Key: \n")


@functools.cache
def stat_row(filled: frozenset[str]) -> str:
    """A row of `show stat` with a field per column in `filled`, the others empty: one
    format, not a lookup per column (a sweep renders it thousands of times)."""
    return ",".join(f"{{{column}}}" if column in filled else "" for column in STAT_COLUMNS) + ","


def backend_lines(config: str, backend: str) -> list[str]:
    """The lines of the backend's section of an haproxy.cfg."""
    section = config[config.index(f"\nbackend {backend}\n") + 1:].split("\n")[1:]
    end = next((i for i, text in enumerate(section) if text and not text[0].isspace()),
               len(section))
    return section[:end]


def parse_state_file(text: str, backend: str) -> list[dict[str, str]]:
    """HAProxy's server-state file: `show servers state`'s own format."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line[2:].split() for line in lines if line.startswith("# ")), [])
    return [dict(zip(header, line.split(), strict=False)) for line in lines
            if not line.startswith("#") and line.strip() != "1"
            and line.split()[1:2] == [backend]]
