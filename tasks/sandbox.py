"""A sandbox of real servers on one Linux machine, for the demo, the tests and the benchmarks.

Each server is a network namespace with its own sshd and dockerd, on a private bridge
(10.77.0.0/24) that nothing else uses. SLOTSWAP_SANDBOX_ID=N (1-9) makes another sandbox
that can run beside the default one: bridge ssbrN, 10.77.N.0/24, namespaces ssN-*, its own
run and data folders. Beside them: a plain-HTTP registry, a resolver
that answers at once and knows nothing (as a cloud server's does), and a "builder" engine
that stands in for the operator's own Docker. Every image comes from local material: the
app is a static Go binary, HAProxy is Debian's binary with the libraries it links. Needs root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".sandbox"


def sandbox_id(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    text = environ.get("SLOTSWAP_SANDBOX_ID", "0") or "0"
    if not text.isdigit() or not 0 <= int(text) <= 9:
        raise ValueError(f"SLOTSWAP_SANDBOX_ID must be a number from 0 to 9, got {text!r}")
    return int(text)


SANDBOX_ID = sandbox_id()
_SUFFIX = str(SANDBOX_ID) if SANDBOX_ID else ""
# short: dockerd's socket paths have a length limit
RUN_DIR = Path(f"/run/slotswap-sandbox{_SUFFIX}")
DATA_DIR = Path(f"/var/lib/slotswap-sandbox{_SUFFIX}")

NAME_PREFIX = f"ss{_SUFFIX}-"  # of every namespace of this sandbox
BRIDGE = f"ssbr{SANDBOX_ID}"
SUBNET_PREFIX = f"10.77.{SANDBOX_ID}"
SUBNET = f"{SUBNET_PREFIX}.0/24"
BRIDGE_IP = f"{SUBNET_PREFIX}.1"
REGISTRY = f"{BRIDGE_IP}:5000"
BUILDER = f"{NAME_PREFIX}build"
BUILDER_IP = f"{SUBNET_PREFIX}.2"
APP_IMAGE = f"{REGISTRY}/demo/webapp"
HAPROXY_IMAGE = f"{REGISTRY}/sandbox/haproxy:2.6"
HAPROXY_BINARY = Path("/usr/sbin/haproxy")
MAX_SERVERS = 40
# Folders the kit writes on a server. All servers share this machine's file system, so each
# gets its own copy of these, mounted in a mount namespace its sshd and dockerd share.
PRIVATE_DIRS = ("/etc/slotswap", "/var/lib/slotswap")
MOUNT_NS_DIR = RUN_DIR / "mnt"

# What the sandbox and its tests run; a test run stops before the first test if one is missing.
REQUIRED_PROGRAMS = ("ip", "nsenter", "unshare", "mountpoint", "dockerd", "docker",
                     "/usr/sbin/sshd", "ssh", "ssh-keygen", "docker-registry", "dnsmasq", "go",
                     "ldd", "nft", "iptables")


class SandboxError(RuntimeError):
    pass


@dataclass(frozen=True)
class Node:
    """One namespace of the sandbox: a server (with sshd) or the builder (engine only)."""

    name: str
    index: int  # 2 for the builder, 11.. for servers
    has_sshd: bool = True

    @property
    def ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.index}"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / self.name

    @property
    def docker_socket(self) -> Path:
        return self.run_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_socket}"

    @property
    def mount_ns(self) -> Path:
        return MOUNT_NS_DIR / self.name

    def nsenter(self) -> list[str]:
        """Enter this node's network namespace and, for servers, its mount namespace."""
        argv = ["nsenter", f"--net=/var/run/netns/{self.name}"]
        if self.has_sshd:
            argv.append(f"--mount={self.mount_ns}")
        return argv

    @property
    def veth(self) -> str:
        return f"{self.name}-h"[:15]


def server_nodes(count: int) -> list[Node]:
    return [Node(f"{NAME_PREFIX}s{i}", 10 + i) for i in range(1, count + 1)]


BUILDER_NODE = Node(BUILDER, 2, has_sshd=False)


def run(argv: Sequence[str], *, check: bool = True, capture: bool = False,
        input_text: str | None = None, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), check=False, text=True, input=input_text,
                            capture_output=capture, env=env)
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip() if capture else ""
        raise SandboxError(f"command failed ({result.returncode}): {shlex.join(argv)}\n{detail}")
    return result


