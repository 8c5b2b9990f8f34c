"""A simulated server (simulated_server.py) that also answers what the shared `up` and `down`
send (several apps on one server, docs/apps-design.md, decision 1; server/proxy_up.py,
proxy_down.py, proxy_generation.py, proxy_files.py, proxy_locks.py), as the real commands
do (test_simulated_shared_server.py holds the scripts to the real `sh`):

- several locks taken in one round trip, all or none (lock_sets.TAKE_ALL_SCRIPT);
- the registry read (proxy_files.READ_REGISTRY_SCRIPT), a generation named (`mv -T`),
  `current` switched (`ln -sfn` to a temporary name, `mv -T`), the generations pruned,
  `readlink`, `test -d`/`-f`;
- `haproxy -c` of a generation in a throwaway container (proxy_commands.check_generation:
  each `--mount` source must exist, the generation is seen at `current`), and the shared
  HAProxy's container (proxy_commands.run_shared_proxy), found by list_haproxies.

`checked` keeps the config text of every generation that passed its check: the sweep holds
the running HAProxy to one of them. `inventory` is the run's app's (the sweep sets it before
each run): a lease taken over is that app's lock's."""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re
import shlex
from collections.abc import Callable
from pathlib import Path

from slotswap.commands.docker import LABEL_APP, LABEL_ROLE
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    CONFIG_NAME,
    CURRENT_LINK,
    GENERATION_PREFIX,
    HAPROXY_ADMIN_DIR_INSIDE,
    HAPROXY_CONFIG_DIR_INSIDE,
    LABEL_SHARED,
    STATE_NAME,
    admin_dir,
    cert_path_on_server,
    current_link,
    map_path_in_haproxy,
    map_path_on_server,
    proxy_haproxy_dir,
)
from slotswap.fleet.dry_run_proxy import CHECKSUMS_SCRIPT
from slotswap.remote.server import CommandResult
from slotswap.server import locking
from slotswap.server.lock_sets import LOCK_MARK, TAKE_ALL_SCRIPT
from slotswap.server.proxy_files import READ_REGISTRY_SCRIPT
from slotswap.server.proxy_move import COPY_SCRIPT
from tests.unit.simulated_docker import Container, mount_binds, parse_run
from tests.unit.simulated_files import SimFiles
from tests.unit.simulated_haproxy import SimClock, SimHaproxy, config_parts
from tests.unit.simulated_server import SimulatedServer
from tests.unit.simulated_shared_proxy import CRT_LIST, Mount, load_generation, start_shared

PRUNE_HEAD = 'cd "$1" || exit 0; for name in '
KEPT = re.compile(r'\[ "\$name" = (\S+) \] && continue;')
HAPROXY_LIST_FORMAT = f'{{{{.Label "{LABEL_APP}"}}}} {{{{.Label "{LABEL_SHARED}"}}}}'


class Mounts(Mount):
    """What a container sees of the server's files through its bind mounts (`binds`:
    inside -> the server's path), the longest target first."""

    def __init__(self, files: SimFiles, binds: dict[str, str]) -> None:
        super().__init__(files, "/")
        self.binds = sorted(binds.items(), key=lambda item: -len(item[0]))

    def on_server(self, path: str) -> str:
        for inside, source in self.binds:
            if path == inside or path.startswith(inside + "/"):
                return source + path[len(inside):]
        return "/nonexistent" + path


