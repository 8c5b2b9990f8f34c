"""`up --dry-run` against what `up` then changes (issue 21: one description of a run): on a
simulated server, the changes the dry run prints (files written, runtime-API lines that set
something, commands that change what runs or what is on disk) are those the run makes, in
order, for a config change (a reload) and a new HAProxy image (the hand-over)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slotswap.fleet import dry_run, rollout
from tests.unit.simulated_docker import call_changes as changes
from tests.unit.simulated_fleet import Fleet


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(rollout, "say", lambda *args, **kwargs: None)


def normal(call: str) -> str:
    """The new HAProxy's instance token is drawn at random by the run (TOKEN in the plan)."""
    return re.sub(r"SLOTSWAP_HAPROXY_INSTANCE=\w+", "SLOTSWAP_HAPROXY_INSTANCE=TOKEN", call)


def printed_changes(steps: list[str]) -> list[str]:
    """The dry run's lines as the server's log names the calls, the lock's left out."""
    calls = []
    for line in steps:
        if line.startswith("$ ") and "<take the lock>" not in line \
                and not line.startswith("$ rm -rf /var/lib/slotswap/webapp/lock"):
            calls.append(line[2:].split("  (", 1)[0])
        elif line.startswith("write ") and "/lock/" not in line:
            calls.append("write " + line[6:].split(" (mode", 1)[0])
        elif line.startswith("runtime API> "):
            calls.append(line.removeprefix("runtime API> "))
    return [normal(call) for call in calls if changes(call)]


@pytest.mark.parametrize("command", ["up new", "up image"])
def test_up_changes_what_its_dry_run_printed_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    fleet = Fleet(tmp_path, 1, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    assert fleet.run("up").exit_code == 0
    server = fleet.servers[0]
    inventory = fleet.new_inventory if command == "up new" else fleet.image_inventory
    printed = printed_changes(dry_run.up_plan(server, inventory).steps)
    mark = len(server.log)
    assert fleet.run(command).exit_code == 0
    done = [normal(call) for call in server.log[mark:] if changes(call)]
    assert done == printed, "\n".join(["printed:", *printed, "", "done:", *done])
