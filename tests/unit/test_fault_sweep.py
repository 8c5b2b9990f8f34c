"""Every fault at every step: the kit's own deploy and rollback (slotswap.fleet.rollout, as
`fab deploy` and `fab rollback` run them), maintenance on and off (server/maintenance.py)
a certificate's install from files (https/install.py, as `fab certs.renew` runs it) and
`fab up` with a changed setting (server/haproxy.py: the config checked, then a reload)
and with a new HAProxy image (server/haproxy_handover.py: a new container takes over),
through fleet.every_server as the tasks run them, against simulated servers
(simulated_server.py), with each kind of fault (simulated_server.FAULTS) at each call of a
clean run, then the next plain run. What is held after every single call, and at the end:

- a request gets an answer: some slot in rotation runs a version (no 503 but the
  maintenance page), and only the version the server served before the run or the one it
  moves to ("foreign version" else);
- the maintenance page answers while the kit last said maintenance is on there, and never
  once it said it is off; HAProxy serves the old certificate or the new one, never none,
  and the new one once the kit said it installed it; some HAProxy listens, it runs the
  old config or the new one, and the config kept to put back is one it ran (issue 21,
  path 8);
- after the run, one version in rotation; the summary (each server's `serving`), the
  history's last entry and the exit code say what serves; a failed run exits with a
  documented code and its error; maintenance that exits 0 is on (or off) everywhere, a
  certificate's install that exits 0 is served and in the file everywhere;
- a release command (a migration in a one-off container) never runs beside another, and
  none is left running once its run ended (issue 21, path 6);
- the run never changes a server after another run took its lease over;
- the next plain run ends clean: exit 0, the version it names everywhere, no manual step
  (after `up`, one HAProxy container, of the new image, runs the new config: the file,
  and the record of what runs, too; a hand-over cut past its point of no return is
  finished, issue 21 path 3).

A case that breaks one of these is a violation, kept by (scenario, fault, step): the step
of the server's run the fault struck in. KNOWN_VIOLATIONS holds those of the paths to an
outage that issue 21 lists, each with its path's number: the test fails on a violation not
in the table, and on an entry that no longer happens ("remove this entry": a fix landed).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slotswap.commands.docker import LABEL_ROLE
from slotswap.config.layout import (
    cert_path_on_server,
    haproxy_dir,
    lock_dir,
)
from slotswap.fleet import rollout
from slotswap.fleet.errors import (
    EXIT_CONNECT,
    EXIT_DEPLOY_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
)
from slotswap.fleet.outcomes import Outcome, RolloutResult
from slotswap.remote.call_guard import NO_GUARD
from slotswap.server import history
from tests.unit.simulated_fleet import (
    TASKS,
    Fleet,
    runs_config,
    worker_versions,
)
from tests.unit.simulated_server import (
    FAULTS,
    Fault,
    lines_in_rotation,
    versions_in_rotation,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    hosts: int
    setup: tuple[str, ...]  # tags deployed cleanly first, in order
    run: str  # "deploy TAG", "rollback" (plain), "rollback TAG" (--to)
    next_run: str
    batch: int = 1
    # Several servers work at once (the window's watches, a batch): which call is the k-th
    # of a server depends on how the threads meet, so a case's step may vary from one
    # sweep to the next: violations are held to the table one way only (none unknown).
    exact: bool = True
    servers_faulted: tuple[int, ...] = (0,)
    clean_exit: int = 0  # what the run exits with when no fault strikes
    next_serves: str = ""  # what the next run leaves serving (default: the tag it names)
    prepare: str = ""  # a command run cleanly after the setup ("maintenance on")
    https: bool = False  # each server serves an old certificate, the inventory has a new one
    release: bool = False  # the inventory has a release command (a migration)
    roles: bool = False  # the inventory has a worker role (two containers on every host)
    worker_only: int = 0  # the last hosts run the workers alone (web: false)
    # The setup ran with the worker role, the run and the next one without (its whole
    # section removed): the workers must stop, their jobs finished.
    roles_removed: bool = False
    # The run's version fails (in its watch) on this server alone: the others are good.
    fails_only_on: int | None = None
    # The run's version's workers crash in the window on this server alone.
    workers_crash_on: int | None = None


SCENARIOS = (
    Scenario("deploy, one server", 1, ("v1",), "deploy v2", "deploy v2"),
    # Path 6: the release command (a migration) runs once, on the first server, before any
    # traffic moves; cut, its container is killed, never left running beside the next one.
    Scenario("deploy with a release command, one server", 1, ("v1",), "deploy v2",
             "deploy v2", release=True),
    Scenario("deploy, three servers, window", 3, ("v1",), "deploy v2", "deploy v2",
             exact=False, servers_faulted=(1,)),
    Scenario("rollback, one server", 1, ("v1", "v2"), "rollback", "rollback v1"),
    Scenario("deploy, four servers, batch 2", 4, ("v1",), "deploy v2", "deploy v2",
             batch=2, exact=False, servers_faulted=(1,)),
    # v3 passes its checks, then fails 0.3s after its start, in its watch: switched back.
    Scenario("deploy failing in its watch, one server", 1, ("v1",), "deploy v3",
             "deploy v2", clean_exit=EXIT_DEPLOY_FAILED),
    # What users expect after an interrupted or failed deploy (issue 21, path 4): a plain
    # `rollback` undoes it; a server it did not move stays as it is.
    Scenario("deploy, then a plain rollback, one server", 1, ("v1",), "deploy v2",
             "rollback", next_serves="v1"),
    # Maintenance (server/maintenance.py, as `fab maintenance.on` and `.off` run it): the
    # page answers every request on a server from the instant the kit turns it on there
    # (or earlier: the map file is written first) until it turns it off; the version in
    # rotation never changes. Two servers: the second is turned after the first.
    Scenario("maintenance on, two servers", 2, ("v1",), "maintenance on", "maintenance on",
             servers_faulted=(0, 1), next_serves="v1"),
    Scenario("maintenance on, then off, two servers", 2, ("v1",), "maintenance on",
             "maintenance off", servers_faulted=(0, 1), next_serves="v1"),
    Scenario("maintenance off, two servers", 2, ("v1",), "maintenance off",
             "maintenance off", servers_faulted=(0, 1), next_serves="v1",
             prepare="maintenance on"),
    # A certificate's install from files (`fab certs.renew`, https/install.py): HAProxy
    # serves the old or the new one at every instant, never none, the new one from the
    # instant the kit says it is installed; the version in rotation never changes.
    Scenario("certificate from files, two servers", 2, ("v1",), "certs renew",
             "certs renew", servers_faulted=(0, 1), next_serves="v1", https=True),
    # `fab up` with a changed setting (`up new`: the healthcheck's interval, in the config's
    # default-server line) on servers that `up` set up (HAProxy in its container): HAProxy
    # checks it, then reloads with it. HAProxy runs the old config or the new one, never
    # none; the version in rotation never changes; the next `up` runs the new one.
    # The first server faulted (the second runs as it does beside a fault: every_server).
    Scenario("up with a config change, two servers", 2, ("v1",), "up new", "up new",
             next_serves="v1", prepare="up"),
    # `fab up` with a new haproxy.image (`up image`): the hand-over to a new container
    # (server/haproxy_handover.py). Some HAProxy listens at every call; the next `up`
    # finishes a hand-over cut past its point of no return (issue 21, path 3).
    Scenario("up with a new HAProxy image, two servers", 2, ("v1",), "up image", "up image",
             next_serves="v1", prepare="up"),
    # Worker roles (issue 22): the new version's workers start after the web switch, pass
    # their check, the old ones stop once the version is proven; a role that had a worker
    # has one after every call, one version of it after the run, and the next run leaves
    # the version it names everywhere, web and workers.
    Scenario("deploy with workers, one server", 1, ("v1",), "deploy v2", "deploy v2",
             roles=True),
    # v4's workers crash 0.5 s after each start: their check fails, the server goes back.
    Scenario("deploy whose workers crash, one server", 1, ("v1",), "deploy v4",
             "deploy v2", roles=True, clean_exit=EXIT_DEPLOY_FAILED),
    Scenario("rollback with workers, one server", 1, ("v1", "v2"), "rollback",
             "rollback v1", roles=True),
    Scenario("deploy with a worker-only host, two servers", 2, ("v1",), "deploy v2",
             "deploy v2", roles=True, worker_only=1, servers_faulted=(1,)),
    Scenario("deploy with workers, two servers, batch 2", 2, ("v1",), "deploy v2",
             "deploy v2", roles=True, batch=2, exact=False, servers_faulted=(1,)),
    Scenario("deploy after the roles section was removed, one server", 1, ("v1",),
             "deploy v2", "deploy v2", roles=True, roles_removed=True),
    # `--on-failure=rollback`: v3 fails in its watch on the last server alone; the servers
    # it moved before go back to v1. The first one faulted: its swap, then its way back.
    Scenario("deploy failing on the last of three servers, --on-failure=rollback", 3,
             ("v1",), "deploy v3 --on-failure=rollback", "deploy v2", exact=False,
             clean_exit=EXIT_DEPLOY_FAILED, fails_only_on=2),
    # The same with workers: v2's crash 1.3 s after their start (past their check) on the
    # second server alone; the first goes back, web and workers.
    Scenario("workers crashing on the second of two servers, --on-failure=rollback", 2,
             ("v1",), "deploy v2 --on-failure=rollback", "deploy v1", roles=True,
             exact=False, clean_exit=EXIT_DEPLOY_FAILED, workers_crash_on=1),
)

# (scenario, fault, step) -> the path number. Steps: the server's timing step the
# fault struck in (slotswap.core.timings; "lock" and "history" for the lock's and the
# history's scripts).
# Paths 10 and 11 are not in the list (found by this sweep):
# 10 (fixed): a failure after the watch, in "verify, stop old", left the old slot's fallback
#     line ready and its container running, the history saying "failed" from the old version
#     while the new one served; the proven version now stays alone (swap_retire.retire_old).
# 11 (fixed: the append is sent again once over a new connection) was a history entry lost
#     at its append, which left the history saying the old version was the last deployed.
PATH_SWITCH_REPLY_OR_WINDOW, PATH_HAPROXY_FORGETS, PATH_LEASE = 4, 2, 5
# Where a fault breaks the rule in a deploy, by (fault, step); the same on one server, in a
# window of three and in a batch.
IN_A_DEPLOY: dict[tuple[str, str], int] = {
    # The switch line ran, its answer was lost: until the line back (the very next call) the
    # new version, checked, serves while the kit has not said so. What is left of path 4:
    # the instant of a lost answer, which no order of calls can close.
    **{(fault, "switch"): PATH_SWITCH_REPLY_OR_WINDOW for fault in ("deadline", "lost_after")},
    # (Cut in the window at its last look, the new version was kept as proven, the history
    # saying "failed" from the old one: a look cut off proves nothing now, see path 1.)
    # Paths 2 and 12 (a restarted HAProxy starting from an older state), 5 (a run that lost
    # its lease), 10 (a failure after the watch) and 11 (a lost history entry) no longer
    # happen at any step: the state file is written ahead of each line that moves traffic,
    # every call asks the run's lease, retiring the old slot has its own recovery, and the
    # history's append is sent again over a new connection.
}
IN_A_ROLLBACK = IN_A_DEPLOY
# A new version that fails in its watch. Fixed: a failed clean-up after the switch back
# never takes the old slot out again, and a watch cut off at its last look (the one that
# would have seen the new version fail) keeps no unproven version (it took the old slot out,
# and nothing served). Left: the answer to the switch back's line lost (a deadline, or the
# connection lost after it ran): the traffic is back on the old slot before the kit can say
# so, which it does once the line, sent again, is answered (path 1: "the reply to the back
# line").
PATH_SWITCH_BACK_CLEANUP = 1
# The answer to the line back lost in the watch (a deadline, or the connection lost after it).
BACK_LINE_LOST_IN_WATCH = {(fault, "watch"): PATH_SWITCH_BACK_CLEANUP
                           for fault in ("deadline", "lost_after")}
FAILING_IN_WATCH = {
    # (A frozen engine: the version fails, the traffic goes back, no verify to meet it.)
    **{key: path for key, path in IN_A_DEPLOY.items() if key[1] in ("switch", "watch")
       and key[0] != "frozen_engine"},
    # HAProxy restarted in the window of the version that then fails: the new process counts
    # it up (the state file says so) until its checks fail again; meanwhile the old slot's
    # fallback line takes what it cannot, and the kit says the failing version serves until
    # its watch sees the failure and sends the traffic back (a late report, no failed
    # request).
    **{("haproxy_restart", step): PATH_HAPROXY_FORGETS for step in ("switch", "watch")},
    **BACK_LINE_LOST_IN_WATCH,
}


# A plain `rollback` after a deploy cut anywhere: the paths of the deploy itself stand. A
# deploy that took the lock and stopped before any swap records its entry ("not started",
# "failed", "interrupted"), so the rollback finds it moved nothing: nothing left to undo,
# exit 0. Where it could not take the lock (lost, or past its deadline, or another run
# holds it) it changed nothing and left no entry: the rollback undoes the run before it,
# the first deploy of v1, and finds no earlier version (path 4). A lease taken over (path 5)
# leaves this run no entry either; the run that took it over records its own.
THEN_ROLLBACK = {
    **IN_A_DEPLOY,
    **{(fault, "connect, lock"): PATH_SWITCH_REPLY_OR_WINDOW
       for fault in ("deadline", "lost_after", "lost_before", "lease_taken")},
    # The run that took the lease over is not simulated: it would record its own entries,
    # and the rollback would undo that run.
    **{("lease_taken", step): PATH_LEASE
       for step in ("image", "unchanged?", "read slots", "idle slot out", "start new",
                    "health checks", "switch")},
}


# Maintenance on and off, a certificate's install: nothing breaks the rule.
IN_A_TASK: dict[tuple[str, str], int] = {}

# Worker roles (issue 22). A Docker engine that stops answering once the new workers run
# (a frozen engine; a deadline on the look before the old slot goes, after which the kit
# sends Docker nothing more) leaves both versions' workers running: nothing can stop them,
# and the kit says so; the next run stops the old ones. Never zero workers, at any call.
PATH_ROLES_DOCKER_SILENT = 22
DOCKER_SILENT_WITH_WORKERS = {("frozen_engine", step): PATH_ROLES_DOCKER_SILENT
                              for step in ("roles", "watch", "verify, stop old")}
WORKERS_DEPLOY = {**IN_A_DEPLOY, **DOCKER_SILENT_WITH_WORKERS,
                  ("deadline", "verify, stop old"): PATH_ROLES_DOCKER_SILENT}
# Workers that fail their check: the answer to the line back lost, as in a watch (path 1).
WORKERS_FAILING = {**IN_A_DEPLOY, ("frozen_engine", "roles"): PATH_ROLES_DOCKER_SILENT,
                   **{(fault, "roles"): PATH_SWITCH_BACK_CLEANUP
                      for fault in ("deadline", "lost_after")}}


# Not a path of the kit: the simulation has one clock for every thread, and a call that
# hangs (a frozen Docker engine waiting out its deadline, a lease taken over) moves it on by
# the whole deadline at once, while a watch in the window looks only when the rollout waits
# for the window (SimClock.sleep). Meanwhile HAProxy's checks take another server's failing
# new slot out and its fallback line (the old version, drained and up, as the kit said)
# answers, before that server's watch looks and says so. On real servers each watch looks
# every 0.25 s on its own thread, whatever another server's call waits for.
SIM_ONE_CLOCK = 0
# Its one symptom, on a server the fault did not strike; a case under a SIM_ONE_CLOCK entry
# with any other problem is a violation of no known path.
LATE_LOOK = re.compile(r"^(\S+): v\d+ takes the traffic, the kit said v\d+ serves, after ")


def only_a_late_look(case: Case) -> bool:
    return all((found := LATE_LOOK.match(problem)) is not None and found[1] != case.server
               for problem in case.problems)
# --on-failure=rollback, the run's version failing on its last server: a deploy's paths on
# the faulted first server (which it moves, then back: the answer to the line back lost, as
# in a watch, path 1), and the simulation's one clock.
ON_FAILURE_ROLLBACK = {
    **IN_A_DEPLOY,
    **BACK_LINE_LOST_IN_WATCH,
    **{(fault, step): SIM_ONE_CLOCK for fault in ("frozen_engine", "lease_taken")
       for step in ("image", "unchanged?", "read slots", "idle slot out", "start new",
                    "health checks", "switch", "watch", "verify, stop old", "prune images",
                    "history")}}


def known_in(scenario: Scenario) -> dict[tuple[str, str], int]:
    if scenario.fails_only_on is not None:
        return ON_FAILURE_ROLLBACK
    if scenario.workers_crash_on is not None:
        # The first server, moved and then sent back, as in a deploy with workers (the
        # answer to the line back lost, path 1).
        return {**WORKERS_DEPLOY, **WORKERS_FAILING, **BACK_LINE_LOST_IN_WATCH}
    if scenario.worker_only:
        return DOCKER_SILENT_WITH_WORKERS  # the faulted server: the worker-only one
    if scenario.roles_removed:
        # The workers left stop after the window; a cut there leaves them to the next run,
        # which stops them (check_next_run): a deploy's paths alone.
        return IN_A_DEPLOY
    if scenario.roles:
        return WORKERS_FAILING if scenario.clean_exit else WORKERS_DEPLOY
    if scenario.run.split()[0] in TASKS:
        return IN_A_TASK
    if scenario.run.startswith("rollback"):
        return IN_A_ROLLBACK
    if scenario.next_run == "rollback":
        return THEN_ROLLBACK
    return FAILING_IN_WATCH if scenario.clean_exit else IN_A_DEPLOY


KNOWN_VIOLATIONS: dict[tuple[str, str, str], int] = {
    (scenario.name, fault, step): path for scenario in SCENARIOS
    for (fault, step), path in known_in(scenario).items()}


@dataclass
class Case:
    scenario: str
    fault: str
    server: str
    at: int
    step: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scenario, self.fault, self.step)


SERVING = re.compile(r"(v\d+) in web\d")
WORKERS_SERVING = re.compile(r"(?:^|; )(v\d+) \(")  # a worker-only host's: `v2 (worker x2)`
DOCUMENTED_EXITS = (EXIT_DEPLOY_FAILED, EXIT_CONNECT, EXIT_LOCKED, EXIT_INTERRUPTED)


def release_commands(fleet: Fleet) -> list[str]:
    """Path 6: a release command still running once its run ended (the kit kills its
    container on a deadline, a lost connection, an interrupt), or started beside another."""
    problems = [f"{server.name}: release command {name} started while another ran"
                for server in fleet.servers for name in server.one_offs_overlapping]
    return problems + [
        f"{server.name}: release command {c.name} still running after the run"
        for server in fleet.servers for c in server.containers.values()
        if c.running and c.labels.get(LABEL_ROLE) == "release"]


def check_after_run(fleet: Fleet, result: RolloutResult) -> list[str]:
    """One version in rotation on each server, and the summary, the history and the exit
    code saying which; no release command left running."""
    problems = release_commands(fleet) + worker_versions_after(fleet, result)
    serving = fleet.serving()
    for server in fleet.servers:
        if not server.host.web:
            continue  # worker_versions_after
        versions = serving[server.name]
        outcome = next(o for o in result.outcomes if o.name == server.name) \
            if result.outcomes else None
        if server.lease_taken:
            # Another run took this server's lock over: this run leaves it as it was when it
            # lost the lease (changing nothing more, held below), that run repairs it.
            if server.lease_lost_changes:
                problems.append(f"{server.name}: changed after its lease was taken over: "
                                f"{server.lease_lost_changes[0][:80]}")
            continue
        if len(versions) != 1:
            problems.append(f"{server.name}: {sorted(map(str, versions))} in rotation after "
                            f"the run ({', '.join(lines_in_rotation(server))})")
            continue
        version = next(iter(versions))
        if outcome is not None:
            said = set(SERVING.findall(outcome.serving))
            if said and said != {version}:
                problems.append(f"{server.name}: the summary says {outcome.serving!r}, "
                                f"{version} serves")
            if result.exit_code == 0 and version != outcome.new_tag:
                problems.append(f"{server.name}: exit 0, yet {version} serves, not "
                                f"{outcome.new_tag}")
        entries = history.parse_history(server.read_local(
            history.history_path(fleet.inventory)) or "")
        last = entries[-1] if entries else None
        # An automatic rollback (--on-failure=rollback) is a rollback entry "rolled back"
        # to the version it returned to; a deploy's "rolled back" stays on its from_tag.
        automatic = last is not None and last.task == "rollback" \
            and last.outcome == "rolled back"
        if last is not None and (last.outcome in ("deployed", "unchanged") or automatic) \
                and last.to_tag != version:
            problems.append(f"{server.name}: its history says {last.to_tag} was "
                            f"{last.outcome}, {version} serves")
        if last is not None and last.outcome in ("failed", "not switched", "rolled back") \
                and not automatic and last.from_tag and last.from_tag != version:
            problems.append(f"{server.name}: its history says {last.outcome} (from "
                            f"{last.from_tag}), {version} serves")
        if server.lease_lost_changes:
            problems.append(f"{server.name}: changed after its lease was taken over: "
                            f"{server.lease_lost_changes[0][:80]}")
    if result.exit_code == 0 and not all(o.outcome in (Outcome.DEPLOYED, Outcome.UNCHANGED)
                                         for o in result.outcomes):
        problems.append("exit 0 with a server not deployed")
    if result.exit_code == 0:
        problems += task_as_asked(fleet)
    elif result.exit_code not in DOCUMENTED_EXITS or not result.message:
        problems.append(f"exit {result.exit_code} ({result.message[:80]!r}): no documented "
                        "exit code and error")
    return problems


def worker_versions_after(fleet: Fleet, result: RolloutResult) -> list[str]:
    """Issue 22: after the run one version of the workers runs on each server (the one in
    rotation there; on a worker-only host the one the summary names)."""
    if not fleet.inventory.roles:
        return []
    problems = []
    for server in fleet.servers:
        if server.lease_taken:
            continue
        versions = worker_versions(server)
        outcome = next((o for o in result.outcomes if o.name == server.name), None)
        web = versions_in_rotation(server) if server.host.web else None
        if len(versions) != 1:
            problems.append(f"{server.name}: workers of {sorted(map(str, versions))} run "
                            "after the run")
        elif web is not None and versions != web:
            problems.append(f"{server.name}: workers of {next(iter(versions))} run, "
                            f"{sorted(map(str, web))} in rotation")
        elif web is None and outcome is not None and \
                set(WORKERS_SERVING.findall(outcome.serving)) - versions:
            problems.append(f"{server.name}: the summary says {outcome.serving!r}, workers "
                            f"of {next(iter(versions))} run")
    return problems


def task_as_asked(fleet: Fleet) -> list[str]:
    """After a run that exits 0: the page answers on every server if maintenance was turned
    on, on none if it was turned off; every server serves the new certificate, from its
    file too, when it was installed; HAProxy runs the config `up` rendered."""
    if fleet.asked_config is not None:
        return [f"{server.name}: up exited 0, HAProxy does not run its config" for server
                in fleet.servers if not runs_config(server, fleet.asked_config)] + [
            f"{server.name}: up exited 0, HAProxy's containers are "
            f"{[(c.name, c.image, c.running) for c in server.haproxy_containers()]}"
            for server in fleet.servers if [(c.name, c.image, c.running) for c in
                                            server.haproxy_containers()]
            != [(fleet.inventory.haproxy_container, fleet.asked_image, True)]]
    if fleet.certs:
        path = cert_path_on_server(haproxy_dir(fleet.inventory))
        return [f"{server.name}: exit 0, the new certificate is not in place" for server
                in fleet.servers if {server.haproxy.cert, server.read_local(path)}
                != {fleet.certs[1]}]
    if fleet.asked_page is None:
        return []
    return [f"{server.name}: maintenance {'on' if fleet.asked_page else 'off'} exited 0, "
            f"the page {'does not answer' if fleet.asked_page else 'answers'}"
            for server in fleet.servers if server.maintenance != fleet.asked_page]


def check_next_run(fleet: Fleet, command: str, target: str = "") -> list[str]:
    """After the faulted run: what the other run left behind goes (its lock), the engine
    answers again; the next plain run must end clean."""
    for server in fleet.servers:
        server.faults, server.frozen = [], False
        if server.lease_taken:
            server.files.remove_tree(lock_dir(fleet.inventory))
            server.lease_taken, server.lease_lost_changes = False, []
            server.call_guard = NO_GUARD  # the faulted run's lost lease: a new run, a new Server
    fleet.problems = []
    result = fleet.run(command)
    if result.exit_code == EXIT_LOCKED:
        # A lock the faulted run could not release (or never knew it took): it expires
        # after its lease, which the operator is told; the next run after that takes it.
        for server in fleet.servers:
            lock = lock_dir(fleet.inventory)
            if server.files.is_dir(lock):
                server.files.set_mtime(lock, server.files.mtime(lock)
                                       - fleet.inventory.timeouts.lease - 5)
        result = fleet.run(command)
    problems = [f"next `{command}`: {p}" for p in fleet.problems]
    target = target or command.split()[-1]
    if result.exit_code != 0:
        problems.append(f"next `{command}` exited {result.exit_code}: {result.message[:160]}")
    for server in fleet.servers:
        versions = versions_in_rotation(server) if server.host.web else {target}
        if versions != {target}:
            problems.append(f"next `{command}`: {server.name} serves "
                            f"{sorted(map(str, versions))}")
        if worker_versions(server) != ({target} if fleet.inventory.roles else set()):
            problems.append(f"next `{command}`: {server.name} runs workers of "
                            f"{sorted(map(str, worker_versions(server)))}")
    return problems + [f"next `{command}`: {p}"
                       for p in task_as_asked(fleet) + release_commands(fleet)]


def clean_run(scenario: Scenario, root: Path, monkeypatch: Any) -> tuple[Fleet, list[int]]:
    """The scenario's servers after its setup, and how many calls each server gets in a
    clean run (which must hold everything)."""
    fleet = Fleet(root / "template", scenario.hosts, monkeypatch, https=scenario.https,
                  release=scenario.release, roles=scenario.roles,
                  worker_only=scenario.worker_only)
    for tag in scenario.setup:
        assert fleet.run(f"deploy {tag}").exit_code == 0
    if scenario.prepare:
        assert fleet.run(scenario.prepare).exit_code == 0
    if scenario.roles_removed:
        fleet.inventory = dataclasses.replace(fleet.inventory, roles=())
    if scenario.workers_crash_on is not None:
        fleet.servers[scenario.workers_crash_on].crashes_after["v2"] = 1.3
    if scenario.fails_only_on is not None:
        for index, server in enumerate(fleet.servers):
            if index != scenario.fails_only_on:
                server.failing_after.clear()
    fleet.problems = []  # a first deploy: nothing served before it
    clean = fleet.clone(root / "clean", monkeypatch)
    before = [server.calls for server in clean.servers]
    result = clean.run(scenario.run, scenario.batch)
    assert result.exit_code == scenario.clean_exit, result.message
    assert clean.problems == [] and check_after_run(clean, result) == []
    return fleet, [server.calls - b for server, b in zip(clean.servers, before, strict=True)]


def sweep(scenario: Scenario, root: Path, monkeypatch: Any) -> tuple[int, list[Case]]:
    template, calls = clean_run(scenario, root, monkeypatch)

    def checks(fleet: Fleet, result: RolloutResult | None) -> list[str]:
        return ((check_after_run(fleet, result) if result is not None else [])
                + check_next_run(fleet, scenario.next_run, scenario.next_serves))
    count, cases = 0, []
    for index in scenario.servers_faulted:
        counted, found = sweep_server(
            template, index, calls[index], scenario.name, root / f"server{index}", monkeypatch,
            run=lambda fleet: fleet.run(scenario.run, scenario.batch), checks=checks)
        count, cases = count + counted, cases + found
    return count, cases


def sweep_server(template: Any, index: int, calls: int, name: str, root: Path,
                 monkeypatch: Any, *, run: Callable[[Any], Any],
                 checks: Callable[[Any, Any], list[str]]) -> tuple[int, list[Case]]:
    """Each fault of FAULTS at each of the `calls` calls of the template's server `index`, a
    clone of the template per case: `run(fleet)` the faulted run, then `checks(fleet, result)`
    (result None where the run raised) the problems after it and after the next run. The
    cases counted and those with a problem."""
    cases, count = [], 0
    for at in range(1, calls + 1):
        for fault in FAULTS:
            count += 1
            fleet = template.clone(root / f"c{count}", monkeypatch)
            server = fleet.servers[index]
            server.faults = [Fault(server.calls + at, fault)]
            case = Case(name, fault, server.name, at)
            try:
                result = run(fleet)
            except BaseException as error:  # the run must always end in a result
                case.problems.append(f"the run raised {type(error).__name__}: {error}")
                result = None
            case.step = next((step for _, kind, step in server.struck), "not reached")
            case.problems += fleet.problems
            case.problems += checks(fleet, result)
            unknown = [s for s in fleet.servers if s.unknown]
            assert not unknown, unknown[0].unknown
            if case.problems:
                cases.append(case)
    return count, cases


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slotswap.core.output.say", lambda *args, **kwargs: None)
    monkeypatch.setattr(rollout, "say", lambda *args, **kwargs: None)


FOUND: dict[str, list[Case]] = {}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_fault_at_every_call(scenario: Scenario, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    count, cases = sweep(scenario, tmp_path, monkeypatch)
    FOUND[scenario.name] = cases
    found = {case.key for case in cases}
    known = {key for key in KNOWN_VIOLATIONS if key[0] == scenario.name}
    with capsys.disabled():
        print(f"\n{scenario.name}: {count} cases ({count // len(FAULTS)} calls x "
              f"{len(FAULTS)} faults), {len(cases)} violating, {len(found)} distinct")
        for key in sorted(found):
            first = next(case for case in cases if case.key == key)
            count_of = sum(case.key == key for case in cases)
            print(f"  path {KNOWN_VIOLATIONS.get(key, 'NEW')}: {key[1]} in [{key[2]}], "
                  f"{count_of} calls, e.g. {first.server} call {first.at}: "
                  f"{first.problems[0][:160]}")
    not_the_clock = {case.key for case in cases if KNOWN_VIOLATIONS.get(case.key) ==
                     SIM_ONE_CLOCK and not only_a_late_look(case)}
    unknown = sorted((found - known) | not_the_clock)
    assert not unknown, f"violations of no known path: {unknown}"
    if scenario.exact:
        gone = sorted(known - found)
        assert not gone, f"these no longer happen, remove this entry: {gone}"


@pytest.mark.parametrize("live", ["web1", "web2"])
def test_a_hotfix_while_the_live_slot_is_down_keeps_serving_once_the_old_recovers(
        live: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Path 7: with no slot UP (the live slot's checks fail, its container runs) a hotfix
    goes in alone: the old slot is taken out of rotation in the same line, so when the old
    version recovers it does not take the traffic back, whichever slot it was in (web1 comes
    first under `balance first`)."""
    fleet = Fleet(tmp_path, 1, monkeypatch)
    server = fleet.servers[0]
    for tag in (("v0", "v1") if live == "web2" else ("v1",)):
        server.add_image(tag, on_server=False)
        assert fleet.run(f"deploy {tag}").exit_code == 0
    server.failing_after["v1"] = 0.0  # the live slot's checks fail, its container runs
    fleet.clock.advance(3)
    assert versions_in_rotation(server) == set()
    assert fleet.run("deploy v2").exit_code == 0
    del server.failing_after["v1"]  # the old version recovers
    fleet.clock.advance(3)
    routed = server.routed()
    assert routed is not None and routed.version == "v2", lines_in_rotation(server)
