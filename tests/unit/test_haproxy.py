"""slotswap.commands.runtime_api against answers recorded from HAProxy 2.6.12
(tests/unit/fixtures)."""

from __future__ import annotations

import csv
import dataclasses
import io

import pytest

from slotswap.commands import runtime_api as haproxy
from slotswap.commands.runtime_api import (
    ADMIN_FORCED_DRAIN,
    ADMIN_FORCED_MAINT,
    ADMIN_RESOLUTION_MAINT,
    AdminState,
    RuntimeApiError,
    ServerStat,
    ServerState,
)
from tests.unit.fake_server import FIXTURES

# Verbatim refusals of the HAProxy 2.6 runtime API. The first three are the answers of
# `set server` to a wrong backend/server; the last two were recorded (read-only commands).
NO_SUCH_SERVER = "No such server.\n"
NO_SUCH_BACKEND = "No such backend.\n"
REQUIRE_BACKEND_SERVER = "Require 'backend/server'.\n"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def stat(status: str = "UP", check_status: str = "L7OK", check_code: str = "200",
         check_desc: str = "Layer7 check passed") -> ServerStat:
    return ServerStat(name="web1", status=status, sessions=0, check_status=check_status,
                      check_code=check_code, check_desc=check_desc, last_change=0,
                      address="10.111.1.3:3000")


# -- show stat ------------------------------------------------------------------------------

OK = ("L7OK", "200", "Layer7 check passed")
NONE = ("", "", "")

# Recorded `show stat webapp 4 -1` (servers only), as
# (svname, status, scur, check_status, check_code, check_desc, lastchg, addr) per server.
SHOW_STAT_CASES: dict[str, list[tuple[object, ...]]] = {
    # web2 serves; web1's container stopped, so its name no longer resolves.
    "show_stat_live_web2.csv": [
        ("web1", "MAINT (resolution)", 0, *NONE, 30, ""),
        ("web2", "UP", 0, *OK, 31, "10.111.1.4:3000"),
    ],
    "show_stat_live_web1.csv": [
        ("web1", "UP", 0, *OK, 6, "10.111.1.3:3000"),
        ("web2", "MAINT (resolution)", 0, *NONE, 6, ""),
    ],
    # The watch of a version closing every other GET unanswered (hangup1): HAProxy retried
    # each on web1's fallback line, ready while web1 drains.
    "show_stat_web2_closes_half_web1_fallback.csv": [
        ("web1", "DRAIN", 0, *OK, 1, "127.0.0.1:18081"),
        ("web2", "UP", 1, *OK, 1, "127.0.0.1:18082"),
        ("web1-fallback", "UP", 0, *OK, 1, "127.0.0.1:18081"),
        ("web2-fallback", "MAINT", 0, *NONE, 9, "127.0.0.1:18082"),
    ],
    "show_stat_live_web1_web2_removed.csv": [
        ("web1", "UP", 0, *OK, 6, "10.111.1.3:3000"),
        ("web2", "MAINT (resolution)", 0, *NONE, 6, ""),
    ],
    # The first deploy: web1 passed its checks in drain, no traffic yet; web2 never existed.
    "show_stat_first_deploy_drain.csv": [
        ("web1", "DRAIN", 0, *OK, 30, "10.111.1.3:3000"),
        ("web2", "MAINT (resolution)", 0, *NONE, 36, ""),
    ],
    "show_stat_after_stop_drain.csv": [
        ("web1", "MAINT (resolution)", 0, *NONE, 1, ""),
        ("web2", "MAINT (resolution)", 0, *NONE, 39, ""),
    ],
    # web1 forced to maint, its stopped container's address still held.
    "show_stat_web1_maint_stopped_web2_live.csv": [
        ("web1", "MAINT", 0, *NONE, 0, "10.111.1.3:3000"),
        ("web2", "UP", 0, *OK, 1, "10.111.1.4:3000"),
    ],
    # A new container in web1 before its first passed checks after `health down`.
    "show_stat_web1_down_starting_web2_live.csv": [
        ("web1", "DOWN", 0, *OK, 0, "10.111.1.3:3000"),
        ("web2", "UP", 0, *OK, 33, "10.111.1.4:3000"),
    ],
    "show_stat_web1_live_web2_drain.csv": [
        ("web1", "UP", 0, *OK, 0, "10.111.1.3:3000"),
        ("web2", "DRAIN", 0, *OK, 0, "10.111.1.4:3000"),
    ],
    "show_stat_both_up_web1_newer.csv": [
        ("web1", "UP", 0, *OK, 0, "10.111.1.3:3000"),
        ("web2", "UP", 0, *OK, 8, "10.111.1.4:3000"),
    ],
    "show_stat_both_up_web2_newer.csv": [
        ("web1", "UP", 0, *OK, 7, "10.111.1.3:3000"),
        ("web2", "UP", 0, *OK, 0, "10.111.1.4:3000"),
    ],
    # web2's container has stopped, yet HAProxy still has it UP, with 4 sessions: a check
    # is running ('* ') and the code of a check in progress reads 0.
    "show_stat_web1_live_web2_up_stopped.csv": [
        ("web1", "UP", 0, *OK, 1, "10.111.1.3:3000"),
        ("web2", "UP", 4, "* L7OK", "0", "Layer7 check passed", 7, "10.111.1.4:3000"),
    ],
    "show_stat_web1_up_stopped_web2_down.csv": [
        ("web1", "UP", 0, "* L7OK", "0", "Layer7 check passed", 6, "10.111.1.3:3000"),
        ("web2", "DOWN", 4, "L4TOUT", "", "Layer4 timeout", 0, "10.111.1.4:3000"),
    ],
}


