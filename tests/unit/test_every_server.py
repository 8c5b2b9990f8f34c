"""A task's change on every server (fleet.every_server) stopped by Ctrl-C: the result names
where it stopped and exits 130, whatever error the change's clean-up met after a second
Ctrl-C cut the connections; a Ctrl-C during the last server's change stops the task there."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slotswap.config.inventory import Inventory
from slotswap.core import interrupts
from slotswap.fleet import every_server, rollout
from slotswap.fleet.errors import EXIT_INTERRUPTED
from slotswap.fleet.outcomes import ServerResult
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import ConnectionLostError
from tests.unit.simulated_fleet import Fleet

Action = Callable[[ServerLike, Inventory, Callable[[str], None]], str]


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(rollout, "say", lambda *args, **kwargs: None)
    yield
    interrupts._requested.clear()  # the signals these tests send: none left for the next
    interrupts._now.clear()


def outcomes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             on_second: Callable[[ServerLike], str]) -> list[tuple[str, bool, int, str]]:
    fleet = Fleet(tmp_path, 2, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    second = fleet.servers[1].name

    def action(server: ServerLike, inventory: Inventory, progress: Callable[[str], None]
               ) -> str:
        return on_second(server) if server.name == second else "done"

    results = every_server.on_every_server(fleet.inventory, action, "maintenance.on")
    return [(r.name, r.ok, r.exit_code, r.text) for r in results]


def test_a_second_ctrl_c_exits_130_not_as_a_lost_connection(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def cut(server: ServerLike) -> str:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # the second: raised at once, connections cut
            for _ in range(1000):  # the handler runs between two bytecodes
                pass
        except KeyboardInterrupt:  # a clean-up on the way out meets the cut connection
            raise ConnectionLostError(f"{server.name}: the connection was cut") from None
        return "not reached"

    found = outcomes(tmp_path, monkeypatch, cut)
    assert found[-1][1:] == (False, EXIT_INTERRUPTED, "interrupted during its change")


def test_a_ctrl_c_in_the_last_change_stops_the_task_once_it_is_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def noted(server: ServerLike) -> str:
        os.kill(os.getpid(), signal.SIGINT)  # noted; the change goes on to its end
        return "done"

    found = outcomes(tmp_path, monkeypatch, noted)
    assert [row[1:] for row in found] == [
        (True, 0, "done"), (True, 0, "done"),
        (False, EXIT_INTERRUPTED, "interrupted once its change was done; the task stops here")]


@pytest.mark.parametrize(("results", "turn", "begun", "expected"), [
    ([], "s1", True, ("s1", "interrupted during its change")),
    ([ServerResult("s1", "done", True)], "s1", False, ("s2", "interrupted before its turn")),
    ([ServerResult("s1", "done", True), ServerResult("s2", "done", True)], "s2", False,
     ("s2", "interrupted once its change was done; the task stops here")),
])
def test_where_an_interrupt_stopped_the_task(results: list[ServerResult], turn: str,
                                             begun: bool, expected: tuple[str, str]) -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

    servers = [Named("s1"), Named("s2")]
    found = every_server.interrupted(servers, results, turn, begun=begun)  # type: ignore[arg-type]
    assert (found.name, found.text) == expected and found.exit_code == EXIT_INTERRUPTED


def test_a_cut_hand_over_on_the_second_server_refuses_maintenance_before_any_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass of maintenance and certificates (fleet.serving_checks): s2 has the new
    container of a cut HAProxy hand-over beside its HAProxy; s1, first in turn, is not
    changed, and the one result names s2."""
    from slotswap.fleet.serving_checks import refuse_two_haproxys
    from tests.unit.simulated_docker import Container

    fleet = Fleet(tmp_path, 2, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    s2 = fleet.servers[1]
    s2.containers["webapp-haproxy-next"] = Container(
        "webapp-haproxy-next", "haproxy", "sha256:1", {"slotswap.role": "haproxy"},
        network="host")
    changed: list[str] = []

    def action(server: ServerLike, inventory: Inventory, progress: Callable[[str], None]
               ) -> str:
        changed.append(server.name)
        return "maintenance on"

    results = every_server.on_every_server(fleet.inventory, action, "maintenance.on",
                                           first=refuse_two_haproxys)
    assert changed == []
    assert [(r.name, r.ok) for r in results] == [(s2.name, False)]
    assert results[0].text == (f"{s2.name}: webapp-haproxy-next is left from an HAProxy "
                               "upgrade that was cut short; run `fab up` to finish or undo it; "
                               "nothing was changed")
