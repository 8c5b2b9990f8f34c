"""SlotSwap's env-file hook: the app's environment reaches `docker run` only as a private
file on the server, and no value is on the command line or in the progress output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slotswap.commands.docker import ContainerInfo
from slotswap.commands.runtime_api import ServerStat, ServerState
from slotswap.config.app_env import resolve_app_env
from slotswap.config.inventory import Inventory
from slotswap.core.validation import InputError
from slotswap.remote.server import CommandResult
from slotswap.server.redeploy import write_env_file
from slotswap.server.slots import SlotView
from slotswap.server.swap import SlotSwap
from slotswap.server.swap_steps import start_command
from tests.unit.fake_server import FakeServer, make_inventory

SECRET = "s3cr3t-never-on-a-command-line"


class Stop(Exception):
    """Ends start_new once `docker run` was sent: the rest needs a real HAProxy."""


class StoppingServer(FakeServer):
    """Keeps the files written; a chain of commands is recorded, then ends the test (Stop)."""

    def run_chain(self, *argvs: Any, timeout: float | None = None) -> CommandResult:
        self.commands.extend(list(argv) for argv in argvs)
        raise Stop


def inventory(tmp_path: Path, env: dict[str, Any] | None) -> Inventory:
    return make_inventory(tmp_path) if env is None else make_inventory(tmp_path, env=env)


def swap(inv: Inventory, **kwargs: Any) -> tuple[SlotSwap, StoppingServer, list[str]]:
    server, said = StoppingServer(), []
    return SlotSwap(server, inv, "v2", said.append, **kwargs), server, said


def slot_view(slot: str, *, occupied: bool) -> SlotView:
    """An idle slot in maint, empty or holding a running container of another version."""
    container = ContainerInfo(f"webapp-{slot}", True, "running", "acme/webapp:v1", "sha256:1",
                              {"slotswap.version": "v1"}, {"webapp": "172.18.0.3"}, 0,
                              "2026-11-26T10:00:00Z") if occupied else None
    stat = ServerStat(slot, "MAINT", 0, "", "", "", 0, "")
    return SlotView(slot, stat, ServerState(slot, "-", 0, 1, f"webapp-{slot}"), container)


def start_new(slot_swap: SlotSwap, view: SlotView) -> str:
    """As the swap starts a new container into the slot: with its plan's command."""
    start = start_command(slot_swap.inventory, view, slot_swap.tag, restart=False)
    return slot_swap.start_new(view.slot, view, start)


ENV = {"plain": {"LOG_LEVEL": "info"}, "secret": ["API_TOKEN"]}


def test_without_env_nothing_is_written_and_run_has_no_env_file(tmp_path: Path) -> None:
    slot_swap, server, _ = swap(inventory(tmp_path, None))
    with pytest.raises(Stop):
        start_new(slot_swap, slot_view("web2", occupied=False))
    assert server.files == {}
    assert not any("--env-file" in argv for argv in server.commands)
    # A file an earlier deploy wrote goes: a slot's env file is its container's.
    assert ["rm", "-f", "/etc/slotswap/webapp/web2.env"] in server.commands


def test_env_is_written_to_the_slots_private_file_and_passed_to_docker_run(
    tmp_path: Path,
) -> None:
    inv = inventory(tmp_path, ENV)
    app_env = resolve_app_env(inv, {"API_TOKEN": SECRET})
    slot_swap, server, said = swap(inv, app_env=app_env)

    with pytest.raises(Stop):
        start_new(slot_swap, slot_view("web2", occupied=True))

    assert server.files == {
        "/etc/slotswap/webapp/web2.env": f"LOG_LEVEL=info\nAPI_TOKEN={SECRET}\n"
    }
    run = next(argv for argv in server.commands if argv[:2] == ["docker", "run"])
    assert run[run.index("--env-file") + 1] == "/etc/slotswap/webapp/web2.env"
    assert not any(SECRET in word for argv in server.commands for word in argv)
    assert any("API_TOKEN=<secret>" in line for line in said)
    assert not any(SECRET in line for line in said)
    assert SECRET not in repr(slot_swap)


def test_a_swap_not_given_the_resolved_env_reads_the_operators_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    slot_swap, server, _ = swap(inventory(tmp_path, ENV))
    assert write_env_file(slot_swap.server, slot_swap.inventory, "web1", slot_swap.resolved_env(),
                          slot_swap.progress) == "/etc/slotswap/webapp/web1.env"
    assert server.files["/etc/slotswap/webapp/web1.env"].endswith(f"API_TOKEN={SECRET}\n")


def test_a_missing_secret_stops_before_docker_run(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    slot_swap, server, _ = swap(inventory(tmp_path, ENV))
    with pytest.raises(InputError, match="API_TOKEN is not set"):
        start_new(slot_swap, slot_view("web1", occupied=False))
    assert server.commands == []
    assert server.files == {}
