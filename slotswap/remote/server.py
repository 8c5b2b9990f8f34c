"""The one place that runs commands on a server: a Fabric connection per server, used for
shell commands, files and HAProxy's runtime API (a channel to HAProxy's admin unix socket,
which listens nowhere else: see tasks/admin_channel.py).

Every command prints a marker of its own first, on stdout and stderr, and only what follows
it counts as its output: what the login shell's start-up files print (a banner echoed by
~/.bashrc) never reaches a parser. Commands run with LC_ALL=C. Files are written through a
command's stdin, never over SFTP (an sftp-server session breaks on such a banner).

How a connection is made (see also hosts.yaml, section ssh):

- Host keys come from ssh.known_hosts only. A key that differs from the one recorded, or a
  host recorded with keys of other types only, is always refused. A host that is not
  recorded is refused too, unless accept_unknown_hosts is on: then it is accepted for this
  run with a warning naming the host and the key's fingerprint (nothing is written).
- Fabric's Connection reads /etc/ssh/ssh_config and ~/.ssh/config by default; ssh.config
  keeps that (true) or turns it off (false). Read from there: HostName, User and Port (when
  the inventory sets none), IdentityFile (in addition to ssh.identity), ProxyJump (of one
  host: Fabric would take several in reverse order) and ProxyCommand (when no jump host is
  set in the inventory), ForwardAgent. Never from there: host-key settings
  (StrictHostKeyChecking, UserKnownHostsFile) and ConnectTimeout. The host-key rules above
  apply to every jump host, from the inventory or from ~/.ssh/config.
- ssh-agent and the default ~/.ssh/id_* keys are always tried (allow_agent and
  look_for_keys are left on); ssh.identity is tried first when it is set.

Nothing waits forever (see liveness_socket_options):

- Every connection sends a keepalive message after ssh.keepalive seconds without sending
  anything, and its TCP socket is told (TCP_USER_TIMEOUT, TCP keepalives) to give up when
  what it sent stays unacknowledged for ssh.dead_after seconds: a network that silently
  drops packets ends the connection within dead_after + keepalive seconds, and every call
  on it fails with ConnectionLostError. Through a jump host that covers the TCP link to the
  jump host; beyond it, each command's deadline applies.
- Every command has a deadline: its own, else timeouts.command. Opening a channel waits at
  most ssh.connect_timeout. A server that could not be reached (again) is not retried for
  the rest of the run: each later call fails at once with the same error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import secrets
import shlex
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from slotswap.commands import docker as docker_commands
from slotswap.commands.runtime_api import RuntimeApiError, always_answers, raise_for_api_error
from slotswap.config import layout
from slotswap.config.inventory import DEFAULT_SSH_PORT, DEFAULT_SSH_USER, Host, Inventory, JumpHost
from slotswap.core import interrupts
from slotswap.core.output import warn
from slotswap.core.timings import Timings
from slotswap.core.validation import InputError, validate_remote_dir
from slotswap.remote.admin_channel import (
    AdminChannelClosed,
    AdminChannelTimeout,
    PromptSession,
    open_streamlocal_channel,
    skip_to_marker,
)

API_TIMEOUT = 10.0
STREAM_CHUNK = 256 * 1024

_connections_lock = threading.Lock()
_connections_opened = 0


def connections_opened() -> int:
    """SSH connections this process has opened so far (jump hosts included)."""
    return _connections_opened


def _count_connection() -> None:
    global _connections_opened
    with _connections_lock:
        _connections_opened += 1


_connected_servers: weakref.WeakSet[Server] = weakref.WeakSet()


def abandon_all_connections() -> None:
    """Cut every connection this process has open (a second Ctrl-C): see Server.abandon."""
    for server in list(_connected_servers):
        server.abandon()


interrupts.when_stopping_now(abandon_all_connections)


class ConnectError(RuntimeError):
    """The server could not be reached or refused us: nothing was changed on it."""


class ConnectionLostError(ConnectError):
    """The SSH connection broke in the middle of the work; the next call reconnects."""


class RemoteCommandError(RuntimeError):
    def __init__(self, server: str, command: str, exit_code: int, stderr: str):
        self.server, self.command, self.exit_code, self.stderr = server, command, exit_code, stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(f"{server}: `{command}` exited {exit_code}: {detail}")


class RemoteDirError(RuntimeError):
    """The login cannot write the kit's folder on the server (inventory: remote_dir)."""


@dataclass(frozen=True)
class LoginFacts:
    """The SSH login as the server sees it: its numeric ids and its HOME."""

    uid: int
    gid: int
    home: str


# One round trip, once per server: the ids (the admin socket is made for them) and the home
# (a non-root login's default folder). HOME last: it may hold spaces.
LOGIN_FACTS_LINE = 'id -u && id -g && printf "%s\\n" "$HOME"'