class SharedSimServer(SimulatedServer):
    """A SimulatedServer that answers the shared `up`'s and `down`'s commands."""

    def __init__(self, name: str, inventory: Inventory, clock: SimClock, root: Path, *,
                 config: str) -> None:
        super().__init__(name, inventory, clock, root, config=config)
        self.checked: set[str] = set()
        # HAProxy processes beside the one `haproxy` is (a hand-over, a move: two containers
        # listen), by their container's serial: the one started last is `haproxy`; the
        # other keeps what it ran, and is `haproxy` again once the newer one is gone.
        self.beside: dict[int, SimHaproxy] = {}
        self.socket: str | None = None  # use_admin_socket's (None: the inventory's)
        # Each admin socket's folder -> the container whose master made the socket there.
        self.socket_owner: dict[str, int] = {}

    def clone(self, clock: SimClock, root: Path) -> SharedSimServer:
        twin = super().clone(clock, root)
        twin.__class__ = SharedSimServer
        assert isinstance(twin, SharedSimServer)
        twin.checked = set(self.checked)
        twin.socket, twin.socket_owner = None, dict(self.socket_owner)
        twin.beside = {}
        for serial, process in self.beside.items():
            twin.beside[serial] = copy.copy(twin.haproxy)
            twin.beside[serial].take_over(process)
            clock.haproxies.append(twin.beside[serial])
        return twin

    # -- HAProxy ------------------------------------------------------------------------
    def restart_haproxy(self) -> None:
        """A start of the shared HAProxy loads the generation `current` names now (none:
        the container would not start; nothing changes here); an app's own HAProxy (today's
        layout, a move's old one) its config file, state file, map and certificate."""
        owner = self.admin_container()
        if owner is not None and LABEL_SHARED not in owner.labels:
            return self.restart_own(owner)
        if self.files.read(f"{current_link(self.inventory)}/haproxy.cfg") is None:
            return
        self.haproxy.restarts += 1
        start_shared(self.haproxy, self.files, proxy_haproxy_dir(self.inventory))

    def restart_own(self, container: Container) -> None:
        folder = container.binds[HAPROXY_CONFIG_DIR_INSIDE]
        on_disk = self.read_local(f"{folder}/{CONFIG_NAME}")
        if on_disk is None:
            return
        self.haproxy.restarts += 1
        self.haproxy.config = on_disk
        self.haproxy.start(self.read_local(f"{folder}/{STATE_NAME}"), {
            map_path_in_haproxy(): self.read_local(map_path_on_server(folder)) or ""},
            self.read_local(cert_path_on_server(folder)))

    def haproxy_checks(self, config_dir: str, filename: str) -> bool:
        """An app's own HAProxy's check (today's layout), its config kept as checked."""
        passed = super().haproxy_checks(config_dir, filename)
        if passed:
            self.checked.add(self.read_local(f"{config_dir}/{filename}") or "")
        return passed

    def haproxy_started(self, container: Container) -> None:
        """A second HAProxy container starts while one runs: the running one's process is
        kept beside the new one."""
        self.set_aside(container)
        self.socket_owner[container.binds.get(HAPROXY_ADMIN_DIR_INSIDE, "")] = container.serial
        super().haproxy_started(container)

    def haproxy_reloaded(self, container: Container) -> None:
        """A reload of the process set aside makes it `haproxy` again."""
        if container.serial in self.beside:
            self.set_aside(container)
            self.bring_back(container.serial)
        self.socket_owner[container.binds.get(HAPROXY_ADMIN_DIR_INSIDE, "")] = container.serial
        super().haproxy_reloaded(container)

    def set_aside(self, container: Container) -> None:
        owner = self.admin_container()
        if owner is not None and owner.serial != container.serial and owner.running:
            kept = copy.copy(self.haproxy)
            kept.take_over(self.haproxy)
            self.beside[owner.serial] = kept
            self.clock.haproxies.append(kept)

    def bring_back(self, serial: int) -> None:
        process = self.beside.pop(serial)
        self.haproxy.take_over(process)
        self.forget(process)
        self.admin_owner = serial

    def forget(self, process: SimHaproxy) -> None:
        """A process that no longer runs: the clock no longer runs its checks."""
        if process is not self.haproxy and process in self.clock.haproxies:
            self.clock.haproxies.remove(process)

    def restart_engine(self) -> None:
        """Every HAProxy container that comes back starts from its files (each its own
        process) and makes its admin socket anew; the one that ran last stays `haproxy`."""
        main = self.admin_owner
        processes = dict(self.beside)
        if main is not None:
            processes[main] = self.haproxy
        self.engine_restarted()
        back = [c.serial for c in self.haproxy_containers() if c.running]
        if not back:
            self.admin_owner = main
            return self.restart_haproxy()
        for container in self.haproxy_containers():
            if container.running:
                self.socket_owner[container.binds.get(HAPROXY_ADMIN_DIR_INSIDE, "")] = \
                    container.serial
        first = main if main in back else back[-1]
        for serial in [s for s in processes if s not in back and s != first]:
            self.forget(processes[serial])
        self.beside = {serial: processes[serial] for serial in back
                       if serial != first and serial in processes}
        for serial in [first, *self.beside]:
            self.haproxy, self.admin_owner = processes.get(serial, self.haproxy), serial
            self.restart_haproxy()
        self.haproxy, self.admin_owner = processes.get(first, self.haproxy), first
        if self.haproxy not in self.clock.haproxies:
            self.clock.haproxies.append(self.haproxy)

    def settle_processes(self) -> None:
        """A process whose container is gone or exited ends; once the newest one's is, the
        one beside it is `haproxy` again (its admin socket answers: another master's)."""
        running = {c.serial for c in self.containers.values() if c.running}
        for serial in [s for s in self.beside if s not in running]:
            self.forget(self.beside.pop(serial))
        owner = self.admin_container()
        if (owner is None or not owner.running) and self.beside:
            self.bring_back(next(iter(self.beside)))

    def processes(self) -> list[tuple[Container, SimHaproxy]]:
        """Each HAProxy container that listens, with its process."""
        found = []
        for container in self.haproxy_containers():
            if not container.running or container.stopping_until is not None:
                continue
            if container.serial == self.admin_owner:
                found.append((container, self.haproxy))
            elif container.serial in self.beside:
                found.append((container, self.beside[container.serial]))
        return found

    def use_admin_socket(self, path: str | None) -> None:
        self.socket = path

    def runtime_api(self, command: str) -> str:
        """The socket's own HAProxy answers (use_admin_socket's, else the inventory's: the
        shared one's, or the app's own): the master that made it last (none: refused)."""
        if not self.haproxy_containers():
            return super().runtime_api(command)
        folder = posixpath.dirname(self.socket) if self.socket else admin_dir(self.inventory)
        target = self.socket_owner.get(folder, -1)
        if target == self.admin_owner:
            return super().runtime_api(command)
        main = self.admin_owner
        self.act_as(target)
        try:
            return super().runtime_api(command)
        finally:
            self.act_as(main)

    def act_as(self, serial: int | None) -> None:
        """`haproxy` becomes the process of the container `serial` (none there: the socket
        refuses; the process stays `haproxy` and beside, under its container), the other
        one beside it."""
        if self.admin_owner is not None:
            self.beside[self.admin_owner] = self.haproxy
        process = self.beside.pop(serial, None) if serial is not None else None
        self.haproxy = process or self.haproxy
        self.admin_owner = serial
        running = {c.serial for c in self.containers.values() if self.is_haproxy(c)}
        for gone in [s for s in self.beside if s not in running]:
            self.forget(self.beside.pop(gone))

    # -- commands -----------------------------------------------------------------------
    def execute_known(self, argv: list[str], stdin: str | None) -> CommandResult:
        done = self.shared_command(argv, stdin)
        return done if done is not None else super().execute_known(argv, stdin)

    def shared_command(self, argv: list[str], stdin: str | None) -> CommandResult | None:
        script = argv[2] if argv[:2] == ["sh", "-c"] and len(argv) > 2 else None
        if self.real_shell and argv[0] in ("sh", "readlink", "test", "ln", "mv"):
            return self.real_sh(argv, stdin)
        if script == TAKE_ALL_SCRIPT:
            return self.take_all(argv[4:], stdin or "")
        if script == READ_REGISTRY_SCRIPT:
            return self.read_registry(*argv[4:8])
        if script == CHECKSUMS_SCRIPT:
            return self.checksums(argv[4])
        if script == COPY_SCRIPT:
            return self.copy_where_there(argv[4:])
        if script is not None and script.startswith(PRUNE_HEAD):
            return self.prune(argv[4], KEPT.findall(script))
        if script is not None and script.startswith("cd ") and " mv -T " in script:
            return self.chain(script)
        if argv[:1] in (["readlink"], ["test"], ["ln"]) or argv[:2] == ["mv", "-T"]:
            return self.simple(argv)
        if argv[:2] == ["docker", "run"] and any(word == "--mount" for word in argv):
            return self.run_with_mounts(argv)
        if argv[:3] == ["docker", "ps", "--all"] and argv[-1] == HAPROXY_LIST_FORMAT:
            return self.list_haproxies(argv)
        if argv[:5] == ["docker", "ps", "--all", "--quiet", "--filter"] and len(argv) == 6:
            key, _, value = argv[5].removeprefix("label=").partition("=")
            return CommandResult("".join(f"{short_id(c.serial)}\n"
                                         for c in self.containers.values()
                                         if c.labels.get(key) == value), "", 0)
        if argv[:3] == ["docker", "network", "rm"] and len(argv) == 4:
            if argv[3] not in self.networks:
                return CommandResult("", f"Error response from daemon: network {argv[3]} "
                                     "not found\n", 1)
            self.networks.discard(argv[3])
            return CommandResult(f"{argv[3]}\n", "", 0)
        return None

    def remove(self, names: list[str]) -> CommandResult:
        """`docker rm --force`, by name or by the short ID `docker ps --quiet` gives."""
        ids = {short_id(c.serial): c.name for c in self.containers.values()}
        done = super().remove([ids.get(name, name) for name in names])
        self.settle_processes()
        return done

    def settle(self) -> None:
        super().settle()
        self.settle_processes()

    def real_sh(self, argv: list[str], stdin: str | None) -> CommandResult:
        """The command run by the real `sh` (SimulatedServer.local_shell), a folder the
        switch's script names in its text under the same root as its arguments, and the
        root taken out of what it prints."""
        if argv[:2] == ["sh", "-c"] and argv[2].startswith("cd /"):
            argv = [*argv[:2], f"cd {self.root}/{argv[2].removeprefix('cd /')}", *argv[3:]]
        done = self.local_shell(argv, stdin)
        return CommandResult(done.stdout.replace(str(self.root), ""),
                             done.stderr.replace(str(self.root), ""), done.exit_code)

    def take_all(self, args: list[str], owner: str) -> CommandResult:
        """TAKE_ALL_SCRIPT: each lock by the take script, in order; the first refused ends
        it with its exit code, once those taken before it are released (innermost first,
        each only while it holds this run's token)."""
        take, release, token, lease, *pairs = args
        assert take == locking.TAKE_SCRIPT and release == locking.RELEASE_SCRIPT
        out, taken = "", []
        for state, lock in zip(pairs[::2], pairs[1::2], strict=True):
            out += f"{LOCK_MARK} {lock}\n"
            answer = self.shell_in_python(["sh", "-c", take, "sh", state, lock, lease], owner)
            out += answer.stdout
            if not answer.ok:
                for done in reversed(taken):
                    self.shell_in_python(["sh", "-c", release, "sh", token, done], None)
                return CommandResult(out, answer.stderr, answer.exit_code)
            taken.append(lock)
        return CommandResult(out, "", 0)

    def copy_where_there(self, paths: list[str]) -> CommandResult:
        """proxy_move.COPY_SCRIPT: each file of a pair copied where it is there."""
        for source, target in zip(paths[::2], paths[1::2], strict=True):
            text = self.files.read(source)
            if text is not None and self.files.is_file(self.files.resolve(source)):
                if not self.files.is_dir(posixpath.dirname(target)):
                    return CommandResult("", f"cp: cannot create regular file '{target}': No "
                                         "such file or directory\n", 1)
                self.files.write(target, text)
        return CommandResult("", "", 0)

    def read_registry(self, registrations: str, apps: str, settings: str,
                      mark: str) -> CommandResult:
        out = []
        for name in self.glob(registrations, lambda n: n.endswith(".json")):
            path = f"{registrations}/{name}"
            if not self.files.is_file(self.files.resolve(path)):
                continue
            app = name.removesuffix(".json")
            out.append(f"{mark} registration {app}\n{self.files.read(path)}\n")
            out.append(f"{mark} fragment {app}\n"
                       f"{self.files.read(f'{apps}/{app}/backend.cfg') or ''}\n")
        if self.files.is_file(self.files.resolve(settings)):
            out.append(f"{mark} settings\n{self.files.read(settings)}\n")
        return CommandResult("".join(out), "", 0)

    def checksums(self, folder: str) -> CommandResult:
        """dry_run_proxy.CHECKSUMS_SCRIPT: `<sha256>  ./<path>` of every file under the
        folder (`find -type f`: a link is not one); none where the folder is missing."""
        lines: list[str] = []

        def walk(path: str, relative: str) -> None:
            for name in self.files.listdir(path):
                inner = f"{path}/{name}"
                if inner in self.files.links:
                    continue
                if self.files.is_dir(inner):
                    walk(inner, f"{relative}{name}/")
                elif self.files.is_file(inner):
                    text = self.files.read(inner) or ""
                    lines.append(f"{hashlib.sha256(text.encode()).hexdigest()}  "
                                 f"./{relative}{name}\n")

        if self.files.is_dir(self.files.resolve(folder)):
            walk(self.files.resolve(folder), "")
        return CommandResult("".join(lines), "", 0)

    def glob(self, folder: str, match: Callable[[str], bool]) -> list[str]:
        """The names a shell glob in `folder` expands to (sorted; none if it is missing)."""
        if not self.files.is_dir(self.files.resolve(folder)):
            return []
        return [name for name in self.files.listdir(folder)
                if match(name) and not name.startswith(".")]

    def prune(self, folder: str, kept: list[str]) -> CommandResult:
        keep = {shlex.split(name)[0] for name in kept}
        if not self.files.is_dir(folder):
            return CommandResult("", "", 0)
        for name in self.files.listdir(folder):
            partial = name.startswith(f".{GENERATION_PREFIX}") and name.endswith(".partial")
            if (name.startswith(GENERATION_PREFIX) or partial) and name not in keep \
                    and self.files.is_dir(self.files.resolve(f"{folder}/{name}")):
                self.files.remove_tree(f"{folder}/{name}")
        return CommandResult("", "", 0)

    def chain(self, script: str) -> CommandResult:
        """proxy_files.switch_command's script: `cd DIR && ln -sfn ... && mv -T ...`."""
        commands: list[list[str]] = [[]]
        for word in shlex.split(script):
            if word == "&&":
                commands.append([])
            else:
                commands[-1].append(word)
        folder = "/"
        for argv in commands:
            if argv[0] == "cd":
                if not self.files.is_dir(self.files.resolve(argv[1])):
                    return CommandResult("", f"sh: 1: cd: can't cd to {argv[1]}\n", 2)
                folder = argv[1]
                continue
            done = self.simple([word if word.startswith(("-", "/")) or index == 0
                                or (argv[0] == "ln" and index == len(argv) - 2)
                                else posixpath.join(folder, word)
                                for index, word in enumerate(argv)])
            if not done.ok:
                return done
        return CommandResult("", "", 0)

    def simple(self, argv: list[str]) -> CommandResult:
        files = self.files
        if argv[0] == "readlink" and len(argv) == 2:
            target = files.links.get(posixpath.normpath(argv[1]))
            return CommandResult(f"{target}\n", "", 0) if target is not None \
                else CommandResult("", "", 1)
        if argv[0] == "test" and len(argv) == 3 and argv[1] in ("-d", "-f"):
            path = files.resolve(argv[2])
            found = files.is_dir(path) if argv[1] == "-d" else files.is_file(path)
            return CommandResult("", "", 0 if found else 1)
        if argv[:2] == ["ln", "-sfn"] and len(argv) == 4:
            files.unlink(argv[3])
            files.symlink(argv[2], argv[3])
            return CommandResult("", "", 0)
        if argv[:2] == ["mv", "-T"] and len(argv) == 4:
            source = posixpath.normpath(argv[2])
            if source not in files.links and not files.is_dir(source) \
                    and not files.is_file(source):
                return CommandResult("", f"mv: cannot stat '{argv[2]}': No such file or "
                                     "directory\n", 1)
            try:
                files.rename(argv[2], argv[3])
            except OSError as error:
                return CommandResult("", f"{error}\n", 1)
            return CommandResult("", "", 0)
        return self.shell_in_python(argv, None)

    # -- Docker -------------------------------------------------------------------------
    def run_with_mounts(self, argv: list[str]) -> CommandResult:
        """`docker run` with `--mount`s: each source must exist (Docker refuses, 125); the
        check of a generation (`--rm ... -c`), or the shared HAProxy's container."""
        options, rest = parse_run(argv)
        binds = mount_binds(options.get("--mount", []))
        for source in binds.values():
            path = self.files.resolve(source)
            if not (self.files.is_dir(path) or self.files.is_file(path)):
                return CommandResult("", 'docker: Error response from daemon: invalid mount '
                                     'config for type "bind": bind source path does not '
                                     f"exist: {source}\n", 125)
        if "--rm" not in options:
            return self.docker_run(argv)
        if rest[0] not in self.images:
            return CommandResult("", f"Unable to find image '{rest[0]}' locally\n", 125)
        assert rest[1] == "-c", argv
        problem = self.check_problem(Mounts(self.files, binds))
        if problem:
            return CommandResult("", f"[NOTICE]   (1) : haproxy version is 2.8.5\n"
                                 f"[ALERT]    (1) : config : {problem}\n", 1)
        return CommandResult("Configuration file is valid\n", "", 0)

    def check_problem(self, mounts: Mounts) -> str:
        """What `haproxy -c` of the config seen through `mounts` refuses ("" if none): a
        file it cannot open, a map or certificate missing, no backend."""
        try:
            config = load_generation(mounts)
        except (AssertionError, OSError) as error:
            return str(error)
        sections, maps = config_parts(config)
        if not sections:
            return "no backend"
        for path in maps:
            if mounts.read(path) is None:
                return f"failed to load map {path}"
        for listed in CRT_LIST.findall(config):
            text = mounts.read(listed)
            if text is None:
                return f"cannot open crt-list {listed}"
            for line in text.splitlines():
                if line.strip() and not line.startswith("#") \
                        and mounts.read(line.split()[0]) is None:
                    return f"cannot load certificate {line.split()[0]}"
        self.checked.add(config)
        return ""

    def list_haproxies(self, argv: list[str]) -> CommandResult:
        """proxy_commands.list_haproxies: `<app> <shared>` of each HAProxy container."""
        assert argv[3:5] == ["--filter", f"label={LABEL_ROLE}=haproxy"], argv
        return CommandResult("".join(
            f"{c.labels.get(LABEL_APP, '')} {c.labels.get(LABEL_SHARED, '')}\n"
            for c in self.containers.values() if self.is_haproxy(c)), "", 0)


def short_id(serial: int) -> str:
    return f"{serial:064x}"[:12]


def runs_checked(server: SharedSimServer) -> bool:
    """Each running HAProxy's config is a generation (or an app's own config) that passed
    its check."""
    processes = [process for _, process in server.processes()] or [server.haproxy]
    return all(process.config in server.checked for process in processes)


__all__ = ["CURRENT_LINK", "HAPROXY_CONFIG_DIR_INSIDE", "SharedSimServer", "runs_checked"]
