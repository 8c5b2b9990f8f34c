"""The one place that runs commands on a server: a Fabric connection per server, used for
shell commands, files and HAProxy's runtime API (a direct-tcpip channel to the server's
loopback, so the admin socket never has to listen anywhere else)."""

from __future__ import annotations

import contextlib
import io
import secrets
import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
from fabric import Connection
from fabric.runners import Remote
from invoke.exceptions import CommandTimedOut

from tasks.haproxy import RuntimeApiError, raise_for_api_error
from tasks.inventory import Host, Inventory

API_TIMEOUT = 10.0
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class ConnectError(RuntimeError):
    """The server could not be reached or refused us: nothing was changed on it."""


class RemoteCommandError(RuntimeError):
    def __init__(self, server: str, command: str, exit_code: int, stderr: str):
        self.server, self.command, self.exit_code, self.stderr = server, command, exit_code, stderr
        detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no error output"
        super().__init__(f"{server}: `{command}` exited {exit_code}: {detail}")


class InterruptibleRemote(Remote):
    """Fabric forwards a Ctrl-C to the remote command and carries on as if nothing happened.
    Here the command (short, and with no terminal to read it) runs to its end, then the
    interrupt is raised, so the deploy stops at a step boundary it can recover from."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.interrupt: KeyboardInterrupt | None = None

    def send_interrupt(self, interrupt: KeyboardInterrupt) -> None:
        self.interrupt = interrupt

    def run(self, command: str, **kwargs: Any) -> Any:
        result = super().run(command, **kwargs)
        if self.interrupt is not None:
            raise self.interrupt
        return result


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
        connect_kwargs: dict[str, object] = {}
        if ssh.identity is not None:
            connect_kwargs["key_filename"] = str(ssh.identity)
        self.connection = Connection(
            host.address,
            user=host.user or ssh.user,
            port=host.port or ssh.port,
            connect_timeout=int(ssh.connect_timeout),
            connect_kwargs=connect_kwargs,
        )
        self.connection.config.runners.remote = InterruptibleRemote
        self._trust_known_hosts_only(ssh.known_hosts)

    def _trust_known_hosts_only(self, known_hosts: Path | None) -> None:
        # Fabric accepts any host key by default; a deploy tool must not.
        client = self.connection.client
        path = known_hosts or Path("~/.ssh/known_hosts").expanduser()
        if path.exists():
            client.load_host_keys(str(path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.known_hosts = path

    def connect(self) -> None:
        if self.connection.is_connected:
            return
        where = f"{self.connection.user}@{self.host.address}:{self.connection.port}"
        try:
            self.connection.open()
        except paramiko.BadHostKeyException as error:
            raise ConnectError(
                f"{self.name}: the host key of {where} has CHANGED since it was recorded in "
                f"{self.known_hosts}; if the server was really rebuilt, remove the old line "
                f"(ssh-keygen -R {self.host.address} -f {self.known_hosts}) and trust the new "
                f"key"
            ) from error
        except paramiko.SSHException as error:
            if "not found in known_hosts" in str(error):
                raise ConnectError(
                    f"{self.name}: {where} is not in {self.known_hosts}; check its key and add "
                    f"it (ssh-keyscan -p {self.connection.port} {self.host.address} >> "
                    f"{self.known_hosts}), or set ssh.known_hosts in the inventory"
                ) from error
            if isinstance(error, paramiko.AuthenticationException):
                raise ConnectError(f"{self.name}: {where} refused the login: {error}") from error
            raise ConnectError(f"{self.name}: SSH to {where} failed: {error}") from error
        except (TimeoutError, OSError) as error:
            raise ConnectError(f"{self.name}: cannot connect to {where}: {error}") from error
        # Small request/answer exchanges (runtime API polls, short commands) otherwise wait
        # ~40 ms each on Nagle's algorithm meeting delayed ACKs; OpenSSH sets this too.
        sock = self.connection.transport.sock
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        self.connection.close()

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        """Run one command built from argv (quoted here, and only here); `stdin` is fed to it."""
        return self._run_line(shlex.join(argv), check=check, timeout=timeout, stdin=stdin)

    def run_chain(self, *commands: Sequence[str], timeout: float | None = None) -> CommandResult:
        """Several commands in one round trip, each only if the previous one succeeded."""
        line = " && ".join(shlex.join(argv) for argv in commands)
        return self._run_line(line, check=True, timeout=timeout)

    def _run_line(self, line: str, *, check: bool, timeout: float | None,
                  stdin: str | None = None) -> CommandResult:
        self.connect()
        in_stream = io.StringIO(stdin) if stdin is not None else False
        try:
            result = self.connection.run(line, hide=True, warn=True, in_stream=in_stream,
                                         timeout=timeout)
        except CommandTimedOut as error:
            raise RemoteCommandError(self.name, line, -1,
                                     f"timed out after {error.timeout}s") from error
        outcome = CommandResult(result.stdout, result.stderr, result.exited)
        if check and not outcome.ok:
            raise RemoteCommandError(self.name, line, outcome.exit_code, outcome.stderr)
        return outcome

    def read_file(self, path: str) -> str | None:
        result = self.run(["cat", path], check=False)
        return result.stdout if result.ok else None

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        """Write via a temporary name and rename, so readers never see half a file."""
        self.connect()
        directory = path.rsplit("/", 1)[0] or "/"
        self.run(["mkdir", "-p", directory])
        temporary = f"{path}.tmp"
        self.connection.put(io.BytesIO(text.encode()), temporary)
        self.run(["chmod", f"{mode:o}", temporary])
        self.run(["mv", "-f", temporary, path])

    def write_private_file(self, path: str, text: str) -> None:
        """Write a file only its owner can read (mode 0600 before its first byte) into a
        folder only its owner can open (0700, created if missing). For secrets: the text goes
        over SFTP, never into a command line, the process list or any output.

        The folder must be one of the kit's own (e.g. /etc/slotswap/<app>): it is chmod'ed.
        """
        directory, _, name = path.rpartition("/")
        if not directory.startswith("/") or not name:
            raise ValueError(f"write_private_file needs an absolute file path, got {path!r}")
        # The folder is closed first, so the instant between SFTP creating the file (with the
        # server's umask) and chmod'ing it shows nothing to anyone else.
        self.run_chain(["mkdir", "-p", "-m", f"{PRIVATE_DIR_MODE:o}", directory],
                       ["chmod", f"{PRIVATE_DIR_MODE:o}", directory])
        sftp = self.connection.sftp()
        # A fresh name, opened with O_EXCL: never write through a file or link left there.
        temporary = f"{directory}/.{name}.{secrets.token_hex(8)}.tmp"
        try:
            with sftp.open(temporary, "wx") as handle:
                handle.chmod(PRIVATE_FILE_MODE)
                handle.write(text.encode())
            # Readers (docker run) see the old file or the whole new one, never half of it.
            sftp.posix_rename(temporary, path)
        except BaseException:
            # Best effort: the connection itself may be what failed.
            with contextlib.suppress(OSError, paramiko.SSHException):
                sftp.remove(temporary)
            raise

    def runtime_api(self, command: str) -> str:
        """Send one line to HAProxy's stats socket on the server's 127.0.0.1; return its answer."""
        self.connect()
        port = self.inventory.haproxy.stats_port
        transport = self.connection.transport
        try:
            channel = transport.open_channel("direct-tcpip", ("127.0.0.1", port),
                                             ("127.0.0.1", 0), timeout=API_TIMEOUT)
        except (paramiko.ChannelException, paramiko.SSHException, OSError) as error:
            raise RuntimeApiError(
                f"{self.name}: cannot reach HAProxy's runtime API on the server's "
                f"127.0.0.1:{port} ({error}); is HAProxy running? (`fab up` starts it)"
            ) from error
        try:
            channel.settimeout(API_TIMEOUT)
            channel.sendall((command + "\n").encode())
            chunks = []
            while chunk := channel.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, OSError) as error:
            raise RuntimeApiError(
                f"{self.name}: runtime API `{command}` failed: {error}") from error
        finally:
            channel.close()
        answer = b"".join(chunks).decode(errors="replace")
        if not answer and not command.startswith("set "):
            raise RuntimeApiError(
                f"{self.name}: HAProxy's runtime API on 127.0.0.1:{port} answered nothing to "
                f"`{command}`"
            )
        raise_for_api_error(command, answer)
        return answer
