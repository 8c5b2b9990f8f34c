"""slotswap.fleet.rollout: whatever fails, a deploy ends in a result (exit code and one-line
message), so that the summary, --json and the post hooks still come; no server is contacted here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from slotswap.config.inventory import Inventory
from slotswap.fleet import rollout, server_run
from slotswap.fleet.errors import EXIT_DEPLOY_FAILED, EXIT_LOCKED
from slotswap.fleet.outcomes import ServerOutcome
from slotswap.fleet.runner import servers_of
from slotswap.remote.server import RemoteDirError
from slotswap.server.locking import LeaseLostError
from tests.unit.fake_server import make_inventory


def inventory(tmp_path: Path) -> Inventory:
    return make_inventory(tmp_path, hosts=["203.0.113.10", "203.0.113.11"])


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_run, "serving_now", lambda server, inv: "v1 in web1")
    monkeypatch.setattr(rollout, "close_all", lambda servers: None)


def fleet_lock_raising(error: Exception) -> Any:
    class Refused:
        def __init__(self, *args: object, **settings: object) -> None:
            self.lost: list[str] = []

        def __enter__(self) -> None:
            raise error

        def __exit__(self, *exc: object) -> None:
            pass

    return Refused


def held_lock(lost: tuple[str, ...] = ()) -> Any:
    class Held:
        def __init__(self, *args: object, **settings: object) -> None:
            self.lost = list(lost)

        def __enter__(self) -> Held:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    return Held


def test_a_lock_that_cannot_be_written_is_exit_1_and_nothing_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    monkeypatch.setattr(rollout, "FleetLock", fleet_lock_raising(
        RemoteDirError("203.0.113.10: the SSH login deploy cannot write /var/lib/slotswap")))
    result = rollout.deploy(inventory(tmp_path), "v2")
    assert result.exit_code == EXIT_DEPLOY_FAILED
    assert result.message == ("nothing was changed: 203.0.113.10: the SSH login deploy cannot "
                              "write /var/lib/slotswap")
    assert [o.serving for o in result.outcomes] == ["v1 in web1", "v1 in web1"]


def test_an_unforeseen_error_still_ends_in_a_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    monkeypatch.setattr(rollout, "FleetLock", held_lock())

    def broken(*args: object, **kwargs: object) -> dict[str, Exception]:
        raise KeyError("Config")

    monkeypatch.setattr(rollout, "prepare", broken)
    result = rollout.deploy(inventory(tmp_path), "v2")
    assert result.exit_code == EXIT_DEPLOY_FAILED
    assert result.message == "deploy stopped: KeyError: 'Config'"


def test_an_unforeseen_error_in_a_swap_fails_that_server_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    def broken_run(self: object) -> None:
        raise ValueError("Expecting value: line 1 column 1 (char 0)\nmore")

    monkeypatch.setattr(server_run.SlotSwap, "run", broken_run)
    inv = inventory(tmp_path)
    server = servers_of(inv)[0]
    outcome = ServerOutcome(server.name, server.host.address, new_tag="v2")
    assert server_run.swap_one(server, inv, "v2", outcome) is False
    assert outcome.outcome == "failed"
    assert outcome.error == "ValueError: Expecting value: line 1 column 1 (char 0) more"


def test_a_run_that_lost_a_servers_lock_exits_4_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    """Its swap there stopped at the lease's guard: another run holds the server now."""
    lost = LeaseLostError("203.0.113.10: this run's lock on it is gone (now held by ...)")
    monkeypatch.setattr(rollout, "FleetLock", held_lock(lost=("203.0.113.10",)))
    monkeypatch.setattr(rollout, "prepare", lambda *args, **kwargs: {})
    monkeypatch.setattr(rollout, "leave_alone_what_already_serves", lambda *args: None)
    monkeypatch.setattr(server_run, "record_history", lambda *args: None)

    def stopped(self: object) -> None:
        raise lost

    monkeypatch.setattr(server_run.SlotSwap, "run", stopped)
    result = rollout.deploy(inventory(tmp_path), "v2", watch_each=True)
    assert result.exit_code == EXIT_LOCKED
    assert result.message == f"deploy of v2 stopped at 203.0.113.10: {lost}"
