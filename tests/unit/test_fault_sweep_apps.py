"""Every fault at every call, with two apps (a, b) on the shared HAProxy of two simulated
servers (simulated_apps_fleet.py; docs/apps-design.md, decision 7): the shared `up` adding b
while a serves, a's deploy and rollback while b serves, the shared `down` of b while a
serves, a's `up` with a new haproxy.image while b serves (the shared hand-over), a's move
from its own HAProxy (b not there, or on the shared one), each with each kind of fault
(simulated_server.FAULTS) at each call of a clean run on the faulted server, then the next
plain run (the same task, or a's `up`, the next shared change by another app; sometimes
after another plain run, b's deploy). What is held after every single call of every server
(AppsFleet.after_call):

- some HAProxy listens, and it runs a generation (or an app's own config) that passed
  HAProxy's check; where two listen (a hand-over, a move), both answer each app with the
  same version;
- the run's app is answered by the version it served before the run or the one the run
  moves it to, never a 503 while it served, and the version the kit last said serves takes
  its new requests; an app being added has no version yet; one being removed serves its
  version or nothing;
- the other app is answered by the very container that answered it before the run, its
  lines keep their admin states (an app leaving, its `down` cut, may drop out; an app with
  no version yet may come in);

after the run: a documented exit code with its error, or 0; the run's app with one version
in rotation where it had one (the target, after an exit 0); no change on a server after
another run took its lease over; and the next plain run ends clean: exit 0, HAProxy runs
the generation `current` names, which `.running` names too, built from every present app
(by its registration) and no other, each app served as asked, no lock it took left held
(one the faulted run could not release is left to its lease), one shared HAProxy container,
of the image its settings record names, and no app's own HAProxy.

A case that breaks one of these is a violation, kept by (scenario, fault, step);
KNOWN_VIOLATIONS lists the known ones with the reason, KNOWN_SYMPTOMS those known by their
one symptom: a violation not listed fails the test, and so does a listed one that no longer
happens. test_another_apps_run_at_every_call_of_a_deploy makes b's deploy or `down` between
two calls of a's deploy, at each of them (two runs at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slotswap.commands.docker import LABEL_APP
from slotswap.config.layout import (
    GENERATION_PREFIX,
    PROXY_CONTAINER,
    current_link,
    lock_dir,
    own_haproxy_dir,
    proxy_haproxy_dir,
    proxy_lock_dir,
    proxy_running_path,
    proxy_settings_path,
    registration_path,
)
from slotswap.fleet.errors import (
    EXIT_CONNECT,
    EXIT_DEPLOY_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
)
from slotswap.fleet.outcomes import RolloutResult
from slotswap.remote.call_guard import NO_GUARD
from slotswap.server.proxy_locks import SHARED_LOCK_LEASE
from slotswap.server.proxy_registry import parse_settings
from tests.unit.simulated_apps_fleet import (
    APPS,
    HAPROXY_IMAGE,
    NEW_HAPROXY_IMAGE,
    AppsFleet,
    answered,
    is_present,
    process_of,
)
from tests.unit.simulated_server import FAULTS
from tests.unit.simulated_shared_proxy import Mount, load_generation
from tests.unit.simulated_shared_server import SharedSimServer, runs_checked
from tests.unit.test_fault_sweep import (  # noqa: F401 (quiet: autouse fixture)
    Case,
    quiet,
    sweep_server,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: tuple[str, ...]  # plain runs first, in order
    run: str
    next_run: str
    # After the next run: app -> version ("": its backend, no version yet; None: gone, 404;
    # ANY: as the generation's check says, every present app in, no other).
    serves: tuple[tuple[str, str | None], ...]
    servers_faulted: tuple[int, ...] = (0,)
    meanwhile: str = ""  # a plain run between the faulted run and the next, which may fail
    # The shared HAProxy's image after the next run ("": the one its settings record names:
    # a run cut before it wrote them leaves the old one there, for b's `up` too).
    image: str = HAPROXY_IMAGE


ANY = "*"
BOTH = ("up a", "deploy a v1", "up b", "deploy b v1")
# a serves v2 from web2, its v1 stopped in web1 (a reload that loaded an older state of a's
# lines would show).
A_MOVED = ("up a", "deploy a v1", "deploy a v2")
OWN_A = ("up a0", "deploy a0 v1", "deploy a0 v2")
OWN_A8 = ("up a8", "deploy a8 v1", "deploy a8 v2")
SCENARIOS = (
    Scenario("up adding b while a serves", A_MOVED, "up b", "up b",
             (("a", "v2"), ("b", "")), servers_faulted=(0, 1)),
    # Decision 7: b's files and registration written, the switch cut: the next `up` of any
    # app assembles b in (or, where its generation did not go in, b's registration was put
    # back: b is out).
    Scenario("up adding b, then up of a", A_MOVED, "up b", "up a", (("a", "v2"), ("b", ANY))),
    # The same, b deployed meanwhile (its backend runs, or the deploy fails): once b serves,
    # a's `up` keeps it in rotation.
    Scenario("up adding b, b deployed, then up of a", A_MOVED, "up b", "up a",
             (("a", "v2"), ("b", ANY)), meanwhile="deploy b v1"),
    Scenario("deploy of a while b serves", BOTH, "deploy a v2", "deploy a v2",
             (("a", "v2"), ("b", "v1"))),
    Scenario("rollback of a while b serves", (*BOTH, "deploy a v2"), "rollback a",
             "rollback a v1", (("a", "v1"), ("b", "v1"))),
    # a's `up` with a changed setting: a reload with a's new backend, b's lines as they are.
    Scenario("up of a with a change while b serves", BOTH, "up a2", "up a2",
             (("a", "v1"), ("b", "v1"))),
    # a, which owns the shared settings, sets a new haproxy.image: the shared HAProxy handed
    # over to a new container (proxy_handover.py) while both serve; the next plain run is
    # the same `up`, or b's (which takes the image from the settings record).
    Scenario("up of a with a new image while b serves", BOTH, "up a3", "up a3",
             (("a", "v1"), ("b", "v1")), image=NEW_HAPROXY_IMAGE),
    Scenario("up of a with a new image, then up of b", BOTH, "up a3", "up b",
             (("a", "v1"), ("b", "v1")), image=""),
    # The move (proxy_move.up_moving, decision 6): a in today's layout (its own HAProxy,
    # serving v2 from web2), its `up` with haproxy.shared; b not there, or already on the
    # shared HAProxy (a's own on another port then).
    Scenario("move of a", OWN_A, "up a", "up a", (("a", "v2"),)),
    Scenario("move of a while b serves", ("up b", "deploy b v1", *OWN_A8), "up a", "up a",
             (("a", "v2"), ("b", "v1"))),
    Scenario("down of b while a serves", BOTH, "down b", "down b", (("a", "v1"), ("b", None)),
             servers_faulted=(0, 1)),
    # Decision 7: once b is marked leaving, no generation includes it again, whoever
    # assembles the next one.
    Scenario("down of b, then up of a", BOTH, "down b", "up a", (("a", "v1"), ("b", ANY))),
    Scenario("down of b, b deployed, then up of a", BOTH, "down b", "up a",
             (("a", "v1"), ("b", ANY)), meanwhile="deploy b v2"),
    # ... and b's `up` makes it present again.
    Scenario("down of b, then up of b", BOTH, "down b", "up b", (("a", "v1"), ("b", ANY))),
    # A deploy of b where its `down` was cut (b leaving) is refused there (exit 1, nothing
    # changed); the next plain `down` of b finishes, or b's `up` brings it back.
    Scenario("down of b, b deployed, then down of b", BOTH, "down b", "down b",
             (("a", "v1"), ("b", None)), meanwhile="deploy b v2"),
    Scenario("down of b, b deployed, then up of b", BOTH, "down b", "up b",
             (("a", "v1"), ("b", ANY)), meanwhile="deploy b v2"),
)

# (fault, step) -> why. The steps: the server's timing step (slotswap.core.timings) the fault
# struck in, or what the call was ("lock", the command's first words).
# A deploy's or rollback's own (test_fault_sweep.IN_A_DEPLOY, path 4 of issue 21): the
# switch line ran, its answer was lost; until the line back the new version serves while
# the kit has not said so. The same with the shared HAProxy.
SWITCH_ANSWER_LOST = "the switch line's answer lost (issue 21, path 4)"
IN_A_DEPLOY = {(fault, "switch"): SWITCH_ANSWER_LOST for fault in ("deadline", "lost_after")}
KNOWN: dict[str, dict[tuple[str, str], str]] = {
    "deploy of a while b serves": IN_A_DEPLOY,
    "rollback of a while b serves": IN_A_DEPLOY,
}
KNOWN_VIOLATIONS = {(scenario, fault, step): why for scenario, known in KNOWN.items()
                    for (fault, step), why in known.items()}
# Known by their one symptom, whatever the step (scenario -> the symptom, why). None now:
# b's `down` cut once b was marked leaving left b's backend running, and a deploy of b into
# it succeeded, then the next shared change of any app left b out (its names 404); a deploy,
# rollback or maintenance of an app whose registration is missing or leaving is refused now,
# under its lock, before any change (slotswap.server.registration_gate).
KNOWN_SYMPTOMS: dict[str, tuple[re.Pattern[str], str]] = {}
DOCUMENTED_EXITS = (EXIT_DEPLOY_FAILED, EXIT_CONNECT, EXIT_LOCKED, EXIT_INTERRUPTED)


def versions_of(server: SharedSimServer, app: str) -> set[str | None]:
    """The versions of the running containers behind the app's lines in rotation."""
    process = process_of(server, app)
    backend = process.backends.get(app) if process is not None else None
    found: set[str | None] = set()
    for line in backend.usable() if backend is not None else ():
        container = server.container_at(line.port)
        if container is not None and server.answers(container):
            found.add(container.version)
    return found


