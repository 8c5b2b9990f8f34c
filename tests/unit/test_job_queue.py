"""testbed.job_queue: the example worker's queue folder as the sandbox tests enqueue, read and
judge it. The worker's own side (claims, signals) is tested in example/app/worker_test.go;
the lines parsed here are copied from its output."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from slotswap.config.loader import parse_inventory
from testbed.job_queue import (
    Held,
    QueueState,
    Run,
    enqueue,
    judge,
    make_queue,
    parse_held,
    parse_runs,
    read_state,
    wait_until_drained,
    worker_role,
)

# Written by `webapp worker` (example/app/worker.go).
DONE_LINE = ("version=v1 host=0c1e5a7f9b2d start=2026-12-03T20:28:56.123317Z "
             "end=2026-12-03T20:28:57.123589Z\n")
TAKEN_TEXT = ("id=job-0001\nseconds=1\n"
              "taken version=v2 host=9f3b start=2026-12-03T20:28:57.124370Z\n")

T0 = datetime(2026, 12, 3, 20, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(version: str, start: float, end: float, host: str = "h1") -> Run:
    return Run(version=version, host=host, start=at(start), end=at(end))


def state(pending: tuple[str, ...] = (), taken: dict[str, Held] | None = None,
          done: dict[str, tuple[Run, ...]] | None = None) -> QueueState:
    return QueueState(pending=frozenset(pending), taken=taken or {}, done=done or {})


# --- the role ------------------------------------------------------------------------------

def test_the_worker_role_is_one_the_kit_accepts_mounting_the_queue(tmp_path: Path) -> None:
    queue = make_queue(tmp_path / "queue")
    inventory = parse_inventory({
        "app": "webapp", "image": "10.77.0.1:5000/demo/webapp",
        "container": {"volumes": ["webapp-data:/data"]},
        "hosts": [{"address": "10.77.0.11", "name": "s1"},
                  {"address": "10.77.0.12", "name": "s2", "web": False}],
        "roles": {"worker": worker_role(queue, job_seconds=2.5, count=2, hosts=["s2"],
                                        check={"running": 3})},
    }, tmp_path / "hosts.yaml")
    (role,) = inventory.roles
    assert (role.cmd, role.count, role.hosts, role.stop_timeout) == (("worker",), 2, ("s2",), 12)
    assert role.container.volumes == (f"{queue}:/queue",)
    assert dict(role.env.plain) == {"QUEUE_DIR": "/queue", "JOB_SECONDS": "2.5"}
    assert worker_role(queue)["stop_timeout"] == 13
    assert "hosts" not in worker_role(queue) and "check" not in worker_role(queue)


# --- the folder ----------------------------------------------------------------------------

def test_a_queue_is_writable_by_the_apps_user_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        queue = make_queue(tmp_path / "queue")
    finally:
        os.umask(old)
    for sub in ("", "pending", "taken", "done", ".incoming"):
        assert stat.S_IMODE((queue / sub).stat().st_mode) == 0o777, sub


def test_jobs_are_renamed_into_pending_whole_and_writable_by_the_worker(tmp_path: Path) -> None:
    queue = make_queue(tmp_path)
    ids = enqueue(queue, 3, prefix="before", seconds=1.5)
    assert ids == ["before-0001", "before-0002", "before-0003"]
    assert sorted(p.name for p in (queue / "pending").iterdir()) == ids
    assert list((queue / ".incoming").iterdir()) == []
    job = queue / "pending" / "before-0002"
    assert job.read_text() == "id=before-0002\nseconds=1.5\n"
    assert stat.S_IMODE(job.stat().st_mode) == 0o666
    assert enqueue(queue, 1, prefix="plain") == ["plain-0001"]
    assert (queue / "pending" / "plain-0001").read_text() == "id=plain-0001\n"
    assert read_state(queue) == state(pending=(*ids, "plain-0001"))


def test_an_id_the_queue_has_seen_is_refused(tmp_path: Path) -> None:
    queue = make_queue(tmp_path)
    (queue / "done" / "job-0002").write_text(DONE_LINE)
    with pytest.raises(ValueError, match="job-0002"):
        enqueue(queue, 2)
    assert read_state(queue).pending == frozenset()


def test_the_state_is_read_from_the_workers_files(tmp_path: Path) -> None:
    queue = make_queue(tmp_path)
    (queue / "pending" / "a").write_text("id=a\n")
    (queue / "pending" / ".a.tmp").write_text("")  # being written: no job
    (queue / "taken" / "b").write_text(TAKEN_TEXT)
    (queue / "taken" / "c").write_text("id=c\n")  # claimed, its line not written yet
    (queue / "done" / "d").write_text(DONE_LINE + DONE_LINE.replace("v1", "v2")
                                      + "version=v3 host=x st")  # a line being written
    got = read_state(queue)
    assert got.pending == {"a"}
    assert got.taken == {"b": Held("v2", "9f3b", datetime(2026, 12, 3, 20, 28, 57, 124370,
                                                          tzinfo=UTC)),
                         "c": Held()}
    assert [r.version for r in got.done["d"]] == ["v1", "v2"]
    assert got.done["d"][0] == Run("v1", "0c1e5a7f9b2d",
                                   datetime(2026, 12, 3, 20, 28, 56, 123317, tzinfo=UTC),
                                   datetime(2026, 12, 3, 20, 28, 57, 123589, tzinfo=UTC))


@pytest.mark.parametrize("text", [
    "version=v1 host=h start=2026-12-03T20:28:56Z\n",  # no end
    "version=v1 host=h start=2026-12-03T20:28:56 end=2026-12-03T20:28:57\n",  # no zone
    "garbage\n",
])
def test_a_done_line_the_worker_would_not_write_is_an_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_runs(text)


def test_taken_without_the_workers_line_has_no_holder() -> None:
    assert parse_held("id=x\nseconds=3\n") == Held()
    assert parse_held(TAKEN_TEXT).version == "v2"


def test_waiting_for_a_queue_that_does_not_drain_returns_at_the_deadline(tmp_path: Path) -> None:
    queue = make_queue(tmp_path)
    ids = enqueue(queue, 2)
    assert wait_until_drained(queue, ids, timeout=0.05, interval=0.01).unfinished(ids) == ids
    for job in ids:
        (queue / "pending" / job).unlink()
        (queue / "done" / job).write_text(DONE_LINE)
    assert wait_until_drained(queue, ids, timeout=5).unfinished(ids) == []


# --- the verdict -----------------------------------------------------------------------------

def test_every_job_done_once_is_a_pass() -> None:
    verdict = judge(["a", "b", "c"], state(done={
        "a": (run("v1", 0, 3),), "b": (run("v1", 1, 4),), "c": (run("v2", 5, 8, host="h2"),)}),
        moment=at(2))
    assert verdict.ok, verdict.problems
    assert verdict.in_progress == ("a", "b")
    assert verdict.runs_by_version == {"v1": 2, "v2": 1}
    assert verdict.summary() == "3 runs (v1: 2, v2: 1), 2 in progress at the moment judged"


def test_a_job_left_pending_or_taken_is_lost() -> None:
    verdict = judge(["a", "b", "c", "d"], state(
        pending=("a",),
        taken={"b": Held("v1", "h1", at(1)), "c": Held()},
        done={"d": (run("v1", 0, 1),)}))
    assert verdict.problems == (
        "job a never taken: still pending",
        "job b lost: taken by v1 on h1 at 20:00:01.000000, never done",
        "job c lost: taken (no worker line yet), never done",
    )


def test_a_job_in_progress_at_the_moment_that_never_finished_says_so() -> None:
    verdict = judge(["a", "b"], state(taken={"a": Held("v1", "h1", at(1)),
                                             "b": Held("v2", "h2", at(5))}), moment=at(2))
    assert verdict.in_progress == ("a",)
    assert verdict.problems[0].endswith("never done (in progress when the moment judged came)")
    assert not verdict.problems[1].endswith("came)")


def test_a_job_that_ran_twice_fails_even_when_done() -> None:
    verdict = judge(["a"], state(done={"a": (run("v1", 0, 3), run("v2", 4, 7, host="h2"))}))
    assert verdict.problems == (
        "job a ran 2 times: v1 on h1 from 20:00:00.000000 to 20:00:03.000000; "
        "v2 on h2 from 20:00:04.000000 to 20:00:07.000000",)
    assert verdict.runs_by_version == {"v1": 1, "v2": 1}


def test_a_job_done_and_back_in_pending_or_still_in_taken_fails() -> None:
    verdict = judge(["a", "b"], state(pending=("a",), taken={"b": Held("v1", "h1", at(0))},
                                      done={"a": (run("v1", 0, 3),), "b": (run("v1", 0, 3),)}))
    assert verdict.problems == (
        "job a done and pending again",
        "job b done but left in taken/: taken by v1 on h1 at 20:00:00.000000",
    )


def test_a_job_gone_from_every_folder_vanished() -> None:
    assert judge(["a"], state()).problems == (
        "job a vanished: neither pending, taken nor done",)


def test_jobs_the_test_did_not_enqueue_fail_it() -> None:
    verdict = judge(["a"], state(pending=("x",), done={"a": (run("v1", 0, 1),),
                                                      "y": (run("v1", 0, 1),)}))
    assert verdict.problems == ("jobs not enqueued by this test in the queue: x, y",)


def test_in_progress_means_held_at_the_moment() -> None:
    verdict = judge(["ended", "started-at", "later", "held"], state(
        taken={"held": Held("v1", "h1", at(9))},
        done={"ended": (run("v1", 0, 10),), "started-at": (run("v1", 10, 12),),
              "later": (run("v1", 11, 14),)}), moment=at(10))
    # A run that ends at the moment was over; one that starts at it was held.
    assert verdict.in_progress == ("held", "started-at")
    assert judge([], state(), moment=None).in_progress == ()


def test_the_moment_needs_its_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        judge([], state(), moment=datetime(2026, 12, 3, 20, 0))