def parse_login_facts(stdout: str) -> LoginFacts | None:
    """Pure: `id -u`, `id -g` and $HOME, a line each; None if it is not that."""
    lines = stdout.split("\n")
    if len(lines) < 3 or not lines[0].isdigit() or not lines[1].isdigit():
        return None
    return LoginFacts(int(lines[0]), int(lines[1]), lines[2])


class CommandDeadlineError(RemoteCommandError):
    """A command ran past its deadline and was abandoned (its channel closed)."""

    def __init__(self, server: str, command: str, seconds: float):
        RuntimeError.__init__(self, f"{server}: `{command}` {deadline_message(seconds)}")
        self.server, self.command, self.exit_code = server, command, -1
        self.stderr = deadline_message(seconds)


def cut_at_deadline(exit_code: int, elapsed: float, timeout: float) -> bool:
    """Whether a command that Invoke returned as finished was in fact cut at its deadline.

    At the deadline Invoke's timer thread closes the channel; the command then ends with no
    exit status (-1), and Invoke raises CommandTimedOut only if that thread has already
    finished, so a run can come back as plain "exit -1" instead."""
    return exit_code == -1 and elapsed >= timeout


def deadline_message(seconds: float) -> str:
    return (f"gave no answer within {seconds:g}s and was abandoned (a stuck Docker engine? "
            "an overloaded server?)")


def liveness_socket_options(keepalive: float, dead_after: float) -> list[tuple[int, int, int]]:
    """(level, option, value) for a TCP socket: the kernel aborts the connection when data it
    sent stays unacknowledged for dead_after seconds (TCP_USER_TIMEOUT), and probes an idle
    one every `keepalive` seconds (the SSH keepalive messages keep it from being idle while
    a command runs). Linux only; other systems get the options they have."""
    idle = max(1, math.ceil(keepalive))
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", idle),
                        ("TCP_KEEPCNT", max(1, math.ceil(dead_after / idle))),
                        ("TCP_USER_TIMEOUT", max(1, math.ceil(dead_after * 1000)))):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


class UnknownHostKeyError(paramiko.SSHException):
    """The server's host key is not in known_hosts (and unknown hosts are not accepted)."""

    def __init__(self, hostname: str):
        # The words paramiko's RejectPolicy uses, for anyone matching on them.
        super().__init__(f"Server {hostname!r} not found in known_hosts")


def _refuse_if_recorded_otherwise(client: paramiko.SSHClient, hostname: str,
                                  key: paramiko.PKey) -> None:
    """paramiko asks the policy about any key whose *type* is not recorded for the host,
    even when keys of other types are: for us that is a changed key, never an unknown one."""
    recorded = client.get_host_keys().lookup(hostname)
    if recorded:
        raise paramiko.BadHostKeyException(hostname, key, next(iter(recorded.values())))


class RefuseUnknownHosts(paramiko.RejectPolicy):
    """The default: only keys recorded in known_hosts are trusted."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        _refuse_if_recorded_otherwise(client, hostname, key)
        raise UnknownHostKeyError(hostname)


class AcceptUnknownHostsLoudly(paramiko.WarningPolicy):
    """ssh.accept_unknown_hosts: trust an unrecorded host for this run, and say so loudly.
    Changed keys are still refused (paramiko raises BadHostKeyException before asking)."""

    def __init__(self, label: str, known_hosts: Path, say: Callable[[str], None] = warn):
        self.label, self.known_hosts, self.say = label, known_hosts, say

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        _refuse_if_recorded_otherwise(client, hostname, key)
        self.say(unknown_host_warning(self.label, hostname, key, self.known_hosts))


def unknown_host_warning(label: str, hostname: str, key: paramiko.PKey,
                         known_hosts: Path) -> str:
    return (
        f"WARNING: {label}: ACCEPTING AN UNVERIFIED HOST KEY for {hostname}: "
        f"{key.get_name()} {key.fingerprint}. It is not in {known_hosts} and "
        "accept_unknown_hosts is true, so nothing proves this is your server. Compare the "
        "fingerprint with the server's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub, on "
        "its console), then add the key to known_hosts and turn accept_unknown_hosts off."
    )


def fabric_config(read_ssh_config: bool) -> Config:
    """Fabric's default Config loads /etc/ssh/ssh_config and ~/.ssh/config; an explicit,
    empty SSHConfig is Fabric's way of loading neither."""
    return Config() if read_ssh_config else Config(ssh_config=paramiko.SSHConfig())


def login_for(config: Config, address: str, user: str | None,
              port: int | None) -> tuple[str, int]:
    """User and port as `ssh` picks them: given (the inventory), else ~/.ssh/config's entry
    for the address (when loaded), else root and 22. (Fabric alone would fall back to the
    local user name, not root.) A bad ssh_config entry is bad input: nothing is contacted."""
    found = config.base_ssh_config.lookup(address)
    chosen_port = port or found.get("port", DEFAULT_SSH_PORT)
    try:
        chosen_port = int(chosen_port)
    except ValueError:
        raise InputError(
            f"{address}: ssh_config gives this host the Port {chosen_port!r}, not a number"
        ) from None
    return user or found.get("user") or DEFAULT_SSH_USER, chosen_port