@pytest.mark.parametrize(("name", "rows"), SHOW_STAT_CASES.items(), ids=SHOW_STAT_CASES)
def test_parse_show_stat_recorded(name: str, rows: list[tuple[object, ...]]) -> None:
    servers = haproxy.parse_show_stat(fixture(name))
    without_counters = {slot: dataclasses.replace(stat, requests=0, errors=0, retried=0,
                                                  redispatched=0, check_failures=0)
                        for slot, stat in servers.items()}
    assert without_counters == {row[0]: ServerStat(*row) for row in rows}  # type: ignore[arg-type]
    assert list(servers) == [row[0] for row in rows]


def test_show_stat_counts_requests_and_failed_ones() -> None:
    servers = haproxy.parse_show_stat(fixture("show_stat_live_web2.csv"))
    assert (servers["web2"].requests, servers["web2"].errors) == (1, 0)
    header = "# pxname,svname,status,scur,req_tot,hrsp_2xx,hrsp_5xx,econ,eresp\n"
    text = header + "webapp,web1,UP,0,120,100,15,3,2\nwebapp,web2,UP,0,,7,1,0,0\n"
    servers = haproxy.parse_show_stat(text)
    assert (servers["web1"].requests, servers["web1"].errors) == (120, 20)
    # No req_tot (an older HAProxy): the responses are counted instead.
    assert (servers["web2"].requests, servers["web2"].errors) == (8, 1)


def test_show_stat_counts_the_attempts_haproxy_retried_elsewhere() -> None:
    servers = haproxy.parse_show_stat(fixture("show_stat_web2_closes_half_web1_fallback.csv"))
    # Each GET web2 closed unanswered: one retry and one redispatch of the same attempt, in
    # neither req_tot nor eresp; web1's fallback line answered it.
    assert (servers["web2"].requests, servers["web2"].errors) == (145, 0)
    assert (servers["web2"].retried, servers["web2"].redispatched) == (144, 144)
    assert servers["web1-fallback"].requests == 144
    assert (servers["web1"].retried, servers["web1"].redispatched) == (0, 0)


def stat_with(requests: int, errors: int, retried: int = 0, redispatched: int = 0) -> ServerStat:
    return ServerStat("web1", "UP", 0, "L7OK", "200", "", 0, "", requests, errors, retried,
                      redispatched)


def test_traffic_between_two_readings_and_after_a_counter_reset() -> None:
    assert haproxy.traffic_between(stat_with(100, 5), stat_with(160, 8)) == haproxy.Traffic(60, 3)
    assert haproxy.traffic_between(stat_with(100, 5), stat_with(40, 1)) == haproxy.Traffic(40, 1)
    assert haproxy.Traffic(0, 0).error_rate == 0.0
    # Attempts retried or redispatched elsewhere were given to it and failed.
    assert haproxy.traffic_between(stat_with(100, 5, 2, 2),
                                   stat_with(160, 8, 12, 2)) == haproxy.Traffic(70, 13)
    assert haproxy.Traffic(40, 10).describe() == "40 requests, 10 errors"


