"""slotswap.core.output.format_table, slotswap.cli.build_image.default_tag and how tasks
report failures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from invoke.exceptions import Exit

from slotswap.cli.build_image import default_tag
from slotswap.cli.kit_task import exit_on_failure, reports_errors
from slotswap.core.output import format_table
from slotswap.core.validation import InputError, validate_tag
from slotswap.fleet.outcomes import ServerResult
from slotswap.remote.server import ConnectError, RemoteDirError
from slotswap.server.locking import LockedError

# -- format_table ---------------------------------------------------------------------------

TABLE_CASES = {
    "up": (
        ("server", "result"),
        [("s1", "unchanged"), ("server-two", "config reloaded")],
        "server      result\n"
        "----------  ---------------\n"
        "s1          unchanged\n"
        "server-two  config reloaded",
    ),
    "no rows": (
        ("server", "result"),
        [],
        "server  result\n"
        "------  ------",
    ),
    "header wider than the cells": (
        ("server", "live", "version"),
        [("s1", "web1", "v1")],
        "server  live  version\n"
        "------  ----  -------\n"
        "s1      web1  v1",
    ),
    "cells that are not strings": (
        ("server", "sessions", "live"),
        [("s1", 0, None), ("s2", 12, "web2")],
        "server  sessions  live\n"
        "------  --------  ----\n"
        "s1      0         None\n"
        "s2      12        web2",
    ),
    "empty last cell leaves no trailing space": (
        ("server", "error"),
        [("s1", ""), ("s2", "unreachable")],
        "server  error\n"
        "------  -----------\n"
        "s1\n"
        "s2      unreachable",
    ),
    "one column": (
        ("server",),
        [("s1",), ("s22",)],
        "server\n"
        "------\n"
        "s1\n"
        "s22",
    ),
}


@pytest.mark.parametrize(("headers", "rows", "expected"), TABLE_CASES.values(), ids=TABLE_CASES)
def test_format_table(headers: tuple[str, ...], rows: list[tuple[object, ...]],
                      expected: str) -> None:
    assert format_table(headers, rows) == expected


def test_format_table_lines_have_no_trailing_spaces() -> None:
    table = format_table(("a", "b", "c"), [("x", "", ""), ("", "", "z")])
    assert all(line == line.rstrip() for line in table.splitlines())


def test_format_table_refuses_a_row_of_the_wrong_length() -> None:
    with pytest.raises(ValueError):
        format_table(("server", "result"), [("s1", "ok", "extra")])


# -- default_tag ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("now", "tag"),
    [
        (datetime(2026, 11, 26, 7, 5, 59, 999999, tzinfo=UTC), "202611260705"),
        (datetime(2026, 1, 2, 3, 4, tzinfo=UTC), "202601020304"),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), "202612312359"),
        (datetime(2026, 11, 26, 0, 0), "202611260000"),  # naive: taken as it is
        # An aware time is formatted in its own zone, as given.
        (datetime(2026, 11, 26, 9, 5, tzinfo=timezone(timedelta(hours=2))), "202611260905"),
    ],
)
def test_default_tag_of_a_fixed_time(now: datetime, tag: str) -> None:
    assert default_tag(now) == tag
    assert validate_tag(default_tag(now)) == tag


def test_default_tag_now_is_the_utc_minute() -> None:
    before = datetime.now(UTC).strftime("%Y%m%d%H%M")
    tag = default_tag()
    after = datetime.now(UTC).strftime("%Y%m%d%H%M")
    assert before <= tag <= after
    assert len(tag) == 12 and tag.isdigit()
    assert validate_tag(tag) == tag


# -- reports_errors: one line and an exit code, never a traceback ------------------------------


def failing_with(error: BaseException):  # type: ignore[no-untyped-def]
    @reports_errors
    def task() -> None:
        raise error

    return task


@pytest.mark.parametrize(("error", "code", "message"), [
    (InputError("hosts.yaml: app: expected an app name"), 2,
     "error: hosts.yaml: app: expected an app name"),
    (RemoteDirError("s1: the SSH login deploy cannot write /etc/slotswap/webapp"), 1,
     "error: s1: the SSH login deploy cannot write /etc/slotswap/webapp"),
    (ConnectError("s1: cannot connect to root@10.0.0.1:22: timed out"), 3,
     "error: s1: cannot connect to root@10.0.0.1:22: timed out"),
    (LockedError("s1 is locked by alice@laptop"), 4, "error: s1 is locked by alice@laptop"),
    (json.JSONDecodeError("Expecting value", "Welcome!\n[]", 0), 1,
     "error: JSONDecodeError: Expecting value: line 1 column 1 (char 0) "
     "(SLOTSWAP_DEBUG=1 shows where)"),
    (KeyError("web1"), 1, "error: KeyError: 'web1' (SLOTSWAP_DEBUG=1 shows where)"),
])
def test_a_task_that_fails_exits_with_one_line_and_its_code(
        error: Exception, code: int, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLOTSWAP_DEBUG", raising=False)
    with pytest.raises(Exit) as caught:
        failing_with(error)()
    assert caught.value.code == code
    assert caught.value.message == message


def test_slotswap_debug_shows_the_traceback_of_an_unforeseen_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLOTSWAP_DEBUG", "1")
    with pytest.raises(KeyError):
        failing_with(KeyError("web1"))()


def test_a_task_that_failed_on_one_server_ends_in_one_line() -> None:
    results = [ServerResult("s1", "config reloaded", True),
               ServerResult("s2", "haproxy -c refused the config", False, 1)]
    with pytest.raises(Exit) as raised:
        exit_on_failure("up", results)
    assert raised.value.code == 1
    assert raised.value.message == ("error: `up` failed on s2: haproxy -c refused the config; "
                                    "later servers were not touched")
