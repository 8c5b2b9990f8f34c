"""The dry runs of `up`, maintenance and certs.renew against what the task then changes
(issue 21: one description of a run): on a simulated server, the changes the dry run prints
(files written, runtime-API lines that set something, commands that change what runs or
what is on disk) are those the run makes, in order: for `up`, a config change (a reload), a
new HAProxy image (the hand-over) and a hand-over cut short; maintenance on and off; a
certificate from files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.config.layout import next_container
from slotswap.fleet import certs, dry_run, rollout
from slotswap.server import maintenance
from slotswap.server.haproxy_handover import haproxy_run_command
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


def test_an_interrupted_hand_over_is_finished_first_in_the_dry_run_as_in_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut past its point of no return (the old HAProxy told to stop, the new one listening
    as -next): `up` finishes it and never removes -next (issue 21, path 3); its dry run
    prints those steps (before, it printed a new hand-over that removes -next first)."""
    fleet = Fleet(tmp_path, 1, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    assert fleet.run("up").exit_code == 0
    server = fleet.servers[0]
    inventory = server.with_folders(fleet.image_inventory)
    server.run(docker.pull(inventory.haproxy.image))
    server.run(haproxy_run_command(inventory, next_container(inventory), "abc"))
    server.run(docker.no_restart(inventory.haproxy_container))
    plan = dry_run.up_plan(server, fleet.image_inventory)
    assert plan.summary.startswith("an interrupted hand-over is finished first")
    printed = printed_changes(plan.steps)
    assert not any("rm --force webapp-haproxy-next" in call for call in printed)
    mark = len(server.log)
    assert fleet.run("up image").exit_code == 0
    done = [normal(call) for call in server.log[mark:] if changes(call)]
    assert done[:len(printed)] == printed, "\n".join(["printed:", *printed, "", "done:", *done])


@pytest.mark.parametrize("command", ["maintenance on", "maintenance off"])
def test_maintenance_changes_what_its_dry_run_printed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    fleet = Fleet(tmp_path, 1, monkeypatch)
    assert fleet.run("deploy v1").exit_code == 0
    if command == "maintenance off":
        assert fleet.run("maintenance on").exit_code == 0
    server = fleet.servers[0]
    entries = None if command == "maintenance off" else maintenance.map_entries(
        maintenance.render_page(fleet.inventory, maintenance.DEFAULT_MESSAGE),
        maintenance.DEFAULT_RETRY_AFTER)
    plan = dry_run.maintenance_plan(server, fleet.inventory, entries)
    assert plan.summary == f"{command} (now {'off' if entries else 'on'})"
    printed = printed_changes(plan.steps)
    mark = len(server.log)
    assert fleet.run(command).exit_code == 0
    done = [re.sub(r" page \S+", " page <the page, base64>", call)
            for call in server.log[mark:] if changes(call)]
    assert done == printed, "\n".join(["printed:", *printed, "", "done:", *done])


def test_certs_renew_changes_what_its_dry_run_printed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With files: the new certificate given to the running HAProxy (set, commit), then the
    file a restart loads and where it came from; a server that has it already: unchanged."""
    fleet = Fleet(tmp_path, 2, monkeypatch, https=True)
    assert fleet.run("deploy v1").exit_code == 0
    renewal = certs.plan_renewal(fleet.inventory, force=False)
    first, second = fleet.servers
    plans = [dry_run.certs_plan(server, fleet.inventory, renewal) for server in fleet.servers]
    assert [plan.summary for plan in plans] == ["certificate installed with no reload"] * 2
    printed = [call.split(" <<", 1)[0] for call in printed_changes(plans[0].steps)]
    mark = len(first.log)
    assert fleet.run("certs renew").exit_code == 0
    done = [call.split(" <<", 1)[0] for call in first.log[mark:] if changes(call)]
    assert done == printed, "\n".join(["printed:", *printed, "", "done:", *done])
    assert printed[0].startswith("set ssl cert ") and printed[1].startswith("commit ssl cert")
    again = dry_run.certs_plan(second, fleet.inventory, renewal)
    assert again.summary == "unchanged: it has this certificate"
    assert printed_changes(again.steps) == []
