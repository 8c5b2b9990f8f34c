"""The `slotswap` command: the kit's tasks as a program of their own (Invoke's Program), with
the same tasks, help and exit codes as `fab` in a checkout, and none of Fabric's host flags.
Invoke's flags for local commands (-R, -T, -p, -w) are refused by the tasks as under `fab`
(slotswap.cli.fabric_flags).

    slotswap deploy --tag=v42
    slotswap --list
    slotswap --help deploy
    slotswap exec -- bin/rails db:migrate:status
"""

from __future__ import annotations

from invoke import Program

from slotswap.cli.remainder import RemainderExecutor, words_after_double_dash
from slotswap.cli.tasks import collection
from slotswap.core.version import kit_version


class SlotswapProgram(Program):
    """Invoke's Program, with `exec -- CMD ARGS` (slotswap.cli.remainder)."""

    def execute(self) -> None:
        # Not the collection's tasks.executor_class: that one is `fab`'s (Fabric's executor).
        words = words_after_double_dash(self.argv) if self.core.remainder else []
        executor = RemainderExecutor(self.collection, self.config, self.core, words=words)
        executor.execute(*self.tasks)


def main() -> None:
    SlotswapProgram(name="slotswap", binary="slotswap", version=kit_version(),
                    namespace=collection()).run()


if __name__ == "__main__":
    main()