def test_the_error_rate_is_judged_against_the_old_slot_once_there_are_enough_requests() -> None:
    judge = haproxy.error_rate_failure
    # Too few requests yet: not judged, however bad.
    assert judge(haproxy.Traffic(19, 19), haproxy.Traffic(0, 0), 0.05, 20) is None
    assert judge(haproxy.Traffic(100, 5), haproxy.Traffic(0, 0), 0.05, 20) is None
    failure = judge(haproxy.Traffic(100, 50), haproxy.Traffic(300, 0), 0.05, 20)
    assert failure == ("50 of its 100 requests failed (50%; 0% on the old slot before the "
                       "switch, 5% allowed above it)")
    # An app that already failed 20% of its requests is judged against that.
    assert judge(haproxy.Traffic(100, 24), haproxy.Traffic(50, 10), 0.05, 20) is None
    assert judge(haproxy.Traffic(100, 26), haproxy.Traffic(50, 10), 0.05, 20) is not None
    # ... but not with too few requests before the switch to tell.
    assert judge(haproxy.Traffic(100, 24), haproxy.Traffic(5, 1), 0.05, 20) is not None
    assert judge(haproxy.Traffic(100, 100), haproxy.Traffic(0, 0), 1.0, 20) is None  # off


def test_every_recorded_show_stat_is_covered() -> None:
    assert sorted(p.name for p in FIXTURES.glob("show_stat_*.csv")) == sorted(SHOW_STAT_CASES)


def _rewrite_csv(text: str, transform: object) -> str:
    """The recorded answer with its rows passed through `transform` (header included)."""
    lines = [line for line in text.splitlines() if line.strip()]
    rows = list(csv.reader(io.StringIO("\n".join([lines[0][2:], *lines[1:]]))))
    rows = transform(rows)  # type: ignore[operator]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return "# " + out.getvalue() + "\n"


def test_parse_show_stat_reads_columns_by_name_not_position() -> None:
    text = fixture("show_stat_live_web2.csv")
    reversed_columns = _rewrite_csv(text, lambda rows: [row[::-1] for row in rows])
    assert reversed_columns.splitlines()[0].startswith("# ,h1_spliced_bytes_out,")
    assert haproxy.parse_show_stat(reversed_columns) == haproxy.parse_show_stat(text)


def test_parse_show_stat_skips_frontend_and_backend_rows() -> None:
    text = fixture("show_stat_live_web2.csv")

    def add_summary_rows(rows: list[list[str]]) -> list[list[str]]:
        header, web1, web2 = rows
        svname = header.index("svname")
        frontend, backend = list(web2), list(web2)
        frontend[svname], backend[svname] = "FRONTEND", "BACKEND"
        return [header, frontend, web1, web2, backend]

    servers = haproxy.parse_show_stat(_rewrite_csv(text, add_summary_rows))
    assert list(servers) == ["web1", "web2"]


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "\n",
        fixture("error_show_stat_no_such_proxy.txt"),  # recorded: show stat nosuch 4 -1
        fixture("error_show_servers_state_cant_find_backend.txt"),
        NO_SUCH_BACKEND,
        fixture("show_servers_state_live_web2.txt"),  # the wrong command's answer
        "pxname,svname,status\nwebapp,web1,UP\n",  # header without its '# '
    ],
    ids=["empty", "blank", "no-such-proxy", "cant-find-backend", "no-such-backend",
         "servers-state", "no-hash-header"],
)
def test_parse_show_stat_refuses_what_is_not_a_stat_table(answer: str) -> None:
    with pytest.raises(RuntimeApiError, match="unexpected `show stat` answer"):
        haproxy.parse_show_stat(answer)


def test_parse_show_stat_refuses_a_non_numeric_session_count() -> None:
    text = fixture("show_stat_live_web2.csv")

    def garble_scur(rows: list[list[str]]) -> list[list[str]]:
        scur = rows[0].index("scur")
        rows[1][scur] = "many"
        return rows

    with pytest.raises(RuntimeApiError, match="expected a number from HAProxy, got 'many'"):
        haproxy.parse_show_stat(_rewrite_csv(text, garble_scur))