def spawn(argv: Sequence[str], log: Path) -> int:
    """Start a long-running daemon detached from our session; return its pid."""
    with log.open("ab") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def wait_until(predicate, what: str, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SandboxError(f"timed out after {timeout:.0f}s waiting for {what}")


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise SandboxError("the sandbox needs root (network namespaces, dockerd)")
    missing = [p for p in REQUIRED_PROGRAMS if shutil.which(p) is None]
    if missing:
        raise SandboxError("missing programs: " + ", ".join(missing)
                           + " (run scripts/bootstrap.sh to install them)")


# --- network -------------------------------------------------------------------------------

def netns_exists(name: str) -> bool:
    return Path(f"/var/run/netns/{name}").exists()


def link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False, capture=True).returncode == 0


def create_bridge() -> None:
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def create_namespace(node: Node) -> None:
    if link_exists(node.veth):
        # Left by a namespace that something still holds open: deleting our end removes both.
        run(["ip", "link", "del", node.veth], check=False, capture=True)
    wait_until(lambda: not link_exists(node.veth), f"old link {node.veth} to vanish", 10)
    run(["ip", "netns", "add", node.name])
    run(["ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0",
         "netns", node.name])
    run(["ip", "link", "set", node.veth, "master", BRIDGE, "up"])
    ns = ["ip", "-n", node.name]
    run([*ns, "addr", "add", f"{node.ip}/24", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])
    run([*ns, "link", "set", "lo", "up"])
    run([*ns, "route", "add", "default", "via", BRIDGE_IP])


def is_mountpoint(path: Path) -> bool:
    return run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def create_mount_namespace(node: Node) -> None:
    """A persistent mount namespace where PRIVATE_DIRS are this server's own folders."""
    MOUNT_NS_DIR.mkdir(parents=True, exist_ok=True)
    if not is_mountpoint(MOUNT_NS_DIR):
        # A namespace file can only be bind-mounted on a private mount.
        run(["mount", "--bind", str(MOUNT_NS_DIR), str(MOUNT_NS_DIR)])
        run(["mount", "--make-private", str(MOUNT_NS_DIR)])
    node.mount_ns.touch()
    run(["unshare", f"--mount={node.mount_ns}", "--propagation", "private", "true"])
    for directory in PRIVATE_DIRS:
        Path(directory).mkdir(parents=True, exist_ok=True)
        own = DATA_DIR / node.name / "fs" / directory.lstrip("/")
        own.mkdir(parents=True, exist_ok=True)
        run(["nsenter", f"--mount={node.mount_ns}", "mount", "--bind", str(own), directory])


# --- daemons -------------------------------------------------------------------------------

def start_resolver() -> None:
    pidfile = RUN_DIR / "dnsmasq.pid"
    run(["dnsmasq", "--no-resolv", "--no-hosts", f"--listen-address={BRIDGE_IP}",
         "--bind-interfaces", f"--pid-file={pidfile}", "--user=root"])


def start_registry() -> None:
    config = STATE_DIR / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {DATA_DIR / 'registry'}}}}}\n"
        f"http: {{addr: '{REGISTRY}'}}\n"
    )
    pid = spawn(["docker-registry", "serve", str(config)], STATE_DIR / "registry.log")
    (RUN_DIR / "registry.pid").write_text(str(pid))
    wait_until(lambda: _registry_answers(), "the registry to answer", 15)


def _registry_answers() -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_dockerd(node: Node) -> None:
    node.run_dir.mkdir(parents=True, exist_ok=True)
    data_root = DATA_DIR / node.name
    data_root.mkdir(parents=True, exist_ok=True)
    pool = 100 + node.index  # distinct address pools per engine: 10.1xx.0.0/16
    argv = [
        *node.nsenter(),
        "dockerd",
        f"--host={node.docker_host}",
        f"--data-root={data_root}",
        f"--exec-root={node.run_dir / 'x'}",
        f"--pidfile={node.run_dir / 'docker.pid'}",
        f"--bip=10.{pool}.0.1/24",
        f"--default-address-pool=base=10.{pool}.0.0/16,size=24",
        f"--insecure-registry={REGISTRY}",
        f"--dns={BRIDGE_IP}",
        "--storage-driver=overlay2",
        "--log-level=warn",
    ]
    spawn(argv, STATE_DIR / f"{node.name}-dockerd.log")


def docker(node: Node, *args: str, capture: bool = True,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["docker", "-H", node.docker_host, *args], capture=capture, check=check)


def engine_ready(node: Node) -> bool:
    return docker(node, "info", "--format", "{{.ID}}", check=False).returncode == 0


