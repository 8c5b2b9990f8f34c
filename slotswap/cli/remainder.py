"""`slotswap exec -- CMD ARGS`: the words after `--` become exec's command. Invoke keeps
them as one string joined by spaces (its parse result's `remainder`), which loses quoting,
so the words are taken from the program's own argv instead. Under `fab`, Fabric keeps `--`
for itself (a command to run on -H hosts): there it is refused with one line naming
`--command`, rather than Fabric's own error."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from fabric.executor import Executor as FabricExecutor
from invoke import Executor
from invoke.exceptions import Exit

from slotswap.fleet.errors import EXIT_BAD_INPUT

EXEC_TASK = "exec"
FAB_REFUSAL = ("error: `fab exec -- CMD` is not available: Fabric keeps `--` for itself; "
               "use fab exec --command='CMD ARGS' (or `slotswap exec -- CMD ARGS`)")


def words_after_double_dash(argv: Sequence[str]) -> list[str]:
    """Pure: the words after the first `--` of argv, as given (none: no `--`)."""
    argv = list(argv)
    return argv[argv.index("--") + 1:] if "--" in argv else []


def command_for_exec(called: Sequence[str], given: Sequence[str], words: Sequence[str]) -> str:
    """Pure: exec's --command from the words after `--`; bad input is refused with its
    one-line message. `called`: the tasks named on the command line; `given`: those whose
    --command was given too."""
    if list(called) != [EXEC_TASK]:
        raise Exit("error: `-- CMD ARGS` is only for exec, alone: slotswap exec -- CMD ARGS",
                   code=EXIT_BAD_INPUT)
    if given:
        raise Exit("error: exec: give the command with --command or after `--`, not both",
                   code=EXIT_BAD_INPUT)
    return shlex.join(words)


class RemainderExecutor(Executor):
    """The `slotswap` program's executor: `-- CMD ARGS` fills exec's --command."""

    def __init__(self, *args: Any, words: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.words = list(words)

    def normalize(self, tasks: Any) -> list[Any]:
        calls = super().normalize(tasks)
        if self.words:
            called = [call.called_as or call.task.name for call in calls]
            given = [name for call, name in zip(calls, called, strict=True)
                     if call.kwargs.get("command")]
            calls[0].kwargs["command"] = command_for_exec(called, given, self.words)
        return calls


class FabExecutor(FabricExecutor):
    """`fab`'s executor: `fab exec -- CMD` ends in one line naming --command (Fabric would
    stop with a traceback without -H, or run CMD on the -H hosts by SSH)."""

    def normalize(self, tasks: Any) -> list[Any]:
        calls = super().normalize(tasks)
        if self.core.remainder and any(call.called_as == EXEC_TASK for call in calls):
            raise Exit(FAB_REFUSAL, code=EXIT_BAD_INPUT)
        return calls