def test_parse_show_stat_with_only_the_header_has_no_servers() -> None:
    header = fixture("show_stat_live_web2.csv").splitlines()[0]
    assert haproxy.parse_show_stat(header + "\n") == {}


# -- ServerStat properties ------------------------------------------------------------------

# status -> (is_up, takes_new_traffic, is_maint)
STATUS_CASES = {
    "UP": (True, True, False),
    "UP 1/2": (True, True, False),  # failed one check, still in rotation
    "UP 1/3": (True, True, False),
    "DOWN": (False, False, False),
    "DOWN 1/2": (False, False, False),  # passed one check, not in rotation yet
    "DRAIN": (True, False, False),
    "DRAIN (agent)": (True, False, False),
    "NOLB": (True, False, False),
    "MAINT": (False, False, True),
    "MAINT (resolution)": (False, False, True),
    "MAINT (via webapp/web1)": (False, False, True),
    "no check": (False, False, False),
    "": (False, False, False),
}


@pytest.mark.parametrize(("status", "expected"), STATUS_CASES.items(), ids=repr)
def test_server_stat_status_properties(status: str, expected: tuple[bool, bool, bool]) -> None:
    server = stat(status=status)
    assert (server.is_up, server.takes_new_traffic, server.is_maint) == expected


@pytest.mark.parametrize(("status", "failing"), [
    ("UP", False),
    ("UP 1/3", True),  # up, one failed check on its way to DOWN
    ("UP 2/3", True),
    ("DOWN", True),
    ("DOWN 1/2", True),  # down, one passed check on its way up
    ("DRAIN", False),
    ("MAINT", False),
    ("no check", False),
])
def test_server_stat_failing_checks(status: str, failing: bool) -> None:
    assert stat(status).failing_checks is failing


@pytest.mark.parametrize(
    ("check_status", "passed"),
    [
        ("L7OK", True),
        ("* L7OK", True),  # '* ': a check is running now; the last result stands
        ("L7STS", False),
        ("* L7STS", False),
        ("L4CON", False),
        ("L4TOUT", False),
        ("L7TOUT", False),
        ("INI", False),
        ("", False),
        ("L7OKC", False),
    ],
)
def test_server_stat_check_passed(check_status: str, passed: bool) -> None:
    assert stat(check_status=check_status).check_passed is passed


@pytest.mark.parametrize(
    ("check_status", "check_code", "check_desc", "summary"),
    [
        ("L7OK", "200", "Layer7 check passed", "L7OK 200 (Layer7 check passed)"),
        ("* L7OK", "200", "Layer7 check passed", "L7OK 200 (Layer7 check passed)"),
        ("L7STS", "503", "Layer7 wrong status", "L7STS 503 (Layer7 wrong status)"),
        ("L4CON", "", "Connection refused", "L4CON (Connection refused)"),
        ("L4TOUT", "", "", "L4TOUT"),
        ("", "", "", "no check yet"),
        ("* ", "", "", "no check yet"),
    ],
)
def test_server_stat_check_summary(check_status: str, check_code: str, check_desc: str,
                                   summary: str) -> None:
    assert stat(check_status=check_status, check_code=check_code,
                check_desc=check_desc).check_summary == summary


def test_check_summary_of_recorded_servers() -> None:
    servers = haproxy.parse_show_stat(fixture("show_stat_live_web2.csv"))
    assert servers["web2"].check_summary == "L7OK 200 (Layer7 check passed)"
    assert servers["web2"].check_passed
    assert servers["web1"].check_summary == "no check yet"
    assert not servers["web1"].check_passed


# -- show servers state ---------------------------------------------------------------------

MAINT_UNRESOLVED = ADMIN_FORCED_MAINT | ADMIN_RESOLUTION_MAINT

