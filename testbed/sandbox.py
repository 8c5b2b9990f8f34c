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
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sandbox_id(environ: dict[str, str] | os._Environ[str] = os.environ) -> int:
    text = environ.get("SLOTSWAP_SANDBOX_ID", "0") or "0"
    if not text.isdigit() or not 0 <= int(text) <= 9:
        raise ValueError(f"SLOTSWAP_SANDBOX_ID must be a number from 0 to 9, got {text!r}")
    return int(text)


SANDBOX_ID = sandbox_id()
_SUFFIX = str(SANDBOX_ID) if SANDBOX_ID else ""
# The inventory, keys and logs: a folder per sandbox, so that two of them never share one.
STATE_DIR = ROOT / f".sandbox{_SUFFIX}"
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
# A second login, as a real server would have one: not root, in the docker group, with a
# home of its own on each server (its remote_dir lives there). Logins are by the same key.
DEPLOY_USER = "deploy"
DEPLOY_HOME = Path("/home") / DEPLOY_USER
DEPLOY_REMOTE_DIR = f"{DEPLOY_HOME}/slotswap"
# Every login's HOME (sshd's SetEnv): the place for a test's ~/.bashrc. Its .slotswap (the
# kit's folder for a login that is not root and sets no remote_dir) is each server's own,
# deploy's, as in a real server's home.
LOGIN_HOME = RUN_DIR / "home"
LOGIN_KIT_DIR = LOGIN_HOME / ".slotswap"
DEPLOY_INVENTORY = "hosts-deploy.yaml"  # the sandbox's inventory for that login

# What the sandbox and its tests run (on this machine, or on a server: the same machine); a
# test run stops before the first test, naming it, if one is missing. HAProxy's binary goes
# into the sandbox's HAProxy image, busybox into the tests' probe image; git archives the
# release before (test_haproxy_upgrade); `script` gives `fab` a terminal.
REQUIRED_PROGRAMS = ("ip", "ss", "nsenter", "unshare", "mount", "umount", "mountpoint",
                     "dockerd", "docker", "/usr/sbin/sshd", "ssh", "ssh-keygen",
                     "docker-registry", "dnsmasq", "go", "ldd", "nft", "iptables", "pebble",
                     str(HAPROXY_BINARY), "socat", "/bin/busybox", "curl", "git", "tar",
                     "script", "useradd", "usermod", "getent", "kill")


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


# A Docker engine in this machine's own namespace (an operator's, or the one `apt-get install
# docker.io` starts) sets the FORWARD policy to DROP, and bridge netfilter passes bridged
# traffic through FORWARD: the servers could then not reach each other across the bridge (a
# jump from one to another times out), while this machine still reaches them. The sandbox lets
# its own bridge's traffic through, marked with a comment of its own, and removes the rule with
# the sandbox. `iptables` is the one Docker uses (iptables-nft on Debian 12: the rule goes to
# nftables' `ip filter` table, Docker's).
FORWARD_MARK = f"slotswap-sandbox-{SANDBOX_ID}"


def forward_rule(bridge: str = BRIDGE) -> list[str]:
    """Pure: iptables' words, after `-I/-D/-C FORWARD`, that accept what crosses the bridge."""
    return ["-i", bridge, "-o", bridge, "-m", "comment", "--comment", FORWARD_MARK,
            "-j", "ACCEPT"]


def allow_bridge_forwarding() -> None:
    """First in FORWARD, ahead of any DROP; once, however often create() runs. An engine that
    starts later puts its jumps ahead of it, but those act on Docker's own bridges alone
    (and DOCKER-USER, empty unless the operator fills it, returns everything)."""
    rule = forward_rule()
    if run(["iptables", "-w", "-C", "FORWARD", *rule], check=False, capture=True).returncode:
        run(["iptables", "-w", "-I", "FORWARD", "1", *rule], capture=True)


def remove_bridge_forwarding() -> None:
    """Every copy of the rule, the sandbox's own or one a sandbox of this ID left behind
    (killed before its destroy()); nothing if there is none."""
    for _ in range(100):  # bounded: each pass removes one copy
        if run(["iptables", "-w", "-D", "FORWARD", *forward_rule()], check=False,
               capture=True).returncode:
            return


