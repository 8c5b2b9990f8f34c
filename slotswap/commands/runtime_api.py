"""HAProxy's runtime API: the commands the kit sends and parsers of what comes back.

Pure functions only; `slotswap.remote.server` carries the text over the SSH connection. Formats are
those of HAProxy 2.6 to 3.2 (recorded outputs in tests/unit/fixtures).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

# Answers of the runtime API that mean the command was refused.
API_ERRORS = (
    "No such backend",
    "No such proxy",
    "No such server",
    "Require 'backend/server'",
    "Permission denied",
    "Unknown command",
    "Unexpected",
    "Invalid",
    "Can't ",  # Can't find (a backend), and the TLS commands' Can't update / commit / abort
)


class RuntimeApiError(RuntimeError):
    """HAProxy refused a runtime API command or answered something unparsable."""


class AdminState(StrEnum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


@dataclass(frozen=True)
class ServerStat:
    """One backend server as `show stat` reports it."""

    name: str
    status: str  # UP, UP 1/2, DOWN, DOWN 1/2, DRAIN, NOLB, MAINT, MAINT (resolution), no check
    sessions: int  # scur: client sessions on it now
    check_status: str  # L7OK, L4CON, L7STS, INI, ... ('' when no check ran)
    check_code: str  # HTTP status of the last L7 check, if any
    check_desc: str
    last_change: int  # seconds since its status last changed
    address: str  # ip:port or '' while its name does not resolve
    # Counters since HAProxy started (compare two readings): HTTP requests sent to it, and
    # those that failed: answered 5xx, or a connection or response error.
    requests: int = 0
    errors: int = 0
    # Attempts HAProxy took away from it and sent again (wretr: retried, wredis:
    # redispatched to another line): neither is in `requests` or `errors`, and one attempt
    # may count in both (a GET closed unanswered does, recorded).
    retried: int = 0
    redispatched: int = 0
    check_failures: int = 0  # chkfail: checks failed while it was up (the watch compares)

    @property
    def is_up(self) -> bool:
        """Up by health checks (maybe draining), which is all `ready` needs to route to it."""
        return self.status.startswith(("UP", "DRAIN", "NOLB"))

    @property
    def takes_new_traffic(self) -> bool:
        return self.status == "UP" or self.status.startswith("UP ")

    @property
    def failing_checks(self) -> bool:
        """Down, or still up with a failed check on its way down (`UP 1/3`)."""
        return self.status.startswith(("DOWN", "UP "))

    @property
    def is_maint(self) -> bool:
        return self.status.startswith("MAINT")

    @property
    def check_passed(self) -> bool:
        return self.check_status.lstrip("* ") == "L7OK"

    @property
    def check_running(self) -> bool:
        """A check is under way: HAProxy reports the last one's status with a `* ` prefix,
        and its code may already be reset (`* L7STS` with code 0)."""
        return self.check_status.startswith("* ")

    @property
    def check_summary(self) -> str:
        status = self.check_status.lstrip("* ") or "no check yet"
        # Code 0 is no HTTP status: a reading taken while the next check ran.
        code = f" {self.check_code}" if self.check_code not in ("", "0") else ""
        desc = f" ({self.check_desc})" if self.check_desc else ""
        return f"{status}{code}{desc}"


@dataclass(frozen=True)
class ServerState:
    """One backend server as `show servers state` reports it."""

    name: str
    address: str  # '-' or '' when unresolved
    op_state: int  # 0 stopped, 1 starting, 2 running, 3 stopping
    admin_state: int  # bit mask, see ADMIN_* below
    fqdn: str

    @property
    def resolved_address(self) -> str | None:
        return None if self.address in ("", "-") else self.address


ADMIN_FORCED_MAINT = 0x01
ADMIN_FORCED_DRAIN = 0x08
ADMIN_RESOLUTION_MAINT = 0x20


def fallback_name(slot: str) -> str:
    """The slot's second server line, after both slots' (templates/haproxy.cfg.j2): ready
    only while the slot is the old one in a deploy's watch, so that a request the new slot
    cannot take (a GET it closed unanswered, a refused connection, or any while it is DOWN
    or out of rotation) has somewhere to go. A project's older template may lack it."""
    return f"{slot}-fallback"


def command_set_state(backend: str, server: str, state: AdminState) -> str:
    return f"set server {backend}/{server} state {state.value}"


def command_force_health_down(backend: str, server: str) -> str:
    """Health checks must pass `rise` times in a row from here: no stale UP survives."""
    return f"set server {backend}/{server} health down"


def command_set_address(backend: str, server: str, address: str, port: int,
                        check_port: int) -> str:
    """Where HAProxy connects to the server and where it checks it. The check port is always
    set: an earlier one (from the server-state file, after healthcheck.port changed) must
    not stay."""
    return join_commands(f"set server {backend}/{server} addr {address} port {port}",
                         f"set server {backend}/{server} check-port {check_port}")


def command_show_stat(backend: str) -> str:
    return f"show stat {backend} 4 -1"  # type 4: servers only, all of them


def command_show_servers_state(backend: str) -> str:
    return f"show servers state {backend}"