def check_after_run(fleet: AppsFleet, scenario: Scenario, result: RolloutResult) -> list[str]:
    problems = []
    if result.exit_code != 0 and (result.exit_code not in DOCUMENTED_EXITS
                                  or not result.message):
        problems.append(f"exit {result.exit_code} ({result.message[:80]!r}): no documented "
                        "exit code and error")
    verb, app, *rest = scenario.run.split()
    for server in fleet.servers:
        if server.lease_lost_changes:
            problems.append(f"{server.name}: changed after its lease was taken over: "
                            f"{server.lease_lost_changes[0][:80]}")
        if server.lease_taken or verb not in ("deploy", "rollback"):
            continue
        versions = versions_of(server, app)
        if len(versions) != 1:
            problems.append(f"{server.name}: {app} {sorted(map(str, versions))} in rotation "
                            "after the run")
        elif result.exit_code == 0 and rest and versions != {rest[0]}:
            problems.append(f"{server.name}: exit 0, {app} serves {versions}")
    return problems


def locks(fleet: AppsFleet) -> list[str]:
    first = fleet.inventories["a"]
    return [proxy_lock_dir(first), *(lock_dir(inventory)
                                     for inventory in fleet.inventories.values())]


def plain_run(fleet: AppsFleet, command: str) -> RolloutResult:
    """A plain run; once more when a lock the faulted run could not release refused it
    (exit 4): such a lock expires after its lease (the operator is told), and the run
    after that takes it."""
    result = fleet.run(command)
    if result.exit_code == EXIT_LOCKED:
        for server in fleet.servers:
            for lock in locks(fleet):
                if server.files.is_dir(lock):
                    server.files.set_mtime(lock, server.files.mtime(lock)
                                           - SHARED_LOCK_LEASE - 5)
        result = fleet.run(command)
    return result