def drop_forward_chains(nft_chains_json: str) -> list[str]:
    """Pure: from `nft -j list chains`, the base chains on the forward hook whose policy is
    drop, as `family table chain` (those of iptables-nft included)."""
    try:
        items = json.loads(nft_chains_json).get("nftables", [])
    except (ValueError, AttributeError):
        return []
    return [f"{c['family']} {c['table']} {c['name']}" for item in items
            if isinstance(item, dict) and isinstance(c := item.get("chain"), dict)
            and c.get("hook") == "forward" and c.get("policy") == "drop"]


def check_bridge_forwarding(source: Node, target: Node) -> None:
    """One namespace reaches a server's sshd across the bridge (as a jump host reaches the
    server behind it), or SandboxError saying why: a firewall beside iptables' FORWARD (an
    nftables table of its own, e.g. the operator's /etc/nftables.conf, whose drop is final
    whatever iptables accepts) drops what the bridge forwards. The sandbox does not open an
    operator's own nftables chains: the message names them and the rule to add."""
    probe = ("import socket, sys\n"
             "socket.create_connection((sys.argv[1], 22), timeout=5).close()\n")
    if run([*source.nsenter(), sys.executable, "-c", probe, target.ip], check=False,
           capture=True).returncode == 0:
        return
    listed = run(["nft", "-j", "list", "chains"], check=False, capture=True).stdout
    chains = drop_forward_chains(listed)
    raise SandboxError(
        f"{source.name} cannot reach {target.ip}:22 across the bridge {BRIDGE}: a firewall "
        "drops the traffic this machine forwards between the bridge's ports, although "
        f"iptables' FORWARD accepts it ({FORWARD_MARK}); "
        + (f"nftables chains on the forward hook with policy drop: {', '.join(chains)}; "
           f"allow the bridge in each (`nft insert rule FAMILY TABLE CHAIN iifname {BRIDGE} "
           f"oifname {BRIDGE} accept`)" if chains else
           "no nftables chain on the forward hook has policy drop: look for a drop rule "
           "(`nft list ruleset`)"))


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
    if os.environ.get("SLOTSWAP_SANDBOX_MIGRATE_REQ", "1") == "1":
        # As the README asks of real servers: when the old HAProxy closes its listeners in a
        # hand-over, connections still in their accept queue move to the new HAProxy's
        # (Linux 5.14+, per network namespace) instead of being reset.
        set_sysctl(node, "net.ipv4.tcp_migrate_req", "1")


