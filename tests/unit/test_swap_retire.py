"""SlotSwap.watch_and_retire: the old slot is stopped only once the new one is seen serving.
The watch may end "fine" while the new slot no longer serves (its container exited and
Docker's DNS dropped its name, HAProxy put it in maint, or drain): the check before retiring
(verify_before_retiring) then sends the traffic back to the old slot, which keeps running.
The server's answers are the ones recorded from the sandbox (tests/unit/fixtures)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.server.swap import SlotSwap, SwapRolledBack
from tests.unit.fake_server import FakeServer, make_inventory, recorded


def swapped(tmp_path: Path, server: FakeServer, new: str, old: str) -> SlotSwap:
    """A swap right after its switch to `new` (the new container as the recording has it),
    its watch window over without a failure seen. The server answers `show stat`, `show
    servers state` and `docker inspect` with one recorded state of the sandbox's server, and
    records every other runtime-API line and command."""
    swap = SlotSwap(server, make_inventory(tmp_path), "v2", lambda _: None)
    swap.new_slot, swap.old_slot, swap.old_version = new, old, "v1"
    swap.switched_at = time.monotonic()
    started = docker.parse_inspect(recorded(f"docker_inspect_{server.state}.json"))
    swap.new_started_ns = started[f"webapp-{new}"].started_ns
    swap.watch_and_drain = lambda *_args, **_kwargs: None  # type: ignore[method-assign]
    return swap


def stops_of(server: FakeServer, slot: str) -> list[list[str]]:
    return [argv for argv in server.commands
            if argv[:2] == ["docker", "stop"] and argv[-1] == f"webapp-{slot}"]


@pytest.mark.parametrize(("state", "new", "old", "why"), [
    # HAProxy dropped the exited container's name: MAINT (resolution).
    ("live_web1", "web2", "web1", "stopped taking traffic"),
    # HAProxy still counts it UP (4 sessions), its container has exited.
    ("web1_live_web2_up_stopped", "web2", "web1", "its container stopped"),
    # Running, but out of rotation.
    ("web1_live_web2_drain", "web2", "web1", "stopped taking traffic"),
    # Running, failing its checks.
    ("web1_down_starting_web2_live", "web1", "web2", "failed HAProxy's health checks"),
    # In maint, its container exited.
    ("web1_maint_stopped_web2_live", "web1", "web2", "stopped taking traffic"),
])
def test_the_old_slot_is_never_stopped_when_the_new_one_does_not_serve(
        tmp_path: Path, state: str, new: str, old: str, why: str) -> None:
    server = FakeServer(state=state)
    with pytest.raises(SwapRolledBack, match=rf"took traffic in {new}, then {why}"):
        swapped(tmp_path, server, new, old).watch_and_retire(lambda: 0.0)
    assert stops_of(server, old) == []
    # The only line that names the old slot puts it back in rotation.
    assert server.sent == [f"set server webapp/{old} state ready; "
                           f"set server webapp/{new} state maint"]
    assert stops_of(server, new)


def test_a_new_slot_that_serves_retires_the_old_one(tmp_path: Path) -> None:
    """The control: web2 (v2) running and UP; web1 goes out of rotation, then is stopped."""
    server = FakeServer(state="live_web2")
    serving = swapped(tmp_path, server, "web2", "web1").watch_and_retire(lambda: 0.0)
    assert "web2" in serving and "v2" in serving
    assert server.sent == ["set server webapp/web1 state maint"]
    assert stops_of(server, "web1") and not stops_of(server, "web2")
