"""Which slot is live survives a restart of HAProxy (a reboot, a Docker engine restart, an OOM
kill Docker restarts, `up` starting a stopped HAProxy): the kit writes HAProxy's servers'
state to the file the config loads, ahead of each line that moves traffic and after its
other changes, and the local HAProxy binary, started again from the rendered config, serves
only the live slot although the other slot's container still runs."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotswap.commands import runtime_api as haproxy
from slotswap.config.layout import STATE_NAME, haproxy_dir
from slotswap.server.haproxy_state import (
    SlotNotUp,
    remember_slot_state,
    save_slot_state,
    save_slot_state_ahead,
)
from slotswap.server.swap_plan import (
    out_of_rotation_line,
    switch_back_line,
    switch_back_states,
    switch_line,
    switch_states,
)
from tests.unit.fake_server import BOTH_UP_STATE, FIXTURES, FakeServer, make_inventory
from tests.unit.test_fallback_routing import (
    HAPROXY_BINARY,
    App,
    api,
    free_ports,
    request,
    wait_for,
    write_local_config,
)


class LocalHAProxy(FakeServer):
    """The local HAProxy behind the ServerLike members the state code uses: its admin
    socket, and its folder (files written under haproxy_dir land in `folder`)."""

    def __init__(self, folder: Path, http_port: int, ports: dict[str, int]) -> None:
        inventory = make_inventory(folder, healthcheck={"path": "/health"},
                                   haproxy={"http_port": http_port,
                                            "slot_ports": [ports["web1"], ports["web2"]]})
        super().__init__(inventory=inventory)
        self.folder = folder
        self.http_port = http_port
        self.process: subprocess.Popen[bytes] | None = None
        write_local_config(folder, inventory)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [HAPROXY_BINARY, "-db", "-f", str(self.folder / "haproxy.cfg")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: (self.folder / "admin.sock").exists() and self.answers_api())

    def answers_api(self) -> bool:
        try:
            return "Pid" in api(self.folder / "admin.sock", "show info")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            (self.folder / "admin.sock").unlink(missing_ok=True)

    def runtime_api(self, command: str) -> str:
        if not command.startswith("show"):
            self.sent.append(command)
        return api(self.folder / "admin.sock", command)

    def write_file(self, path: str, text: str, mode: int = 0o644) -> None:
        directory = haproxy_dir(self.inventory)
        assert path.startswith(f"{directory}/"), path
        (self.folder / path.removeprefix(f"{directory}/")).write_text(text)

    def stats(self) -> dict[str, haproxy.ServerStat]:
        return haproxy.parse_show_stat(self.runtime_api("show stat webapp 4 -1"))


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalHAProxy]:
    if not Path(HAPROXY_BINARY).exists():
        pytest.fail(f"{HAPROXY_BINARY} is needed (apt-get install haproxy)")
    http_port, web1, web2 = free_ports(3)
    server = LocalHAProxy(tmp_path, http_port, {"web1": web1, "web2": web2})
    apps = [App(web1, "v1"), App(web2, "v2")]
    try:
        yield server
    finally:
        server.stop()
        for app in apps:
            app.stop()


def served(server: LocalHAProxy, count: int = 20) -> Counter[str]:
    return Counter(request(server.http_port, "GET")[1].strip() for _ in range(count))


def both_up(server: LocalHAProxy) -> bool:
    stats = server.stats()
    return all(stats[slot].check_passed for slot in ("web1", "web2"))


def test_a_restarted_haproxy_serves_the_slot_the_kit_last_put_in_rotation(
        local: LocalHAProxy) -> None:
    local.start()
    wait_for(lambda: both_up(local))
    # v1 deployed in web1: web2 out of rotation, its container (here: v2's app) running.
    local.runtime_api(out_of_rotation_line("webapp", "web2", fallback=True))
    save_slot_state(local, local.inventory)
    assert served(local) == {"version=v1": 20}
    # The kit's switch to web2, the old slot draining with its fallback line ready.
    local.runtime_api(switch_line("webapp", "web2", "web1", fallback=True))
    remember_slot_state(local, local.inventory, progress=lambda line: None)
    assert served(local) == {"version=v2": 20}

    local.stop()  # an engine restart, an OOM kill: both slots' containers still run
    local.start()
    wait_for(lambda: local.stats()["web2"].check_passed)
    stats = local.stats()
    assert stats["web2"].status.startswith("UP")
    assert stats["web1"].status == "DRAIN"
    assert served(local) == {"version=v2": 20}
    # The old slot's fallback line as the watch left it: ready, behind the live slot.
    assert not stats[haproxy.fallback_name("web1")].status.startswith("MAINT")

    # The watch closes: the old slot out. A restart keeps it out.
    local.runtime_api(out_of_rotation_line("webapp", "web1", fallback=True))
    remember_slot_state(local, local.inventory, progress=lambda line: None)
    local.stop()
    local.start()
    wait_for(lambda: local.stats()["web2"].check_passed)
    assert local.stats()["web1"].status == "MAINT"
    assert served(local) == {"version=v2": 20}


def restarted(server: LocalHAProxy, live: str) -> dict[str, haproxy.ServerStat]:
    server.stop()  # an engine restart, an OOM kill: both slots' containers still run
    server.start()
    wait_for(lambda: server.stats()[live].check_passed)
    return server.stats()


def test_a_restart_after_the_state_is_written_ahead_of_a_line_starts_where_the_line_goes(
        local: LocalHAProxy) -> None:
    """The file is written before the line that moves traffic (the switch, the switch back):
    a restart between the two starts HAProxy where the line goes, never where it comes from
    (the real binary reads the file written from its own answer, only the admin bits
    changed)."""
    fallback = haproxy.fallback_name("web1")
    local.start()
    wait_for(lambda: both_up(local))
    local.runtime_api(out_of_rotation_line("webapp", "web2", fallback=True))
    save_slot_state(local, local.inventory)
    # The new slot as a deploy leaves it before the switch: draining, its checks passed.
    local.runtime_api("set server webapp/web2 state drain")
    wait_for(lambda: local.stats()["web2"].status == "DRAIN")
    save_slot_state_ahead(local, local.inventory, "webapp",
                          switch_states("web2", "web1", fallback=True), up="web2")
    assert served(local) == {"version=v1": 20}  # written ahead: nothing moved yet

    stats = restarted(local, "web2")
    assert stats["web2"].status.startswith("UP") and stats["web1"].status == "DRAIN"
    assert not stats[fallback].status.startswith("MAINT")
    assert served(local) == {"version=v2": 20}

    save_slot_state_ahead(local, local.inventory, "webapp",
                          switch_back_states("web2", "web1", fallback=True))
    stats = restarted(local, "web1")
    assert stats["web2"].status == "MAINT" and stats[fallback].status == "MAINT"
    assert served(local) == {"version=v1": 20}


def test_a_slot_haproxy_no_longer_counts_up_is_not_written_ahead(tmp_path: Path) -> None:
    """Restarted between the health checks and the switch (from an older file), HAProxy
    counts the new slot down: the switch would send its traffic to the old slot's fallback
    line while the kit says the new version serves. Nothing is written; the swap stops."""
    recorded = (FIXTURES / "show_servers_state_live_web1.txt").read_text()
    server = FakeServer(api={"show servers state": recorded})
    with pytest.raises(SlotNotUp, match="no longer counts web2 up"):
        save_slot_state_ahead(server, server.inventory, "webapp",
                              switch_states("web2", "web1", fallback=False), up="web2")
    assert server.files == {}


def test_the_state_written_ahead_changes_only_the_admin_bits_a_line_would() -> None:
    """HAProxy's srv_adm_set_ready/_drain/_maint: ready clears forced maint and drain, drain
    sets drain and clears maint, maint the reverse; `disabled` in the config (0x04) stays."""
    text = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
            "srv_uweight\n"
            "3 webapp 1 web1 127.0.0.1 2 0 1\n"
            "3 webapp 2 web2 127.0.0.1 2 9 1\n"
            "3 webapp 3 web1-fallback 127.0.0.1 0 5 1\n"
            "4 other 1 web1 10.0.0.1 2 0 1\n")
    moved = haproxy.servers_state_with(text, "webapp", {
        "web1-fallback": haproxy.AdminState.READY, "web2": haproxy.AdminState.READY,
        "web1": haproxy.AdminState.DRAIN})
    assert moved.splitlines() == [
        "1", text.splitlines()[1],
        "3 webapp 1 web1 127.0.0.1 2 8 1",
        "3 webapp 2 web2 127.0.0.1 2 0 1",
        "3 webapp 3 web1-fallback 127.0.0.1 0 4 1",
        "4 other 1 web1 10.0.0.1 2 0 1"]
    back = haproxy.servers_state_with(moved, "webapp", {"web2": haproxy.AdminState.MAINT})
    assert back.splitlines()[3] == "3 webapp 2 web2 127.0.0.1 2 1 1"
    with pytest.raises(haproxy.RuntimeApiError, match="no web3"):
        haproxy.servers_state_with(text, "webapp", {"web3": haproxy.AdminState.READY})


def test_the_state_file_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    """The write goes through the server's write_file (a temporary name and a rename); a
    failure is a warning, never an error that would undo the change it follows."""
    server = FakeServer(api={"show servers state": "1\n# be_id ...\n"})
    save_slot_state(server, server.inventory)
    path = f"{haproxy_dir(server.inventory)}/{STATE_NAME}"
    assert server.files[path] == "1\n# be_id ...\n"

    failing = FakeServer(api={"show servers state": haproxy.RuntimeApiError("timed out")})
    lines: list[str] = []
    remember_slot_state(failing, failing.inventory, lines.append)
    assert path not in failing.files
    assert len(lines) == 1 and lines[0].startswith("WARNING: could not write HAProxy's slot")


class StatefulServer(FakeServer):
    """Answers `show servers state` (HAProxy's format, both slots up) with the admin state
    each line was last set to, and keeps, for each state-changing line, the state file as it
    was when the line was sent: a test sees what a restart at any moment would start from."""

    def __init__(self) -> None:
        super().__init__(api={"show stat": RuntimeError("not recorded here")})
        self.admin: dict[str, int] = {}
        self.file_when_sent: list[str | None] = []

    def runtime_api(self, command: str) -> str:
        if command.startswith("show servers state"):
            return "".join(f"{line}\n" if not line.startswith("3 ") else
                           f"{line[:-1]}{self.admin.get(line.split()[3], 0)}\n"
                           for line in BOTH_UP_STATE.splitlines())
        if not command.startswith("show") and "; show " not in command:  # once per line
            self.file_when_sent.append(self.files.get(STATE_FILE))
            for part in command.split("; "):
                words = part.split()
                if words[:2] == ["set", "server"] and words[3:4] == ["state"]:
                    self.admin[words[2].split("/")[1]] = {"ready": 0, "drain": 8,
                                                          "maint": 1}[words[4]]
        return super().runtime_api(command)

    def admin_in_file(self) -> dict[str, int]:
        return {row.split()[3]: int(row.split()[6])
                for row in self.files[STATE_FILE].splitlines() if row.startswith("3 ")}


STATE_FILE = "/etc/slotswap/webapp/haproxy/server-state"


def test_each_change_of_the_slot_in_rotation_is_written_where_haproxy_starts_from(
        tmp_path: Path) -> None:
    """Ahead of a line that moves traffic (the switch, the switch back) the file holds where
    the line goes; after any other change, where it went."""
    from slotswap.server.swap import SlotSwap, SwapRolledBack
    from tests.unit.test_swap_switch_back import stats

    server = StatefulServer()
    slot_swap = SlotSwap(server, make_inventory(tmp_path), "v2", lambda _: None)
    slot_swap.old_version = "v1"
    slot_swap.save_state(switch_states("web2", "web1", fallback=False), up="web2")
    slot_swap.switch("web2", "web1")
    assert server.admin_in_file() == {"web1": 8, "web2": 0, "web1-fallback": 0,
                                      "web2-fallback": 0}
    slot_swap.take_out_of_rotation("web1")
    assert server.admin_in_file()["web1"] == 1
    with pytest.raises(SwapRolledBack):
        slot_swap.switch_back("web2", "web1", stats("DOWN", "UP"), 1.0)
    back = switch_back_line("webapp", "web2", "web1", fallback=False)
    written_before_back = server.file_when_sent[server.sent.index(back)]
    assert written_before_back is not None and "3 webapp 2 web2 127.0.0.1 2 1" in \
        written_before_back and "3 webapp 1 web1 127.0.0.1 2 0" in written_before_back
    assert server.admin_in_file() == {"web1": 0, "web2": 1, "web1-fallback": 0,
                                      "web2-fallback": 0}
