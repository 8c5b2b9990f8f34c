"""The simulated server's Docker engine (simulated_server.py): containers as `docker
inspect` shows them (the recording's shape), `docker run`'s options, and the commands the
kit sends, as a part of SimulatedServer."""

from __future__ import annotations

import json
import shlex
import time as real_time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slotswap.commands import docker
from slotswap.remote.server import CommandResult
from tests.unit.fake_server import FIXTURES
from tests.unit.simulated_haproxy import SimClock, UnknownCommand

INSPECT_TEMPLATE = json.dumps(json.loads(
    (FIXTURES / "docker_inspect_live_web1.json").read_text())[0])


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
    network: str = ""  # "host": the server's own network (HAProxy's)
    binds: dict[str, str] = field(default_factory=dict)  # inside -> the server's folder
    env: dict[str, str] = field(default_factory=dict)
    # It exits then (exit code stop_exit): HAProxy's soft stop (no listener meanwhile), or a
    # worker finishing its job after `docker stop` (simulated_roles.py).
    stopping_until: float | None = None
    stop_exit: int = 0
    command: tuple[str, ...] = ()  # what follows the image in `docker run`
    stop_signal: str = ""  # --stop-signal; "": the image's (SIGTERM)
    restart_count: int = 0  # Docker's restarts since `docker run` or `docker start`
    restarting_until: float | None = None  # crashed: Docker starts it again then
    backoff: float = 0.0  # Docker's restart delay after the last crash
    busy_until: float | None = None  # a worker's job in progress ends then

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
    restarting = container.running and container.restarting_until is not None
    state.update(Status="restarting" if restarting else "running" if container.running
                 else "exited", Running=container.running, Restarting=restarting,
                 ExitCode=container.exit_code, StartedAt=rfc3339(wall(container.started_at)),
                 Pid=1000 + container.serial if container.running and not restarting else 0)
    item["RestartCount"] = container.restart_count
    config = item["Config"]
    config.update(Image=container.image, Labels=dict(container.labels),
                  StopTimeout=container.stop_timeout)
    if container.command:
        config["Cmd"] = list(container.command)
    if container.stop_signal:  # Docker leaves the key out when it is not set
        config["StopSignal"] = container.stop_signal
    item["HostConfig"]["RestartPolicy"] = {"Name": container.restart, "MaximumRetryCount": 0}
    item["HostConfig"]["PortBindings"] = {
        f"{inside}/tcp": [{"HostIp": docker.LOOPBACK, "HostPort": str(outside)}]
        for outside, inside in container.published}
    if container.network == "host":
        item["NetworkSettings"]["Networks"] = {"host": {"IPAddress": ""}}
    item["Mounts"] = [{"Type": "bind", "Source": source, "Destination": inside}
                      if source.startswith("/") else
                      {"Type": "volume", "Name": source, "Destination": inside,
                       "Source": f"/var/lib/docker/volumes/{source}/_data"}
                      for inside, source in container.binds.items()]
    return item


VALUE_OPTIONS = {"--name", "--network", "--network-alias", "--publish", "--restart",
                 "--stop-timeout", "--label", "--env-file", "--env", "--volume",
                 "--stop-signal", "--memory", "--cpus", "--log-driver", "--log-opt", "--user",
                 "--mount"}
FLAGS = {"--detach", "--rm", "--interactive", "--tty"}


def mount_binds(mounts: list[str]) -> dict[str, str]:
    """`--mount type=bind,source=S,target=T[,readonly]` values: inside -> the server's path."""
    found = {}
    for mount in mounts:
        fields = dict(item.partition("=")[::2] for item in mount.split(","))
        if fields.get("type") != "bind":
            raise UnknownCommand(f"docker run --mount {mount}")
        found[fields["target"]] = fields["source"]
    return found


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

DOCKER_CHANGES = {"run", "rm", "stop", "start", "kill", "rename", "update", "create"}
# How long a soft-stopped HAProxy takes to finish its open connections (within the kit's
# wait, timeouts.drain).
SOFT_STOP_SECONDS = 1.0
# `docker info`'s answer: the engine's platform and version (docker_engine.parse_engine).
ENGINE = "linux/x86_64 28.3.3\n"


def changes_something(argv: list[str]) -> bool:
    """A command that changes what runs (the lock's and the history's scripts do not)."""
    if argv[:1] == ["docker"]:
        return argv[1] in DOCKER_CHANGES or argv[1:3] == ["image", "rm"]
    return argv[:1] == ["rm"]


RUNTIME_API_VERBS = {"show", "set", "add", "del", "clear", "commit", "new", "abort"}
FILE_COMMANDS = {"rm", "mv", "mkdir", "chmod", "touch", "cp"}