def set_sysctl(node: Node, key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    run(["ip", "netns", "exec", node.name, "sh", "-c", f"echo {shlex.quote(value)} > {path}"],
        check=False)


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
    for directory in (*PRIVATE_DIRS, str(DEPLOY_HOME), str(LOGIN_KIT_DIR)):
        Path(directory).mkdir(parents=True, exist_ok=True)
        own = DATA_DIR / node.name / "fs" / directory.lstrip("/")
        own.mkdir(parents=True, exist_ok=True)
        if directory in (str(DEPLOY_HOME), str(LOGIN_KIT_DIR)):
            shutil.chown(own, DEPLOY_USER, DEPLOY_USER)
        run(["nsenter", f"--mount={node.mount_ns}", "mount", "--bind", str(own), directory])


def ensure_deploy_user() -> None:
    """The user `deploy` (this machine's /etc/passwd is every server's), in the docker group,
    with a locked-but-usable password field: `*` (useradd's `!` makes sshd refuse even key
    logins when PAM is off). Left in place by destroy(): other sandboxes may use it."""
    if run(["id", "-u", DEPLOY_USER], check=False, capture=True).returncode != 0:
        # Another sandbox may be creating it at this very moment: check again after.
        run(["useradd", "--create-home", "--groups", "docker", "--shell", "/bin/bash",
             DEPLOY_USER], check=False, capture=True)
        run(["id", "-u", DEPLOY_USER], capture=True)
    groups = run(["id", "-nG", DEPLOY_USER], capture=True).stdout.split()
    if "docker" not in groups:
        run(["usermod", "--append", "--groups", "docker", DEPLOY_USER])
    if run(["getent", "shadow", DEPLOY_USER], capture=True).stdout.split(":")[1] != "*":
        run(["usermod", "--password", "*", DEPLOY_USER])


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
        # Every registry on the sandbox's bridge speaks plain HTTP (the open one on :5000,
        # the one that wants a login on :5001).
        f"--insecure-registry={SUBNET}",
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
SetEnv DOCKER_HOST={node.docker_host} HOME={LOGIN_HOME}
""")
    return config


def start_sshd(node: Node) -> None:
    host_key = STATE_DIR / f"{node.name}-host_key"
    if not host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", node.name, "-f", str(host_key)])
    config = write_sshd_config(node)
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    LOGIN_HOME.mkdir(parents=True, exist_ok=True)
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


def check_docker_group_access(node: Node) -> None:
    """The docker group may use the engine: its socket and the folders above it."""
    socket_group = run(["stat", "-c", "%G", str(node.docker_socket)], capture=True).stdout
    if socket_group.strip() != "docker":
        raise SandboxError(f"{node.docker_socket} belongs to group {socket_group.strip()}, "
                           f"not docker: {DEPLOY_USER} could not run docker")


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


# --- a registry that wants a login -----------------------------------------------------------

AUTH_REGISTRY = f"{BRIDGE_IP}:5001"


def start_auth_registry(user: str, password: str) -> str:
    """A second registry, on :5001, that serves only `user` (htpasswd, bcrypt); the builder
    is logged in to it. Returns its address."""
    import bcrypt

    stop_auth_registry()
    htpasswd = STATE_DIR / "registry-auth.htpasswd"
    htpasswd.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n")
    config = STATE_DIR / "registry-auth.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {DATA_DIR / 'registry-auth'}}}}}\n"
        f"http: {{addr: '{AUTH_REGISTRY}'}}\n"
        f"auth: {{htpasswd: {{realm: sandbox, path: {htpasswd}}}}}\n"
    )
    pid = spawn(["docker-registry", "serve", str(config)], STATE_DIR / "registry-auth.log")
    (RUN_DIR / "registry-auth.pid").write_text(str(pid))
    wait_until(lambda: _answers(f"http://{AUTH_REGISTRY}/v2/"), "the login registry", 15)
    run(["docker", "-H", BUILDER_NODE.docker_host, "login", "--username", user,
         "--password-stdin", AUTH_REGISTRY], input_text=password, capture=True)
    return AUTH_REGISTRY


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=1).close()
    except urllib.error.HTTPError:
        return True  # 401: it answers, and wants a login
    except OSError:
        return False
    return True


def stop_auth_registry() -> None:
    wait_gone(kill_pidfile(RUN_DIR / "registry-auth.pid"))
    # The builder's login is in this machine's ~/.docker/config.json: take it out again.
    run(["docker", "logout", AUTH_REGISTRY], check=False, capture=True)


# --- an ACME CA (Let's Encrypt's test CA, pebble) ---------------------------------------------

ACME_DOMAIN = "fleet.test"
PEBBLE_PORT = 14000
PEBBLE_MANAGEMENT_PORT = 15000
PEBBLE_DNS_PORT = 5353
PEBBLE_DIR = STATE_DIR / "pebble"


def server_dns_name(node: Node) -> str:
    """The name the ACME CA resolves to that server: s1.fleet.test, ..."""
    return f"{node.name.removeprefix(NAME_PREFIX)}.{ACME_DOMAIN}"


@dataclass(frozen=True)
class AcmeCa:
    directory: str  # the ACME directory URL
    ca_bundle: Path  # trust for the directory's own HTTPS
    names: tuple[str, ...]  # one per server, each resolving to its server

    def roots_pem(self) -> str:
        """The root that pebble signs certificates with (new at every start)."""
        import ssl
        import urllib.request

        context = ssl.create_default_context(cafile=str(self.ca_bundle))
        url = f"https://{BRIDGE_IP}:{PEBBLE_MANAGEMENT_PORT}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            return response.read().decode()


def start_acme_ca(servers: Sequence[Node], *, nonce_reject: int = 0,
                  authz_reuse: int = 0, http_port: int = 80) -> AcmeCa:
    """pebble on the bridge, resolving each server's name (s1.fleet.test, ...) to that
    server through a resolver of its own; HTTP-01 validation goes to port `http_port` of
    each (80, as a real CA's; the shared HAProxy's tests use another).
    `authz_reuse`: the percentage of orders that get an account's valid authorizations
    back instead of new ones (Let's Encrypt reuses them: RFC 8555 7.1.4)."""
    from testbed.private_ca import issue, make_ca

    stop_acme_ca()
    PEBBLE_DIR.mkdir(parents=True, exist_ok=True)
    ca = make_ca("sandbox ACME API CA")
    chain, key = issue(ca, [], ips=[BRIDGE_IP])
    (PEBBLE_DIR / "api-ca.pem").write_text(ca.pem)
    (PEBBLE_DIR / "api.pem").write_text(chain)
    (PEBBLE_DIR / "api-key.pem").write_text(key)
    config = {"pebble": {
        "listenAddress": f"{BRIDGE_IP}:{PEBBLE_PORT}",
        "managementListenAddress": f"{BRIDGE_IP}:{PEBBLE_MANAGEMENT_PORT}",
        "certificate": str(PEBBLE_DIR / "api.pem"), "privateKey": str(PEBBLE_DIR / "api-key.pem"),
        "httpPort": http_port, "tlsPort": 5001, "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}
    (PEBBLE_DIR / "config.json").write_text(json.dumps(config))
    names = tuple(server_dns_name(node) for node in servers)
    addresses = [f"--address=/{name}/{node.ip}" for name, node in zip(names, servers,
                                                                       strict=True)]
    run(["dnsmasq", "--no-resolv", "--no-hosts", f"--listen-address={BRIDGE_IP}",
         f"--port={PEBBLE_DNS_PORT}", "--bind-interfaces",
         f"--pid-file={RUN_DIR / 'dnsmasq-acme.pid'}", "--user=root", *addresses])
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
           "PEBBLE_AUTHZREUSE": str(authz_reuse)}
    with (STATE_DIR / "pebble.log").open("ab") as out:
        process = subprocess.Popen(
            ["pebble", "-config", str(PEBBLE_DIR / "config.json"),
             "-dnsserver", f"{BRIDGE_IP}:{PEBBLE_DNS_PORT}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
    (RUN_DIR / "pebble.pid").write_text(str(process.pid))
    acme = AcmeCa(f"https://{BRIDGE_IP}:{PEBBLE_PORT}/dir", PEBBLE_DIR / "api-ca.pem", names)
    wait_until(lambda: _pebble_answers(acme), "pebble to answer", 20)
    return acme


def _pebble_answers(acme: AcmeCa) -> bool:
    try:
        acme.roots_pem()
    except OSError:
        return False
    return True


def stop_acme_ca() -> None:
    wait_gone(kill_pidfile(RUN_DIR / "pebble.pid"))
    wait_gone(kill_pidfile(RUN_DIR / "dnsmasq-acme.pid"))


# --- inventory -----------------------------------------------------------------------------

def write_inventory(servers: Sequence[Node], *, name: str = "hosts.yaml",
                    user: str = "root", remote_dir: str | None = None) -> Path:
    hosts = "\n".join(f"  - {{address: {n.ip}, name: {n.name.removeprefix(NAME_PREFIX)}}}"
                      for n in servers)
    path = STATE_DIR / name
    login = "" if user == "root" else (
        f"# Logs in as {user} (docker group, not root); the kit's files go to remote_dir.\n"
        f"remote_dir: {remote_dir}\n")
    path.write_text(f"""\
# Written by `fab sandbox.create`: the sandbox's {len(servers)} servers.
{login}app: webapp
image: {APP_IMAGE}
build: {{context: ../example, dockerfile: ../example/Dockerfile.prebuilt}}
app_port: 3000
healthcheck: {{path: /health}}
ssh: {{user: {user}, port: 22, identity: id_ed25519, known_hosts: known_hosts}}
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
    ensure_deploy_user()
    create_bridge()
    allow_bridge_forwarding()
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
    check_bridge_forwarding(BUILDER_NODE, nodes[1])
    for node in nodes:
        wait_until(lambda node=node: engine_ready(node), f"dockerd in {node.name}", 60)
    log("sandbox: engines up; building base images from local files")
    build_haproxy_image()
    build_app_binary()
    inventory = write_inventory(nodes[1:])
    write_inventory(nodes[1:], name=DEPLOY_INVENTORY, user=DEPLOY_USER,
                    remote_dir=DEPLOY_REMOTE_DIR)
    check_docker_group_access(nodes[1])
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
    stop_auth_registry()
    wait_gone(kill_pidfile(RUN_DIR / "dnsmasq.pid"))
    stop_acme_ca()
    for node in nodes:
        # SSH sessions outlive their sshd listener and keep the namespace (and its veth) alive
        pids = run(["ip", "netns", "pids", node.name], check=False, capture=True).stdout
        for pid in pids.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        run(["ip", "netns", "del", node.name], check=False, capture=True)
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE], check=False, capture=True)
    remove_bridge_forwarding()
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
    for name in ("hosts.yaml", DEPLOY_INVENTORY, "sandbox.json", "env"):
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