# Recorded `show servers state webapp`, as
# (srv_name, srv_addr, srv_op_state, srv_admin_state, srv_fqdn) per server.
SERVERS_STATE_CASES: dict[str, list[tuple[str, str, int, int, str]]] = {
    # HAProxy on the server's network: fixed loopback addresses, no name to resolve; web1
    # down (no container), web2 forced into maint.
    "show_servers_state_loopback_slots.txt": [
        ("web1", "127.0.0.1", 0, 0, "-"),
        ("web2", "127.0.0.1", 0, 1, "-"),
    ],
    "show_servers_state_live_web2.txt": [
        ("web1", "-", 0, MAINT_UNRESOLVED, "webapp-web1"),
        ("web2", "10.111.1.4", 2, 0, "webapp-web2"),
    ],
    "show_servers_state_live_web1.txt": [
        ("web1", "10.111.1.3", 2, 0, "webapp-web1"),
        ("web2", "-", 0, MAINT_UNRESOLVED, "webapp-web2"),
    ],
    "show_servers_state_live_web1_web2_removed.txt": [
        ("web1", "10.111.1.3", 2, 0, "webapp-web1"),
        ("web2", "-", 0, MAINT_UNRESOLVED, "webapp-web2"),
    ],
    "show_servers_state_first_deploy_drain.txt": [
        ("web1", "10.111.1.3", 2, ADMIN_FORCED_DRAIN, "webapp-web1"),
        ("web2", "-", 0, ADMIN_RESOLUTION_MAINT, "webapp-web2"),
    ],
    "show_servers_state_web1_maint_stopped_web2_live.txt": [
        ("web1", "10.111.1.3", 0, ADMIN_FORCED_MAINT, "webapp-web1"),
        ("web2", "10.111.1.4", 2, 0, "webapp-web2"),
    ],
    "show_servers_state_web1_down_starting_web2_live.txt": [
        ("web1", "10.111.1.3", 0, ADMIN_FORCED_DRAIN, "webapp-web1"),
        ("web2", "10.111.1.4", 2, 0, "webapp-web2"),
    ],
    "show_servers_state_web1_live_web2_drain.txt": [
        ("web1", "10.111.1.3", 2, 0, "webapp-web1"),
        ("web2", "10.111.1.4", 2, ADMIN_FORCED_DRAIN, "webapp-web2"),
    ],
    "show_servers_state_both_up_web1_newer.txt": [
        ("web1", "10.111.1.3", 2, 0, "webapp-web1"),
        ("web2", "10.111.1.4", 2, ADMIN_FORCED_DRAIN, "webapp-web2"),
    ],
    "show_servers_state_both_up_web2_newer.txt": [
        ("web1", "10.111.1.3", 2, ADMIN_FORCED_DRAIN, "webapp-web1"),
        ("web2", "10.111.1.4", 2, 0, "webapp-web2"),
    ],
    "show_servers_state_web1_live_web2_up_stopped.txt": [
        ("web1", "10.111.1.3", 2, 0, "webapp-web1"),
        ("web2", "10.111.1.4", 2, 0, "webapp-web2"),
    ],
    "show_servers_state_web1_up_stopped_web2_down.txt": [
        ("web1", "10.111.1.3", 2, 0, "webapp-web1"),
        ("web2", "10.111.1.4", 0, 0, "webapp-web2"),
    ],
}


@pytest.mark.parametrize(("name", "expected"), SERVERS_STATE_CASES.items(),
                         ids=SERVERS_STATE_CASES)
def test_parse_servers_state_recorded(name: str,
                                     expected: list[tuple[str, str, int, int, str]]) -> None:
    servers = haproxy.parse_servers_state(fixture(name))
    assert servers == {row[0]: ServerState(*row) for row in expected}
    assert list(servers) == ["web1", "web2"]


def test_every_recorded_servers_state_is_covered() -> None:
    recorded = sorted(p.name for p in FIXTURES.glob("show_servers_state_*.txt"))
    assert recorded == sorted(SERVERS_STATE_CASES)


def test_admin_state_bits_of_recorded_servers() -> None:
    servers = haproxy.parse_servers_state(fixture("show_servers_state_live_web2.txt"))
    web1 = servers["web1"].admin_state
    assert web1 & ADMIN_FORCED_MAINT and web1 & ADMIN_RESOLUTION_MAINT
    assert not web1 & ADMIN_FORCED_DRAIN
    assert servers["web2"].admin_state == 0


@pytest.mark.parametrize(
    ("address", "resolved"),
    [("-", None), ("", None), ("10.111.1.4", "10.111.1.4"), ("fd00::4", "fd00::4")],
)
def test_resolved_address(address: str, resolved: str | None) -> None:
    assert ServerState("web1", address, 2, 0, "webapp-web1").resolved_address == resolved