def write_sshd_config(node: Node) -> Path:
    config = STATE_DIR / f"{node.name}-sshd_config"
    config.write_text(f"""\
ListenAddress {node.ip}
Port 22
HostKey {STATE_DIR / f'{node.name}-host_key'}
PidFile {node.run_dir / 'sshd.pid'}
AuthorizedKeysFile {STATE_DIR / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 100
MaxStartups 100:30:200
AllowTcpForwarding local
Subsystem sftp /usr/lib/openssh/sftp-server
# A home of its own: this machine root's ~/.bashrc is slow, a server's usually is not.
SetEnv DOCKER_HOST={node.docker_host} HOME={RUN_DIR / "home"}
""")
    return config


def start_sshd(node: Node) -> None:
    host_key = STATE_DIR / f"{node.name}-host_key"
    if not host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node.name, "-f", str(host_key)])
    config = write_sshd_config(node)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    (RUN_DIR / "home").mkdir(parents=True, exist_ok=True)
    run([*node.nsenter(), "/usr/sbin/sshd", "-f", str(config)])


def client_key() -> Path:
    key = STATE_DIR / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sandbox-operator",
             "-f", str(key)])
    (STATE_DIR / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    return key


def write_known_hosts(nodes: Sequence[Node]) -> Path:
    lines = []
    for node in nodes:
        kind, key = (STATE_DIR / f"{node.name}-host_key.pub").read_text().split()[:2]
        lines.append(f"{node.ip} {kind} {key}\n")
    path = STATE_DIR / "known_hosts"
    path.write_text("".join(lines))
    return path


# --- images --------------------------------------------------------------------------------

def build_haproxy_image() -> None:
    """HAProxy from Debian's binary and the libraries it links, in an image FROM scratch."""
    context = STATE_DIR / "haproxy-image"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    files = [HAPROXY_BINARY, *linked_libraries(HAPROXY_BINARY)]
    for source in files:
        target = context / "rootfs" / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.resolve(), target)
    (context / "rootfs" / "tmp").mkdir()
    (context / "rootfs" / "usr/local/etc/haproxy").mkdir(parents=True)
    (context / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY rootfs/ /\n"
        # The same entry point contract as the official image: master-worker, foreground,
        # and the same unprivileged user by default (its `haproxy`, uid 99).
        'ENTRYPOINT ["/usr/sbin/haproxy", "-W", "-db"]\n'
        'USER 99:99\n'
        'CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]\n'
    )
    docker(BUILDER_NODE, "build", "-q", "-t", HAPROXY_IMAGE, str(context))
    docker(BUILDER_NODE, "push", "-q", HAPROXY_IMAGE)


def linked_libraries(binary: Path) -> list[Path]:
    output = run(["ldd", str(binary)], capture=True).stdout
    return parse_ldd(output)


def parse_ldd(output: str) -> list[Path]:
    libraries = []
    for line in output.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libraries.append(Path(target))
        elif parts and parts[0].startswith("/"):
            libraries.append(Path(parts[0]))  # the dynamic loader itself
    return libraries


def build_app_binary() -> None:
    run([str(ROOT / "example" / "build-binary.sh")])


# --- inventory -----------------------------------------------------------------------------

def write_inventory(servers: Sequence[Node]) -> Path:
    hosts = "\n".join(f"  - {{address: {n.ip}, name: {n.name.removeprefix(NAME_PREFIX)}}}"
                      for n in servers)
    path = STATE_DIR / "hosts.yaml"
    path.write_text(f"""\
# Written by `fab sandbox.create`: the sandbox's {len(servers)} servers.
app: webapp
image: {APP_IMAGE}
build: {{context: ../example, dockerfile: ../example/Dockerfile.prebuilt}}
app_port: 3000
healthcheck: {{path: /health}}
ssh: {{user: root, port: 22, identity: id_ed25519, known_hosts: known_hosts}}
haproxy: {{image: {HAPROXY_IMAGE}, http_port: 80}}
timeouts: {{healthy: 10, drain: 20, stop: 10, watch: 1}}
hosts:
{hosts}
""")
    return path


def write_env_file() -> Path:
    path = STATE_DIR / "env"
    path.write_text(f"export DOCKER_HOST={BUILDER_NODE.docker_host}\n")
    return path


def write_manifest(servers: Sequence[Node]) -> None:
    manifest = {"servers": [{"name": n.name, "ip": n.ip} for n in servers],
                "builder_docker_host": BUILDER_NODE.docker_host,
                "registry": REGISTRY, "app_image": APP_IMAGE, "haproxy_image": HAPROXY_IMAGE,
                "inventory": str(STATE_DIR / "hosts.yaml")}
    (STATE_DIR / "sandbox.json").write_text(json.dumps(manifest, indent=2) + "\n")


def read_manifest() -> dict | None:
    path = STATE_DIR / "sandbox.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- the two entry points -------------------------------------------------------------------

