"""A simulated server: a `ServerLike` whose HAProxy, Docker engine and files live in memory
(simulated_files.py; the lock's and the history's scripts are answered in Python, which
test_simulated_server holds to the real `sh`), on a simulated clock, with a fault schedule.
It speaks as the real ones do: `show stat`, `show servers state` and `docker inspect` are
rendered in the recorded formats (see test_simulated_server.py, which holds it to
tests/unit/fixtures).

- HAProxy (simulated_haproxy.py, with the simulated clock): the app's backend as the kit's
  config makes it (server/haproxy_config.py: balance first, web1, web2, then their fallback
  lines `disabled`; checks with inter, fastinter, downinter, rise, fall). Each line has an
  admin state (READY, DRAIN, MAINT) and an operational state from its checks, run on the
  simulated clock: a check passes when a running container publishes the line's check port
  and its app answers. The maintenance map (the page answers every request while it has
  one). The certificate it serves and a transaction (`set`, `commit`, `abort`, `show ssl
  cert`). A restart comes back from the config and, if there is one, the server-state file;
  its maps and certificate from their files. Once HAProxy runs in its container (`up`: the
  server's network, its folders mounted), the config is the file it mounts, read again at
  each start and reload (`docker kill --signal HUP`/`USR2`: new workers, a new Pid); the
  admin socket is the newest master's (none once its container is gone), and no request
  gets an answer while no HAProxy container runs (a hand-over: `-next` beside the old one,
  USR1 soft stop, `docker wait`, rename).
- Docker (simulated_docker.py): containers (name, image, labels, env file, running or
  exited, started time, restart policy, network, mounts), networks, `haproxy -c` of a
  config in a throwaway container, the engine's version, the commands the kit sends, an
  engine restart (containers with a restart policy that were not stopped come back;
  HAProxy restarts), a frozen engine (every Docker command hangs until its deadline).
  The app's workers (simulated_roles.py): their jobs, checks, crashes and long stops.
- A fault schedule: at the k-th call (every run, runtime_api and file call counts), one of
  FAULTS. Unknown commands fail loudly: the simulator never answers what it does not know.
"""

from __future__ import annotations

import copy
import functools
import json
import shlex
import shutil
import subprocess
import threading
import time as real_time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from slotswap.commands import docker, role_containers
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.login_facts import LoginFacts
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    CONFIG_NAME,
    STATE_NAME,
    cert_path_on_server,
    haproxy_dir,
    lock_dir,
    map_path_in_haproxy,
    map_path_on_server,
    proxy_haproxy_dir,
)
from slotswap.core import interrupts
from slotswap.core.timings import Timings
from slotswap.remote.call_guard import NO_GUARD, CallGuard
from slotswap.remote.server import (
    CommandDeadlineError,
    CommandResult,
    ConnectionLostError,
    RemoteCommandError,
    RemoteDirError,
)
from slotswap.server import history, locking
from slotswap.server.lease import LOST_EXIT, LOST_MARK
from slotswap.server.locking import LockOwner, new_owner
from tests.unit.fake_server import Login
from tests.unit.simulated_backends import DEFAULT_SERVER
from tests.unit.simulated_docker import Container, changes_something
from tests.unit.simulated_files import SimFiles, file_command
from tests.unit.simulated_haproxy import SimClock, SimHaproxy, UnknownCommand, patch_time
from tests.unit.simulated_roles import RoleEngine, is_exec_check
from tests.unit.simulated_shared_proxy import start_shared

# What can go wrong at a call (SimulatedServer.faults): the operator's Ctrl-C (the command
# in flight finishes, the run sees it at its next checkpoint), the connection lost before
# the command reached the server or after it ran (its answer lost), the command past its
# deadline (it ran all the same), a Docker engine that stops answering from then on, HAProxy
# or the Docker engine restarting (a reboot, an upgrade, an OOM kill), and the run's lock
# taken over by another run (a laptop asleep past its lease).
FAULTS = ("interrupt", "lost_before", "lost_after", "deadline", "frozen_engine",
          "haproxy_restart", "engine_restart", "lease_taken")


# -- the server -----------------------------------------------------------------------------

class FaultInjected(Exception):
    """Marks a call at which the schedule struck (SimulatedServer.struck)."""


@dataclass
class Fault:
    at: int  # the call's index, from 1
    kind: str


