"""The one place that runs commands on a server: a Fabric connection per server, used for
shell commands, files and HAProxy's runtime API (a channel to HAProxy's admin unix socket,
which listens nowhere else: see slotswap/remote/admin_channel.py).

Every command prints a marker of its own first, on stdout and stderr, and only what follows
it counts as its output: what the login shell's start-up files print (a banner echoed by
~/.bashrc) never reaches a parser (see slotswap/remote/shell.py). Commands run with
LC_ALL=C. Files are written through a command's stdin, never over SFTP (an sftp-server
session breaks on such a banner).

How a connection is made and why nothing waits forever: see slotswap/remote/ssh_policy.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
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
from fabric import Connection
from invoke.exceptions import CommandTimedOut

from slotswap.commands import docker as docker_commands
from slotswap.commands.admin_diagnosis import (
    admin_socket_fault,
    channel_refused,
    haproxy_not_running,
)
from slotswap.commands.file_write import write_file_command, write_private_file_command
from slotswap.commands.login_facts import LOGIN_FACTS_LINE, LoginFacts, parse_login_facts
from slotswap.commands.runtime_api import RuntimeApiError, always_answers, raise_for_api_error
from slotswap.config import layout
from slotswap.config.hosts import Host
from slotswap.config.inventory import Inventory
from slotswap.config.ssh import DEFAULT_SSH_USER
from slotswap.core import interrupts
from slotswap.core.timings import Timings
from slotswap.core.validation import InputError, validate_remote_dir
from slotswap.remote.admin_channel import (
    AdminChannelClosed,
    AdminChannelTimeout,
    PromptSession,
    open_streamlocal_channel,
    skip_to_marker,
)
from slotswap.remote.call_guard import NO_GUARD
from slotswap.remote.shell import LineSink, MarkerGate, after_marker, new_marker, with_marker
from slotswap.remote.ssh_policy import (
    build_connection,
    jump_chain,
    keep_alive,
    why_not_connected,
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


@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


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
        self.command_timeout = inventory.timeouts.command
        self._keepalive, self._dead_after = ssh.keepalive, ssh.dead_after
        self._connect_lock = threading.Lock()  # the lock's heartbeat runs on its own thread
        self._unreachable: ConnectError | None = None
        self._abandoned = False  # cut by a second Ctrl-C: no new connection until resume()
        self.connection = build_connection(host, inventory, self.known_hosts,
                                           self.accept_unknown_hosts)
        self.jumps = jump_chain(self.connection)
        self._admin: PromptSession | None = None
        self._admin_lock = threading.RLock()
        self._admin_through_socat = False
        self.timings = Timings()  # where this server's seconds and round trips go
        # Another HAProxy's admin socket, while `up` carries a server over (see carry_over).
        self._admin_socket_instead: str | None = None
        self._login_facts: LoginFacts | None = None
        self._login_facts_lock = threading.Lock()
        self.call_guard = NO_GUARD  # the run's lease on it, while it holds the lock

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
        try:
            connection.open()
        except (paramiko.SSHException, OSError) as error:
            reason = why_not_connected(connection, role, self.known_hosts, error)
            raise ConnectError(f"{self.name}: {reason}") from error
        _count_connection()
        keep_alive(connection.transport, self._keepalive, self._dead_after)

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
        """Never raises: on a cut connection paramiko raises a bare EOFError for the message
        closing a channel sends, which would hide what cut it or keep resume() from a new
        one. Fabric closes a connection's own client only, never its jump hosts'."""
        for part in (*filter(None, [self._admin]), self.connection, *reversed(self.jumps)):
            with contextlib.suppress(paramiko.SSHException, EOFError, OSError):
                part.close()

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
        sent = self.call_guard.guard_line(line)
        self.connect()
        self.timings.round_trip()
        marker = new_marker()
        timeout = self.command_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            result = self.connection.run(with_marker(sent, marker), hide=True, warn=True,
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
        self.call_guard.check_answer(outcome.exit_code, outcome.stderr)
        if check and not outcome.ok:
            raise RemoteCommandError(self.name, line, outcome.exit_code, outcome.stderr)
        return outcome

    def stream_lines(self, argv: Sequence[str], on_line: Callable[[str], None], *,
                     follow: bool = False) -> int:
        """Run one command (docker logs), handing each line of its stdout and stderr to
        `on_line` as it comes; return its exit code. Ends when the command does, when the
        connection is closed (close()) or lost, or, unless `follow` (a command that runs
        until it is stopped), at the deadline timeouts.command."""
        self.call_guard.before_call()
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
        self.call_guard.before_call()
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
            channel.exec_command(with_marker(self.call_guard.guard_line(line), marker))
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
        outcome = CommandResult(after_marker(stdout.decode(errors="replace"), marker, missing=""),
                                after_marker(stderr.decode(errors="replace"), marker), exit_code)
        self.call_guard.check_answer(outcome.exit_code, outcome.stderr)
        return outcome

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
        self.call_guard.before_call()
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
        raise RuntimeApiError(channel_refused(self.name, path, refusal))

    def _raise_unless_haproxy_runs(self, path: str) -> None:
        container = layout.serving_haproxy(self.inventory)
        inspected = self._run_line(shlex.join(docker_commands.inspect_containers(container)),
                                   check=False, timeout=API_TIMEOUT)
        found = docker_commands.parse_inspect(inspected.stdout).get(container)
        if found is None or not found.running:
            raise RuntimeApiError(haproxy_not_running(self.name, container, found))
        probe = self._run_line(shlex.join(["test", "-S", path]), check=False,
                               timeout=API_TIMEOUT)
        fault = admin_socket_fault(self.name, path, found, socket_exists=probe.ok,
                                   relayed=self._admin_socket_instead is not None)
        if fault is not None:
            raise RuntimeApiError(fault)

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