def check_next_run(fleet: AppsFleet, scenario: Scenario) -> list[str]:
    """The faulted run's leftovers as an operator finds them (another run's lock after its
    lease, an engine that answers again); the next plain run must end clean."""
    for server in fleet.servers:
        server.faults, server.frozen = [], False
        if server.lease_taken:
            server.files.remove_tree(lock_dir(server.inventory))
            server.lease_taken, server.lease_lost_changes = False, []
            server.call_guard = NO_GUARD
    problems = []
    if scenario.meanwhile:
        # Another plain run first, which may fail (a documented exit, its error), holding
        # the invariant at every call as any run does.
        fleet.problems = []
        result = plain_run(fleet, scenario.meanwhile)
        problems += [f"then `{scenario.meanwhile}`: {p}" for p in fleet.problems]
        if result.exit_code not in (0, *DOCUMENTED_EXITS) or (result.exit_code
                                                               and not result.message):
            problems.append(f"then `{scenario.meanwhile}` exited {result.exit_code}")
    fleet.problems = []
    left = {(server.name, lock): server.read_local(f"{lock}/owner.json")
            for server in fleet.servers for lock in locks(fleet)}
    result = plain_run(fleet, scenario.next_run)
    problems += [f"next `{scenario.next_run}`: {p}" for p in fleet.problems]
    if result.exit_code != 0:
        problems.append(f"next `{scenario.next_run}` exited {result.exit_code}: "
                        f"{result.message[:200]}")
    for server in fleet.servers:
        problems += [f"next `{scenario.next_run}`: {server.name}: {p}"
                     for p in clean_state(fleet, scenario, server)]
        # A lock the faulted run could not release (its connection lost, its lease taken
        # over) is left to its lease, as an app's own lock (docs/apps-design.md, decision
        # 7: "lease, stale take-over"); the next run releases every lock it took.
        held = [lock for lock in locks(fleet) if server.files.is_dir(lock) and
                server.read_local(f"{lock}/owner.json") != left[(server.name, lock)]]
        if held:
            problems.append(f"next `{scenario.next_run}`: {server.name}: locks left held: "
                            f"{held}")
    return problems