def call_changes(call: str) -> bool:
    """A call of a simulated server's log that changes something: a file written, a
    runtime-API line that is not only `show`s, a command that changes what runs or what is
    on disk (the calls a run's plan must name, tests/unit/test_swap_steps.py)."""
    if call.startswith("write "):
        return True
    if call.split(" ", 1)[0] in RUNTIME_API_VERBS:
        return not all(part.startswith("show ") for part in call.split("; "))
    commands: list[list[str]] = [[]]
    for word in shlex.split(call):
        if word == "&&":
            commands.append([])
        else:
            commands[-1].append(word)
    return any(changes_something(argv) or (argv[:1] and argv[0] in FILE_COMMANDS)
               for argv in commands)


class DockerEngine:
    """Docker's commands on the containers and images of a SimulatedServer."""

    containers: dict[str, Container]
    images: dict[str, str]
    registry: dict[str, str]
    serial: int
    clock: SimClock
    networks: set[str]
    # The fault that strikes the call in hand ('deadline', 'lost_after': its channel closes
    # while the command runs), and one-off containers started while another of their role
    # ran (two release commands at once: issue 21, path 6).
    fault_in_call: str | None = None
    one_offs_overlapping: list[str]

    def container_at(self, port: int) -> Container | None:
        return next((c for c in self.containers.values() if c.running
                     and any(outside == port for outside, _ in c.published)), None)

    def wall(self, monotonic: float) -> float:
        return 1_800_000_000.0 + monotonic

    def read_local(self, path: str) -> str | None:
        raise NotImplementedError

    def haproxy_started(self, container: Container) -> None:
        """HAProxy's container started: HAProxy starts from the config it mounts, and its
        master makes the admin socket anew (the one the runtime API reaches now)."""
        raise NotImplementedError

    def haproxy_reloaded(self, container: Container) -> None:
        """HAProxy's master reloaded (HUP, USR2): new workers from the config on disk; the
        master makes its admin socket anew."""
        raise NotImplementedError

    def haproxy_checks(self, config_dir: str, filename: str) -> bool:
        """`haproxy -c` of the file: a config the simulated HAProxy can run."""
        raise NotImplementedError

    def docker(self, argv: list[str]) -> CommandResult:
        self.settle()
        verb = argv[1:3]
        if verb == ["container", "inspect"]:
            return self.inspect(argv[3:])
        if verb == ["image", "inspect"] and argv[3:5] == ["--format", "{{.Id}}"]:
            ref = argv[5]
            if ref in self.images:
                return CommandResult(self.images[ref] + "\n", "", 0)
            return CommandResult("", f"Error: No such image: {ref}\n", 1)
        if verb[0] in ("run", "create"):  # create: the container made, not started
            return self.docker_run(argv)
        if verb == ["ps", "--all"]:
            return self.list_containers(argv[3:])
        if verb[0] == "rm" and argv[2] == "--force":
            return self.remove(argv[3:])
        if verb[0] == "stop" and argv[2:3] == ["--time"]:
            return self.stop(argv[4:], int(argv[3]))
        if verb[0] == "stop" and not argv[2].startswith("-"):
            return self.stop(argv[2:], None)
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
        if verb == ["network", "inspect"] and argv[3:5] == ["--format", "{{.Driver}}"]:
            if argv[5] in self.networks:
                return CommandResult("bridge\n", "", 0)
            return CommandResult("", f"Error response from daemon: network {argv[5]} not "
                                 "found\n", 1)
        if verb == ["network", "create"] and argv[3:5] == ["--driver", "bridge"]:
            self.networks.add(argv[-1])
            return CommandResult(f"{len(self.networks):064x}\n", "", 0)
        if verb == ["update", "--restart"]:
            return self.update_restart(argv[3], argv[4])
        if verb[0] == "rename":
            return self.rename(argv[2], argv[3])
        if verb[0] == "kill" and argv[2] == "--signal":
            return self.kill(argv[3], argv[4])
        if verb[0] == "info" and argv[2:] == ["--format", "{{.OSType}}/{{.Architecture}} "
                                              "{{.ServerVersion}}"]:
            return CommandResult(ENGINE, "", 0)
        raise UnknownCommand(f"docker command {argv}")

    def inspect(self, names: list[str]) -> CommandResult:
        found = [inspect_item(self.containers[n], self.wall) for n in names
                 if n in self.containers]
        missing = [n for n in names if n not in self.containers]
        stderr = "".join(f"Error: No such object: {n}\n" for n in missing)
        # Docker indents it; the kit reads JSON, and the C encoder (no indent) is 20 times
        # faster: a sweep inspects thousands of times.
        return CommandResult(json.dumps(found) + "\n", stderr, 1 if missing else 0)

    def list_containers(self, args: list[str]) -> CommandResult:
        """`docker ps --all --filter label=K=V ... --format '{{.Names}}\t{{.Status}}'`."""
        wanted = [args[i + 1].removeprefix("label=") for i, word in enumerate(args)
                  if word == "--filter"]
        if args[-2:] != ["--format", "{{.Names}}\t{{.Status}}"] or not all(
                "=" in label for label in wanted):
            raise UnknownCommand(f"docker ps {args}")
        lines = [f"{c.name}\t{'Up 3 seconds' if c.running else 'Exited (0) 1 second ago'}"
                 for c in self.containers.values()
                 if all(c.labels.get(k) == v for k, v in (w.split("=", 1) for w in wanted))]
        return CommandResult("".join(line + "\n" for line in lines), "", 0)

    def one_off(self, options: dict[str, list[str]], rest: list[str]) -> CommandResult:
        """`docker run --rm --name NAME ...`: the command runs to its end and the container
        goes, unless the call's channel closes meanwhile (a deadline, a lost connection):
        then it goes on running, as Docker does, until someone removes it."""
        name = options["--name"][0]
        labels = dict(label.split("=", 1) for label in options.get("--label", []))
        role = labels.get(docker.LABEL_ROLE)
        if any(c.running and c.labels.get(docker.LABEL_ROLE) == role
               for c in self.containers.values()):
            self.one_offs_overlapping.append(name)
        image = rest[0]
        if image not in self.images:
            return CommandResult("", f"Unable to find image '{image}' locally\n", 125)
        if self.fault_in_call in ("deadline", "lost_after"):
            self.serial += 1
            self.containers[name] = Container(name, image, self.images[image], labels,
                                              started_at=self.clock.now, serial=self.serial)
        return CommandResult("migrated\n", "", 0)

    def docker_run(self, argv: list[str]) -> CommandResult:
        options, rest = parse_run(argv)
        binds = dict(reversed(volume.split(":")[:2]) for volume in options.get("--volume", []))
        binds.update(mount_binds(options.get("--mount", [])))
        if "--rm" in options and rest[1:3] == ["-c", "-f"]:  # HAProxy's check of a config
            folder, _, filename = rest[3].rpartition("/")
            if self.haproxy_checks(binds[folder], filename):
                return CommandResult("Configuration file is valid\n", "", 0)
            return CommandResult("", f"[ALERT] config : parsing [{rest[3]}] failed\n", 1)
        if "--rm" in options:
            return self.one_off(options, rest)
        for env_file in options.get("--env-file", []):  # read by the client, before all
            if self.read_local(env_file) is None:
                return CommandResult("", f"docker: open {env_file}: no such file or "
                                     "directory\n\nRun 'docker run --help' for more "
                                     "information\n", 125)
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
            stop_timeout=int(options.get("--stop-timeout", ["10"])[0]),
            network=options.get("--network", [""])[0], binds=binds,
            env=dict(item.split("=", 1) for item in options.get("--env", [])),
            command=tuple(rest[1:]), stop_signal=(options.get("--stop-signal") or [""])[0])
        if argv[1] == "create":
            self.containers[name].running = False
        elif self.is_haproxy(self.containers[name]):
            self.haproxy_started(self.containers[name])
        return CommandResult(f"{self.serial:064x}\n", "", 0)

    @staticmethod
    def is_haproxy(container: Container) -> bool:
        return container.labels.get(docker.LABEL_ROLE) == "haproxy"

    admin_owner: int | None = None  # the HAProxy container whose master made the socket

    def haproxy_containers(self) -> list[Container]:
        return [c for c in self.containers.values() if self.is_haproxy(c)]

    def haproxy_listens(self) -> bool:
        """Some HAProxy takes connections: one of its containers runs (or none was ever
        started: HAProxy runs as the simulator made it)."""
        containers = self.haproxy_containers()
        return not containers or any(c.running and c.stopping_until is None
                                     for c in containers)

    def admin_container(self) -> Container | None:
        """The HAProxy container the admin socket reaches (None: no container)."""
        return next((c for c in self.haproxy_containers()
                     if c.serial == self.admin_owner), None)

    def admin_refused(self) -> bool:
        """HAProxy runs in containers and the one whose master made the admin socket is
        gone: the socket answers nothing."""
        owner = self.admin_container()
        return bool(self.haproxy_containers()) and (owner is None or not owner.running)

    def show_env(self, command: str) -> str:
        """`show env VARIABLE`: the variable in the environment of the socket's HAProxy."""
        variable, owner = command.split()[-1], self.admin_container()
        if owner is None or variable not in owner.env:
            return "\n"
        return f"{variable}={owner.env[variable]}\n"

    def kill(self, signal: str, name: str) -> CommandResult:
        container = self.containers.get(name)
        if container is None or not container.running:
            return CommandResult("", f"Error response from daemon: cannot kill container: "
                                 f"{name}: container is not running\n", 1)
        if self.is_haproxy(container) and signal in ("HUP", "USR2"):
            self.haproxy_reloaded(container)
            return CommandResult(f"{name}\n", "", 0)
        if self.is_haproxy(container) and signal == "USR1":
            # Soft stop: it stops listening at once, finishes its open connections, exits.
            if container.stopping_until is None:
                container.stopping_until = self.clock.now + SOFT_STOP_SECONDS
            return CommandResult(f"{name}\n", "", 0)
        raise UnknownCommand(f"docker kill --signal {signal} {name}")

    def update_restart(self, policy: str, name: str) -> CommandResult:
        container = self.containers.get(name)
        if container is None:
            return CommandResult("", f"Error response from daemon: No such container: {name}\n",
                                 1)
        container.restart = policy
        return CommandResult(f"{name}\n", "", 0)

    def rename(self, name: str, new_name: str) -> CommandResult:
        if name not in self.containers:
            return CommandResult("", f"Error response from daemon: No such container: {name}\n",
                                 1)
        if new_name in self.containers:
            return CommandResult("", "Error response from daemon: Error when allocating new "
                                 f'name: Conflict. The container name "/{new_name}" is already '
                                 "in use by container "
                                 f'"{self.containers[new_name].serial:064x}". You have to '
                                 "remove (or rename) that container to be able to reuse that "
                                 "name.\n", 1)
        container = self.containers.pop(name)
        container.name = new_name
        self.containers[new_name] = container
        return CommandResult("", "", 0)

    def wait(self, seconds: int, name: str) -> CommandResult:
        """`timeout SECONDS docker wait NAME`: its exit code once it exited; 124 (and the
        seconds gone) while it runs."""
        container = self.containers.get(name)
        if container is None:
            return CommandResult("", f"Error response from daemon: No such container: {name}\n",
                                 1)
        if container.running and (container.stopping_until is None
                                  or container.stopping_until > self.clock.now + seconds):
            self.clock.advance(seconds)
            return CommandResult("", "", 124)
        if container.running:
            self.clock.advance(container.stopping_until - self.clock.now)
            self.settle()
        return CommandResult(f"{container.exit_code}\n", "", 0)

    def settle(self) -> None:
        """A soft-stopped HAProxy whose connections have ended has exited, as has a worker
        told to stop whose job has ended."""
        for container in self.containers.values():
            if container.running and container.stopping_until is not None \
                    and container.stopping_until <= self.clock.now:
                container.running, container.exit_code = False, container.stop_exit
                container.stopping_until = None

    def remove(self, names: list[str]) -> CommandResult:
        """`docker rm --force`: SIGKILL, then gone (a worker's job in progress is cut)."""
        raise NotImplementedError

    def stop(self, names: list[str], seconds: int | None) -> CommandResult:
        """`docker stop [--time T] NAME...` (simulated_roles.py)."""
        raise NotImplementedError

    def start(self, name: str) -> CommandResult:
        container = self.containers.get(name)
        if container is None:
            return CommandResult("", f"Error response from daemon: No such container: {name}\n",
                                 1)
        if not container.running:
            container.running, container.started_at = True, self.clock.now
            container.exit_code, container.stopped_by_user = 0, False
            container.stopping_until = None
            # A manual start makes Docker's restart manager anew: RestartCount 0 (moby's
            # Container.ResetRestartManager(true)).
            container.restart_count, container.backoff = 0, 0.0
            if self.is_haproxy(container):
                self.haproxy_started(container)
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
        mark, image, app, env1, env2, *names = args
        out = ""
        image_id = self.images.get(image)
        out += (image_id + "\n" if image_id else "") + f"\n{mark} {0 if image_id else 1}\n"
        for path in (env1, env2):
            text = self.read_local(path)
            out += (text or "") + f"\n{mark} {0 if text is not None else 1}\n"
        self.settle()
        out += "".join(f"{c.name}\n" for c in self.containers.values()
                       if (c.running or c.restarting_until is not None)
                       and c.labels.get(docker.LABEL_APP) == app
                       and docker.LABEL_GENERATION in c.labels) + f"\n{mark} 0\n"
        inspected = self.inspect(names)
        return CommandResult(out + inspected.stdout, inspected.stderr, inspected.exit_code)
