"""What the unit tests share: the folder of recorded answers (FIXTURES), the minimal
inventory (make_inventory) and one fake server (FakeServer), a `ServerLike` that answers
from what each test gives it and records what it was asked.

A test that needs a server to behave in a way of its own (a connection lost on the first
line, a `sh` that runs the lock scripts for real) subclasses FakeServer and overrides the
one member that differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from slotswap.commands.login_facts import LoginFacts
from slotswap.commands.role_containers import INSPECT_WITH_ROLES_SCRIPT
from slotswap.config.hosts import Host
from slotswap.config.inventory import Inventory
from slotswap.config.loader import parse_inventory
from slotswap.core.timings import Timings
from slotswap.remote.call_guard import NO_GUARD
from slotswap.remote.server import CommandResult, RemoteDirError

FIXTURES = Path(__file__).parent / "fixtures"

# The smallest inventory the kit accepts: one app, one image, one server.
MINIMAL = {"app": "webapp", "image": "acme/webapp", "hosts": ["203.0.113.10"]}

OK = CommandResult("", "", 0)

# What a command gets: a result, or a function of the argv that gives one.
CommandAnswer = CommandResult | Callable[[list[str]], CommandResult]
# What a runtime-API line gets: an answer, a function of the line, or an error to raise.
ApiAnswer = str | Callable[[str], str] | BaseException


def make_inventory(folder: Path = Path("/srv"), **settings: Any) -> Inventory:
    """The minimal inventory with `settings` on top, read as if from folder/hosts.yaml."""
    return parse_inventory({**MINIMAL, **settings}, folder / "hosts.yaml")


def recorded(name: str) -> str:
    """A recorded answer of the sandbox's servers (fixtures/README.md)."""
    return (FIXTURES / name).read_text(encoding="utf-8")


@dataclass
class Login:
    """The SSH login as FakeServer.connection: its name."""

    user: str = "root"


