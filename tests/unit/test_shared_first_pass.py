"""The shared `up`'s first pass (fleet/shared_checks.py): every web server's registry read and
the app checked there before any server changes, so that a contradiction on s2 alone leaves
s1 as it was too (before, s1 had its new generation when s2 refused); `up --dry-run` runs
the same pass before any plan. The servers are shared_proxy_server's FakeServers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit

from slotswap.cli import plan, tasks
from slotswap.config.inventory import Inventory
from slotswap.fleet import every_server
from slotswap.fleet.errors import EXIT_BAD_INPUT, EXIT_DEPLOY_FAILED
from slotswap.fleet.shared_checks import FIRST_PASS_LINE, check_every_server
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandResult
from slotswap.server.lock_sets import TAKE_ALL_SCRIPT
from slotswap.server.locking import RELEASE_SCRIPT, TAKE_SCRIPT
from tests.unit.shared_proxy_server import BLOG, READS, SHOP, Shared

LOCKS = {("sh", "-c", TAKE_SCRIPT), ("sh", "-c", RELEASE_SCRIPT)}
# admin claims shop.test: shop has it on s2, not on s1 (blog alone there).
INVENTORY = ("app: admin\nimage: acme/admin\nnames: [shop.test]\n"
             "haproxy: {shared: true, slot_ports: [18185, 18186]}\n"
             "hosts:\n  - {name: s1, address: 203.0.113.10}\n"
             "  - {name: s2, address: 203.0.113.11}\n")


def fleet(monkeypatch: pytest.MonkeyPatch, *apps: Sequence[Inventory]) -> list[Shared]:
    servers = []
    for index, on_it in enumerate(apps, start=1):
        server = Shared(list(on_it))
        server.name = f"s{index}"
        server.answers[("sh", "-c", TAKE_SCRIPT)] = CommandResult("taken\n", "", 0)
        servers.append(server)
    monkeypatch.setattr(every_server, "servers_of", lambda inventory: servers)
    monkeypatch.setattr(plan, "servers_of", lambda inventory: servers)
    return servers


def inventory_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    path = tmp_path / "hosts.yaml"
    path.write_text(INVENTORY)
    return str(path)


def only_read_and_locked(server: Shared, files_before: dict[str, str]) -> None:
    for argv in server.commands:
        assert any(tuple(argv[:len(prefix)]) == prefix for prefix in READS | LOCKS), argv
        assert argv[:3] != ["sh", "-c", TAKE_ALL_SCRIPT]  # not even the shared HAProxy's lock
    assert server.files == files_before and server.sent == []


def test_a_contradiction_on_the_second_server_alone_changes_nothing_on_the_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s1, s2 = fleet(monkeypatch, [BLOG], [SHOP, BLOG])
    before = [dict(s1.files), dict(s2.files)]
    with pytest.raises(Exit) as refused:
        tasks.up(Context(), inventory=inventory_file(tmp_path, monkeypatch))
    assert refused.value.code == EXIT_BAD_INPUT
    message = str(refused.value.message)
    assert message.startswith("error: s2: ") and "\n" not in message
    assert "shop.test" in message and message.endswith("nothing was changed")
    only_read_and_locked(s1, before[0])
    only_read_and_locked(s2, before[1])
    # Each server's lock taken and released; every registry read before any change.
    for server in (s1, s2):
        assert [argv[:3] for argv in server.commands if tuple(argv[:3]) in LOCKS] == [
            ["sh", "-c", TAKE_SCRIPT], ["sh", "-c", RELEASE_SCRIPT]]


def test_a_refusal_in_the_first_pass_is_that_servers_result_and_no_server_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """s2's shared HAProxy runs from another login's folders: each server's `up` refuses
    that before any change; the first pass finds it before s1's turn."""
    s2 = fleet(monkeypatch, [BLOG], [BLOG])[1]
    s2.containers["slotswap-proxy"] = {
        **s2.containers["slotswap-proxy"],
        "Mounts": [{"Type": "bind", "Destination": "/usr/local/etc/haproxy",
                    "Source": "/home/deploy/.slotswap/_proxy/config/haproxy"}]}
    changed: list[str] = []

    def action(server: ServerLike, inventory: Inventory, progress: object) -> str:
        changed.append(server.name)
        return "changed"

    inv = tasks.load(inventory_file(tmp_path, monkeypatch))
    results = every_server.on_every_server(inv, action, "up", first=check_every_server)
    assert changed == []
    assert [(r.name, r.ok, r.exit_code) for r in results] == [("s2", False, EXIT_DEPLOY_FAILED)]
    assert results[0].text.startswith("s2's shared HAProxy runs from /home/deploy/")
    assert results[0].text.count("nothing was changed") == 1


def test_no_contradiction_anywhere_lets_every_server_take_its_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet(monkeypatch, [BLOG], [BLOG])
    inv = tasks.load(inventory_file(tmp_path, monkeypatch))
    results = every_server.on_every_server(
        inv, lambda server, inventory, progress: "done", "up", first=check_every_server)
    assert [(r.name, r.ok) for r in results] == [("s1", True), ("s2", True)]


def test_the_dry_run_refuses_a_contradiction_on_any_server_before_any_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    s1, s2 = fleet(monkeypatch, [BLOG], [SHOP, BLOG])
    before = [dict(s1.files), dict(s2.files)]
    with pytest.raises(Exit) as refused:
        tasks.up(Context(), inventory=inventory_file(tmp_path, monkeypatch), dry_run=True)
    assert refused.value.code == EXIT_BAD_INPUT
    assert str(refused.value.message).startswith("error: s2: ")
    assert "s1 (203.0.113.10)" not in capsys.readouterr().out  # no plan printed
    only_read_and_locked(s1, before[0])
    only_read_and_locked(s2, before[1])
    assert not any(tuple(argv[:3]) in LOCKS for argv in s1.commands + s2.commands)


def test_the_dry_run_says_it_checks_every_server_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fleet(monkeypatch, [BLOG], [BLOG])
    tasks.up(Context(), inventory=inventory_file(tmp_path, monkeypatch), dry_run=True)
    out = capsys.readouterr().out
    assert FIRST_PASS_LINE.split(":")[0] in out
    assert out.index("before any server changes") < out.index("s1")
