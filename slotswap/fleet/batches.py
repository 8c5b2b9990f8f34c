"""`fab deploy --batch=N` or `--batch=P%`: how many servers swap at a time, and the batches.

Within a batch the servers swap in parallel; the next batch starts only when every server
of the batch succeeded. After a batch with a failure nothing more starts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from slotswap.core.validation import InputError

_BATCH = re.compile(r"([0-9]{1,6})(%?)")


@dataclass(frozen=True)
class BatchSize:
    """N servers, or P percent of the fleet (rounded up, at least one)."""

    value: int
    percent: bool = False

    def servers(self, fleet: int) -> int:
        if self.percent:
            return max(1, math.ceil(fleet * self.value / 100))
        return max(1, min(self.value, fleet))

    def __str__(self) -> str:
        return f"{self.value}{'%' if self.percent else ''}"


def parse_batch(text: str) -> BatchSize:
    match = _BATCH.fullmatch(text.strip())
    value = int(match[1]) if match else 0
    percent = bool(match and match[2])
    if not match or value < 1 or (percent and value > 100):
        raise InputError(f"--batch: expected a number of servers at a time (e.g. 2) or a "
                         f"percentage of the servers from 1% to 100% (e.g. 25%), got {text!r}")
    return BatchSize(value, percent)


def batches(count: int, size: int) -> list[range]:
    """The indexes 0..count-1 in order, `size` at a time."""
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def run_in_batches(count: int, size: int, swap: Callable[[int], bool],
                   before_batch: Callable[[int, range], None]) -> tuple[int, list[int]]:
    """Run swap(index) for every index, `size` at a time in parallel, batch after batch;
    stop after the first batch in which a swap failed. Returns the number of indexes the
    batches run covered and the failed indexes (none: all succeeded)."""
    done = 0
    for number, members in enumerate(batches(count, size), start=1):
        before_batch(number, members)
        with ThreadPoolExecutor(max_workers=len(members)) as pool:
            succeeded = list(pool.map(swap, members))
        done = members.stop
        failed = [index for index, ok in zip(members, succeeded, strict=True) if not ok]
        if failed:
            return done, failed
    return done, []
