"""What a server asks before each call, while a run holds its lock: the run's lease on it
(slotswap.server.lease) may refuse the call, and may make a shell command line run only
while the lock is still the run's on the server itself. A server with no lock held asks
NO_GUARD, which lets everything through."""

from __future__ import annotations

from typing import Protocol


class CallGuard(Protocol):
    def before_call(self) -> None:
        """Raise when this run may no longer touch the server (before a runtime-API line,
        a streamed or interactive command)."""

    def guard_line(self, line: str) -> str:
        """before_call, then the shell command line to send instead of `line`."""

    def check_answer(self, exit_code: int, stderr: str) -> None:
        """Raise when the server refused the line guard_line made (the lock was gone)."""


class NoGuard:
    def before_call(self) -> None:
        pass

    def guard_line(self, line: str) -> str:
        return line

    def check_answer(self, exit_code: int, stderr: str) -> None:
        pass


NO_GUARD: CallGuard = NoGuard()