class SimulatedServer(RoleEngine):
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
        self.root = root / name  # only the real `sh` (real_shell) has them on disk here
        self.files = SimFiles()
        self.healthy = healthy
        # Versions that pass their checks at first, then fail: seconds after their start.
        self.failing_after: dict[str, float] = {}
        # Workers (simulated_roles.py): their checks, crashes and jobs.
        self.role_checks, self.crashes_after, self.job_seconds, self.jobs_cut = {}, {}, None, []
        self.containers: dict[str, Container] = {}
        self.images: dict[str, str] = {}  # reference -> image ID on this server
        self.registry: dict[str, str] = {}  # what a pull can get: reference -> image ID
        self.serial = 0
        self.networks: set[str] = set()
        self.haproxy = SimHaproxy(inventory.app, config, clock, self.check_passes)
        clock.haproxies.append(self.haproxy)
        self.calls = 0
        self.faults: list[Fault] = []
        self.frozen = False
        self.struck: list[tuple[int, str, str]] = []  # (call, fault, step_name)
        self.unknown: list[str] = []  # what the kit sent that the simulator does not know
        self.one_offs_overlapping: list[str] = []  # see DockerEngine
        self.log: list[str] = []  # every call, in order
        self.after_call: Callable[[SimulatedServer, str], None] = lambda server, what: None
        self.before_call: Callable[[SimulatedServer], None] = lambda server: None
        self.lease_lost_changes: list[str] = []  # changes made after the lease was taken
        self.guard = threading.RLock()
        self.real_shell = False  # the fixed scripts run by the real `sh` (slower)
        self.call_guard: CallGuard = NO_GUARD  # the run's lease, as Server asks it

    # -- the world ---------------------------------------------------------------------
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
        if not self.haproxy_listens():
            return None
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
        """The maintenance page answers every request (the config's `use-service` while the
        map has a page)."""
        return "page" in self.haproxy.maps.get(map_path_in_haproxy(), {})

    def add_image(self, tag: str, *, on_server: bool = True) -> str:
        ref = self.inventory.image_ref(tag)
        image_id = "sha256:" + f"{abs(hash(ref)) % 16**16:016x}" * 4
        self.registry[ref] = image_id
        if on_server:
            self.images[ref] = image_id
        return image_id

    def clone(self, clock: SimClock, root: Path) -> SimulatedServer:
        """This server as it is now, on `clock` (its files a copy in memory)."""
        twin = SimulatedServer(self.name, self.inventory, clock, root, healthy=self.healthy,
                               config=self.haproxy.config)
        twin.failing_after = dict(self.failing_after)
        twin.role_checks, twin.crashes_after = dict(self.role_checks), dict(self.crashes_after)
        twin.job_seconds, twin.jobs_cut = self.job_seconds, list(self.jobs_cut)
        twin.containers = copy.deepcopy(self.containers)
        twin.images, twin.registry, twin.serial = dict(self.images), dict(self.registry), \
            self.serial
        twin.networks, twin.admin_owner = set(self.networks), self.admin_owner
        twin.haproxy.take_over(self.haproxy)
        twin.calls = self.calls
        twin.files = self.files.copy()
        return twin

    def restart_haproxy(self) -> None:
        self.haproxy.restarts += 1
        if self.inventory.haproxy.shared:  # the generation `current` names, each app's files
            return start_shared(self.haproxy, self.files, proxy_haproxy_dir(self.inventory))
        folder = haproxy_dir(self.inventory)
        # Once HAProxy runs in its container (`up`): the config file it mounts.
        on_disk = self.read_local(f"{folder}/{CONFIG_NAME}")
        if on_disk is not None and any(map(self.is_haproxy, self.containers.values())):
            self.haproxy.config = on_disk
        self.haproxy.start(self.read_local(f"{folder}/{STATE_NAME}"), {
            map_path_in_haproxy(): self.read_local(map_path_on_server(folder)) or ""},
            self.read_local(cert_path_on_server(folder)))

    def haproxy_started(self, container: Container) -> None:
        self.admin_owner = container.serial
        self.restart_haproxy()

    def haproxy_reloaded(self, container: Container) -> None:
        self.admin_owner = container.serial
        self.restart_haproxy()


    def haproxy_checks(self, config_dir: str, filename: str) -> bool:
        text = self.read_local(f"{config_dir}/{filename}") or ""
        return bool(DEFAULT_SERVER.search(text)) and f"\nbackend {self.inventory.app}\n" in text

    def restart_engine(self) -> None:
        """Every container stops; those with a restart policy that were running (or were not
        stopped by `docker stop`, for unless-stopped) start again; HAProxy too."""
        self.engine_restarted()
        self.restart_haproxy()

    # -- faults ------------------------------------------------------------------------
    def begin_call(self, what: str, *, docker_command: bool = False, changes: bool = False,
                   timeout: float | None = None, shell: bool = True) -> str | None:
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
        self.ask_guard(what, shell)
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

    def ask_guard(self, what: str, shell: bool) -> None:
        """What Server asks its call guard: a runtime-API line only the lease (before_call);
        a shell line the lease, then, on the server, the `grep` in front of the line that
        runs it only while the lock's owner file holds the run's token."""
        if not shell:
            self.call_guard.before_call()
            return
        guarded = self.call_guard.guard_line(what)
        if guarded == what:
            return
        token, owner_file = guard_test(guarded.split(" || ", 1)[0])
        if token not in (self.read_local(owner_file) or "\0"):
            self.after_call(self, what)
            self.call_guard.check_answer(LOST_EXIT, f"{LOST_MARK}\n")

    lease_taken = False
    other_owner: LockOwner | None = None

    def take_lease_over(self) -> None:
        """This run was stopped (a laptop asleep) past its lease, and another run found its
        lock stale and took it (as TAKE_SCRIPT does)."""
        self.clock.advance(self.inventory.timeouts.lease + 1)
        self.lease_taken = True
        self.other_owner = new_owner("deploy", "other")
        lock = lock_dir(self.inventory)
        self.files.mkdir(lock, parents=True, exist_ok=True)
        self.files.write(f"{lock}/owner.json", json.dumps(self.other_owner.__dict__) + "\n")

    # -- ServerLike: commands ----------------------------------------------------------
    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        argv = list(argv)
        what = shlex.join(argv)
        after = self.begin_call(what, docker_command=self.is_docker(argv) and not
                                is_exec_check(argv), changes=changes_something(argv),
                                timeout=timeout)
        self.fault_in_call, self.call_deadline = after, timeout or self.inventory.timeouts.command
        try:
            result = self.execute(argv, stdin)
        finally:
            self.fault_in_call, self.call_deadline = None, float("inf")
        if self.overran_deadline:  # Docker goes on: the kit's wait for it ends
            self.overran_deadline, after = False, "deadline"
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
        return argv[:1] == ["docker"] or (argv[:2] == ["sh", "-c"] and "docker" in argv[2]) \
            or (argv[:1] == ["timeout"] and "docker" in argv[2:4])

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
        if argv[:1] == ["timeout"] and argv[2:4] == ["docker", "wait"]:
            return self.wait(int(argv[1]), argv[4])
        if is_exec_check(argv):
            return self.exec_check(argv)
        if argv[:2] == ["sh", "-c"] and argv[2] == role_containers.INSPECT_ROLES_SCRIPT:
            return self.inspect_roles(argv)
        if argv[:2] == ["sh", "-c"] and argv[2] == role_containers.INSPECT_WITH_ROLES_SCRIPT:
            return self.inspect_with_roles(argv)
        if self.is_docker(argv):
            raise UnknownCommand(f"a script that runs docker: {argv}")
        if argv == ["hostname", "-I"]:
            return CommandResult(f"{self.host.address} 10.0.0.2 \n", "", 0)
        if argv[:1] in (["sh"], ["rm"], ["cat"], ["mkdir"], ["chmod"], ["touch"], ["cp"],
                        ["mv"], ["true"]):
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
            self.files.mkdir(state, parents=True, exist_ok=True)
            if self.take_lock(lock, lease, stdin or ""):
                return CommandResult("taken\n", "", 0)
            age, held_for, owner = self.lock_facts(lock, lease)
            held = "held" if age <= held_for else "stale"
            answer = f"{held} {age} {held_for}\n{owner}\n"
            if held == "held":
                return CommandResult(answer, "", locking.LOCKED_EXIT)
            self.files.remove_tree(lock)
            self.take_lock(lock, lease, stdin or "")
            return CommandResult(answer + "taken\n", "", 0)
        if script == locking.TAKE_AND_READ_SCRIPT:
            take, state, lock, lease, mark, path = args
            taken = self.shell_in_python(["sh", "-c", take, "sh", state, lock, lease], stdin)
            if not taken.ok or self.read_local(path) is None:
                return taken
            return CommandResult(f"{taken.stdout}{mark}\n{self.read_local(path) or ''}", "", 0)
        if script == locking.RENEW_SCRIPT:
            token, lock = args
            if token not in (self.read_local(f"{lock}/owner.json") or "\0"):
                return CommandResult("", "", 1)
            self.files.touch(lock)
            return CommandResult("", "", 0)
        if script == locking.RELEASE_SCRIPT:
            token, lock = args
            if token in (self.read_local(f"{lock}/owner.json") or "\0"):
                self.files.remove_tree(lock)
            return CommandResult("", "", 0)
        if script == locking.READ_SCRIPT:
            lock, lease = args
            if not self.files.is_dir(lock):
                return CommandResult("free\n", "", 0)
            age, held_for, owner = self.lock_facts(lock, lease)
            return CommandResult(f"lock {age} {held_for}\n{owner}\n", "", 0)
        if argv[:3] == history.APPEND[:3]:
            self.files.mkdir(args[0], parents=True, exist_ok=True)
            entry = (stdin or "").rstrip("\n")
            if (self.read_local(args[1]) or "").splitlines()[-1:] != [entry]:
                self.files.append(args[1], entry + "\n")
            return CommandResult("", "", 0)
        if argv[:2] in (["rm", "-f"], ["rm", "-rf"]):
            for path in argv[2:]:
                if self.files.is_dir(path) and argv[1] == "-rf":
                    self.files.remove_tree(path)
                else:
                    self.files.unlink(path)
            return CommandResult("", "", 0)
        done = file_command(self.files, argv)
        if done is not None:
            return done
        if argv[:1] == ["cat"] and len(argv) == 2:
            text = self.read_local(argv[1])
            if text is None:
                return CommandResult("", f"cat: {argv[1]}: No such file or directory\n", 1)
            return CommandResult(text, "", 0)
        raise UnknownCommand(f"shell command {argv}")

    def take_lock(self, lock: str, lease: str, owner: str) -> bool:
        try:
            self.files.mkdir(lock)
        except FileExistsError:
            return False
        self.files.write(f"{lock}/lease", f"{lease}\n")
        self.files.write(f"{lock}/owner.json", f"{owner}\n")
        return True

    def lock_facts(self, lock: str, lease: str) -> tuple[int, int, str]:
        """The lock's age (seconds since its folder changed), lease and owner file."""
        age = int(real_time.time()) - int(self.files.mtime(lock))
        held_for = (self.read_local(f"{lock}/lease") or "").strip()
        return age, int(held_for) if held_for.isdigit() else int(lease), \
            self.read_local(f"{lock}/owner.json") or ""

    # -- files: in memory (simulated_files.py); on disk under `root` for the real `sh` ------
    def read_local(self, path: str) -> str | None:
        return self.files.read(path)

    def local_shell(self, argv: list[str], stdin: str | None) -> CommandResult:
        """The command run by the real `sh` on the files put in a folder of this machine,
        the server's paths under it; what it leaves there is the server's files then."""
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.files.to_disk(self.root)
        local = [str(self.root / a.lstrip("/")) if a.startswith("/") and i > 0 else a
                 for i, a in enumerate(argv)]
        done = subprocess.run(local, input=stdin or "", capture_output=True, text=True,
                              timeout=30, check=False)
        self.files = SimFiles.from_disk(self.root)
        return CommandResult(done.stdout, done.stderr, done.returncode)

    def read_file(self, path: str) -> str | None:
        after = self.begin_call(f"cat {path}")
        text = self.read_local(path)
        self.end_call(f"cat {path}", after)
        return text

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        what = f"write {path}"
        after = self.begin_call(what, changes=True)
        self.files.write(path, text)
        self.end_call(what, after)

    def write_private_file(self, path: str, text: str) -> None:
        self.write_file(path, text, 0o600)

    def cannot_write(self, directory: str, stderr: str) -> RemoteDirError:
        return RemoteDirError(f"{self.name}: cannot write {directory}")

    # -- HAProxy's runtime API ---------------------------------------------------------
    def runtime_api(self, command: str) -> str:
        after = self.begin_call(command, changes=not all(
            part.startswith("show ") for part in command.split("; ")), shell=False)
        if self.admin_refused():
            self.end_call(command, after)  # the socket's HAProxy is gone: nothing answers
            raise haproxy.RuntimeApiError(f"{self.name}: runtime API `{command}`: connection "
                                          "refused (simulated)")
        try:
            answer = self.show_env(command) if command.startswith("show env ") \
                else self.haproxy.answer(command)
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


__all__ = ["FAULTS", "SLOTS", "Fault", "SimClock", "SimulatedServer", "lines_in_rotation",
           "patch_time", "slots_of", "versions_in_rotation"]


@functools.lru_cache(maxsize=256)
def guard_test(test: str) -> tuple[str, str]:
    """Pure: the run's token and the owner file in the guard's `grep` (the same for every
    line of a run: parsed once)."""
    _, _, _, token, owner_file = shlex.split(test)
    return token, owner_file
