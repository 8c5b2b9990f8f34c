"""The shared `up --dry-run` of an HTTPS app against what `up` then does (one description of
a run, as test_up_plan_run.py holds the one-app layout's): on a simulated server with two
apps on the shared HAProxy (simulated_apps_fleet.py), the certificate's changes the plan
prints (the file and its source, `set ssl cert` + `commit ssl cert`) are those the run
makes, in order with the generation's check, the app's backend and registration, and the
reload: HTTPS turned on (the file before the check), a renewed file with the routing
unchanged (the runtime API, no reload), a renewed file with a changed backend (the runtime
API after the check, before the reload), and with ACME a certificate there kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slotswap.config.inventory import Inventory
from slotswap.fleet import delivery, dry_run_move, every_server
from slotswap.https.files import CertificateBundle, placeholder
from tests.unit.fake_server import make_inventory
from tests.unit.simulated_apps_fleet import HAPROXY_IMAGE, AppsFleet
from tests.unit.simulated_docker import call_changes as changes
from tests.unit.simulated_shared_server import SharedSimServer

# The changes compared: the certificate's, the check, the app's files, what (re)loads HAProxy.
KEPT = re.compile(r"site\.(pem|source)|ssl cert| -c -f |signal HUP|--name slotswap-proxy "
                  r"|/backend\.cfg|/_proxy/apps/|settings\.json")
CA = "https://ca.example/dir"


def https_a(root: Path, https: dict[str, object], **changed: object) -> Inventory:
    """The fleet's app a (simulated_apps_fleet.app_inventory) with HTTPS."""
    return make_inventory(root / "a", app="a", image="acme/a", hosts=["203.0.113.10"],
                          timeouts={"watch": 0.5, "healthy": 5, "drain": 2},
                          haproxy={"shared": True, "image": HAPROXY_IMAGE,
                                   "slot_ports": [18081, 18082]},
                          https={"names": ["a.test"], **https}, **changed)


def new_certificate(source: str = "files") -> CertificateBundle:
    made = placeholder(("a.test",))
    return CertificateBundle(made.chain_pem, made.key_pem, source)


def normal(call: str) -> str:
    """A runtime-API line without its payload; the generation checked by its name (the run
    checks it as `.gen-X.partial`, then names it)."""
    call = call.split(" <<", 1)[0]
    return re.sub(r"/\.(gen-\w+)\.partial\b", r"/\1", call)


def printed(steps: list[str]) -> list[str]:
    calls = []
    for line in steps:
        if line.startswith("$ "):
            calls.append(line[2:].split("  (", 1)[0])
        elif line.startswith("write ") and "/lock/" not in line:
            calls.append("write " + line[6:].split(" (mode", 1)[0])
        elif line.startswith("runtime API> "):
            calls += line.removeprefix("runtime API> ").split("  (", 1)[0].split("; ")
    return [normal(call) for call in calls if changes(call) and KEPT.search(call)]


def plan_and_run(server: SharedSimServer, inventory: Inventory,
                 certificate: CertificateBundle) -> tuple[str, list[str], list[str]]:
    plan = dry_run_move.up_plan_moving(server, inventory, certificate)
    mark = len(server.log)
    server.inventory = inventory
    with delivery.up_action(inventory, certificate) as up_one:
        results = every_server.on_every_server(inventory, up_one, "up")
    assert [result.ok for result in results] == [True], [result.text for result in results]
    done = [normal(call) for call in server.log[mark:] if changes(call) and KEPT.search(call)]
    return plan.summary, printed(plan.steps), done


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AppsFleet:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    fleet = AppsFleet(tmp_path, 1, monkeypatch)
    assert fleet.run("up a").exit_code == 0 and fleet.run("up b").exit_code == 0
    return fleet


def test_up_of_an_https_app_changes_what_its_dry_run_printed_in_order(
        fleet: AppsFleet, tmp_path: Path) -> None:
    server = fleet.servers[0]
    files = {"files": {"chain": "c.pem", "key": "k.pem"}}
    summary, plan, done = plan_and_run(server, https_a(tmp_path, files), new_certificate())
    assert done == plan, "\n".join(["printed:", *plan, "", "done:", *done])
    assert summary.endswith("; its certificate installed; a reload"), summary
    assert [call.split(" ", 1)[0] for call in plan[:2]] == ["write", "write"]
    assert plan[0].endswith("/apps/a/site.pem") and " -c -f " in plan[2]

    # Renewed, the routing unchanged: through the runtime API, no reload.
    summary, plan, done = plan_and_run(server, https_a(tmp_path, files), new_certificate())
    assert done == plan, "\n".join(["printed:", *plan, "", "done:", *done])
    assert summary.endswith("; its certificate installed with no reload"), summary
    assert [call.split(" /", 1)[0] for call in plan] == [
        "set ssl cert", "commit ssl cert", "write", "write"]

    # Renewed with a changed backend: after the check (under b's lock), before the reload.
    changed = https_a(tmp_path, files, healthcheck={"interval": 3})
    summary, plan, done = plan_and_run(server, changed, new_certificate())
    assert done == plan, "\n".join(["printed:", *plan, "", "done:", *done])
    assert " -c -f " in plan[0] and plan[1].startswith("set ssl cert") and "HUP" in plan[-1]


def test_with_acme_the_certificate_there_is_kept_in_the_plan_and_the_run(
        fleet: AppsFleet, tmp_path: Path) -> None:
    server = fleet.servers[0]
    acme = https_a(tmp_path, {"acme": {"directory": CA}})
    stand_in = new_certificate("stand-in")
    summary, plan, done = plan_and_run(server, acme, stand_in)
    assert done == plan, "\n".join(["printed:", *plan, "", "done:", *done])
    assert plan[0].endswith("/apps/a/site.pem") and "its certificate installed" in summary
    summary, plan, done = plan_and_run(server, acme, new_certificate("stand-in"))
    assert done == plan == [], plan
    assert "certificate" not in summary, summary
