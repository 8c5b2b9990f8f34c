"""A simulated server: a `ServerLike` whose HAProxy, Docker engine and files live in memory
(the lock and history scripts run with the real `sh` in a folder of this machine), on a
simulated clock, with a fault schedule. It speaks as the real ones do: `show stat`, `show
servers state` and `docker inspect` are rendered in the recorded formats (see
test_simulated_server.py, which holds it to tests/unit/fixtures).

- HAProxy: the backend of the app as the kit's config makes it (server/haproxy_config.py:
  balance first, web1, web2, then their fallback lines `disabled`; checks with inter,
  fastinter, downinter, rise, fall). Each line has an admin state (READY, DRAIN, MAINT) and
  an operational state from its checks, run on the simulated clock: a check passes when a
  running container publishes the line's check port and runs a healthy version. A restart
  comes back from the config and, if there is one, the server-state file.
- Docker: containers (name, image, labels, env file, running or exited, started time,
  restart policy), the commands the kit sends, an engine restart (containers with a restart
  policy that were not stopped come back; HAProxy restarts), a frozen engine (every Docker
  command hangs until its deadline).
- A fault schedule: at the k-th call (every run, runtime_api and file call counts), one of
  FAULTS. Unknown commands fail loudly: the simulator never answers what it does not know.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import threading
import time as real_time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.login_facts import LoginFacts
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import STATE_NAME, haproxy_dir, lock_dir
from slotswap.core import interrupts
from slotswap.core.timings import Timings
from slotswap.remote.server import (
    CommandDeadlineError,
    CommandResult,
    ConnectionLostError,
    RemoteCommandError,
    RemoteDirError,
)
from slotswap.server import history, locking
from slotswap.server.locking import LockOwner, new_owner
from tests.unit.fake_server import FIXTURES, Login

# What can go wrong at a call (SimulatedServer.faults): the operator's Ctrl-C (the command
# in flight finishes, the run sees it at its next checkpoint), the connection lost before
# the command reached the server or after it ran (its answer lost), the command past its
# deadline (it ran all the same), a Docker engine that stops answering from then on, HAProxy
# or the Docker engine restarting (a reboot, an upgrade, an OOM kill), and the run's lock
# taken over by another run (a laptop asleep past its lease).
FAULTS = ("interrupt", "lost_before", "lost_after", "deadline", "frozen_engine",
          "haproxy_restart", "engine_restart", "lease_taken")

STAT_HEADER = (FIXTURES / "show_stat_live_web2.csv").read_text().splitlines()[0]
STAT_COLUMNS = STAT_HEADER[2:].rstrip(",").split(",")
STATE_HEADER = (FIXTURES / "show_servers_state_live_web1.txt").read_text().splitlines()[1]
INSPECT_TEMPLATE = json.dumps(json.loads(
    (FIXTURES / "docker_inspect_live_web1.json").read_text())[0])

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
        if threading.current_thread().name.startswith("watch-"):
            # A watch in the window polls only once the rollout waits for the window to
            # close: how many looks it takes meanwhile does not hang on how threads meet.
            self.window_closing.wait(timeout=5)
        self.advance(max(0.0, seconds))

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

    def __getattr__(self, name: str) -> Any:
        return getattr(real_time, name)


POLLING_MODULES = ("slotswap.server.swap", "slotswap.fleet.server_run",
                   "slotswap.fleet.watch_window")


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


# -- Docker ---------------------------------------------------------------------------------

@dataclass
class Container:
    name: str
    image: str  # the reference it was run from
    image_id: str
    labels: dict[str, str]
    env_file: str | None = None
    restart: str = "no"
    running: bool = True
    exit_code: int = 0
    started_at: float = 0.0
    stopped_by_user: bool = False  # `docker stop`: unless-stopped does not start it again
    published: tuple[tuple[int, int], ...] = ()
    stop_timeout: int = 10
    serial: int = 0

    @property
    def version(self) -> str | None:
        return self.labels.get(docker.LABEL_VERSION)


def rfc3339(seconds: float) -> str:
    whole = real_time.strftime("%Y-%m-%dT%H:%M:%S", real_time.gmtime(int(seconds)))
    return f"{whole}.{int((seconds % 1) * 1e9):09d}Z"


def inspect_item(container: Container, wall: Callable[[float], float]) -> dict[str, Any]:
    """One container as `docker container inspect` shows it (the recording's shape)."""
    item = json.loads(INSPECT_TEMPLATE)
    item["Id"] = f"{container.serial:064x}"
    item["Name"] = f"/{container.name}"
    item["Image"] = container.image_id
    state = item["State"]
    state.update(Status="running" if container.running else "exited",
                 Running=container.running, ExitCode=container.exit_code,
                 StartedAt=rfc3339(wall(container.started_at)),
                 Pid=1000 + container.serial if container.running else 0)
    item["Config"]["Image"] = container.image
    item["Config"]["Labels"] = dict(container.labels)
    item["HostConfig"]["RestartPolicy"] = {"Name": container.restart, "MaximumRetryCount": 0}
    item["HostConfig"]["PortBindings"] = {
        f"{inside}/tcp": [{"HostIp": docker.LOOPBACK, "HostPort": str(outside)}]
        for outside, inside in container.published}
    return item


VALUE_OPTIONS = {"--name", "--network", "--network-alias", "--publish", "--restart",
                 "--stop-timeout", "--label", "--env-file", "--env", "--volume",
                 "--stop-signal", "--memory", "--cpus", "--log-driver", "--log-opt", "--user"}
FLAGS = {"--detach", "--rm", "--interactive", "--tty"}


def parse_run(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """`docker run` options (each value of a repeated one) and what follows: image, command."""
    options: dict[str, list[str]] = {}
    rest = argv[2:]
    while rest and rest[0].startswith("--"):
        option = rest.pop(0)
        if option in FLAGS:
            options.setdefault(option, []).append("")
        elif option in VALUE_OPTIONS:
            options.setdefault(option, []).append(rest.pop(0))
        else:
            raise UnknownCommand(f"docker run option {option}")
    return options, rest


class UnknownCommand(AssertionError):
    """The kit sent what the simulator does not know: it must not guess an answer."""


DOCKER_CHANGES = {"run", "rm", "stop", "start", "kill", "rename", "update", "create"}


def changes_something(argv: list[str]) -> bool:
    """A command that changes what runs (the lock's and the history's scripts do not)."""
    if argv[:1] == ["docker"]:
        return argv[1] in DOCKER_CHANGES or argv[1:3] == ["image", "rm"]
    return argv[:1] == ["rm"]


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
        if self.admin & (FMAINT | CMAINT):
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
        self.restarts = 0
        self.start(None)

    def start(self, state_file: str | None) -> None:
        """A new process: the config's lines, then what the server-state file says."""
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
        self.maps = {}

    # -- checks ------------------------------------------------------------------------
    def run_checks(self, until: float) -> None:
        while True:
            due = [line for line in self.lines.values()
                   if not line.admin & (FMAINT | CMAINT) and line.next_check <= until]
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
        return [line for line in self.lines.values() if line.admin == 0 and line.up]

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
        if "; " in command:
            return "".join(self.answer(part) for part in command.split("; "))
        words = command.split()
        prefix = f"{self.backend}/"
        if command == haproxy.command_show_stat(self.backend):
            return self.show_stat() + "\n"
        if command == haproxy.command_show_servers_state(self.backend):
            return self.show_servers_state() + "\n"
        if words[:2] == ["show", "stat"] or words[:3] == ["show", "servers", "state"]:
            return (f"Can't find backend '{words[-1]}'.\n" if words[1] == "servers"
                    else "No such proxy.\n")
        if command == "show info":
            return (FIXTURES / "show_info_2.6.12.txt").read_text()
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
            if words[1] == "clear":
                self.maps.pop(words[2], None)
            else:
                self.maps.get(words[2], {}).pop(words[3], None)
            return "\n"
        raise UnknownCommand(f"runtime API: {command!r}")

    def set_server(self, line: Line, words: list[str]) -> str:
        now = self.clock.now
        if words[:1] == ["state"]:
            was_maint = bool(line.admin & (FMAINT | CMAINT))
            line.admin = {"ready": 0, "drain": FDRAIN, "maint": FMAINT}[words[1]]
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
        if line.admin & (FMAINT | CMAINT):
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
            maint = bool(line.admin & (FMAINT | CMAINT))
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
            rows.append(",".join(values.get(column, "") for column in STAT_COLUMNS) + ",")
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


# -- the server -----------------------------------------------------------------------------

class FaultInjected(Exception):
    """Marks a call at which the schedule struck (SimulatedServer.struck)."""


@dataclass
class Fault:
    at: int  # the call's index, from 1
    kind: str


class SimulatedServer:
    """A ServerLike over the simulation (see the module's docstring). `after_call` is told
    after every call, faulted or not, with this server: the sweep checks what serves."""

    def __init__(self, name: str, inventory: Inventory, clock: SimClock, root: Path, *,
                 healthy: Callable[[str | None], bool] = lambda version: True,
                 config: str) -> None:
        self.name = name
        self.inventory = inventory
        self.host = next(h for h in inventory.hosts if h.name == name)
        self.timings = Timings()
        self.connection = Login("root")
        self.is_connected = True
        self.clock = clock
        self.root = root / name
        self.root.mkdir(parents=True, exist_ok=True)
        self.healthy = healthy
        # Versions that pass their checks at first, then fail: seconds after their start.
        self.failing_after: dict[str, float] = {}
        self.containers: dict[str, Container] = {}
        self.images: dict[str, str] = {}  # reference -> image ID on this server
        self.registry: dict[str, str] = {}  # what a pull can get: reference -> image ID
        self.serial = 0
        self.haproxy = SimHaproxy(inventory.app, config, clock, self.check_passes)
        clock.haproxies.append(self.haproxy)
        self.calls = 0
        self.faults: list[Fault] = []
        self.frozen = False
        self.struck: list[tuple[int, str, str]] = []  # (call, fault, step_name)
        self.unknown: list[str] = []  # what the kit sent that the simulator does not know
        self.log: list[str] = []  # every call, in order
        self.after_call: Callable[[SimulatedServer, str], None] = lambda server, what: None
        self.before_call: Callable[[SimulatedServer], None] = lambda server: None
        self.lease_lost_changes: list[str] = []  # changes made after the lease was taken
        self.guard = threading.RLock()
        self.real_shell = False  # the fixed scripts run by the real `sh` (slower)

    # -- the world ---------------------------------------------------------------------
    def container_at(self, port: int) -> Container | None:
        return next((c for c in self.containers.values() if c.running
                     and any(outside == port for outside, _ in c.published)), None)

    def check_passes(self, port: int) -> tuple[bool, str]:
        container = self.container_at(port)
        if container is None:
            return False, "Connection refused"
        return self.answers(container), "HTTP status check returned code <503>"

    def answers(self, container: Container) -> bool:
        """The app in this container answers (its checks and requests)."""
        fails = self.failing_after.get(container.version or "")
        if fails is not None and self.clock.now - container.started_at > fails:
            return False
        return self.healthy(container.version)

    def request(self) -> Container | None:
        """What one request to the app gets now: the container answering it, or None."""
        return self.haproxy.serve(self.container_at, self.answers)

    def routed(self) -> Container | None:
        """The container HAProxy sends a new request to first (balance first): the first
        line in rotation with a running container, whether its app answers or not (what
        it cannot answer goes on to the next line, a fallback line during a watch)."""
        for line in self.haproxy.usable():
            container = self.container_at(line.port) if line.address == docker.LOOPBACK \
                else None
            if container is not None:
                return container
        return None

    @property
    def maintenance(self) -> bool:
        return any(self.haproxy.maps.values())

    def wall(self, monotonic: float) -> float:
        return 1_800_000_000.0 + monotonic

    def add_image(self, tag: str, *, on_server: bool = True) -> str:
        ref = self.inventory.image_ref(tag)
        image_id = "sha256:" + f"{abs(hash(ref)) % 16**16:016x}" * 4
        self.registry[ref] = image_id
        if on_server:
            self.images[ref] = image_id
        return image_id

    def clone(self, clock: SimClock, root: Path) -> SimulatedServer:
        """This server as it is now, on `clock`, its files copied under `root`."""
        twin = SimulatedServer(self.name, self.inventory, clock, root, healthy=self.healthy,
                               config=self.haproxy.config)
        twin.failing_after = dict(self.failing_after)
        twin.containers = copy.deepcopy(self.containers)
        twin.images, twin.registry, twin.serial = dict(self.images), dict(self.registry), \
            self.serial
        twin.haproxy.lines = copy.deepcopy(self.haproxy.lines)
        twin.haproxy.maps = copy.deepcopy(self.haproxy.maps)
        twin.calls = self.calls
        shutil.copytree(self.root, twin.root, dirs_exist_ok=True)
        return twin

    def restart_haproxy(self) -> None:
        self.haproxy.restarts += 1
        self.haproxy.start(self.read_local(f"{haproxy_dir(self.inventory)}/{STATE_NAME}"))

    def restart_engine(self) -> None:
        """Every container stops; those with a restart policy that were running (or were not
        stopped by `docker stop`, for unless-stopped) start again; HAProxy too."""
        for container in self.containers.values():
            comes_back = container.restart == "always" or (
                container.restart == "unless-stopped" and not container.stopped_by_user)
            if container.running and not comes_back:
                container.running, container.exit_code = False, 255
            elif comes_back and (container.running or container.restart == "always"
                                 or not container.stopped_by_user):
                container.running, container.started_at = True, self.clock.now
        self.restart_haproxy()

    # -- faults ------------------------------------------------------------------------
    def begin_call(self, what: str, *, docker_command: bool = False, changes: bool = False,
                   timeout: float | None = None) -> str | None:
        """Count the call, apply a fault due now; returns what must happen to the call
        itself: 'lost_after', 'deadline', 'interrupt' (after it), or None."""
        self.before_call(self)
        with self.guard:
            self.calls += 1
            self.log.append(what)
            due = [fault for fault in self.faults if fault.at == self.calls]
        after = None
        for fault in due:
            self.struck.append((self.calls, fault.kind, step_name(self, what)))
            if fault.kind == "lost_before":
                self.is_connected = False
                self.after_call(self, what)
                raise ConnectionLostError(f"{self.name}: lost the SSH connection (simulated)")
            if fault.kind == "frozen_engine":
                self.frozen = True
            elif fault.kind == "haproxy_restart":
                self.restart_haproxy()
            elif fault.kind == "engine_restart":
                self.restart_engine()
            elif fault.kind == "lease_taken":
                self.take_lease_over()
            else:
                after = fault.kind
        if self.frozen and docker_command:
            self.clock.advance(timeout or self.inventory.timeouts.command)
            self.after_call(self, what)
            raise CommandDeadlineError(self.name, what, timeout or self.inventory.timeouts.command)
        if self.lease_taken and changes:
            self.lease_lost_changes.append(what)
        return after

    def end_call(self, what: str, after: str | None, *, timeout: float | None = None) -> None:
        self.is_connected = True
        self.after_call(self, what)
        if after == "lost_after":
            raise ConnectionLostError(f"{self.name}: lost the SSH connection (simulated)")
        if after == "deadline":
            raise CommandDeadlineError(self.name, what, timeout or self.inventory.timeouts.command)
        if after == "interrupt":
            interrupts._requested.set()  # the first Ctrl-C of a guarded run: a flag

    lease_taken = False
    other_owner: LockOwner | None = None

    def take_lease_over(self) -> None:
        """Another run found this run's lock stale and took it (as TAKE_SCRIPT does)."""
        self.lease_taken = True
        self.other_owner = new_owner("deploy", "other")
        lock = self.local(lock_dir(self.inventory))
        lock.mkdir(parents=True, exist_ok=True)
        (lock / "owner.json").write_text(json.dumps(self.other_owner.__dict__) + "\n")

    # -- ServerLike: commands ----------------------------------------------------------
    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        argv = list(argv)
        what = shlex.join(argv)
        after = self.begin_call(what, docker_command=self.is_docker(argv),
                                changes=changes_something(argv), timeout=timeout)
        result = self.execute(argv, stdin)
        self.end_call(what, after, timeout=timeout)
        if check and not result.ok:
            raise RemoteCommandError(self.name, what, result.exit_code, result.stderr)
        return result

    def run_chain(self, *commands: Sequence[str],
                  timeout: float | None = None) -> CommandResult:
        what = " && ".join(shlex.join(argv) for argv in commands)
        after = self.begin_call(what, docker_command=any(self.is_docker(list(argv))
                                                         for argv in commands),
                                changes=any(changes_something(list(a)) for a in commands),
                                timeout=timeout)
        results: list[CommandResult] = []
        for argv in commands:
            results.append(self.execute(list(argv), None))
            if not results[-1].ok:
                break
        self.end_call(what, after, timeout=timeout)
        result = CommandResult("".join(r.stdout for r in results),
                               "".join(r.stderr for r in results), results[-1].exit_code)
        if not result.ok:
            raise RemoteCommandError(self.name, what, result.exit_code, result.stderr)
        return result

    def run_streaming_stdin(self, argv: Sequence[str], source: BinaryIO, *,
                            sent: Callable[[int], None] | None = None,
                            timeout: float | None = None) -> CommandResult:
        return self.run(argv, check=False, timeout=timeout,
                        stdin=source.read().decode(errors="replace"))

    def stream_lines(self, argv: Sequence[str], on_line: Callable[[str], None], *,
                     follow: bool = False) -> int:
        result = self.run(argv, check=False)
        for line in (result.stdout + result.stderr).splitlines():
            on_line(line)
        return result.exit_code

    def run_interactive(self, argv: Sequence[str]) -> int:
        raise UnknownCommand(f"interactive command {argv}")

    @staticmethod
    def is_docker(argv: list[str]) -> bool:
        return argv[:1] == ["docker"] or (argv[:2] == ["sh", "-c"] and "docker" in argv[2])

    def execute(self, argv: list[str], stdin: str | None) -> CommandResult:
        try:
            return self.execute_known(argv, stdin)
        except UnknownCommand as error:
            self.unknown.append(str(error))
            raise

    def execute_known(self, argv: list[str], stdin: str | None) -> CommandResult:
        if argv[:1] == ["docker"]:
            return self.docker(argv)
        if argv[:2] == ["sh", "-c"] and argv[2] == docker.PULL_AND_ID_SCRIPT:
            return self.pull(argv[4])
        if argv[:2] == ["sh", "-c"] and argv[2] == docker.REDEPLOY_FACTS_SCRIPT:
            return self.redeploy_facts(argv[4:])
        if self.is_docker(argv):
            raise UnknownCommand(f"a script that runs docker: {argv}")
        if argv[:1] in (["sh"], ["rm"], ["cat"]):
            if self.real_shell:
                return self.local_shell(argv, stdin)
            return self.shell_in_python(argv, stdin)
        raise UnknownCommand(f"command {argv}")

    def shell_in_python(self, argv: list[str], stdin: str | None) -> CommandResult:
        """What the kit's fixed scripts do, without a process each (a sweep runs thousands):
        test_simulated_server holds each to what the real `sh` does."""
        script, args = (argv[2], argv[4:]) if argv[:2] == ["sh", "-c"] else ("", argv)
        if script == locking.TAKE_SCRIPT:
            state, lock, lease = args
            self.local(state).mkdir(parents=True, exist_ok=True)
            if self.take_lock(lock, lease, stdin or ""):
                return CommandResult("taken\n", "", 0)
            age, held_for, owner = self.lock_facts(lock, lease)
            held = "held" if age <= held_for else "stale"
            answer = f"{held} {age} {held_for}\n{owner}\n"
            if held == "held":
                return CommandResult(answer, "", locking.LOCKED_EXIT)
            shutil.rmtree(self.local(lock))
            self.take_lock(lock, lease, stdin or "")
            return CommandResult(answer + "taken\n", "", 0)
        if script == locking.RENEW_SCRIPT:
            token, lock = args
            if token not in (self.read_local(f"{lock}/owner.json") or "\0"):
                return CommandResult("", "", 1)
            self.local(lock).touch()
            return CommandResult("", "", 0)
        if script == locking.RELEASE_SCRIPT:
            token, lock = args
            if token in (self.read_local(f"{lock}/owner.json") or "\0"):
                shutil.rmtree(self.local(lock))
            return CommandResult("", "", 0)
        if script == locking.READ_SCRIPT:
            lock, lease = args
            if not self.local(lock).is_dir():
                return CommandResult("free\n", "", 0)
            age, held_for, owner = self.lock_facts(lock, lease)
            return CommandResult(f"lock {age} {held_for}\n{owner}\n", "", 0)
        if argv[:3] == history.APPEND[:3]:
            self.local(args[0]).mkdir(parents=True, exist_ok=True)
            with self.local(args[1]).open("a") as file:
                file.write(stdin or "")
            return CommandResult("", "", 0)
        if argv[:2] in (["rm", "-f"], ["rm", "-rf"]):
            for path in argv[2:]:
                target = self.local(path)
                if target.is_dir() and argv[1] == "-rf":
                    shutil.rmtree(target)
                elif target.is_file():
                    target.unlink()
            return CommandResult("", "", 0)
        if argv[:1] == ["cat"] and len(argv) == 2:
            text = self.read_local(argv[1])
            if text is None:
                return CommandResult("", f"cat: {argv[1]}: No such file or directory\n", 1)
            return CommandResult(text, "", 0)
        raise UnknownCommand(f"shell command {argv}")

    def take_lock(self, lock: str, lease: str, owner: str) -> bool:
        try:
            self.local(lock).mkdir()
        except FileExistsError:
            return False
        (self.local(lock) / "lease").write_text(f"{lease}\n")
        (self.local(lock) / "owner.json").write_text(f"{owner}\n")
        return True

    def lock_facts(self, lock: str, lease: str) -> tuple[int, int, str]:
        """The lock's age (seconds since its folder changed), lease and owner file."""
        age = int(real_time.time()) - int(self.local(lock).stat().st_mtime)
        held_for = (self.read_local(f"{lock}/lease") or "").strip()
        return age, int(held_for) if held_for.isdigit() else int(lease), \
            self.read_local(f"{lock}/owner.json") or ""

    # -- files: a folder of this machine, the server's paths under it ---------------------
    def local(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def read_local(self, path: str) -> str | None:
        local = self.local(path)
        return local.read_text() if local.is_file() else None

    def local_shell(self, argv: list[str], stdin: str | None) -> CommandResult:
        local = [str(self.local(a)) if a.startswith("/") and i > 0 else a
                 for i, a in enumerate(argv)]
        done = subprocess.run(local, input=stdin or "", capture_output=True, text=True,
                              timeout=30, check=False)
        return CommandResult(done.stdout, done.stderr, done.returncode)

    def read_file(self, path: str) -> str | None:
        after = self.begin_call(f"cat {path}")
        text = self.read_local(path)
        self.end_call(f"cat {path}", after)
        return text

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        what = f"write {path}"
        after = self.begin_call(what, changes=True)
        self.local(path).parent.mkdir(parents=True, exist_ok=True)
        self.local(path).write_text(text)
        self.end_call(what, after)

    def write_private_file(self, path: str, text: str) -> None:
        self.write_file(path, text, 0o600)

    def cannot_write(self, directory: str, stderr: str) -> RemoteDirError:
        return RemoteDirError(f"{self.name}: cannot write {directory}")

    # -- HAProxy's runtime API ---------------------------------------------------------
    def runtime_api(self, command: str) -> str:
        after = self.begin_call(command, changes=not all(
            part.startswith("show ") for part in command.split("; ")))
        try:
            answer = self.haproxy.answer(command)
        except UnknownCommand as error:
            self.unknown.append(str(error))
            raise
        if after == "deadline":  # the channel's deadline: the line ran, its answer is lost
            self.after_call(self, command)
            raise haproxy.RuntimeApiError(f"{self.name}: runtime API `{command}`: no answer "
                                          "within 10s (simulated)")
        self.end_call(command, after)
        haproxy.raise_for_api_error(command, answer)
        return answer

    def use_admin_socket(self, path: str | None) -> None:
        pass

    def close_runtime_api(self) -> None:
        pass

    def login_facts(self) -> LoginFacts:
        return LoginFacts(0, 0, "/root")

    def with_folders(self, inventory: Inventory) -> Inventory:
        return inventory

    def resume(self) -> None:
        pass

    def close(self) -> None:
        pass

    # -- Docker's commands -------------------------------------------------------------
    def docker(self, argv: list[str]) -> CommandResult:
        verb = argv[1:3]
        if verb == ["container", "inspect"]:
            return self.inspect(argv[3:])
        if verb == ["image", "inspect"] and argv[3:5] == ["--format", "{{.Id}}"]:
            ref = argv[5]
            if ref in self.images:
                return CommandResult(self.images[ref] + "\n", "", 0)
            return CommandResult("", f"Error: No such image: {ref}\n", 1)
        if verb[0] == "run":
            return self.docker_run(argv)
        if verb[0] == "rm" and argv[2] == "--force":
            for name in argv[3:]:
                self.containers.pop(name, None)
            return CommandResult("\n".join(argv[3:]) + "\n", "", 0)
        if verb[0] == "stop" and argv[2] == "--time":
            return self.stop(argv[4])
        if verb[0] == "start":
            return self.start(argv[2])
        if verb[0] == "logs":
            name = argv[-1]
            if name not in self.containers:
                return CommandResult("", f"Error: No such container: {name}\n", 1)
            return CommandResult(f"{name} listening\n", "", 0)
        if verb == ["image", "ls"]:
            return self.image_list(argv[-1])
        if verb == ["image", "rm"]:
            return self.image_remove(argv[3:])
        if verb[0] == "pull":
            return self.pull(argv[-1], quiet=True)
        raise UnknownCommand(f"docker command {argv}")

    def inspect(self, names: list[str]) -> CommandResult:
        found = [inspect_item(self.containers[n], self.wall) for n in names
                 if n in self.containers]
        missing = [n for n in names if n not in self.containers]
        stderr = "".join(f"Error: No such object: {n}\n" for n in missing)
        return CommandResult(json.dumps(found, indent=4) + "\n", stderr, 1 if missing else 0)

    def docker_run(self, argv: list[str]) -> CommandResult:
        options, rest = parse_run(argv)
        if "--rm" in options:
            raise UnknownCommand(f"one-off container {argv}")
        name = options["--name"][0]
        if name in self.containers:
            return CommandResult("", f'docker: Error response from daemon: Conflict. The '
                                 f'container name "/{name}" is already in use.\n', 125)
        image = rest[0]
        if image not in self.images:
            return CommandResult("", f"Unable to find image '{image}' locally\n", 125)
        published = []
        for spec in options.get("--publish", []):
            _, outside, inside = spec.split(":")
            published.append((int(outside), int(inside)))
        for outside, _ in published:
            if self.container_at(outside) is not None:
                return CommandResult("", "docker: Error response from daemon: driver failed "
                                     "programming external connectivity: Bind for "
                                     f"127.0.0.1:{outside} failed: port is already "
                                     "allocated.\n", 125)
        self.serial += 1
        labels = dict(label.split("=", 1) for label in options.get("--label", []))
        self.containers[name] = Container(
            name, image, self.images[image], labels,
            env_file=(options.get("--env-file") or [None])[0],
            restart=options.get("--restart", ["no"])[0], started_at=self.clock.now,
            published=tuple(published), serial=self.serial,
            stop_timeout=int(options.get("--stop-timeout", ["10"])[0]))
        return CommandResult(f"{self.serial:064x}\n", "", 0)

    def stop(self, name: str) -> CommandResult:
        container = self.containers.get(name)
        if container is None:
            return CommandResult("", f"Error response from daemon: No such container: {name}\n",
                                 1)
        if container.running:
            container.running, container.exit_code = False, 143
        container.stopped_by_user = True
        return CommandResult(f"{name}\n", "", 0)

    def start(self, name: str) -> CommandResult:
        container = self.containers.get(name)
        if container is None:
            return CommandResult("", f"Error response from daemon: No such container: {name}\n",
                                 1)
        if not container.running:
            container.running, container.started_at = True, self.clock.now
            container.exit_code, container.stopped_by_user = 0, False
        return CommandResult(f"{name}\n", "", 0)

    def pull(self, ref: str, quiet: bool = False) -> CommandResult:
        if ref not in self.registry:
            return CommandResult("", f"Error response from daemon: manifest for {ref} not "
                                 "found: manifest unknown\n", 1)
        self.images[ref] = self.registry[ref]
        return CommandResult(self.images[ref] + "\n", "", 0)

    def image_list(self, repository: str) -> CommandResult:
        lines = []
        for ref, image_id in self.images.items():
            repo, _, tag = ref.rpartition(":")
            if repo == repository:
                lines.append(json.dumps({"Repository": repo, "Tag": tag, "ID": image_id,
                                         "CreatedAt": "2026-11-26 10:13:09 +0000 UTC"}))
        return CommandResult("".join(line + "\n" for line in lines), "", 0)

    def image_remove(self, refs: list[str]) -> CommandResult:
        errors = []
        for ref in refs:
            if any(c.image_id == self.images.get(ref) for c in self.containers.values()):
                errors.append(f"Error response from daemon: conflict: unable to remove "
                              f"repository reference \"{ref}\": container is using its "
                              "referenced image\n")
            else:
                self.images.pop(ref, None)
        return CommandResult("", "".join(errors), 1 if errors else 0)

    def redeploy_facts(self, args: list[str]) -> CommandResult:
        mark, image, env1, env2, *names = args
        out = ""
        image_id = self.images.get(image)
        out += (image_id + "\n" if image_id else "") + f"\n{mark} {0 if image_id else 1}\n"
        for path in (env1, env2):
            text = self.read_local(path)
            out += (text or "") + f"\n{mark} {0 if text is not None else 1}\n"
        inspected = self.inspect(names)
        return CommandResult(out + inspected.stdout, inspected.stderr, inspected.exit_code)


def step_name(server: SimulatedServer, what: str) -> str:
    """Where the run is on this server: the timing step of the thread making the call
    (slotswap.core.timings), else what the call is (the lock's and history's scripts)."""
    current = getattr(server.timings._local, "current", None)
    if current is not None:
        return str(current[0])
    if "LOCK=" in what or "/lock" in what:
        return "lock"
    if "history.jsonl" in what:
        return "history"
    return " ".join(what.split()[:2])


def slots_of(server: SimulatedServer) -> dict[str, tuple[str, str]]:
    """Per slot line: (admin state, `show stat` status), for messages."""
    return {name: (line.admin_name, server.haproxy.status(line))
            for name, line in server.haproxy.lines.items()}


def lines_in_rotation(server: SimulatedServer) -> list[str]:
    """`line: version` of each line a request may go to whose container runs."""
    found = []
    for line in server.haproxy.usable():
        container = server.container_at(line.port)
        if container is not None and server.answers(container):
            found.append(f"{line.name}: {container.version}")
    return found


def versions_in_rotation(server: SimulatedServer) -> set[str | None]:
    """The versions of the running containers behind the lines a request may go to."""
    found = set()
    for line in server.haproxy.usable():
        container = server.container_at(line.port)
        if container is not None and server.answers(container):
            found.add(container.version)
    return found


__all__ = ["FAULTS", "SLOTS", "SimClock", "SimulatedServer", "patch_time", "slots_of",
           "versions_in_rotation"]