def command_show_stat_and_state(backend: str) -> str:
    """Both views of the backend's servers in one line (one round trip): split the answer
    with split_stat_and_state."""
    return join_commands(command_show_stat(backend), command_show_servers_state(backend))


def split_stat_and_state(text: str) -> tuple[str, str]:
    """Pure: the answer to command_show_stat_and_state as (`show stat` CSV, `show servers
    state`): the second begins at its format-version line `1` followed by its `# ` header."""
    at = text.find("\n1\n# ")
    if at < 0:
        raise RuntimeApiError(f"unexpected answer to `show stat; show servers state`: "
                              f"{text[:200]!r}")
    return text[:at + 1], text[at + 1:]


def join_commands(*commands: str) -> str:
    """Several commands in one line: HAProxy runs them in order in the same session."""
    return "; ".join(commands)


def always_answers(command: str) -> bool:
    """Pure: an empty answer to this command means the answer was lost. Every `show`
    answers something (a header at least) but `show map`, whose answer for an empty map,
    maintenance off, is nothing at all (an unknown map answers an error line)."""
    return command.startswith("show ") and not command.startswith("show map ")


def refusal(command: str, answer: str) -> RuntimeApiError:
    """The error of HAProxy refusing `command`, its answer in one line: refusals often take
    two ("No ongoing transaction! !" then "Can't commit ...!"), and an error is said in one."""
    said = "; ".join(line.strip() for line in answer.splitlines() if line.strip())
    return RuntimeApiError(f"HAProxy refused `{command}`: {said}")


def raise_for_api_error(command: str, answer: str) -> None:
    text = answer.strip()
    if any(text.startswith(marker) for marker in API_ERRORS) or any(
        line.startswith(API_ERRORS) for line in text.splitlines()
    ):
        raise refusal(command, text)


