"""How a run ends: the exit codes (documented in the README), the errors a step on a server
may raise and a run contains (one line each, never a traceback), and the exit code of each.
The fleet's results carry these codes; the tasks exit with them."""

from __future__ import annotations

from slotswap.commands.docker import UnexpectedOutputError
from slotswap.commands.runtime_api import RuntimeApiError
from slotswap.remote.server import ConnectError, RemoteCommandError, RemoteDirError
from slotswap.server.haproxy import ProxyError
from slotswap.server.locking import LockedError
from slotswap.server.swap import SwapError

# Exit codes (documented in the README).
EXIT_OK = 0
EXIT_DEPLOY_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CONNECT = 3
EXIT_LOCKED = 4
EXIT_INTERRUPTED = 130

OPERATION_ERRORS = (ConnectError, RemoteCommandError, RuntimeApiError, ProxyError, SwapError,
                    LockedError, RemoteDirError, UnexpectedOutputError)


def describe_error(error: BaseException) -> str:
    """One line for any error: its message, or its kind when it has none; an error the kit
    does not know is named as such."""
    if isinstance(error, OPERATION_ERRORS):
        return str(error) or type(error).__name__
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def nothing_changed(error: BaseException) -> str:
    """Pure: the error of a run that changed nothing, saying so once."""
    text = str(error)
    return text if "nothing was changed" in text else f"nothing was changed: {text}"


def exit_code_for(error: Exception) -> int:
    if isinstance(error, LockedError):
        return EXIT_LOCKED
    if isinstance(error, ConnectError):
        return EXIT_CONNECT
    return EXIT_DEPLOY_FAILED
