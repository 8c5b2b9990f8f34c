"""Simulated servers of one inventory on one clock, as the fault sweep
(test_fault_sweep.py) and the tests that hold a run to its plan (test_swap_steps.py,
test_up_plan_run.py, test_every_server.py) use them: `Fleet` runs the kit's own deploy,
rollback, maintenance, certs.renew and up against them, as the command line does, and
checks after every call that the version the kit last said serves takes the traffic."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slotswap.commands.docker import LABEL_GENERATION, LABEL_VERSION
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    CONFIG_NAME,
    PREVIOUS_NAME,
    RUNNING_NAME,
    cert_path_on_server,
    haproxy_dir,
)
from slotswap.core import interrupts
from slotswap.fleet import certs, delivery, every_server, rollout, server_run
from slotswap.fleet import rollback_targets as rollback_targets_module
from slotswap.fleet.errors import EXIT_DEPLOY_FAILED
from slotswap.fleet.outcomes import RolloutResult, ServerResult
from slotswap.fleet.rollout import ON_FAILURE_ROLLBACK, ON_FAILURE_STOP
from slotswap.https.files import FILES_SOURCE, CertificateBundle
from slotswap.remote.protocol import ServerLike
from slotswap.server import haproxy as haproxy_module
from slotswap.server import maintenance
from slotswap.server.haproxy_config import Login, config_hash, render_config
from testbed.private_ca import issue, make_ca
from tests.unit.fake_server import make_inventory
from tests.unit.simulated_docker import Container
from tests.unit.simulated_server import (
    SimClock,
    SimulatedServer,
    lines_in_rotation,
    patch_time,
    versions_in_rotation,
)

TAGS = ("v1", "v2", "v3", "v4")
TASKS = ("maintenance", "certs", "up")  # the first word of a run that is no rollout
CERT_NAMES = ("www.example.com",)
NEW_HAPROXY_IMAGE = "haproxy:2.9"
FAILS_AFTER = {"v3": 0.3}
# v4's web answers, its workers crash this long after each start (Docker restarts them).
CRASHES_AFTER = {"v4": 0.5}
# With roles: the app's queue worker, on every host (the sweep's role scenarios).
ROLES = {"worker": {"cmd": ["bin/jobs"], "count": 2, "check": {"running": 1}}}


class Fleet:
    """Simulated servers of one inventory on one clock, watched after every call."""

    def __init__(self, root: Path, hosts: int, monkeypatch: Any, *, https: bool = False,
                 release: bool = False, roles: bool = False, worker_only: int = 0) -> None:
        """`worker_only`: the last hosts run the roles alone (web: false)."""
        addresses: list[object] = [f"203.0.113.{10 + i}" for i in range(hosts)]
        addresses[hosts - worker_only:] = [{"address": address, "web": False}
                                           for address in addresses[hosts - worker_only:]]
        same = {"hosts": addresses, **({"roles": ROLES} if roles else {})}
        # With https: each server serves an old certificate, the inventory's files a new one.
        self.certs = certificates(root) if https else None
        self.inventory = make_inventory(root, **same,
                                        timeouts={"watch": 0.5, "healthy": 5, "drain": 2},
                                        **({"release": {"command": ["bin/migrate"]}}
                                           if release else {}),
                                        **({"https": {"names": list(CERT_NAMES), "files": {
                                            "chain": str(root / "chain.pem"),
                                            "key": str(root / "key.pem")}}} if https else {}))
        # `up new`'s inventory: a changed setting that changes the config.
        self.new_inventory = make_inventory(root, **same,
                                            healthcheck={"interval": 3},
                                            timeouts={"watch": 0.5, "healthy": 5, "drain": 2})
        # `up image`'s inventory: a new HAProxy image.
        self.image_inventory = make_inventory(root, **same,
                                              haproxy={"image": NEW_HAPROXY_IMAGE},
                                              timeouts={"watch": 0.5, "healthy": 5,
                                                        "drain": 2})
        self.clock = SimClock()
        patch_time(monkeypatch, self.clock)
        config = render_config(self.inventory, Login(0, 0))
        self.configs = (config, render_config(self.new_inventory, Login(0, 0)))
        assert self.configs[0] != self.configs[1]
        self.servers = [SimulatedServer(host.name, self.inventory, self.clock,
                                        root / "servers", config=config)
                        for host in self.inventory.hosts]
        for server in self.servers:
            server.registry[self.inventory.haproxy.image] = "sha256:" + "ab" * 32
            server.registry[NEW_HAPROXY_IMAGE] = "sha256:" + "cd" * 32
            for tag in TAGS:
                server.add_image(tag, on_server=False)
            server.failing_after = dict(FAILS_AFTER)
            server.crashes_after = dict(CRASHES_AFTER)
            if self.certs:
                server.files.write(cert_path_on_server(haproxy_dir(self.inventory)),
                                   self.certs[0])
                server.haproxy.cert = self.certs[0]
        self.watch(monkeypatch)

    def watch(self, monkeypatch: Any) -> None:
        for server in self.servers:
            server.after_call, server.before_call = self.after_call, self.check_reported
        self.allowed: dict[str, set[str | None]] = {}
        self.reported: dict[str, str | None] = {}
        self.answered: dict[str, tuple[str | None, str]] = {}
        # Maintenance: what the kit last said in this run (None: nothing yet, the page may
        # or may not answer), and what the run asks for (None: not a maintenance run).
        self.said_page: dict[str, bool] = {}
        self.asked_page: bool | None = None
        self.said_cert: set[str] = set()  # the servers where the kit said it installed it
        self.asked_config: str | None = None  # the config `up` is to leave running
        self.asked_image = ""  # ... and HAProxy's image
        self.problems: list[str] = []
        self.had_workers: set[str] = set()  # servers that ran a worker in this run
        monkeypatch.setattr(rollout, "servers_of", lambda inventory: self.servers)
        monkeypatch.setattr(every_server, "servers_of", lambda inventory: self.servers)
        monkeypatch.setattr(every_server, "progress_for", self.progress_for)
        monkeypatch.setattr(rollback_targets_module, "servers_of",
                            lambda inventory: self.servers)
        monkeypatch.setattr(server_run, "progress_for", self.progress_for)
        monkeypatch.setattr(haproxy_module, "render_config", self.render_config)

    def render_config(self, inventory: Inventory, login: Login) -> str:
        """The fleet's two configs rendered once (rendering is most of an `up`'s time)."""
        for known, config in zip((self.inventory, self.new_inventory, self.image_inventory),
                                 (*self.configs, self.configs[0]), strict=True):
            if inventory is known and login == Login(0, 0):
                return config
        return render_config(inventory, login)

    def progress_for(self, name: str) -> Callable[[str], None]:
        """The servers' progress lines, read for the version each says it serves."""
        def progress(message: str) -> None:
            if message.startswith(("FAILED", "not switched")):
                return  # an error may quote another server's progress
            if message.startswith(("maintenance on", "maintenance off")):
                self.said_page[name] = message.startswith("maintenance on")
            if message.startswith("certificate for ") and message.find(" installed") > 0:
                self.said_cert.add(name)
            for pattern in REPORTS:
                if found := pattern.search(message):
                    self.reported[name] = found[1]
        return progress

    def check_reported(self, server: SimulatedServer) -> None:
        """Before each call (and after the run): the version HAProxy sent new requests to
        after the last call must be the one the kit last said serves there (it says so
        right after a switch)."""
        version, what = self.answered.pop(server.name, (None, ""))
        said = self.reported.get(server.name)
        if server.lease_taken:
            return  # another run holds it now: what serves is that run's to say
        said_page = self.said_page.get(server.name)
        if said_page is not None and server.maintenance != said_page:
            self.problems.append(f"{server.name}: the maintenance page "
                                 f"{'does not answer' if said_page else 'answers'}, the kit "
                                 f"said maintenance {'on' if said_page else 'off'}, after "
                                 f"`{what[:80]}`")
        if self.certs and server.name in self.said_cert and server.haproxy.cert != self.certs[1]:
            self.problems.append(f"{server.name}: the old certificate is served, the kit said "
                                 f"it installed the new one, after `{what[:80]}`")
        if version is not None and said is not None and version != said:
            self.problems.append(f"{server.name}: {version} takes the traffic, the kit said {said} "
                                 f"serves, after `{what[:80]}` "
                                 f"({', '.join(lines_in_rotation(server))})")

    def after_call(self, server: SimulatedServer, what: str) -> None:
        if self.inventory.roles:  # a role taken out of the inventory stops for good
            self.problems += worker_problems(server, what, self.had_workers)
        if not server.host.web:
            return  # a worker-only host: no HAProxy, no request
        answered, routed = server.request(), server.routed()
        if routed is not None:
            self.answered[server.name] = (routed.version, what)
        if self.certs and server.haproxy.cert not in self.certs:
            self.problems.append(f"{server.name}: {'another' if server.haproxy.cert else 'no'} "
                                 f"certificate served after `{what[:80]}`")
        self.problems += [f"{server.name}: {problem} after `{what[:80]}`"
                          for problem in config_problems(server, self.configs)]
        if answered is None and not server.maintenance:
            self.problems.append(f"{server.name}: no slot in rotation (503) after `{what}`")
        elif answered is not None and answered.version not in self.allowed.get(
                server.name, {answered.version}):
            self.problems.append(f"{server.name}: foreign version {answered.version} in "
                                 f"rotation after `{what}`")

    def serving(self) -> dict[str, set[str | None]]:
        return {server.name: versions_in_rotation(server) for server in self.servers}

    def run(self, command: str, batch: int = 1) -> RolloutResult:
        """One plain run, as the command line runs it (`deploy TAG --force` too); every
        server's versions before and after it are what a request may get meanwhile."""
        words = command.split()
        force = "--force" in words
        on_failure = ON_FAILURE_ROLLBACK if "--on-failure=rollback" in words else \
            ON_FAILURE_STOP
        words = [word for word in words if word not in ("--force", "--on-failure=rollback")]
        targets = {} if words[0] in TASKS else rollout_targets(self.inventory, words)
        for server in self.servers:
            before = versions_in_rotation(server)
            self.allowed[server.name] = before | {targets.get(server.name)}
            self.reported[server.name] = next(iter(before)) if len(before) == 1 else None
        interrupts._requested.clear()
        self.said_page, self.asked_page, self.said_cert = {}, None, set()
        self.had_workers = set()
        self.asked_config = None
        try:
            if words[0] in TASKS:
                return self.run_task(command)
            if words[0] == "deploy":
                return rollout.deploy(self.inventory, words[1], batch=batch, force=force,
                                      on_failure=on_failure)
            return run_rollback(self.inventory, words[1] if len(words) == 2 else None,
                                targets)
        finally:
            interrupts._requested.clear()
            for server in self.servers:
                self.check_reported(server)

    def run_task(self, command: str) -> RolloutResult:
        """`maintenance.on` (the default page), `.off` or `certs.renew` (with files) as its
        task runs it: the exit code and the error of its first failure
        (cli.kit_task.exit_on_failure)."""
        if command == "certs renew":
            return task_result(certs.renew(self.inventory, force=False))
        if command.startswith("up"):
            inventory = {"up new": self.new_inventory, "up image": self.image_inventory
                         }.get(command, self.inventory)
            self.asked_config = self.configs[command == "up new"]
            self.asked_image = inventory.haproxy.image
            with delivery.up_action(inventory) as up_one:
                return task_result(every_server.on_every_server(inventory, up_one, "up"))
        self.asked_page = command == "maintenance on"
        entries = maintenance.map_entries(maintenance.render_page(
            self.inventory, maintenance.DEFAULT_MESSAGE), maintenance.DEFAULT_RETRY_AFTER)

        def action(server: ServerLike, inventory: Inventory, progress: Callable[[str], None]
                   ) -> str:
            if self.asked_page:
                return maintenance.switch_on(server, haproxy_dir(inventory), entries, progress)
            return maintenance.switch_off(server, haproxy_dir(inventory), progress)

        return task_result(every_server.on_every_server(self.inventory, action,
                                                        command.replace(" ", ".")))

    def clone(self, root: Path, monkeypatch: Any) -> Fleet:
        """The same servers, as they are now, under `root`: every case starts from here."""
        twin = Fleet.__new__(Fleet)
        twin.inventory, twin.certs = self.inventory, self.certs
        twin.new_inventory, twin.configs = self.new_inventory, self.configs
        twin.image_inventory = self.image_inventory
        twin.clock = SimClock()
        twin.clock.now = self.clock.now
        patch_time(monkeypatch, twin.clock)
        twin.servers = [server.clone(twin.clock, root) for server in self.servers]
        twin.watch(monkeypatch)
        return twin


