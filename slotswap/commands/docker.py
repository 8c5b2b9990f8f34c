"""Docker command lines (argv lists) and parsers of Docker's answers. Nothing here runs them."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slotswap.config.container import ContainerSettings
from slotswap.config.layout import (
    CONFIG_NAME,
    HAPROXY_ADMIN_DIR_INSIDE,
    HAPROXY_CONFIG_DIR_INSIDE,
    PREVIOUS_ADMIN_DIR_INSIDE,
    PREVIOUS_CONFIG_DIR_INSIDE,
    PREVIOUS_STATE_DIR_INSIDE,
)

NO_OPTIONS = ContainerSettings()

# What Docker accepts as a container's name.
CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
LABEL_APP = "slotswap.app"
LABEL_SLOT = "slotswap.slot"
LABEL_VERSION = "slotswap.version"
LABEL_ROLE = "slotswap.role"
# On a role's containers: the slot its version went into on the web hosts (web1, web2).
LABEL_GENERATION = "slotswap.generation"
LABEL_SETTINGS = "slotswap.settings"
# On slots published on the server's loopback (HAProxy on the server's network reaches them
# there); absent on slots made by an older slotswap, reached on the app's network.
LABEL_PUBLISHED = "slotswap.published"

# HAProxy's master starts as root (to create the admin socket for the deploy login, in the
# login's folder, and to re-create it on reloads); its workers, which handle all traffic,
# run as this unprivileged user: the official image's `haproxy` user.
HAPROXY_MASTER_USER = "0:0"
HAPROXY_WORKER_UID = 99
HAPROXY_WORKER_GID = 99


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    running: bool
    status: str  # created, running, exited, ...
    image: str
    image_id: str
    labels: dict[str, str]
    addresses: dict[str, str]  # network name -> IPv4 address
    exit_code: int
    started_at: str
    # (server port, container port) of what it publishes on the server's 127.0.0.1
    loopback_ports: tuple[tuple[int, int], ...] = ()
    # folder inside the container -> the server's folder bound there (bind mounts only)
    binds: dict[str, str] = field(default_factory=dict)
    # HostConfig.RestartPolicy.Name: "unless-stopped" as the kit runs its containers; "no"
    # for an HAProxy that was told to stop (no_restart, during a hand-over). Not part of a
    # container's identity (what recordings and tests compare).
    restart_policy: str = field(default="", compare=False)
    # How often Docker restarted it (its restart policy) since it was last started.
    restart_count: int = field(default=0, compare=False)

    @property
    def version(self) -> str | None:
        return self.labels.get(LABEL_VERSION)

    @property
    def started_ns(self) -> int:
        return docker_time_ns(self.started_at)


def docker_time_ns(text: str) -> int:
    """Nanoseconds since the epoch of one of Docker's RFC 3339 times, which carry up to 9
    fraction digits with trailing zeros trimmed (`...:55.344Z`, `...:55Z`): compare them as
    numbers, never as strings. 0 for an empty or unknown time."""
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return 0
    whole, fraction, zone = match.groups()
    seconds = datetime.fromisoformat(f"{whole}{'+00:00' if zone == 'Z' else zone}")
    return int(seconds.timestamp()) * 1_000_000_000 + int((fraction or "").ljust(9, "0"))

def build(image_ref: str, tag: str, dockerfile: str, context: str, *,
          platform: str | None = None, args: tuple[tuple[str, str], ...] = ()) -> list[str]:
    extra = [word for name, value in args for word in ("--build-arg", f"{name}={value}")]
    return ["docker", "build", *(["--platform", platform] if platform else []),
            "--build-arg", f"VERSION={tag}", *extra, "-t", image_ref, "-f", dockerfile, context]


def image_platform(image_ref: str) -> list[str]:
    """OS/architecture an image was built for."""
    return ["docker", "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image_ref]


def push(image_ref: str) -> list[str]:
    return ["docker", "push", image_ref]


def pull(image_ref: str) -> list[str]:
    return ["docker", "pull", "--quiet", image_ref]


# The pull, then the ID of what it left under that name (what the registry names it now).
PULL_AND_ID_SCRIPT = ('docker pull --quiet "$1" >/dev/null && '
                      'docker image inspect --format "{{.Id}}" "$1"')


def pull_and_id(image_ref: str) -> list[str]:
    return ["sh", "-c", PULL_AND_ID_SCRIPT, "sh", image_ref]


def image_id(image_ref: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", image_ref]


def save(image_ref: str, path: str) -> list[str]:
    """The image (its layers, config and tag) as one tar file, for `docker load`."""
    return ["docker", "image", "save", "--output", path, image_ref]


SERVER_IMAGES_SCRIPT = (
    "docker image ls --quiet --no-trunc | sort -u | xargs -r docker image inspect --format "
    "'{{.Id}} {{json .RepoTags}} {{json .RootFS.Layers}}'")


def server_images() -> list[str]:
    """Every image on the server: its ID, names and layers, a line each (parse_server_images).
    A fixed script: nothing in it comes from input."""
    return ["sh", "-c", SERVER_IMAGES_SCRIPT]


@dataclass(frozen=True)
class ServerImage:
    image_id: str
    names: tuple[str, ...]  # REPOSITORY:TAG, as Docker shows them (familiar_name)
    layers: tuple[str, ...]  # diff IDs, bottom layer first


def parse_server_images(text: str) -> list[ServerImage]:
    images = []
    decoder = json.JSONDecoder()
    for line in text.splitlines():
        image_id, _, rest = line.strip().partition(" ")
        try:
            names, end = decoder.raw_decode(rest)
            layers, _ = decoder.raw_decode(rest[end:].lstrip())
        except json.JSONDecodeError:
            continue  # not an image's line (a warning)
        if image_id.startswith("sha256:") and isinstance(layers, list):
            images.append(ServerImage(image_id, tuple(names or ()), tuple(layers)))
    return images


DOCKER_HUB_DOMAINS = ("docker.io", "index.docker.io")


def familiar_name(image_ref: str) -> str:
    """The name Docker shows for an image reference: Docker Hub's domain and its `library/`
    left out (`docker.io/library/nginx:1` is `nginx:1`)."""
    first, slash, rest = image_ref.partition("/")
    if slash and first in DOCKER_HUB_DOMAINS:
        image_ref = rest
    elif slash and ("." in first or ":" in first or first == "localhost"):
        return image_ref  # another registry: shown as it is
    official = image_ref.removeprefix("library/")
    return official if "/" not in official else image_ref


def image_id_named(images: list[ServerImage], image_ref: str) -> str | None:
    name = familiar_name(image_ref)
    return next((image.image_id for image in images if name in image.names), None)


def load() -> list[str]:
    """Reads an image tar (from `docker save`) on stdin; says `Loaded image: NAME` for each
    name the archive gives the image (parse_loaded_names)."""
    return ["docker", "image", "load", "--quiet"]


LOADED_IMAGE = "Loaded image: "


def parse_loaded_names(output: str) -> list[str]:
    return [line.removeprefix(LOADED_IMAGE).strip() for line in output.splitlines()
            if line.startswith(LOADED_IMAGE)]


def inspect_containers(*names: str) -> list[str]:
    """Answers a JSON array of the containers that exist; exits 1 if any does not."""
    return ["docker", "container", "inspect", *names]


# What a redeploy must know besides HAProxy's view, in one round trip: the image ID the tag
# names, each slot's env file, the IDs of the app's running role containers, then (last, so
# that its stdout, stderr and exit code are the command's own) the containers. Each of the
# first parts ends with a line `MARK EXIT-CODE`.
REDEPLOY_FACTS_SCRIPT = (
    'mark=$1 image=$2 app=$3; shift 3; '
    'docker image inspect --format "{{.Id}}" "$image" 2>/dev/null; printf "\n%s %s\n" '
    '"$mark" "$?"; '
    'for slot_env in "$1" "$2"; do cat -- "$slot_env" 2>/dev/null; '
    'printf "\n%s %s\n" "$mark" "$?"; done; shift 2; '
    f'docker ps --quiet --no-trunc --filter "label={LABEL_APP}=$app" --filter '
    f'"label={LABEL_GENERATION}" --filter status=running --filter status=restarting 2>/dev/null; '
    'printf "\n%s %s\n" "$mark" "$?"; '
    'docker container inspect "$@"'
)


def redeploy_facts(mark: str, image_ref: str, app: str, env_files: tuple[str, str],
                   containers: list[str]) -> list[str]:
    return ["sh", "-c", REDEPLOY_FACTS_SCRIPT, "sh", mark, image_ref, app, *env_files,
            *containers]


def split_redeploy_facts(stdout: str, mark: str) -> tuple[list[str | None], str]:
    """Pure: the answer to redeploy_facts as ([image ID, env file 1, env file 2, running role
    containers' IDs], each None where it failed) and the containers' JSON."""
    parts: list[str | None] = []
    rest = stdout
    for _ in range(4):
        text, found, rest = rest.partition(f"\n{mark} ")
        if not found:
            raise UnexpectedOutputError(
                f"cannot read the answer of the redeploy check: {stdout[:200]!r}")
        code, _, rest = rest.partition("\n")
        parts.append(text if code.strip() == "0" else None)
    image = parts[0]
    parts[0] = image.strip() if image is not None else None
    return parts, rest


def only_missing_containers(stderr: str) -> bool:
    """True when there are error lines and each says a container does not exist (a failure
    with no error output at all is not known to be that)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and all("No such object" in line or "No such container" in line
                               for line in lines)


def network_inspect(network: str) -> list[str]:
    return ["docker", "network", "inspect", "--format", "{{.Driver}}", network]


def network_create(network: str, app: str) -> list[str]:
    return ["docker", "network", "create", "--driver", "bridge",
            "--label", f"{LABEL_APP}={app}", network]


def network_remove(network: str) -> list[str]:
    return ["docker", "network", "rm", network]


def container_options(options: ContainerSettings) -> list[str]:
    """The inventory's container options as `docker run` options (each one validated)."""
    words: list[str] = []
    for volume in options.volumes:
        words += ["--volume", volume]
    if options.stop_signal:
        words += ["--stop-signal", options.stop_signal]
    if options.memory:
        words += ["--memory", options.memory]
    if options.cpus:
        words += ["--cpus", f"{options.cpus:g}"]
    if options.log:
        words += ["--log-driver", options.log.driver]
        for name, value in options.log.options:
            words += ["--log-opt", f"{name}={value}"]
    for name, value in options.labels:
        words += ["--label", f"{name}={value}"]
    return words


# Slots are published on the server's loopback only: HAProxy (on the server's network)
# reaches them there, nothing outside the server can.
LOOPBACK = "127.0.0.1"


def loopback_publish(ports: tuple[tuple[int, int], ...]) -> list[str]:
    """`--publish 127.0.0.1:SERVER_PORT:CONTAINER_PORT` for each pair."""
    return [word for server_port, container_port in ports
            for word in ("--publish", f"{LOOPBACK}:{server_port}:{container_port}")]


def settings_digest(*, network: str, app_port: int, stop_timeout: int,
                    options: ContainerSettings,
                    published: tuple[tuple[int, int], ...] = ()) -> str:
    """What a slot's container was created with besides its image and environment: a kept
    container is started again (a rollback) only when this matches today's inventory."""
    fields: dict[str, object] = {
        "network": network, "app_port": app_port, "stop_timeout": stop_timeout,
        "options": container_options(options), "command": list(options.command)}
    if published:  # absent for containers made before slots were published
        fields["published"] = [list(pair) for pair in published]
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_app_slot(*, container: str, image_ref: str, network: str, app: str, slot: str,
                 version: str, app_port: int, stop_timeout: int,
                 env_file: str | None = None,
                 options: ContainerSettings = NO_OPTIONS,
                 published: tuple[tuple[int, int], ...] = ()) -> list[str]:
    """The app in one slot, published on the server's loopback only (`published`: pairs of
    server port, container port): HAProxy reaches it there, nothing off the server can.

    The app's own variables come only from `env_file` (a path on the server), so that no
    value, secret or not, is ever part of a command line."""
    env_from_file = ["--env-file", env_file] if env_file is not None else []
    digest = settings_digest(network=network, app_port=app_port, stop_timeout=stop_timeout,
                             options=options, published=published)
    return [
        "docker", "run", "--detach",
        "--name", container,
        "--network", network,
        "--network-alias", container,
        *loopback_publish(published),
        "--restart", "unless-stopped",
        "--stop-timeout", str(stop_timeout),
        *container_options(options),
        "--label", f"{LABEL_APP}={app}",
        "--label", f"{LABEL_SLOT}={slot}",
        "--label", f"{LABEL_VERSION}={version}",
        "--label", f"{LABEL_ROLE}=app",
        "--label", f"{LABEL_SETTINGS}={digest}",
        *(["--label", f"{LABEL_PUBLISHED}=loopback"] if published else []),
        *env_from_file,
        # After the file: docker applies --env last, so the kit's PORT always wins.
        "--env", f"PORT={app_port}",
        image_ref,
        *options.command,
    ]


# In HAProxy's environment (`show env`): which container answers on the admin socket, since
# the process ids inside two containers are alike.
HAPROXY_INSTANCE_VARIABLE = "SLOTSWAP_HAPROXY_INSTANCE"


def haproxy_run_head(container: str, labels: dict[str, str], instance: str | None) -> list[str]:
    """The start of an HAProxy container's `docker run` (an app's or the shared one): on the
    server's network, restarted by Docker, `labels`, the master as root (it binds ports
    below 1024 and creates the admin socket for the login; the workers drop to
    HAPROXY_WORKER_UID, the config's uid/gid), `instance` in its environment."""
    return ["docker", "run", "--detach", "--name", container, "--network", "host",
            "--restart", "unless-stopped",
            *(word for key, value in labels.items() for word in ("--label", f"{key}={value}")),
            "--user", HAPROXY_MASTER_USER,
            *(["--env", f"{HAPROXY_INSTANCE_VARIABLE}={instance}"] if instance else [])]


def run_haproxy(*, container: str, image_ref: str, app: str, config_dir: str,
                admin_dir: str, labels: dict[str, str] | None = None,
                instance: str | None = None) -> list[str]:
    """HAProxy's container, on the server's own network: it binds the public ports itself
    (with SO_REUSEPORT, HAProxy's default on Linux, so that a new HAProxy container can
    listen on them before the old one stops) and reaches the slots on the loopback. The
    runtime API is a unix socket in admin_dir, a folder of the server mounted into this
    container alone."""
    return [
        *haproxy_run_head(container, {LABEL_APP: app, LABEL_ROLE: "haproxy", **(labels or {})},
                          instance),
        "--volume", f"{config_dir}:{HAPROXY_CONFIG_DIR_INSIDE}:ro",
        "--volume", f"{admin_dir}:{HAPROXY_ADMIN_DIR_INSIDE}",
        image_ref,
        "-f", f"{HAPROXY_CONFIG_DIR_INSIDE}/{CONFIG_NAME}",
    ]


def create_haproxy(*, container: str, image_ref: str, app: str, config_dir: str,
                   admin_dir: str, labels: dict[str, str] | None = None,
                   instance: str | None = None) -> list[str]:
    """`run_haproxy`'s container created, not started (`docker start` starts it)."""
    run = run_haproxy(container=container, image_ref=image_ref, app=app,
                      config_dir=config_dir, admin_dir=admin_dir, labels=labels,
                      instance=instance)
    return ["docker", "create", *run[len(["docker", "run", "--detach"]):]]


def check_haproxy_config(*, image_ref: str, config_dir: str, filename: str) -> list[str]:
    """HAProxy's own check of a config file, with the same image and user that will run it
    (the master reads the 0600 certificate file)."""
    return ["docker", "run", "--rm", "--network", "none", "--user", HAPROXY_MASTER_USER,
            "--volume", f"{config_dir}:{HAPROXY_CONFIG_DIR_INSIDE}:ro",
            image_ref, "-c", "-f", f"{HAPROXY_CONFIG_DIR_INSIDE}/{filename}"]


def run_carrier(*, container: str, image_ref: str, app: str, config_dir: str, config: str,
                admin_dir: str, previous_admin_dir: str, previous_config_dir: str,
                previous_state_dir: str | None) -> list[str]:
    """A container of HAProxy's image that carries a server over to the login's folders: as
    root it reaches the folders of the login that set the server up (mounted here alone),
    relays their admin socket to one in `admin_dir` for this login (`config`, in
    config_dir), and holds their files for `docker cp`. No network."""
    state = (["--volume", f"{previous_state_dir}:{PREVIOUS_STATE_DIR_INSIDE}"]
             if previous_state_dir is not None else [])
    return [
        "docker", "run", "--detach", "--name", container, "--network", "none",
        "--label", f"{LABEL_APP}={app}", "--label", f"{LABEL_ROLE}=carrier",
        "--user", HAPROXY_MASTER_USER,
        "--volume", f"{config_dir}:{HAPROXY_CONFIG_DIR_INSIDE}:ro",
        "--volume", f"{admin_dir}:{HAPROXY_ADMIN_DIR_INSIDE}",
        "--volume", f"{previous_admin_dir}:{PREVIOUS_ADMIN_DIR_INSIDE}:ro",
        "--volume", f"{previous_config_dir}:{PREVIOUS_CONFIG_DIR_INSIDE}:ro",
        *state,
        image_ref, "-f", f"{HAPROXY_CONFIG_DIR_INSIDE}/{config}",
    ]


def signal_container(container: str, signal: str) -> list[str]:
    return ["docker", "kill", "--signal", signal, container]


def start(container: str) -> list[str]:
    return ["docker", "start", container]


def rename(container: str, new_name: str) -> list[str]:
    return ["docker", "rename", container, new_name]


def no_restart(container: str) -> list[str]:
    """Docker must not start it again once it exits (an HAProxy that was told to stop)."""
    return ["docker", "update", "--restart", "no", container]


def wait_exit(container: str, seconds: int) -> list[str]:
    """Waits until the container has exited, at most `seconds` on the server (coreutils'
    `timeout` exits 124 after that)."""
    return ["timeout", str(seconds), "docker", "wait", container]


def list_images(repository: str) -> list[str]:
    """Every tagged image of one repository, a JSON object per line (parse_image_list)."""
    return ["docker", "image", "ls", "--no-trunc", "--format", "{{json .}}", repository]


def remove_images(*image_refs: str) -> list[str]:
    """Without --force: Docker refuses an image that a container (even a stopped one) uses."""
    return ["docker", "image", "rm", *image_refs]


def stop(container: str, timeout: int) -> list[str]:
    return ["docker", "stop", "--time", str(timeout), container]


def remove(*containers: str) -> list[str]:
    return ["docker", "rm", "--force", *containers]


def run_one_off(*, image: str, network: str, app: str, command: list[str], app_port: int,
                env_file: str | None, tty: bool, name: str, role: str = "one-off",
                options: ContainerSettings = NO_OPTIONS) -> list[str]:
    """A one-off container of the app's image (`exec`, the release command): the app's
    network, environment and container options, removed when the command ends; named, so
    that the kit can kill it (see slotswap.server.one_off_container)."""
    return [
        "docker", "run", "--rm", "--interactive", *(["--tty"] if tty else []),
        "--name", name, "--network", network,
        *container_options(options),
        "--label", f"{LABEL_APP}={app}",
        "--label", f"{LABEL_ROLE}={role}",
        *(["--env-file", env_file] if env_file is not None else []),
        "--env", f"PORT={app_port}",
        image, *command,
    ]


def list_one_offs(app: str, role: str) -> list[str]:
    """The app's one-off containers of `role`, running or not: name and status, a line each."""
    return ["docker", "ps", "--all", "--filter", f"label={LABEL_APP}={app}",
            "--filter", f"label={LABEL_ROLE}={role}", "--format", "{{.Names}}\t{{.Status}}"]


def parse_one_offs(stdout: str) -> list[tuple[str, str]]:
    """(name, status) of each container list_one_offs printed."""
    found = []
    for line in stdout.splitlines():
        name, _, status = line.partition("\t")
        if CONTAINER_NAME.fullmatch(name):
            found.append((name, status.strip()))
    return found


def exec_in(container: str, command: list[str], *, tty: bool) -> list[str]:
    """`exec --live`: the command inside the running container."""
    return ["docker", "exec", "--interactive", *(["--tty"] if tty else []), container, *command]


def logs_tail(container: str, lines: int = 20) -> list[str]:
    return ["docker", "logs", "--tail", str(lines), container]


def list_app_containers(app: str) -> list[str]:
    return ["docker", "ps", "--all", "--quiet", "--filter", f"label={LABEL_APP}={app}"]


@dataclass(frozen=True)
class ImageInfo:
    repository: str
    tag: str
    image_id: str
    created_at: str  # `2026-11-26 10:13:09 +0000 UTC`

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def created(self) -> datetime:
        # The fourth word is the zone's name, which %Z parses only for a few zones.
        return datetime.strptime(" ".join(self.created_at.split()[:3]), "%Y-%m-%d %H:%M:%S %z")


class UnexpectedOutputError(RuntimeError):
    """A docker command's output is not what the kit can read."""


def _json(text: str, command: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        shown = text.strip().splitlines()[0][:80] if text.strip() else ""
        raise UnexpectedOutputError(
            f"cannot read the output of `{command}` ({error}): {shown!r}") from None


def parse_image_list(text: str) -> list[ImageInfo]:
    """`docker image ls --format '{{json .}}'`; untagged (`<none>`) images are left out."""
    images = []
    for line in text.splitlines():
        if not line.strip():
            continue
        item = _json(line, "docker image ls")
        if item.get("Tag", "<none>") == "<none>":
            continue
        images.append(ImageInfo(item["Repository"], item["Tag"], item["ID"], item["CreatedAt"]))
    return images


def loopback_bindings(bindings: dict[str, Any]) -> tuple[tuple[int, int], ...]:
    """Pure: `HostConfig.PortBindings` ({"3000/tcp": [{"HostIp": "127.0.0.1", "HostPort":
    "18081"}]}) as sorted (server port, container port) pairs bound to 127.0.0.1."""
    pairs = set()
    for container_port, hosts in bindings.items():
        number, _, protocol = container_port.partition("/")
        if protocol not in ("", "tcp") or not number.isdigit():
            continue
        for host in hosts or []:
            port = str((host or {}).get("HostPort", ""))
            if (host or {}).get("HostIp") == LOOPBACK and port.isdigit():
                pairs.add((int(port), int(number)))
    return tuple(sorted(pairs))


def parse_inspect(text: str) -> dict[str, ContainerInfo]:
    """`docker container inspect` output (a JSON array) by container name."""
    text = text.strip()
    if not text:
        return {}
    containers = {}
    items = _json(text, "docker inspect")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise UnexpectedOutputError("cannot read the output of `docker inspect`: not a list "
                                    "of objects")
    for item in items:
        state = item.get("State") or {}
        config = item.get("Config") or {}
        networks = (item.get("NetworkSettings") or {}).get("Networks") or {}
        name = item.get("Name", "").lstrip("/")
        containers[name] = ContainerInfo(
            name=name,
            running=bool(state.get("Running")),
            status=state.get("Status", ""),
            image=config.get("Image", ""),
            image_id=item.get("Image", ""),
            labels=dict(config.get("Labels") or {}),
            addresses={net: (info or {}).get("IPAddress", "") for net, info in networks.items()},
            exit_code=int(state.get("ExitCode") or 0),
            started_at=state.get("StartedAt", ""),
            loopback_ports=loopback_bindings((item.get("HostConfig") or {}).get(
                "PortBindings") or {}),
            binds={str(mount.get("Destination")): str(mount.get("Source"))
                   for mount in item.get("Mounts") or [] if isinstance(mount, dict)
                   and mount.get("Type") == "bind"},
            restart_policy=str(((item.get("HostConfig") or {}).get("RestartPolicy") or {})
                               .get("Name") or ""),
            restart_count=int(item.get("RestartCount") or 0),
        )
    return containers


def logs(container: str, lines: int, *, follow: bool = False) -> list[str]:
    return ["docker", "logs", "--tail", str(lines), *(["--follow"] if follow else []), container]