def test_resolved_address_of_recorded_servers() -> None:
    servers = haproxy.parse_servers_state(fixture("show_servers_state_live_web2.txt"))
    assert servers["web1"].resolved_address is None
    assert servers["web2"].resolved_address == "10.111.1.4"


@pytest.mark.parametrize(
    "answer",
    [
        "",
        fixture("error_show_servers_state_cant_find_backend.txt"),  # recorded
        NO_SUCH_BACKEND,
        "1\n",  # version line only
        "2\n# be_id be_name srv_id srv_name\n",  # a format version the kit does not know
        "1\nbe_id be_name srv_id srv_name\n",  # header without its '# '
        fixture("show_stat_live_web2.csv"),  # the wrong command's answer
    ],
    ids=["empty", "cant-find-backend", "no-such-backend", "version-only", "version-2",
         "no-hash-header", "show-stat"],
)
def test_parse_servers_state_refuses_what_is_not_a_state_table(answer: str) -> None:
    with pytest.raises(RuntimeApiError, match="unexpected `show servers state` answer"):
        haproxy.parse_servers_state(answer)


def test_parse_servers_state_with_no_servers() -> None:
    header = "\n".join(fixture("show_servers_state_live_web2.txt").splitlines()[:2])
    assert haproxy.parse_servers_state(header + "\n") == {}


def test_parse_servers_state_refuses_a_non_numeric_state() -> None:
    text = fixture("show_servers_state_live_web2.txt").replace(
        "3 webapp 2 web2 10.111.1.4 2 0", "3 webapp 2 web2 10.111.1.4 running 0")
    with pytest.raises(RuntimeApiError, match="expected a number from HAProxy"):
        haproxy.parse_servers_state(text)


# -- show info ------------------------------------------------------------------------------

def test_parse_info_recorded() -> None:
    info = haproxy.parse_info(fixture("show_info_2.6.12.txt"))
    assert info["Name"] == "HAProxy"
    assert info["Version"] == "2.6.12-1+deb12u4"
    assert info["Release_date"] == "2026/10/17"
    assert info["Pid"] == "8"
    assert info["Unstoppable Jobs"] == "1"  # keys may contain spaces
    assert info["Build info"] == "2.6.12-1+deb12u4"
    assert info["Tainted"] == "0"
    assert len(info) == 69  # every non-blank line of the answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("\n\n", {}),
        ("Name: HAProxy\n", {"Name": "HAProxy"}),
        ("Key:value", {"Key": "value"}),
        ("  Key :  spaced value  \n", {"Key": "spaced value"}),
        ("Release_date: 2026/10/17 12:00\n", {"Release_date": "2026/10/17 12:00"}),
        ("Empty:\n", {"Empty": ""}),
        ("No such proxy.\n", {}),
        ("Pid: 8\nPid: 9\n", {"Pid": "9"}),
    ],
)
def test_parse_info(text: str, expected: dict[str, str]) -> None:
    assert haproxy.parse_info(text) == expected


# -- errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "answer",
    [
        NO_SUCH_SERVER,
        NO_SUCH_BACKEND,
        REQUIRE_BACKEND_SERVER,
        fixture("error_show_servers_state_cant_find_backend.txt"),  # recorded
        # The other markers, in answers of the same shape.
        "Permission denied\n",
        "Unknown command: 'shw stat'\n",
        "Invalid server state value 'ready2'.\n",
        "Unexpected end of command.\n",
        "\n" + NO_SUCH_SERVER,  # two commands in one line: the second one failed
        "\n\n" + REQUIRE_BACKEND_SERVER + "\n",
    ],
    ids=["no-such-server", "no-such-backend", "require-backend-server", "cant-find-backend",
         "permission-denied", "unknown-command", "invalid", "unexpected",
         "second-command-failed", "third-command-failed"],
)
def test_raise_for_api_error_refusals(answer: str) -> None:
    command = "set server webapp/web3 state drain"
    with pytest.raises(RuntimeApiError) as raised:
        haproxy.raise_for_api_error(command, answer)
    message = str(raised.value)
    assert message.startswith(f"HAProxy refused `{command}`: ")
    assert message.endswith(answer.strip())