def certificates(root: Path) -> tuple[str, str]:
    """An old certificate file (chain and key) and a new one, whose chain and key are
    written under `root` for the inventory's https.files."""
    ca = make_ca()
    old, new = (CertificateBundle(*issue(ca, list(CERT_NAMES), days=60), FILES_SOURCE)
                for _ in "ab")
    root.mkdir(parents=True, exist_ok=True)
    (root / "chain.pem").write_text(new.chain_pem)
    (root / "key.pem").write_text(new.key_pem)
    (root / "key.pem").chmod(0o600)
    return old.haproxy_pem(), new.haproxy_pem()


def task_result(results: list[ServerResult]) -> RolloutResult:
    result = RolloutResult("")
    failed = next((r for r in results if not r.ok), None)
    if failed is not None:
        result.exit_code, result.message = failed.exit_code, failed.text
    return result


def rollout_targets(inventory: Inventory, words: list[str]) -> dict[str, str]:
    """Each server's version after `deploy TAG`, `rollback TAG` or `rollback` (none where
    the task refuses: a server with no version to return to)."""
    if words[0] == "deploy" or len(words) == 2:
        return {host.name: words[1] for host in inventory.hosts}
    targets, unknown = rollback_targets_module.rollback_targets(inventory)
    return {} if unknown else targets