def refuse_jump_chains(config: Config, address: str) -> None:
    """Fabric opens a `ProxyJump a,b` chain from b, the reverse of what ssh does: refuse it
    rather than connect through the wrong hosts."""
    hops = config.base_ssh_config.lookup(address).get("proxyjump", "")
    if "," in hops:
        raise InputError(
            f"{address}: ssh_config gives this host several jump hosts (ProxyJump {hops}); "
            "slotswap takes one: set ProxyJump to one host, or ssh.jump in the inventory"
        )


def jump_chain(connection: Connection) -> list[Connection]:
    """The connection's jump hosts, the one to open first first (ProxyJump a,b gives a, b)."""
    hops = []
    gateway = connection.gateway
    while isinstance(gateway, Connection):
        hops.append(gateway)
        gateway = gateway.gateway
    return hops[::-1]


def hostkey_name(host: str, port: int) -> str:
    """How known_hosts names a host: [host]:port when the port is not 22."""
    return host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"


@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


# -- what the login shell prints before the command ---------------------------------------
# sshd runs every command through the login's shell, and bash reads ~/.bashrc even for
# `ssh host command`: a motd-style `echo` there lands in the command's stdout or stderr.
# Every command therefore first prints a marker of its own on both, and only what follows
# the marker is the command's output. LC_ALL=C keeps the messages of the tools the kit reads
# in English (the kit decides on exit codes, never on a message, but shows the messages).
MARKER_PREFIX = "slotswap-output-starts-"


def new_marker() -> str:
    """A marker no start-up file can print by chance."""
    return MARKER_PREFIX + secrets.token_hex(8)


def with_marker(line: str, marker: str) -> str:
    """`line` (a shell command line) preceded by the marker on stdout and on stderr, run by
    the login shell with LC_ALL=C."""
    mark = shlex.quote(marker)
    return (f"printf '%s\\n' {mark}; printf '%s\\n' {mark} >&2; "
            f"LC_ALL=C; export LC_ALL; {line}")


def after_marker(text: str, marker: str, *, missing: str | None = None) -> str:
    """What the command wrote: the text after the marker's line. Without a marker the shell
    never reached the command: `missing` when given (stdout: nothing of it is output),
    else the whole text (stderr: it may say why, e.g. an unusable login shell)."""
    _, found, rest = text.partition(marker + "\n")
    if found:
        return rest
    return text if missing is None else missing


class MarkerGate:
    """Hands on the lines that follow the marker's line; drops the ones before it."""

    def __init__(self, marker: str, on_line: Callable[[str], None]):
        self.marker, self.on_line, self.open = marker, on_line, False

    def __call__(self, line: str) -> None:
        if self.open:
            self.on_line(line)
        elif line.endswith(self.marker):  # text printed without a newline precedes it
            self.open = True


# Fixed scripts; folder, file names and mode come as arguments, the content on stdin.
WRITE_FILE_SCRIPT = ('mkdir -p -- "$1" && cat > "$2" && chmod "$4" -- "$2" && '
                     'mv -f -- "$2" "$3"')
# The folder is closed (0700) before the file is made, and umask 077 makes the file 0600
# from its first byte; noclobber (set -C) creates it with O_EXCL.
WRITE_PRIVATE_FILE_SCRIPT = (
    'mkdir -p -m 700 -- "$1" && chmod 700 -- "$1" && umask 077 && set -C && '
    '{ cat > "$2" && mv -f -- "$2" "$3"; } || { status=$?; rm -f -- "$2"; exit "$status"; }'
)


def write_file_command(directory: str, temporary: str, path: str, mode: int) -> list[str]:
    return ["sh", "-c", WRITE_FILE_SCRIPT, "sh", directory, temporary, path, f"{mode:o}"]


def write_private_file_command(directory: str, temporary: str, path: str) -> list[str]:
    return ["sh", "-c", WRITE_PRIVATE_FILE_SCRIPT, "sh", directory, temporary, path]


class LineSink(io.TextIOBase):
    """A stream for Fabric's output that hands on whole lines."""

    def __init__(self, on_line: Callable[[str], None]):
        super().__init__()
        self._on_line, self._pending = on_line, ""

    def write(self, text: str) -> int:
        lines = (self._pending + text).split("\n")
        self._pending = lines.pop()
        for line in lines:
            self._on_line(line)
        return len(text)

    def flush_rest(self) -> None:
        if self._pending:
            self._on_line(self._pending)
            self._pending = ""