def test_raise_for_api_error_no_such_proxy() -> None:
    with pytest.raises(RuntimeApiError):
        haproxy.raise_for_api_error(haproxy.command_show_stat("nosuch"),
                                    fixture("error_show_stat_no_such_proxy.txt"))


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "\n",
        "\n\n",  # two successful `set server` commands
        fixture("show_stat_live_web2.csv"),
        fixture("show_stat_first_deploy_drain.csv"),
        fixture("show_servers_state_live_web2.txt"),
        fixture("show_info_2.6.12.txt"),
    ],
    ids=["empty", "newline", "two-empty-answers", "show-stat", "show-stat-drain",
         "servers-state", "show-info"],
)
def test_raise_for_api_error_accepts_normal_answers(answer: str) -> None:
    haproxy.raise_for_api_error("show stat webapp 4 -1", answer)


# -- command builders -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (haproxy.command_set_state("webapp", "web1", AdminState.READY),
         "set server webapp/web1 state ready"),
        (haproxy.command_set_state("webapp", "web2", AdminState.DRAIN),
         "set server webapp/web2 state drain"),
        (haproxy.command_set_state("shop", "web1", AdminState.MAINT),
         "set server shop/web1 state maint"),
        (haproxy.command_force_health_down("webapp", "web2"),
         "set server webapp/web2 health down"),
        (haproxy.command_show_stat("webapp"), "show stat webapp 4 -1"),
        (haproxy.command_show_servers_state("webapp"), "show servers state webapp"),
        (haproxy.join_commands("show info"), "show info"),
        (haproxy.join_commands(
            haproxy.command_set_state("webapp", "web1", AdminState.DRAIN),
            haproxy.command_force_health_down("webapp", "web1"),
        ), "set server webapp/web1 state drain; set server webapp/web1 health down"),
    ],
)
def test_command_builders(command: str, expected: str) -> None:
    assert command == expected


def test_admin_states_are_the_runtime_api_words() -> None:
    assert [state.value for state in AdminState] == ["ready", "drain", "maint"]


# -- require_servers ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["show_stat_live_web2.csv", "show_stat_first_deploy_drain.csv"])
def test_require_servers_accepts_recorded_backends(name: str) -> None:
    haproxy.require_servers(haproxy.parse_show_stat(fixture(name)), "webapp", ("web1", "web2"))


def test_require_servers_accepts_recorded_servers_state() -> None:
    states = haproxy.parse_servers_state(fixture("show_servers_state_live_web2.txt"))
    haproxy.require_servers(states, "webapp", ("web1", "web2"))


@pytest.mark.parametrize(
    ("present", "missing"),
    [
        (["web1"], "web2"),
        (["web2"], "web1"),
        ([], "web1, web2"),
        (["app1", "app2"], "web1, web2"),
    ],
)
def test_require_servers_names_the_missing_ones(present: list[str], missing: str) -> None:
    servers = {name: stat() for name in present}
    with pytest.raises(RuntimeApiError) as raised:
        haproxy.require_servers(servers, "webapp", ("web1", "web2"))
    assert str(raised.value) == (
        f"HAProxy's backend 'webapp' has no server {missing}: its config is not the kit's; "
        "run `fab up` to install it"
    )


def test_show_stat_and_servers_state_in_one_line_are_split_where_the_second_begins() -> None:
    answer = (FIXTURES / "show_stat_and_servers_state_live_web2.txt").read_text()
    stat, state = haproxy.split_stat_and_state(answer)
    assert haproxy.command_show_stat_and_state("webapp") == (
        "show stat webapp 4 -1; show servers state webapp")
    assert set(haproxy.parse_show_stat(stat)) == {"web1", "web2"}
    assert haproxy.parse_show_stat(stat)["web2"].status == "UP"
    states = haproxy.parse_servers_state(state)
    assert states["web2"].resolved_address == "127.0.0.1" and states["web1"].admin_state == 1
    with pytest.raises(haproxy.RuntimeApiError, match="unexpected answer"):
        haproxy.split_stat_and_state(stat)


def test_an_empty_maintenance_map_is_an_answer_and_an_empty_show_stat_is_not() -> None:
    # `show map` of an empty map (maintenance off) answers nothing at all: status read that
    # as a lost answer and reported maintenance as unknown.
    assert not haproxy.always_answers("show map /usr/local/etc/haproxy/maintenance.map")
    assert haproxy.always_answers("show stat")
    assert haproxy.always_answers("show servers state webapp_slots")
    assert not haproxy.always_answers("set server b/web1 state ready")
