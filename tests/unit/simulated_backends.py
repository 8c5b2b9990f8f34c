"""One backend of the simulated HAProxy (simulated_haproxy.py): its server lines as the
kit's config makes them, each line's admin and operational state, health checks with rise
and fall on the simulated clock, counters, the state it loads from a server-state file, and
its part of the runtime API's answers (`show stat <backend> 4 -1`, `show servers state
<backend>`, `set server <backend>/<line> ...`) in the recorded formats. Where HAProxy runs
one app, its config has one backend; the shared HAProxy has one per app."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from tests.unit.fake_server import FIXTURES

if TYPE_CHECKING:
    from tests.unit.simulated_docker import Container
    from tests.unit.simulated_haproxy import SimClock

STAT_HEADER = (FIXTURES / "show_stat_live_web2.csv").read_text().splitlines()[0]
STAT_COLUMNS = STAT_HEADER[2:].rstrip(",").split(",")
STATE_HEADER = (FIXTURES / "show_servers_state_live_web1.txt").read_text().splitlines()[1]

# Admin state bits (HAProxy's SRV_ADMF_*): forced maint, config maint (`disabled`), drain.
# and maint because its name does not resolve.
FMAINT, CMAINT, FDRAIN, RMAINT = 0x01, 0x04, 0x08, 0x20
# A backend's proxy id (`iid`, `be_id`): HAProxy numbers proxies in the order the config
# declares them; the kit's configs have two before the first backend (recorded: the shared
# HAProxy's `admin` is 3 and `shop` 4, fixtures/show_servers_state_two_apps.txt).
FIRST_BACKEND_ID = 3


class UnknownCommand(AssertionError):
    """The kit sent what the simulator does not know: it must not guess an answer."""


@dataclass
class Line:
    """One server line of a backend."""

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
STATE_FILE_NAME = re.compile(r"^\s*server-state-file-name\s+(\S+)\s*$", re.MULTILINE)
LOCAL_STATE = re.compile(r"^\s*load-server-state-from-file\s+local\s*$", re.MULTILINE)


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


class SimBackend:
    """One backend: its lines, their checks, its state file (`local`) and its answers."""

    def __init__(self, name: str, clock: SimClock,
                 checks_pass: Callable[[int], tuple[bool, str]], *, iid: int = FIRST_BACKEND_ID,
                 section: Iterable[str] = ()) -> None:
        self.name, self.clock, self.checks_pass, self.iid = name, clock, checks_pass, iid
        self.lines: dict[str, Line] = {}
        self.rise, self.fall = 2, 3
        self.inter = self.fastinter = self.downinter = 0.1
        # `load-server-state-from-file local` + `server-state-file-name`: its own file.
        self.state_file: str | None = None
        self.section: list[str] = []  # its lines in the config
        if section:
            self.configure(list(section))

    def copy(self, clock: SimClock, checks_pass: Callable[[int], tuple[bool, str]]) -> SimBackend:
        """This backend as it is now, on another clock and server (SimulatedServer.clone)."""
        twin = copy.copy(self)
        twin.clock, twin.checks_pass, twin.lines = clock, checks_pass, copy.deepcopy(self.lines)
        return twin

    def configure(self, section: list[str]) -> None:
        """The lines as the config's section makes them, as a new process starts them."""
        self.section, text = section, "\n".join(section)
        match = DEFAULT_SERVER.search(text)
        assert match, f"backend {self.name} has no default-server line of the kit's"
        inter, fast, down, self.rise, self.fall = (int(g) for g in match.groups())
        self.inter, self.fastinter, self.downinter = inter / 1000, fast / 1000, down / 1000
        named = STATE_FILE_NAME.search(text)
        self.state_file = named.group(1) if named and LOCAL_STATE.search(text) else None
        now = self.clock.now
        for number, found in enumerate(filter(None, map(CONFIG_LINE.match, section)), start=1):
            name, address, port, check, disabled = found.groups()
            check_port = int(check.split()[-1]) if check.strip() else int(port)
            # A new process counts a server up, to fall at its first failed check.
            self.lines[name] = Line(name, number, address, int(port), check_port,
                                    admin=FMAINT | CMAINT if disabled else 0, up=True,
                                    health=self.rise, next_check=now, changed_at=now)

    def load_state(self, rows: list[dict[str, str]]) -> None:
        """What a server-state file says of this backend's lines."""
        for row in rows:
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
            raise UnknownCommand(f"set server {self.name}/{line.name} {' '.join(words)}")
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

    def stat_rows(self) -> list[str]:
        """`show stat <backend> 4 -1`'s rows, the header apart."""
        rows = []
        for line in self.lines.values():
            c = line.counters
            maint = bool(line.admin & FMAINT)
            values = {
                "pxname": self.name, "svname": line.name, "qcur": "0", "qmax": "0",
                "scur": str(c.get("scur", 0)), "smax": "0", "stot": str(c.get("req_tot", 0)),
                "bin": "0", "bout": "0", "econ": str(c.get("econ", 0)),
                "eresp": str(c.get("eresp", 0)), "wretr": str(c.get("wretr", 0)),
                "wredis": str(c.get("wredis", 0)), "status": self.status(line),
                "weight": "1", "act": "1", "bck": "0", "chkfail": str(c.get("chkfail", 0)),
                "chkdown": str(c.get("chkdown", 0)),
                "lastchg": str(int(self.clock.now - line.changed_at)), "downtime": "0",
                "pid": "1", "iid": str(self.iid), "sid": str(line.sid),
                "lbtot": str(c.get("req_tot", 0)),
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
        return rows

    def backend_row(self) -> str:
        """The backend's own row of an unscoped `show stat` (after its servers')."""
        values = {"pxname": self.name, "svname": "BACKEND", "iid": str(self.iid), "type": "1",
                  "status": "UP" if self.usable() else "DOWN", "mode": "http"}
        return stat_row(frozenset(values)).format_map(values)

    def show_stat(self) -> str:
        return "\n".join([STAT_HEADER, *self.stat_rows()]) + "\n"

    def state_rows(self) -> list[str]:
        rows = []
        for line in self.lines.values():
            check_port = 0 if line.check_port == line.port else line.check_port
            rows.append(
                f"{self.iid} {self.name} {line.sid} {line.name} {line.address or '-'} "
                f"{2 if line.up else 0} {line.admin} 1 1 "
                f"{int(self.clock.now - line.changed_at)} 6 3 {line.health} "
                f"{6 if line.up else 14} 0 0 0 {line.fqdn} {line.port} - 0 {check_port} - - 0")
        return rows

    def show_servers_state(self) -> str:
        return "\n".join(["1", STATE_HEADER, *self.state_rows()]) + "\n"


@functools.cache
def stat_row(filled: frozenset[str]) -> str:
    """A row of `show stat` with a field per column in `filled`, the others empty: one
    format, not a lookup per column (a sweep renders it thousands of times)."""
    return ",".join(f"{{{column}}}" if column in filled else "" for column in STAT_COLUMNS) + ","


def backend_sections(config: str) -> dict[str, list[str]]:
    """Each `backend <name>` section of an haproxy.cfg (several files' text, one after the
    other), in the order declared: its lines after the `backend` line."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for text in config.split("\n"):
        if text and not text[0].isspace():  # a section's first line (or a file's comment)
            words = text.split()
            current = sections.setdefault(words[1], []) \
                if words[0] == "backend" and len(words) > 1 else None
        elif current is not None:
            current.append(text)
    return sections


def backend_lines(config: str, backend: str) -> list[str]:
    """The lines of the backend's section of an haproxy.cfg."""
    return backend_sections(config)[backend]


def parse_state_file(text: str, backend: str) -> list[dict[str, str]]:
    """HAProxy's server-state file: `show servers state`'s own format."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line[2:].split() for line in lines if line.startswith("# ")), [])
    return [dict(zip(header, line.split(), strict=False)) for line in lines
            if not line.startswith("#") and line.strip() != "1"
            and line.split()[1:2] == [backend]]
