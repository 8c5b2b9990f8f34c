"""SlotSwap.switch_back: the old slot takes the traffic back in one runtime-API line, sent
again over a new connection when the first one broke."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.commands.docker import ContainerInfo
from slotswap.commands.runtime_api import ServerStat
from slotswap.config.app_env import OUTPUT_MASK, resolve_app_env
from slotswap.remote.server import CommandResult, ConnectionLostError
from slotswap.server.swap import SlotSwap, SwapError, SwapRolledBack
from slotswap.server.swap_plan import WatchFailure, container_failure, watch_failure
from tests.unit.fake_server import FakeServer, make_inventory

BACK = "set server webapp/web1 state ready; set server webapp/web2 state maint"


class FlakyServer(FakeServer):
    """Loses the connection for the first `losses` runtime-API lines that change state."""

    def __init__(self, losses: int) -> None:
        # read_slots_quietly: state unknown
        super().__init__(api={"show": RuntimeError("not recorded here")})
        self.losses = losses

    def runtime_api(self, command: str) -> str:
        if self.losses and not command.startswith("show"):
            self.losses -= 1
            raise ConnectionLostError("s1: lost the SSH connection (EOF)")
        return super().runtime_api(command)


def stats(new_status: str, old_status: str = "DRAIN") -> dict[str, ServerStat]:
    return {"web2": ServerStat("web2", new_status, 3, "L7STS", "500", "", 0, "10.0.0.3:3000"),
            "web1": ServerStat("web1", old_status, 0, "L7OK", "200", "", 0, "10.0.0.2:3000")}


def swap(tmp_path: Path, server: FlakyServer) -> SlotSwap:
    slot_swap = SlotSwap(server, make_inventory(tmp_path), "v2", lambda _: None)
    slot_swap.old_version = "v1"
    return slot_swap


@pytest.mark.parametrize("losses", [0, 1])
def test_traffic_goes_back_in_one_line_even_after_a_lost_connection(tmp_path: Path,
                                                                     losses: int) -> None:
    server = FlakyServer(losses)
    with pytest.raises(SwapRolledBack, match="rolled back to v1 in web1"):
        swap(tmp_path, server).switch_back("web2", "web1", stats("UP 1/3"), 1.5)
    assert server.sent == [BACK]
    assert ["docker", "stop", "--time", "10", "webapp-web2"] in server.commands


def test_two_lost_connections_leave_the_slots_as_they_are_and_say_so(tmp_path: Path) -> None:
    server = FlakyServer(2)
    with pytest.raises(SwapError, match="sending the traffic back to web1 failed") as raised:
        swap(tmp_path, server).switch_back("web2", "web1", stats("UP 1/3"), 1.5)
    assert not isinstance(raised.value, SwapRolledBack)
    assert server.sent == [] and server.commands == []


def test_an_old_slot_failing_too_is_not_switched_to(tmp_path: Path) -> None:
    server = FlakyServer(0)
    with pytest.raises(SwapError, match=r"does not pass HAProxy's health checks either"
                       r".*nothing was stopped"):
        swap(tmp_path, server).switch_back("web2", "web1", stats("DOWN", "DOWN"), 1.5)
    assert server.sent == [] and server.commands == []


def test_a_crashed_container_is_named_in_the_rollback(tmp_path: Path) -> None:
    server = FlakyServer(0)
    failure = WatchFailure("its container stopped", "exited, exit code 1")
    with pytest.raises(SwapRolledBack, match=r"v2 took traffic in web2, then its container "
                       r"stopped 1\.5s later \(exited, exit code 1\); rolled back to v1"):
        swap(tmp_path, server).switch_back("web2", "web1", stats("UP"), 1.5, failure)
    assert server.sent == [BACK]


def crashed_server() -> FlakyServer:
    """Its new slot's container printed the app's secret before it stopped."""
    server = FlakyServer(0)
    server.answers[("docker", "logs")] = CommandResult(
        "boot\n", "FATAL: no db at postgres://app:pw-77@db/app\n", 0)
    return server


def test_the_last_output_in_the_message_has_the_apps_secrets_masked(tmp_path: Path) -> None:
    inventory = make_inventory(tmp_path, env={"secret": ["DB_PASSWORD"]})
    slot_swap = SlotSwap(crashed_server(), inventory, "v2", lambda _: None,
                         resolve_app_env(inventory, {"DB_PASSWORD": "pw-77"}))
    slot_swap.old_version = "v1"
    failure = WatchFailure("its container stopped", "exited, exit code 1")
    with pytest.raises(SwapRolledBack) as raised:
        slot_swap.switch_back("web2", "web1", stats("UP"), 1.5, failure)
    assert f"postgres://app:{OUTPUT_MASK}@db/app" in str(raised.value)
    assert "pw-77" not in str(raised.value)


@pytest.mark.parametrize(("status", "what"), [
    ("UP", None),
    ("UP 2/3", "failed HAProxy's health checks"),
    ("DOWN", "failed HAProxy's health checks"),
    ("MAINT (resolution)", "stopped taking traffic"),
    ("MAINT", "stopped taking traffic"),
    ("DRAIN", "stopped taking traffic"),
    ("NOLB", "stopped taking traffic"),
])
def test_the_watch_fails_on_anything_but_taking_traffic(status: str, what: str | None) -> None:
    failure = watch_failure(stats(status)["web2"])
    assert (failure.what if failure else None) == what


def container(status: str, started_at: str = "2026-01-02T03:04:05.5Z") -> ContainerInfo:
    return ContainerInfo("webapp-web2", status == "running", status, "acme/webapp:v2",
                         "sha256:1", {}, {}, 1 if status != "running" else 0, started_at)


def test_the_watch_fails_when_the_container_stopped_vanished_or_restarted() -> None:
    started_ns = container("running").started_ns
    assert container_failure(container("running"), started_ns) is None
    assert container_failure(None, started_ns).what == "lost its container"  # type: ignore[union-attr]
    stopped = container_failure(container("restarting"), started_ns)
    assert stopped is not None and stopped.detail == "restarting, exit code 1"
    restarted = container_failure(container("running", "2026-01-02T03:04:09Z"), started_ns)
    assert restarted is not None and restarted.what == "its container crashed"


def test_the_rollout_is_told_as_soon_as_the_traffic_is_back(tmp_path: Path) -> None:
    # In a watch window the next server may switch while this one reads its container's
    # last output and stops it (a few round trips): the window must know before those.
    server = FlakyServer(0)
    slot_swap = swap(tmp_path, server)
    told: list[tuple[str, int]] = []
    slot_swap.on_failure = lambda why: told.append((why, len(server.commands)))
    with pytest.raises(SwapRolledBack):
        slot_swap.switch_back("web2", "web1", stats("UP 1/3"), 1.5)
    assert told == [("v2 took traffic in web2, then failed HAProxy's health checks 1.5s "
                     "later (L7STS 500); rolled back to v1 in web1", 0)]
