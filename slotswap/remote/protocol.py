"""What the layers above ask of a server: `ServerLike`, the members of `Server` that the
swap, the rollout, HAProxy's setup and the certificate install use. Code that takes a server
takes a ServerLike, so a test (or a simulation) can stand in for SSH with an object of its
own that has these members; only the code that opens connections names `Server`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import BinaryIO, Protocol

from slotswap.commands.login_facts import LoginFacts
from slotswap.config.hosts import Host
from slotswap.config.inventory import Inventory
from slotswap.core.timings import Timings
from slotswap.remote.call_guard import CallGuard
from slotswap.remote.server import CommandResult, RemoteDirError


class SshLogin(Protocol):
    """What is read of the SSH connection itself: the login's name."""

    @property
    def user(self) -> str: ...


class ServerLike(Protocol):
    """One server of the inventory: commands, files, HAProxy's runtime API and the login's
    folders (see slotswap.remote.server.Server for what each member does). `call_guard` is
    asked before every call: the run's lease while it holds the server's lock (see
    slotswap.remote.call_guard), else NO_GUARD."""

    call_guard: CallGuard

    @property
    def name(self) -> str: ...

    @property
    def host(self) -> Host: ...

    @property
    def inventory(self) -> Inventory: ...

    @property
    def timings(self) -> Timings: ...

    @property
    def connection(self) -> SshLogin: ...

    @property
    def is_connected(self) -> bool: ...

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult: ...

    def run_chain(self, *commands: Sequence[str],
                  timeout: float | None = None) -> CommandResult: ...

    def run_streaming_stdin(self, argv: Sequence[str], source: BinaryIO, *,
                            sent: Callable[[int], None] | None = None,
                            timeout: float | None = None) -> CommandResult: ...

    def stream_lines(self, argv: Sequence[str], on_line: Callable[[str], None], *,
                     follow: bool = False) -> int: ...

    def run_interactive(self, argv: Sequence[str]) -> int: ...

    def read_file(self, path: str) -> str | None: ...

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None: ...

    def write_private_file(self, path: str, text: str) -> None: ...

    def cannot_write(self, directory: str, stderr: str) -> RemoteDirError: ...

    def runtime_api(self, command: str) -> str: ...

    def use_admin_socket(self, path: str | None) -> None: ...

    def close_runtime_api(self) -> None: ...

    def login_facts(self) -> LoginFacts: ...

    def with_folders(self, inventory: Inventory) -> Inventory: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...