def parse_stat_rows(text: str) -> list[dict[str, str]]:
    """Every row of `show stat` CSV (frontends, backends, servers), by header name."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise RuntimeApiError(f"unexpected `show stat` answer: {text[:200]!r}")
    return list(csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]]))))


def parse_show_stat(text: str) -> dict[str, ServerStat]:
    """Servers of `show stat` CSV by name, columns read by header name (they move between
    versions). Frontend and backend summary rows are skipped."""
    return servers_of(parse_stat_rows(text))


def parse_show_stat_by_backend(text: str) -> dict[str, dict[str, ServerStat]]:
    """Servers of an unscoped `show stat` (every proxy), by backend, then by name."""
    rows: dict[str, list[dict[str, str]]] = {}
    for row in parse_stat_rows(text):
        rows.setdefault(row.get("pxname", ""), []).append(row)
    return {backend: servers_of(found) for backend, found in rows.items()}


def servers_of(rows: list[dict[str, str]]) -> dict[str, ServerStat]:
    """Pure: the server rows of `show stat` CSV rows, by name."""
    servers = {}
    for row in rows:
        name = row.get("svname", "")
        if name in ("FRONTEND", "BACKEND", ""):
            continue
        servers[name] = ServerStat(
            name=name,
            status=row.get("status", ""),
            sessions=_int(row.get("scur")),
            check_status=row.get("check_status", "") or "",
            check_code=row.get("check_code", "") or "",
            check_desc=row.get("check_desc", "") or "",
            last_change=_int(row.get("lastchg")),
            address=row.get("addr", "") or "",
            requests=_int(row.get("req_tot")) or sum(
                _int(row.get(f"hrsp_{kind}")) for kind in RESPONSE_KINDS),
            errors=sum(_int(row.get(name)) for name in ("hrsp_5xx", "econ", "eresp")),
            retried=_int(row.get("wretr")),
            redispatched=_int(row.get("wredis")),
            check_failures=_int(row.get("chkfail")),
        )
    return servers


RESPONSE_KINDS = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")


@dataclass(frozen=True)
class Traffic:
    """What a slot did between two `show stat` readings."""

    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return min(1.0, self.errors / self.requests) if self.requests else 0.0

    def describe(self) -> str:
        return f"{self.requests} requests, {self.errors} errors"


def traffic_between(before: ServerStat, after: ServerStat,
                    fallback: tuple[ServerStat, ServerStat] | None = None) -> Traffic:
    """Pure: the counters' growth. A reset (a new HAProxy process) starts from zero.

    A request the line did not answer and HAProxy sent elsewhere (retried or redispatched:
    a GET closed unanswered, a refused connection) is one it was given and failed, although
    the client got an answer from another line; so is any request that `fallback` (the
    other slot's fallback line, before and after) served meanwhile: it takes only what this
    line cannot. These counters mostly count the same requests (a GET closed unanswered adds
    one to wretr, wredis and the fallback line's requests alike; one refused while the slot
    is DOWN only to the fallback line's): the largest of the three is taken, never their sum,
    so that no failed request counts twice."""
    unanswered = max(_growth(before.retried, after.retried),
                     _growth(before.redispatched, after.redispatched),
                     _growth(fallback[0].requests, fallback[1].requests) if fallback else 0)
    requests, errors = after.requests - before.requests, after.errors - before.errors
    if requests < 0 or errors < 0:
        requests, errors = after.requests, after.errors
    return Traffic(requests + unanswered, errors + unanswered)


def _growth(before: int, after: int) -> int:
    return after - before if after >= before else after


def error_rate_failure(new: Traffic, old_before: Traffic, max_rate: float,
                       min_requests: int) -> str | None:
    """Pure: why the new slot's real traffic fails it, or None. It is judged once it has had
    `min_requests`; it fails when its share of errors exceeds the old slot's share before the
    switch (when the old slot had enough requests to have one) by more than `max_rate`."""
    if new.requests < min_requests or max_rate >= 1:
        return None
    baseline = old_before.error_rate if old_before.requests >= min_requests else 0.0
    if new.error_rate <= baseline + max_rate:
        return None
    return (f"{new.errors} of its {new.requests} requests failed ({new.error_rate:.0%}; "
            f"{baseline:.0%} on the old slot before the switch, {max_rate:.0%} allowed above "
            "it)")


def parse_servers_state(text: str) -> dict[str, ServerState]:
    """`show servers state <backend>`: line 1 the format version, line 2 a '# ' header."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("# "):
        raise RuntimeApiError(f"unexpected `show servers state` answer: {text[:200]!r}")
    header = lines[1][2:].split()
    servers = {}
    for line in lines[2:]:
        row = dict(zip(header, line.split(), strict=False))
        servers[row["srv_name"]] = ServerState(
            name=row["srv_name"],
            address=row.get("srv_addr", "-"),
            op_state=_int(row.get("srv_op_state")),
            admin_state=_int(row.get("srv_admin_state")),
            fqdn=row.get("srv_fqdn", "-"),
        )
    return servers


# What `set server ... state X` does to the admin bits (HAProxy's srv_adm_set_ready, _drain,
# _maint): (bits cleared, bit set). `disabled` in the config (0x04) is left as a mark.
ADMIN_CHANGE = {
    AdminState.READY: (ADMIN_FORCED_MAINT | ADMIN_FORCED_DRAIN, 0),
    AdminState.DRAIN: (ADMIN_FORCED_MAINT, ADMIN_FORCED_DRAIN),
    AdminState.MAINT: (ADMIN_FORCED_DRAIN, ADMIN_FORCED_MAINT),
}


def servers_state_with(text: str, backend: str, states: Mapping[str, AdminState]) -> str:
    """Pure: a `show servers state` answer (every backend's, or one's) as it would read once
    `set server <backend>/<name> state <state>` ran for each of `states`: the server-state
    file a restarted HAProxy starts from, written before the line that makes it so. Every
    other column and line is kept as HAProxy wrote it. Raises RuntimeApiError when a named
    server is not in the answer."""
    lines = text.splitlines()
    header = _state_header(text)
    be, name, admin = (header.index(c) for c in ("be_name", "srv_name", "srv_admin_state"))
    found, out = set(), []
    for line in lines:
        columns = line.split(" ")
        if (not line.startswith("#") and len(columns) > max(be, name, admin)
                and columns[be] == backend and columns[name] in states):
            cleared, added = ADMIN_CHANGE[states[columns[name]]]
            columns[admin] = str(int(columns[admin]) & ~cleared | added)
            found.add(columns[name])
            line = " ".join(columns)
        out.append(line)
    if missing := sorted(set(states) - found):
        raise RuntimeApiError(f"`show servers state` has no {', '.join(missing)} in "
                              f"backend {backend}")
    return "\n".join(out) + "\n"


def _state_header(text: str) -> list[str]:
    header = next((line[2:].split() for line in text.splitlines() if line.startswith("# ")),
                  [])
    if not {"be_name", "srv_name", "srv_admin_state", "srv_op_state"} <= set(header):
        raise RuntimeApiError(f"unexpected `show servers state` answer: {text[:200]!r}")
    return header


def server_state_in(text: str, backend: str, name: str) -> ServerState | None:
    """Pure: one server of one backend in a `show servers state` answer (every backend's,
    or one's); None when it is not there."""
    header = _state_header(text)
    for line in text.splitlines():
        row = dict(zip(header, line.split(), strict=False))
        if not line.startswith("#") and row.get("be_name") == backend \
                and row.get("srv_name") == name:
            return ServerState(name=name, address=row.get("srv_addr", "-"),
                               op_state=_int(row.get("srv_op_state")),
                               admin_state=_int(row.get("srv_admin_state")),
                               fqdn=row.get("srv_fqdn", "-"))
    return None


def parse_info(text: str) -> dict[str, str]:
    """`show info`: 'Key: value' lines."""
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def require_servers(servers: dict, backend: str, names: tuple[str, ...]) -> None:
    missing = [n for n in names if n not in servers]
    if missing:
        raise RuntimeApiError(
            f"HAProxy's backend {backend!r} has no server {', '.join(missing)}: its config is "
            "not the kit's; run `fab up` to install it"
        )


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError as error:
        raise RuntimeApiError(f"expected a number from HAProxy, got {value!r}") from error