def create(servers: int = 3, log=print) -> Path:
    """Create the sandbox (after removing any previous one); return its inventory's path."""
    if not 1 <= servers <= MAX_SERVERS:
        raise SandboxError(f"--servers must be from 1 to {MAX_SERVERS}, got {servers}")
    check_prerequisites()
    destroy(log=lambda _msg: None)
    started = time.monotonic()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    nodes = [BUILDER_NODE, *server_nodes(servers)]
    log(f"sandbox: network {SUBNET_PREFIX}.0/24 on bridge {BRIDGE}, {servers} servers")
    create_bridge()
    start_resolver()
    for node in nodes:
        create_namespace(node)
        if node.has_sshd:
            create_mount_namespace(node)
        start_dockerd(node)
    start_registry()
    key = client_key()
    for node in nodes:
        if node.has_sshd:
            start_sshd(node)
    write_known_hosts(nodes[1:])
    for node in nodes:
        wait_until(lambda node=node: engine_ready(node), f"dockerd in {node.name}", 60)
    log("sandbox: engines up; building base images from local files")
    build_haproxy_image()
    build_app_binary()
    inventory = write_inventory(nodes[1:])
    write_env_file()
    write_manifest(nodes[1:])
    log(f"sandbox: ready in {time.monotonic() - started:.1f}s; inventory {inventory}, "
        f"ssh key {key}; builder engine: source {STATE_DIR / 'env'}")
    return inventory


def kill_pidfile(path: Path, sig: int = signal.SIGTERM) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return None
    return pid


def is_gone(pid: int) -> bool:
    """The process has ended. A daemon this very process started (create() then destroy(),
    as the tests and benchmarks do) stays a zombie until it is reaped here."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pid: int | None, timeout: float = 20.0) -> None:
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def existing_nodes() -> list[Node]:
    names = [p.name for p in Path("/var/run/netns").glob(f"{NAME_PREFIX}*")] if Path(
        "/var/run/netns").exists() else []
    nodes = [BUILDER_NODE] if BUILDER in names else []
    server_prefix = f"{NAME_PREFIX}s"
    for name in sorted(names):
        number = name.removeprefix(server_prefix)
        if name.startswith(server_prefix) and number.isdigit():
            nodes.append(Node(name, 10 + int(number)))
    return nodes


def stop_daemons(node: Node) -> None:
    """The node's containers, then its sshd and dockerd."""
    if node.docker_socket.exists():
        ids = docker(node, "ps", "-aq", check=False).stdout.split()
        if ids:
            docker(node, "rm", "-f", *ids, check=False)
    wait_gone(kill_pidfile(node.run_dir / "sshd.pid"))
    wait_gone(kill_pidfile(node.run_dir / "docker.pid"))


def destroy(log=print) -> None:
    """Remove everything create() made: containers, daemons, namespaces, bridge, data."""
    nodes = existing_nodes()
    if nodes:
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            list(pool.map(stop_daemons, nodes))  # each engine takes seconds to shut down
    wait_gone(kill_pidfile(RUN_DIR / "registry.pid"))
    wait_gone(kill_pidfile(RUN_DIR / "dnsmasq.pid"))
    for node in nodes:
        # SSH sessions outlive their sshd listener and keep the namespace (and its veth) alive
        pids = run(["ip", "netns", "pids", node.name], check=False, capture=True).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", node.name], check=False, capture=True)
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE], check=False, capture=True)
    for node in nodes:
        # dockerd's exec-root holds mounts (netns files) that outlive it
        subprocess.run(["umount", "-R", "-l", str(node.run_dir)], capture_output=True,
                       check=False)
    if MOUNT_NS_DIR.exists():
        for ns_file in MOUNT_NS_DIR.iterdir():
            subprocess.run(["umount", "-l", str(ns_file)], capture_output=True, check=False)
        subprocess.run(["umount", "-l", str(MOUNT_NS_DIR)], capture_output=True, check=False)
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    _remove_data_dir()
    for name in ("hosts.yaml", "sandbox.json", "env"):
        (STATE_DIR / name).unlink(missing_ok=True)
    if nodes:
        log(f"sandbox: removed {len(nodes)} namespaces and their daemons")
    else:
        log("sandbox: nothing to remove")


def _remove_data_dir() -> None:
    if not DATA_DIR.exists():
        return
    # overlay2 leaves mounts behind if a container was still running when dockerd died
    mounts = Path("/proc/mounts").read_text().splitlines()
    for line in reversed(mounts):
        target = line.split()[1]
        if target.startswith(str(DATA_DIR)):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)
    shutil.rmtree(DATA_DIR, ignore_errors=True)