def run_rollback(inventory: Inventory, tag: str | None,
                 targets: dict[str, str]) -> RolloutResult:
    """`rollback --to=TAG`, or `rollback` to `targets` (rollout_targets), as cli.tasks.rollback
    runs them: with no targets, refused before any change."""
    if tag is not None:
        return rollout.deploy(inventory, tag, task="rollback", pull=False, run_release=False)
    if not targets:
        result = RolloutResult("")
        result.exit_code = EXIT_DEPLOY_FAILED
        result.message = "nothing was changed; no version to return to"
        return result
    return rollout.deploy(inventory, "/".join(sorted(set(targets.values()))), task="rollback",
                          tags=targets, pull=False, run_release=False)


# What a server's progress says serves: a switch, a switch back, a stop in the window.
REPORTS = (re.compile(r"^\S+ \((\S+)\) is taking traffic"),
           re.compile(r"; traffic is back on \S+ \((\S+)\)$"),
           re.compile(r"^stopped early: \S+ \((\S+)\) serves"),
           re.compile(r"^stopped early: traffic is back on \S+ \((\S+)\)"))


def config_problems(server: SimulatedServer, configs: tuple[str, str]) -> list[str]:
    """HAProxy runs the old config or the new one (never another, nor none); the config
    kept to put back is one HAProxy ran (issue 21, path 8: never a file written and not
    applied, which may not start)."""
    problems = []
    if not server.haproxy_listens():
        problems.append("no HAProxy listens")
    if server.haproxy.config not in configs:
        problems.append("HAProxy runs neither the old config nor the new one")
    kept = server.read_local(f"{haproxy_dir(server.inventory)}/{PREVIOUS_NAME}")
    if kept is not None and kept not in server.haproxy.ran:
        problems.append(f"{PREVIOUS_NAME} is a config HAProxy never ran")
    return problems


def runs_config(server: SimulatedServer, config: str) -> bool:
    """HAProxy runs `config`, which is the file it starts from and the one the kit's record
    of what runs names."""
    folder = haproxy_dir(server.inventory)
    return (server.haproxy.config == config
            and server.read_local(f"{folder}/{CONFIG_NAME}") == config
            and server.read_local(f"{folder}/{RUNNING_NAME}") == config_hash(config) + "\n")


def running_workers(server: SimulatedServer) -> list[Container]:
    """The role containers running on the server."""
    return [c for c in server.containers.values()
            if c.running and LABEL_GENERATION in c.labels]


def worker_versions(server: SimulatedServer) -> set[str | None]:
    return {c.labels.get(LABEL_VERSION) for c in running_workers(server)}


def worker_problems(server: SimulatedServer, what: str, had: set[str]) -> list[str]:
    """A server that ran a worker in this run has one after every call (issue 22: never zero
    workers of a role that had some; the fleet's inventory has one role)."""
    if running_workers(server):
        had.add(server.name)
        return []
    if server.name in had:
        return [f"{server.name}: no worker running after `{what[:80]}`"]
    return []
