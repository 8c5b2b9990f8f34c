"""Which slot is live survives a restart of HAProxy (a reboot, a Docker engine restart, an OOM
kill Docker restarts, `up` starting a stopped HAProxy): the kit writes HAProxy's servers'
state to the file the config loads after each change of which slot takes traffic, and the
local HAProxy binary, started again from the rendered config, serves only the live slot
although the other slot's container still runs."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotswap.commands import runtime_api as haproxy
from slotswap.config.layout import STATE_NAME, haproxy_dir
from slotswap.server.haproxy_state import remember_slot_state, save_slot_state
from slotswap.server.swap_plan import out_of_rotation_line, switch_line
from tests.unit.fake_server import FakeServer, make_inventory
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
    """Answers `show servers state` with the last state-changing line it was sent, so a test
    sees which state went to the file."""

    def runtime_api(self, command: str) -> str:
        if command == "show servers state":
            return f"1\n# after: {self.sent[-1] if self.sent else 'nothing'}\n"
        return super().runtime_api(command)


STATE_FILE = "/etc/slotswap/webapp/haproxy/server-state"


def test_each_change_of_the_slot_in_rotation_is_written_where_haproxy_starts_from(
        tmp_path: Path) -> None:
    from slotswap.server.swap import SlotSwap, SwapRolledBack
    from tests.unit.test_swap_switch_back import stats

    server = StatefulServer()
    slot_swap = SlotSwap(server, make_inventory(tmp_path), "v2", lambda _: None)
    slot_swap.old_version = "v1"
    slot_swap.switch("web2", "web1")  # switch_in saves the state once it said so
    slot_swap.remember_slot_state()
    switched = switch_line("webapp", "web2", "web1", fallback=False)
    assert server.files[STATE_FILE] == f"1\n# after: {switched}\n"
    slot_swap.take_out_of_rotation("web1")
    taken_out = out_of_rotation_line("webapp", "web1", fallback=False)
    assert server.files[STATE_FILE].endswith(f"{taken_out}\n")
    with pytest.raises(SwapRolledBack):
        slot_swap.switch_back("web2", "web1", stats("DOWN", "UP"), 1.0)
    assert "set server webapp/web1 state ready" in server.files[STATE_FILE]