class FakeServer:
    """A ServerLike without a network.

    - `run` answers each command with the first of `answers` whose argv prefix it starts
      with, else `docker container inspect` (alone, or with the role containers:
      role_containers.inspect_with_roles) from the recording named `state`
      (docker_inspect_<state>.json), else an empty success; it records the argv in
      `commands` (and a stdin in `stdins`). `run_chain` runs each command so, up to the
      first that fails, and gives their output together. `check` is not applied: a test
      sees the answer it gave. `strict`: a command with no answer fails the test (as
      invoke's MockContext does).
    - `runtime_api` answers `show stat` and `show servers state` from the recording named
      `state` (show_stat_<state>.csv, show_servers_state_<state>.txt) when one is given,
      else from `api` (the first prefix that matches; an exception there is raised), else
      "\\n". Both queries in one line (`show stat ...; show servers state ...`) are
      answered part by part. Every line that is not a `show` query is recorded in `sent`.
    - `call_guard` is asked before every command, file and runtime-API line, as Server asks
      it (its server-side line guard aside: commands here are argv, not shell lines).
    - Files live in `files`; `with_folders` gives the inventory as it is (root's folders)
      unless `folders` is set; `login_facts` gives `facts`.
    """

    def __init__(self, name: str = "s1", *, inventory: Inventory | None = None,
                 answers: dict[tuple[str, ...], CommandAnswer] | None = None,
                 api: dict[str, ApiAnswer] | None = None, state: str | None = None,
                 user: str = "root", strict: bool = False) -> None:
        self.name = name
        self.inventory = inventory if inventory is not None else make_inventory()
        self.host: Host = self.inventory.hosts[0]
        self.timings = Timings()  # steps and round trips, as slotswap.remote.server.Server keeps
        self.connection = Login(user)
        self.is_connected = True
        self.answers = dict(answers or {})
        self.api = dict(api or {})
        self.state = state
        self.strict = strict
        self.folders: Inventory | None = None
        self.facts = LoginFacts(0, 0, "/root")
        self.commands: list[list[str]] = []
        self.stdins: list[str] = []
        self.sent: list[str] = []
        self.files: dict[str, str] = {}
        self.admin_sockets: list[str | None] = []
        self.closed = False
        self.call_guard = NO_GUARD

    # -- commands ----------------------------------------------------------------------------
    def answer(self, argv: list[str]) -> CommandResult:
        for prefix, answer in self.answers.items():
            if tuple(argv[:len(prefix)]) == prefix:
                return answer(argv) if callable(answer) else answer
        if self.state is not None and (argv[:3] == ["docker", "container", "inspect"] or (
                argv[:3] == ["sh", "-c", INSPECT_WITH_ROLES_SCRIPT])):
            return CommandResult(recorded(f"docker_inspect_{self.state}.json"), "", 0)
        assert not self.strict, f"{self.name}: a command the test did not expect: {argv}"
        return OK

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float | None = None,
            stdin: str | None = None) -> CommandResult:
        self.call_guard.before_call()
        self.commands.append(list(argv))
        if stdin is not None:
            self.stdins.append(stdin)
        return self.answer(list(argv))

    def run_chain(self, *commands: Sequence[str],
                  timeout: float | None = None) -> CommandResult:
        results = []
        for argv in commands:
            results.append(self.run(argv))
            if not results[-1].ok:
                break
        return CommandResult("".join(r.stdout for r in results),
                             "".join(r.stderr for r in results),
                             results[-1].exit_code if results else 0)

    def run_streaming_stdin(self, argv: Sequence[str], source: BinaryIO, *,
                            sent: Callable[[int], None] | None = None,
                            timeout: float | None = None) -> CommandResult:
        return self.run(argv, stdin=source.read().decode(errors="replace"))

    def stream_lines(self, argv: Sequence[str], on_line: Callable[[str], None], *,
                     follow: bool = False) -> int:
        result = self.run(argv)
        for line in (result.stdout + result.stderr).splitlines():
            on_line(line)
        return result.exit_code

    def run_interactive(self, argv: Sequence[str]) -> int:
        return self.run(argv).exit_code

    # -- files -------------------------------------------------------------------------------
    def read_file(self, path: str) -> str | None:
        self.call_guard.before_call()
        return self.files.get(path)

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        self.call_guard.before_call()
        self.files[path] = text

    def write_private_file(self, path: str, text: str) -> None:
        self.call_guard.before_call()
        self.files[path] = text

    def cannot_write(self, directory: str, stderr: str) -> RemoteDirError:
        return RemoteDirError(f"{self.name}: the SSH login {self.connection.user} cannot "
                              f"write {directory}")

    # -- HAProxy's runtime API ---------------------------------------------------------------
    def runtime_api(self, command: str) -> str:
        if command.startswith("show stat ") and "; " in command:  # both, one round trip
            return "".join(self.runtime_api(part) + "\n" for part in command.split("; "))
        if "; show " in command and not command.startswith("show"):  # changes, then a read
            changes, _, shown = command.partition("; show ")
            self.runtime_api(changes)
            return self.runtime_api(f"show {shown}")
        self.call_guard.before_call()
        if not command.startswith("show"):
            self.sent.append(command)
        if self.state is not None and command.startswith("show stat"):
            return recorded(f"show_stat_{self.state}.csv")
        if self.state is not None and command.startswith("show servers state"):
            return recorded(f"show_servers_state_{self.state}.txt")
        for prefix, answer in self.api.items():
            if command.startswith(prefix):
                if isinstance(answer, BaseException):
                    raise answer
                return answer(command) if callable(answer) else answer
        return "\n"

    def use_admin_socket(self, path: str | None) -> None:
        self.close_runtime_api()
        self.admin_sockets.append(path)

    def close_runtime_api(self) -> None:
        pass

    # -- the login and its folders -----------------------------------------------------------
    def login_facts(self) -> LoginFacts:
        return self.facts

    def with_folders(self, inventory: Inventory) -> Inventory:
        return self.folders or inventory

    def resume(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


# `show servers state` with both slots and their fallback lines checked up (op state 2): what
# the swap reads before and in the line that moves traffic (slotswap.server.haproxy_state).
BOTH_UP_STATE = "".join(
    ["1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n"]
    + [f"3 webapp {n} {line} 127.0.0.1 2 0\n" for n, line in enumerate(
        ("web1", "web2", "web1-fallback", "web2-fallback"), start=1)])
