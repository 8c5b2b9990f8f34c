"""`fab deploy --batch`: parsing, the batches, and stopping after a failed batch."""

from __future__ import annotations

import threading

import pytest

from slotswap.core.validation import InputError
from slotswap.fleet.batches import BatchSize, batches, parse_batch, run_in_batches


@pytest.mark.parametrize(("text", "fleet", "servers"), [
    ("1", 10, 1), ("3", 10, 3), ("30", 10, 10), ("25%", 10, 3), ("100%", 10, 10),
    ("1%", 10, 1), ("50%", 3, 2), ("67%", 3, 3), (" 2 ", 5, 2),
])
def test_batch_size_in_servers(text: str, fleet: int, servers: int) -> None:
    assert parse_batch(text).servers(fleet) == servers


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "2.5", "abc", "", "%", "10 %",
                                  "1;rm -rf /", "9999999"])
def test_bad_batch_sizes_are_refused_with_what_is_expected(text: str) -> None:
    with pytest.raises(InputError, match=r"^--batch: expected a number of servers at a time "):
        parse_batch(text)


def test_batch_size_shows_as_given() -> None:
    assert str(BatchSize(25, percent=True)) == "25%" and str(BatchSize(2)) == "2"


def test_batches_keep_inventory_order() -> None:
    assert [list(b) for b in batches(5, 2)] == [[0, 1], [2, 3], [4]]
    assert [list(b) for b in batches(3, 3)] == [[0, 1, 2]]


def test_a_batch_runs_in_parallel_and_the_next_waits_for_all_of_it() -> None:
    both_started = threading.Barrier(2, timeout=5)  # fails unless 0 and 1 run together
    finished: list[int] = []
    seen_before_batch: list[list[int]] = []

    def swap(index: int) -> bool:
        if index < 2:
            both_started.wait()
        finished.append(index)
        return True

    done, failed = run_in_batches(
        3, 2, swap, lambda number, members: seen_before_batch.append(sorted(finished)))
    assert (done, failed) == (3, [])
    assert seen_before_batch == [[], [0, 1]]


def test_the_run_stops_after_the_batch_with_a_failure() -> None:
    ran: list[int] = []

    def swap(index: int) -> bool:
        ran.append(index)
        return index != 2

    assert run_in_batches(7, 2, swap, lambda *_: None) == (4, [2])
    assert sorted(ran) == [0, 1, 2, 3]