def clean_state(fleet: AppsFleet, scenario: Scenario, server: SharedSimServer) -> list[str]:
    """After a clean run: one shared HAProxy runs the generation `current` names, which it
    was seen running (`.running`) and which passed its check; each app served as asked, a
    removed one with no container and no registration."""
    problems = []
    inventory = fleet.inventories["a"]
    proxies = [(c.name, c.running, c.image) for c in server.haproxy_containers()]
    settings = server.read_local(proxy_settings_path(inventory))
    image = scenario.image or str(parse_settings(settings or "{}", "settings").values.get(
        "haproxy.image", HAPROXY_IMAGE))
    if proxies != [(PROXY_CONTAINER, True, image)]:
        problems.append(f"HAProxy containers {proxies}")
    if server.files.is_dir(own_haproxy_dir(fleet.inventories["a0"])):
        problems.append("a's own HAProxy's folder is left")
    current = server.files.links.get(current_link(inventory))
    running = (server.read_local(proxy_running_path(inventory)) or "").strip()
    if current is None or current != f"{GENERATION_PREFIX}{running}":
        problems.append(f"current is {current}, .running says {running!r}")
    elif server.haproxy.config != load_generation(Mount(server.files,
                                                        proxy_haproxy_dir(inventory))):
        problems.append("HAProxy does not run the generation current names")
    if not runs_checked(server):
        problems.append("HAProxy runs a config that never passed its check")
    # The generation is a function of the registrations: every present app, no other.
    present = sorted(app for app in APPS if is_present(server, app))
    if sorted(server.haproxy.backends) != present:
        problems.append(f"HAProxy runs the backends {sorted(server.haproxy.backends)}, the "
                        f"registrations present are {present}")
    for app, version in scenario.serves:
        if version == ANY:
            continue
        got = answered(server, app)
        registered = server.files.is_file(registration_path(inventory, app))
        if version is None:
            containers = [c.name for c in server.containers.values()
                          if c.labels.get(LABEL_APP) == app]
            if got is None or got.backend is not None or containers or registered \
                    or app in server.haproxy.backends:
                problems.append(f"{app} answered {got}, its containers {containers}, "
                                f"registered: {registered}")
        elif got is None or got.backend != app or (version and got.version != version) \
                or versions_of(server, app) != ({version} if version else set()):
            problems.append(f"{app} answered {got}, {versions_of(server, app)} in rotation, "
                            f"not {version or 'its backend, no version yet'}")
    return problems


def clean_run(scenario: Scenario, root: Path, monkeypatch: Any) -> tuple[AppsFleet, list[int]]:
    fleet = AppsFleet(root / "template", 2, monkeypatch)
    for command in scenario.setup:
        result = fleet.run(command)
        assert result.exit_code == 0 and fleet.problems == [], (command, result.message,
                                                                fleet.problems)
    clean = fleet.clone(root / "clean", monkeypatch)
    before = [server.calls for server in clean.servers]
    result = clean.run(scenario.run)
    calls = [server.calls - b for server, b in zip(clean.servers, before, strict=True)]
    assert result.exit_code == 0, result.message
    assert clean.problems == [] and check_after_run(clean, scenario, result) == []
    assert check_next_run(clean, scenario) == []
    return fleet, calls


def sweep(scenario: Scenario, index: int, root: Path,
          monkeypatch: Any) -> tuple[int, list[Case]]:
    template, calls = clean_run(scenario, root, monkeypatch)

    def checks(fleet: AppsFleet, result: RolloutResult | None) -> list[str]:
        return ((check_after_run(fleet, scenario, result) if result is not None else [])
                + check_next_run(fleet, scenario))
    return sweep_server(template, index, calls[index], scenario.name, root, monkeypatch,
                        run=lambda fleet: fleet.run(scenario.run), checks=checks)


CASES = [(scenario, index) for scenario in SCENARIOS for index in scenario.servers_faulted]


@pytest.mark.parametrize(("scenario", "index"), CASES,
                         ids=[f"{s.name}, server {i + 1} faulted" for s, i in CASES])