class Server:
    """One server of the inventory, over one SSH connection opened on first use."""

    def __init__(self, host: Host, inventory: Inventory):
        self.host = host
        self.inventory = inventory
        self.name = host.name
        ssh = inventory.ssh
        self.known_hosts = ssh.known_hosts or Path("~/.ssh/known_hosts").expanduser()
        self.accept_unknown_hosts = (ssh.accept_unknown_hosts if host.accept_unknown_hosts
                                     is None else host.accept_unknown_hosts)
        # Fabric truncates the timeout to whole seconds, and 0 would mean no timeout at all.
        self._connect_timeout = max(1, math.ceil(ssh.connect_timeout))
        self.command_timeout = inventory.timeouts.command
        self._keepalive, self._dead_after = ssh.keepalive, ssh.dead_after
        self._connect_lock = threading.Lock()  # the lock's heartbeat runs on its own thread
        self._unreachable: ConnectError | None = None
        self._abandoned = False  # cut by a second Ctrl-C: no new connection until resume()
        connect_kwargs: dict[str, object] = {}
        if ssh.identity is not None:
            connect_kwargs["key_filename"] = str(ssh.identity)
        self._connect_kwargs = connect_kwargs
        config = fabric_config(ssh.config)
        jump = host.jump or ssh.jump
        # None lets Fabric take a ProxyJump/ProxyCommand from ssh_config instead.
        gateway = self._jump_connection(jump, config) if jump else None
        if jump is None:
            refuse_jump_chains(config, host.address)
        user, port = login_for(config, host.address, host.user or ssh.user,
                               host.port or ssh.port)
        # channel_timeout: opening a session or SFTP channel would otherwise wait an hour.
        self.connection = Connection(host.address, user=user, port=port,
                                     connect_timeout=self._connect_timeout,
                                     connect_kwargs=dict(connect_kwargs,
                                                         channel_timeout=self._connect_timeout),
                                     config=config, gateway=gateway)
        self.jumps = jump_chain(self.connection)
        for hop in self.jumps:
            self._prepare_jump(hop)
        self._check_host_keys(self.connection, self.name)
        self._admin: PromptSession | None = None
        self._admin_lock = threading.RLock()
        self._admin_through_socat = False
        self.timings = Timings()  # where this server's seconds and round trips go
        # Another HAProxy's admin socket, while `up` carries a server over (see carry_over).
        self._admin_socket_instead: str | None = None
        self._login_facts: LoginFacts | None = None
        self._login_facts_lock = threading.Lock()

    def _jump_connection(self, jump: JumpHost, config: Config) -> Connection:
        refuse_jump_chains(config, jump.address)
        user, port = login_for(config, jump.address, jump.user or self.inventory.ssh.user,
                               jump.port)
        return Connection(jump.address, user=user, port=port,
                          connect_timeout=self._connect_timeout,
                          connect_kwargs=dict(self._connect_kwargs), config=config)

    def _prepare_jump(self, hop: Connection) -> None:
        # Jump hosts that Fabric builds from a ProxyJump line get none of our settings: they
        # get the same key, timeout and host-key rules as the ones from the inventory.
        if hop.connect_timeout is None:
            hop.connect_timeout = self._connect_timeout
        kwargs = dict(hop.connect_kwargs)
        if "key_filename" in self._connect_kwargs:
            keys = kwargs.get("key_filename") or []
            keys = [keys] if isinstance(keys, str) else list(keys)
            if self._connect_kwargs["key_filename"] not in keys:
                kwargs["key_filename"] = [self._connect_kwargs["key_filename"], *keys]
        # Opening the channel to the next hop would otherwise wait up to an hour.
        kwargs["channel_timeout"] = self._connect_timeout
        hop.connect_kwargs = kwargs
        self._check_host_keys(hop, f"{self.name}: jump host {hop.host}")

    def _check_host_keys(self, connection: Connection, label: str) -> None:
        # Fabric accepts any host key by default; a deploy tool must not.
        client = connection.client
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        policy: paramiko.MissingHostKeyPolicy = RefuseUnknownHosts()
        if self.accept_unknown_hosts:
            policy = AcceptUnknownHostsLoudly(label, self.known_hosts)
        client.set_missing_host_key_policy(policy)

    def connect(self) -> None:
        if self.connection.is_connected:
            return
        with self._connect_lock:
            if self.connection.is_connected:
                return
            if self._abandoned:
                raise ConnectionLostError(f"{self.name}: the connection was cut (stopped at once)")
            if self._unreachable is not None:
                # Tried and failed in this run already: fail at once instead of waiting out
                # the connect timeout again for every recovery step.
                raise ConnectError(str(self._unreachable))
            try:
                # Jump hosts first, one at a time, so that an error names the hop that failed.
                for hop in self.jumps:
                    self._open(hop, "jump host ")
                self._open(self.connection, "")
            except ConnectError as error:
                self._unreachable = error
                raise
            _connected_servers.add(self)

    def abandon(self) -> None:
        """Cut the connection at once, from any thread or a signal handler: its TCP socket is
        shut down (no lock is taken), paramiko's thread then ends the connection, and every
        call waiting on it returns. Until resume(), no new connection is opened: whatever the
        run was doing fails at once."""
        self._abandoned = True
        for connection in (*self.jumps, self.connection):
            sock = getattr(connection.transport, "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def resume(self) -> None:
        """After abandon(): the next call opens a new connection (to report and release)."""
        with self._connect_lock:
            if self._abandoned:
                self.close()
                self._abandoned = False

    @property
    def is_connected(self) -> bool:
        return bool(self.connection.is_connected)

    def _open(self, connection: Connection, role: str) -> None:
        if connection.is_connected:
            return
        host, port, known = connection.host, connection.port, self.known_hosts
        where = f"{role}{connection.user}@{host}:{port}"
        gateway = connection.gateway
        via = f" through jump host {gateway.host}" if isinstance(gateway, Connection) else ""
        try:
            connection.open()
        except paramiko.BadHostKeyException as error:
            raise ConnectError(
                f"{self.name}: the host key of {where} has CHANGED since it was recorded in "
                f"{known}; if the server was really rebuilt, remove the old line "
                f"(ssh-keygen -R {shlex.quote(hostkey_name(host, port))} -f {known}) and "
                f"trust the new key"
            ) from error
        except UnknownHostKeyError as error:
            raise ConnectError(
                f"{self.name}: {where} is not in {known}; check its key and add it "
                f"({self._add_key_hint(connection)}), or set ssh.known_hosts in the inventory"
            ) from error
        except paramiko.AuthenticationException as error:
            raise ConnectError(f"{self.name}: {where} refused the login: {error}") from error
        except paramiko.ChannelException as error:
            # The jump host could not open a channel to this host.
            raise ConnectError(f"{self.name}: cannot connect to {where}{via}: {error}") from error
        except paramiko.SSHException as error:
            raise ConnectError(f"{self.name}: SSH to {where}{via} failed: {error}") from error
        except (TimeoutError, OSError) as error:
            raise ConnectError(f"{self.name}: cannot connect to {where}{via}: {error}") from error
        _count_connection()
        transport = connection.transport
        transport.set_keepalive(max(1, math.ceil(self._keepalive)))
        # A jump host's connection has the TCP socket; a server behind it a channel on it.
        sock = transport.sock
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Small request/answer exchanges (runtime API polls, short commands) otherwise
            # wait ~40 ms each on Nagle's algorithm meeting delayed ACKs; OpenSSH sets this too.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for level, option, value in liveness_socket_options(self._keepalive,
                                                                self._dead_after):
                sock.setsockopt(level, option, value)

    def _add_key_hint(self, connection: Connection) -> str:
        host, port, known = connection.host, connection.port, self.known_hosts
        gateway = connection.gateway
        if isinstance(gateway, Connection):
            # ssh-keyscan cannot go through a jump host; one ssh login through it can.
            return (f"ssh -J {gateway.user}@{gateway.host}:{gateway.port} -p {port} "
                    f"-o UserKnownHostsFile={known} {connection.user}@{host} true")
        return f"ssh-keyscan -p {port} {host} >> {known}"

    @property
    def is_root(self) -> bool:
        """The login is root (by its name; a server's answer is not needed for that)."""
        return self.connection.user == DEFAULT_SSH_USER

    def login_facts(self) -> LoginFacts:
        """The login's uid, gid and home on this server, asked once (they do not change
        while the kit runs)."""
        with self._login_facts_lock:
            if self._login_facts is None:
                answer = self._run_line(LOGIN_FACTS_LINE, check=True, timeout=30).stdout
                facts = parse_login_facts(answer)
                if facts is None:
                    raise RemoteCommandError(self.name, LOGIN_FACTS_LINE, 0,
                                             f"unexpected answer {answer!r}")
                self._login_facts = facts
            return self._login_facts

    def with_folders(self, inventory: Inventory) -> Inventory:
        """`inventory` with the kit's folders of this login on this server: remote_dir when
        set; root's system folders for root; else a folder in the login's home, which the
        server names (asked once, the first time a folder is needed)."""
        if inventory.remote_dir is not None or inventory.login_home is not None or self.is_root:
            return inventory
        facts = self.login_facts()
        if facts.uid == 0:
            return inventory
        home = facts.home.rstrip("/")
        try:
            validate_remote_dir(home)
        except InputError as error:
            raise RemoteDirError(
                f"{self.name}: the SSH login {self.connection.user} has no usable home folder "
                f"for the kit's files (HOME={facts.home!r}: {error}); set remote_dir in "
                f"{inventory.path.name} to a folder it may write") from None
        return dataclasses.replace(inventory, login_home=home)

    def close(self) -> None:
        if self._admin is not None:
            self._admin.close()
        # Fabric closes a connection's own client only, never its jump hosts'.
        self.connection.close()
        for hop in reversed(self.jumps):
            hop.close()

    def _lost(self, error: BaseException) -> ConnectionLostError:
        # What ended the connection, as paramiko's thread saw it (the caller often sees only
        # the EOF that followed).
        cause = getattr(self.connection.transport, "saved_exception", None)
        # Closed for good, so that the next call (a recovery step) opens a fresh connection.
        self.close()
        socket_error = next((e for e in (error, cause) if isinstance(e, OSError) and e.errno
                             and not isinstance(e, TimeoutError)), None)
        if socket_error is not None:
            reason = str(socket_error)  # e.g. a connection reset by the server
        else:
            # The kernel ends a silent connection (see liveness_socket_options) with what
            # paramiko then reports as an end of file, or as a channel it cannot open.
            reason = ("it was closed, or nothing sent on it was acknowledged for "
                      f"{self._dead_after:g}s (ssh.dead_after)")
        return ConnectionLostError(f"{self.name}: lost the SSH connection ({reason})")

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        """Run one command built from argv (quoted here, and only here); `stdin` is fed to it.
        `timeout`: its deadline (default: timeouts.command)."""
        if stdin is not None:
            # Invoke's runner feeds stdin one character per 10 ms (1.7 s for a history
            # entry); a channel of our own sends it at once.
            outcome = self.run_streaming_stdin(argv, io.BytesIO(stdin.encode()), timeout=timeout)
            if check and not outcome.ok:
                raise RemoteCommandError(self.name, shlex.join(argv), outcome.exit_code,
                                         outcome.stderr)
            return outcome
        return self._run_line(shlex.join(argv), check=check, timeout=timeout)

    def run_chain(self, *commands: Sequence[str], timeout: float | None = None) -> CommandResult:
        """Several commands in one round trip, each only if the previous one succeeded."""
        line = " && ".join(shlex.join(argv) for argv in commands)
        return self._run_line(line, check=True, timeout=timeout)

    def _run_line(self, line: str, *, check: bool, timeout: float | None) -> CommandResult:
        """A command with no stdin (run() sends stdin over a channel of its own)."""
        self.connect()
        self.timings.round_trip()
        marker = new_marker()
        timeout = self.command_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            result = self.connection.run(with_marker(line, marker), hide=True, warn=True,
                                         in_stream=False, timeout=timeout)
        except CommandTimedOut as error:
            raise CommandDeadlineError(self.name, line, timeout) from error
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise self._lost(error) from error
        if cut_at_deadline(result.exited, time.monotonic() - started, timeout):
            raise CommandDeadlineError(self.name, line, timeout)
        if not self.connection.is_connected:
            # Fabric reports a command cut off by a dying connection as exit -1
            raise self._lost(EOFError("the connection closed while the command ran"))
        outcome = CommandResult(after_marker(result.stdout, marker, missing=""),
                                after_marker(result.stderr, marker), result.exited)
        if check and not outcome.ok:
            raise RemoteCommandError(self.name, line, outcome.exit_code, outcome.stderr)
        return outcome

    def stream_lines(self, argv: Sequence[str], on_line: Callable[[str], None], *,
                     follow: bool = False) -> int:
        """Run one command (docker logs), handing each line of its stdout and stderr to
        `on_line` as it comes; return its exit code. Ends when the command does, when the
        connection is closed (close()) or lost, or, unless `follow` (a command that runs
        until it is stopped), at the deadline timeouts.command."""
        self.connect()
        marker = new_marker()
        out_sink = LineSink(MarkerGate(marker, on_line))
        err_sink = LineSink(MarkerGate(marker, on_line))
        line = shlex.join(argv)
        started = time.monotonic()
        try:
            result = self.connection.run(with_marker(line, marker), hide=False, warn=True,
                                         in_stream=False, out_stream=out_sink,
                                         err_stream=err_sink,
                                         timeout=None if follow else self.command_timeout)
        except CommandTimedOut as error:
            raise CommandDeadlineError(self.name, line, self.command_timeout) from error
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise self._lost(error) from error
        finally:
            out_sink.flush_rest()
            err_sink.flush_rest()
        if not follow and cut_at_deadline(result.exited, time.monotonic() - started,
                                          self.command_timeout):
            raise CommandDeadlineError(self.name, line, self.command_timeout)
        return result.exited

    def run_interactive(self, argv: Sequence[str]) -> int:
        """Run one command with a terminal of its own, wired to this one (exec
        --interactive); return its exit code. No deadline: a person is typing."""
        self.connect()
        try:
            result = self.connection.run(shlex.join(argv), pty=True, warn=True, hide=False)
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise self._lost(error) from error
        return result.exited

    def run_streaming_stdin(self, argv: Sequence[str], source: BinaryIO, *,
                            sent: Callable[[int], None] | None = None,
                            timeout: float | None = None) -> CommandResult:
        """Run one command and stream `source` (bytes, read to its end) into its stdin over a
        channel of the existing connection; `sent` is called with the bytes sent so far.
        `timeout` bounds the whole command, transfer included (default: timeouts.command)."""
        self.connect()
        self.timings.round_trip()
        line = shlex.join(argv)
        timeout = self.command_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        try:
            channel = self.connection.transport.open_session()
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise self._lost(error) from error
        stdout, stderr = bytearray(), bytearray()

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommandDeadlineError(self.name, line, timeout)
            return left

        marker = new_marker()
        try:
            channel.exec_command(with_marker(line, marker))
            total = 0
            while chunk := source.read(STREAM_CHUNK):
                channel.settimeout(remaining())
                try:
                    channel.sendall(chunk)
                except OSError:
                    if channel.exit_status_ready():
                        break  # the command ended early (an error): its stderr says why
                    raise
                total += len(chunk)
                if sent is not None:
                    sent(total)
            channel.shutdown_write()
            channel.settimeout(remaining())
            # docker load writes a line or two: it cannot fill the window while we send.
            while data := channel.recv(65536):
                stdout.extend(data)
            while data := channel.recv_stderr(65536):
                stderr.extend(data)
            if not channel.status_event.wait(remaining()):
                raise CommandDeadlineError(self.name, line, timeout)
            exit_code = channel.recv_exit_status()
        except (TimeoutError, paramiko.SSHException, EOFError, OSError) as error:
            if not self.connection.transport.is_active():
                raise self._lost(error) from error
            if isinstance(error, TimeoutError):
                raise CommandDeadlineError(self.name, line, timeout) from error
            raise RemoteCommandError(self.name, line, -1, str(error) or type(error).__name__
                                     ) from error
        finally:
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                channel.close()  # on a dead connection this fails too
        return CommandResult(after_marker(stdout.decode(errors="replace"), marker, missing=""),
                             after_marker(stderr.decode(errors="replace"), marker), exit_code)

    def read_file(self, path: str) -> str | None:
        result = self.run(["cat", path], check=False)
        return result.stdout if result.ok else None

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write via a temporary name and rename, so readers never see half a file. The text
        goes over the command's stdin, not SFTP: an sftp-server session breaks on any line
        the login shell's start-up files print, a command's output does not."""
        directory = path.rsplit("/", 1)[0] or "/"
        written = self.run(write_file_command(directory, f"{path}.tmp", path, mode),
                           check=False, stdin=text)
        if not written.ok:
            raise self.cannot_write(directory, written.stderr)

    def write_private_file(self, path: str, text: str) -> None:
        """Write a file only its owner can read (mode 0600 before its first byte) into a
        folder only its owner can open (0700, created if missing). For secrets: the text goes
        over the command's stdin, never into a command line, the process list or any output.

        The folder must be one of the kit's own (e.g. /etc/slotswap/<app>): it is chmod'ed.
        """
        directory, _, name = path.rpartition("/")
        if not directory.startswith("/") or not name:
            raise ValueError(f"write_private_file needs an absolute file path, got {path!r}")
        # A fresh name, created with O_EXCL (noclobber): never written through a file or link
        # left there. Readers (docker run) see the old file or the whole new one.
        temporary = f"{directory}/.{name}.{secrets.token_hex(8)}.tmp"
        written = self.run(write_private_file_command(directory, temporary, path),
                           check=False, stdin=text)
        if not written.ok:
            raise self.cannot_write(directory, written.stderr)

    def cannot_write(self, directory: str, stderr: str) -> RemoteDirError:
        """The one-line error for a folder of the kit that this login cannot write."""
        user = self.connection.user
        lines = stderr.strip().splitlines()
        detail = f" ({lines[-1]})" if lines else ""
        now = self.inventory.remote_dir or "unset"
        return RemoteDirError(
            f"{self.name}: the SSH login {user} cannot write {directory}{detail}; set "
            f"remote_dir in {self.inventory.path.name} (now {now}) to a folder {user} may "
            f"write, e.g. /home/{user}/slotswap"
        )

    def _sftp(self) -> paramiko.SFTPClient:
        """Fabric's SFTP session of this connection, every read on it bounded by the command
        deadline (a socket timeout: each operation gives up after that long without an
        answer)."""
        self.connect()
        try:
            sftp = self.connection.sftp()
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise self._lost(error) from error
        sftp.get_channel().settimeout(self.command_timeout)
        return sftp

    def runtime_api(self, command: str) -> str:
        """Send one line to HAProxy's admin socket on the server; return its answer.

        One channel per server, kept open between calls (see slotswap/remote/admin_channel.py); each
        call has a deadline of API_TIMEOUT seconds. Errors name the command's first line only:
        a payload (`set ssl cert FILE <<` and a private key) never reaches a message."""
        shown = command.split("\n", 1)[0]
        with self._admin_lock:
            self.connect()
            if self._admin is None:
                self._admin = PromptSession(self._open_admin_channel, API_TIMEOUT)
            transport = self.connection.transport
            try:
                self.timings.round_trip()
                answer = self._admin.ask(command)
            except RuntimeApiError:
                raise
            except AdminChannelTimeout as error:
                raise RuntimeApiError(f"{self.name}: runtime API `{shown}`: {error}") from error
            except (AdminChannelClosed, paramiko.SSHException, OSError, EOFError) as error:
                if not transport.is_active():
                    raise self._lost(error) from error
                reason = str(error) or type(error).__name__
                if isinstance(error, AdminChannelClosed):
                    reason += ", on a reopened channel too"
                raise RuntimeApiError(
                    f"{self.name}: runtime API `{shown}` failed: {reason}") from error
        # Only the show commands always answer something; set, add, clear may answer nothing.
        if not answer.strip() and always_answers(command):
            raise RuntimeApiError(
                f"{self.name}: HAProxy's runtime API answered nothing to `{shown}`")
        raise_for_api_error(shown, answer)
        return answer

    def use_admin_socket(self, path: str | None) -> None:
        """The runtime API at `path` from now on (the HAProxy that runs from another login's
        folders, relayed while `up` carries the server over); None: this login's own."""
        self.close_runtime_api()
        self._admin_socket_instead = path

    def close_runtime_api(self) -> None:
        """End the admin session (after a reload it would still talk to the old worker)."""
        with self._admin_lock:
            if self._admin is not None:
                self._admin.close()

    def _open_admin_channel(self) -> paramiko.Channel:
        path = (self._admin_socket_instead
                or layout.admin_socket_path(self.with_folders(self.inventory)))
        self.timings.round_trip()  # the channel's opening, and its `prompt`
        if self._admin_through_socat:
            return self._open_admin_command(path)
        try:
            return open_streamlocal_channel(self.connection.transport, path, API_TIMEOUT)
        except paramiko.ChannelException as error:
            refusal = f"{error.text} (code {error.code})"
        # sshd gives the same answer when nothing listens on the socket and when its config
        # forbids the channel: ask the server which it is (on this error path only).
        self._raise_unless_haproxy_runs(path)
        try:
            # Once more: HAProxy may have been between creating the socket and listening.
            return open_streamlocal_channel(self.connection.transport, path, API_TIMEOUT)
        except paramiko.ChannelException as error:
            refusal = f"{error.text} (code {error.code})"
        if self._run_line("socat -V", check=False, timeout=API_TIMEOUT).ok:
            self._admin_through_socat = True
            return self._open_admin_command(path)
        raise RuntimeApiError(
            f"{self.name}: the SSH server refuses a channel to HAProxy's admin socket {path} "
            f"({refusal}): its sshd_config has `AllowTcpForwarding no` (OpenSSH applies it to "
            f"unix sockets too), `AllowStreamLocalForwarding no` or `DisableForwarding yes`, "
            f"or the login's authorized_keys line `restrict` or `no-port-forwarding`; allow "
            f"local forwarding for this login (e.g. `AllowTcpForwarding local`), or install "
            f"socat on the server")

    def _raise_unless_haproxy_runs(self, path: str) -> None:
        container = self.inventory.haproxy_container
        inspected = self._run_line(shlex.join(docker_commands.inspect_containers(container)),
                                   check=False, timeout=API_TIMEOUT)
        found = docker_commands.parse_inspect(inspected.stdout).get(container)
        if found is None or not found.running:
            raise RuntimeApiError(
                f"{self.name}: cannot reach HAProxy's runtime API: its container {container} "
                f"is {'missing' if found is None else found.status}; is HAProxy running? "
                f"(`fab up` starts it)")
        probe = self._run_line(shlex.join(["test", "-S", path]), check=False,
                               timeout=API_TIMEOUT)
        mounted = found.binds.get(layout.HAPROXY_ADMIN_DIR_INSIDE)
        if (mounted is not None and self._admin_socket_instead is None
                and not path.startswith(f"{mounted.rstrip('/')}/")):
            raise RuntimeApiError(
                f"{self.name}: HAProxy runs from the folders of another login or remote_dir "
                f"(its admin socket is in {mounted}), not from this login's ({path}); run "
                f"`fab up` with these settings once to carry the server over (no request is "
                f"lost), or use the login and remote_dir that set it up")
        if not probe.ok:
            raise RuntimeApiError(
                f"{self.name}: cannot reach HAProxy's runtime API: no admin socket {path} on "
                f"the server; is HAProxy running? (`fab up` starts it, and moves a server set "
                f"up by an older slotswap to the admin socket)")

    def _open_admin_command(self, path: str) -> paramiko.Channel:
        """The admin socket through a command on the server, for an sshd that refuses the
        channel: socat, run as the login, so the socket's permissions decide the same way."""
        channel = self.connection.transport.open_session(timeout=API_TIMEOUT)
        # The login shell runs its start-up files first: what they print must never be read
        # as HAProxy's answer, so the command prints a marker and only then becomes socat.
        marker = new_marker()
        channel.exec_command(with_marker(
            "exec " + shlex.join(["socat", "STDIO", f"UNIX-CONNECT:{path}"]), marker))
        try:
            skip_to_marker(channel, marker.encode(), API_TIMEOUT)
        except BaseException:
            channel.close()
            raise
        return channel