def test_every_fault_at_every_call_with_two_apps(scenario: Scenario, index: int,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    count, cases = sweep(scenario, index, tmp_path, monkeypatch)
    symptom, why = KNOWN_SYMPTOMS.get(scenario.name, (None, ""))
    by_symptom = [case for case in cases if symptom is not None
                  and all(symptom.match(problem) for problem in case.problems)]
    cases = [case for case in cases if case not in by_symptom]
    found = {case.key for case in cases}
    known = {key for key in KNOWN_VIOLATIONS if key[0] == scenario.name}
    with capsys.disabled():
        print(f"\n{scenario.name}, server {index + 1}: {count} cases "
              f"({count // len(FAULTS)} calls x {len(FAULTS)} faults), {len(cases)} "
              f"violating, {len(found)} distinct"
              + (f"; {len(by_symptom)} more known: {why}" if by_symptom else ""))
        for key in sorted(found):  # (a case known by its symptom is not among them)
            first = next(case for case in cases if case.key == key)
            print(f"  {KNOWN_VIOLATIONS.get(key, 'NEW')}: {key[1]} in [{key[2]}], "
                  f"{sum(case.key == key for case in cases)} calls, e.g. call {first.at}: "
                  f"{first.problems[0][:240]}")
    unknown = sorted(found - known)
    assert not unknown, f"violations of no known path: {unknown}"
    if index == 0:  # the known paths are the first server's
        gone = sorted(known - found)
        assert not gone, f"these no longer happen, remove this entry: {gone}"
        assert by_symptom or symptom is None, f"{why}: no longer happens, remove the entry"


def test_the_apps_fleet_serves_both_apps_after_its_setup(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    fleet = AppsFleet(tmp_path, 2, monkeypatch)
    for command in BOTH:
        assert fleet.run(command).exit_code == 0, command
    for server in fleet.servers:
        assert [repr(answered(server, app)) for app in APPS] == ["a-web1 (v1)", "b-web1 (v1)"]


# Two apps' runs at once (decision 7's first row), seen at every interleaving of the second
# in the first: b's whole run made before each call of a's deploy on the first server. b's
# deploy goes through, a answering with v1 or v2 meanwhile, b with v1 or its new version,
# never a 503 (which version the kit last said is not held here: the progress lines of two
# runs name no app); b's `down` waits for no one: it is refused on a's lock (exit 4, nothing
# changed).
AT_ONCE = (("deploy b v2", (0,), ("v2", "v2")), ("down b", (0, EXIT_LOCKED), ("v2", None)))


@pytest.mark.parametrize(("inside", "exits", "serves"), AT_ONCE, ids=[c[0] for c in AT_ONCE])
def test_another_apps_run_at_every_call_of_a_deploy(inside: str, exits: tuple[int, ...],
                                                    serves: tuple[str, str | None],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    template = AppsFleet(tmp_path / "template", 2, monkeypatch)
    for command in BOTH:
        assert template.run(command).exit_code == 0
    clean = template.clone(tmp_path / "clean", monkeypatch)
    before = clean.servers[0].calls
    assert clean.run("deploy a v2").exit_code == 0
    failures, seen = [], set()
    for at in range(1, clean.servers[0].calls - before + 1):
        fleet = template.clone(tmp_path / f"c{at}", monkeypatch)
        fleet.meanwhile = (fleet.servers[0].calls + at, inside)
        fleet.runs_at_once = True
        result = fleet.run("deploy a v2")
        if not fleet.inside:  # fewer calls this time (the watches' looks): made after it
            fleet.meanwhile = None
            fleet.inside.append((inside, fleet.run(inside)))
        [(_, other)] = fleet.inside
        seen.add(other.exit_code)
        problems = [*fleet.problems]
        if result.exit_code != 0 or other.exit_code not in exits:
            problems.append(f"deploy a exited {result.exit_code}, `{inside}` exited "
                            f"{other.exit_code}: {(result.message or other.message)[:160]}")
        for server in fleet.servers:
            got = (answered(server, "a"), answered(server, "b"))
            wanted_b = serves[1] if other.exit_code == 0 else "v1"
            if got[0] is None or got[0].version != serves[0] or got[1] is None \
                    or got[1].version != wanted_b:
                problems.append(f"{server.name}: a and b answered {got}")
        for command in ("deploy a v2", inside if other.exit_code else ""):
            if command and (done := plain_run(fleet, command)).exit_code != 0:
                problems.append(f"next `{command}` exited {done.exit_code}: {done.message}")
        problems += fleet.problems
        if problems:
            failures.append(f"call {at}: {problems[0][:240]}")
    assert failures == []
    assert seen == set(exits)  # b's down: made before a's deploy took its lock, and refused
