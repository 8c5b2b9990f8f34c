"""The move of a server from the app's own HAProxy to the shared one (server/proxy_move.py,
docs/apps-design.md decisions 6 and 7) on a FakeServer: the order of its steps (files and
state copied from the old HAProxy before anything starts, the shared HAProxy started beside
the old one and waited for, and only then the old one's soft stop), what a shared HAProxy
that does not take over leaves (the old one serving, never told to stop), how the next `up`
ends a move cut short, and the one-line refusal of other tasks on a half-moved server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slotswap.commands.docker import HAPROXY_INSTANCE_VARIABLE
from slotswap.commands.runtime_api import RuntimeApiError, parse_servers_state
from slotswap.config.inventory import Inventory
from slotswap.config.layout import ProxyError
from slotswap.fleet import dry_run_move
from slotswap.remote.server import CommandResult
from slotswap.server import proxy_move
from slotswap.server.half_moved import refuse_half_moved
from slotswap.server.lock_sets import LOCK_MARK, TAKE_ALL_SCRIPT
from slotswap.server.locking import LockOwner
from slotswap.server.proxy_files import READ_REGISTRY_SCRIPT, registration_for
from slotswap.server.proxy_move import states_differ, up_moving
from slotswap.server.proxy_registry import registration_json
from slotswap.server.slots import read_slots
from tests.unit.fake_server import FakeServer, make_inventory, recorded

OLD_SOCKET = "/etc/slotswap/webapp/haproxy/admin/admin.sock"
HEADER = ("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state "
          "srv_uweight srv_iweight srv_time_since_last_change srv_check_status "
          "srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id "
          "srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
          "srv_check_addr srv_agent_addr srv_agent_port\n")


def state_text(web1: tuple[int, int], web2: tuple[int, int], be_id: int = 3) -> str:
    """`show servers state webapp`: each slot's (op state, admin state), fallbacks off."""
    lines = [f"{be_id} webapp {index} {name} 127.0.0.1 {op} {admin} 1 1 4 15 3 4 6 0 0 0 - "
             f"1808{index} - 0 0 - - 0"
             for index, (name, (op, admin)) in enumerate(
                 [("web1", web1), ("web2", web2), ("web1-fallback", (0, 5)),
                  ("web2-fallback", (0, 5))], start=1)]
    return HEADER + "\n".join(lines) + "\n"


OLD_STATE = state_text((2, 0), (0, 1))  # web1 live, web2 in maintenance


def container(name: str, *, running: bool = True, policy: str = "unless-stopped",
              network: str = "host") -> dict[str, Any]:
    return {"Name": f"/{name}", "Config": {"Image": "haproxy:2.8", "Labels": {}},
            "State": {"Running": running, "Status": "running" if running else "exited"},
            "HostConfig": {"RestartPolicy": {"Name": policy}},
            "NetworkSettings": {"Networks": {network: {}}}}


class MoveServer(FakeServer):
    """A server running webapp's own HAProxy (today's layout) and nothing of the shared one:
    the locks are free, the registry empty, HAProxy accepts every generation; the shared
    HAProxy, once `docker run`, answers on its socket with its token and `shared_state`."""

    def __init__(self, inventory: Inventory, *, old: dict[str, Any] | None = None,
                 shared_state: str = OLD_STATE, shared_starts: bool = True) -> None:
        super().__init__(inventory=inventory, answers={
            ("sh", "-c", TAKE_ALL_SCRIPT): lambda argv: CommandResult("".join(
                f"{LOCK_MARK} {lock}\ntaken\n" for lock in argv[9::2]), "", 0),
            ("sh", "-c", READ_REGISTRY_SCRIPT): CommandResult("", "", 0),
            ("docker", "ps", "--all"): lambda argv: CommandResult(
                "webapp \n" if "webapp-haproxy" in self.containers else "", "", 0),
            ("docker", "container", "inspect"): self.inspect,
            ("readlink",): CommandResult("", "", 1),
            ("test", "-d"): lambda argv: CommandResult(
                "", "", 0 if argv[2] in self.folders_there else 1),
            ("cat",): CommandResult("1\n", "", 0),
        })
        self.containers = {"webapp-haproxy": old or container("webapp-haproxy")}
        self.folders_there = {"/etc/slotswap/webapp/haproxy"}
        self.shared_state = shared_state
        self.shared_starts = shared_starts
        self.instance: str | None = None
        self.socket: str | None = None

    def inspect(self, argv: list[str]) -> CommandResult:
        items = [self.containers[name] for name in argv[3:] if name in self.containers]
        return CommandResult(json.dumps(items), "", 0 if len(items) == len(argv) - 3 else 1)

    def run(self, argv: Sequence[str], **options: Any) -> CommandResult:
        argv = list(argv)
        if argv[:2] == ["docker", "run"] and "--rm" not in argv:  # the shared HAProxy
            self.instance = next(word for word in argv if word.startswith(
                HAPROXY_INSTANCE_VARIABLE)).partition("=")[2]
            self.containers["slotswap-proxy"] = container("slotswap-proxy",
                                                          running=self.shared_starts)
        elif argv[:3] == ["docker", "rm", "--force"]:
            for name in argv[3:]:
                self.containers.pop(name, None)
        elif argv[:3] == ["docker", "update", "--restart"]:
            self.containers[argv[-1]]["HostConfig"]["RestartPolicy"]["Name"] = argv[3]
        elif argv[:2] == ["rm", "-rf"]:
            self.folders_there.discard(argv[2])
        return super().run(argv, **options)

    def use_admin_socket(self, path: str | None) -> None:
        super().use_admin_socket(path)
        self.socket = path

    def runtime_api(self, command: str) -> str:
        if self.socket == OLD_SOCKET:
            assert command == "show servers state webapp"
            return OLD_STATE
        if not self.containers.get("slotswap-proxy", {}).get("State", {}).get("Running"):
            raise RuntimeApiError("s1: no admin socket")
        if command.startswith("show env"):
            return f"{HAPROXY_INSTANCE_VARIABLE}={self.instance}\n"
        if command == "show stat":
            return "# pxname,svname,status\nhttp,FRONTEND,OPEN\n"
        if command == "show servers state webapp":
            return self.shared_state
        return super().runtime_api(command)


def inventory(tmp_path: Path) -> Inventory:
    return make_inventory(tmp_path, haproxy={"shared": True}, names=["webapp.test"],
                          timeouts={"drain": 7})


OWNER = LockOwner("alice@laptop", "2026-12-04T10:00:00+00:00", "up", "", "token-1")


def steps(server: MoveServer) -> list[str]:
    """The docker commands that start or stop something, in order."""
    found = []
    for argv in server.commands:
        if argv[:2] == ["docker", "run"]:
            found.append("check" if "--rm" in argv else "run slotswap-proxy")
        elif argv[:2] in (["docker", "update"], ["docker", "kill"], ["docker", "rm"]):
            found.append(" ".join([argv[1], *argv[-2:]]))
        elif argv[:1] == ["timeout"]:
            found.append(f"wait {argv[-1]}")
        elif argv[:2] == ["rm", "-rf"] and argv[2].endswith("/webapp/haproxy"):
            found.append("rm old folder")
    return found


def test_the_shared_haproxy_takes_over_before_the_old_one_stops(tmp_path: Path) -> None:
    server, said = MoveServer(inventory(tmp_path)), []
    server.files["/etc/slotswap/webapp/haproxy/maintenance.map"] = "webapp.test page\n"
    assert up_moving(server, inventory(tmp_path), said.append, OWNER) == (
        "moved to the shared HAProxy")
    assert [step for step in steps(server) if not step.startswith("rm --force slotswap")] == [
        "check",
        "run slotswap-proxy",
        "update no webapp-haproxy",
        "kill USR1 webapp-haproxy",
        "wait webapp-haproxy",
        "rm --force webapp-haproxy",
        "rm old folder",
    ]
    # The old HAProxy's state was read on its own socket, then the shared one's is used.
    assert server.admin_sockets[:2] == [OLD_SOCKET, None]
    files = "/etc/slotswap/_proxy/haproxy/apps/webapp"
    assert server.files[f"{files}/server-state"] == OLD_STATE
    copy = next(argv for argv in server.commands if argv[:3] == ["sh", "-c",
                                                                  proxy_move.COPY_SCRIPT])
    assert copy[4:6] == ["/etc/slotswap/webapp/haproxy/maintenance.map",
                         f"{files}/maintenance.map"]
    assert copy[6:10] == ["/etc/slotswap/webapp/haproxy/certs/site.pem", f"{files}/site.pem",
                          "/etc/slotswap/webapp/haproxy/certs/site.source",
                          f"{files}/site.source"]
    # Copied before HAProxy checks the generation that loads them.
    assert server.commands.index(copy) < next(
        index for index, argv in enumerate(server.commands) if "--rm" in argv)
    assert "/var/lib/slotswap/_proxy/apps/webapp.json" in server.files
    assert server.files["/etc/slotswap/_proxy/haproxy/.running"].strip()
    assert ["timeout", "7", "docker", "wait", "webapp-haproxy"] in server.commands
    entry = json.loads(server.stdins[-1])
    assert (entry["task"], entry["outcome"]) == ("up", "moved to the shared HAProxy")
    assert ["rm", "-rf", "/etc/slotswap/webapp"] not in server.commands  # env files stay


def test_a_shared_haproxy_whose_backend_differs_leaves_the_old_one_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = MoveServer(inventory(tmp_path), shared_state=state_text((0, 0), (0, 1)))
    monkeypatch.setattr(proxy_move, "RELOAD_TIMEOUT", 0.3)
    with pytest.raises(ProxyError, match=r"^s1: the shared HAProxy did not take over from "
                                         r"webapp-haproxy \(.*web1 operational state 0, was "
                                         r"2.*\); webapp-haproxy serves"):
        proxy_move.move(server, inventory(tmp_path), lambda line: None, OWNER, None,
                        proxy_move_old(server))
    assert "slotswap-proxy" not in server.containers
    # The old HAProxy is never told to stop; the shared one is, softly (it may listen).
    assert not [argv for argv in server.commands if "webapp-haproxy" in argv and (
        "USR1" in argv or argv[1:2] == ["update"])]
    assert steps(server)[-4:] == ["update no slotswap-proxy", "kill USR1 slotswap-proxy",
                                  "wait slotswap-proxy", "rm --force slotswap-proxy"]
    # Its registration taken back: the next `up` moves again from the start.
    assert ["rm", "-f", "/var/lib/slotswap/_proxy/apps/webapp.json"] in server.commands


def proxy_move_old(server: MoveServer):  # type: ignore[no-untyped-def]
    from slotswap.commands.docker import parse_inspect

    return parse_inspect(json.dumps([server.containers["webapp-haproxy"]]))["webapp-haproxy"]


def test_a_shared_haproxy_that_exits_leaves_the_old_one_serving(tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path), shared_starts=False)
    with pytest.raises(ProxyError, match="slotswap-proxy stopped while starting"):
        up_moving(server, inventory(tmp_path), lambda line: None, OWNER)
    assert list(server.containers) == ["webapp-haproxy"]
    assert not [argv for argv in server.commands if "USR1" in argv]


def test_up_finishes_a_move_cut_after_the_old_haproxy_was_told_to_stop(
        tmp_path: Path) -> None:
    server, said = MoveServer(inventory(tmp_path), old=container(
        "webapp-haproxy", policy="no")), []
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    assert up_moving(server, inventory(tmp_path), said.append, OWNER) == (
        "moved to the shared HAProxy")
    assert steps(server) == ["update no webapp-haproxy", "kill USR1 webapp-haproxy",
                             "wait webapp-haproxy", "rm --force webapp-haproxy",
                             "rm old folder"]
    assert "finishing an interrupted move" in said[0]


def test_up_undoes_a_move_cut_while_both_haproxies_run(tmp_path: Path) -> None:
    """Cut between the shared HAProxy's start and the old one's soft stop, with no other app
    on the shared one: it goes, and the move is done again from the old HAProxy's state."""
    server, said = MoveServer(inventory(tmp_path)), []
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    assert up_moving(server, inventory(tmp_path), said.append, OWNER) == (
        "moved to the shared HAProxy")
    assert steps(server)[:7] == ["update no slotswap-proxy", "kill USR1 slotswap-proxy",
                                 "wait slotswap-proxy", "rm --force slotswap-proxy", "check",
                                 "rm --force slotswap-proxy",  # (a stopped one: none here)
                                 "run slotswap-proxy"]
    assert any("left by an interrupted move" in line for line in said)


def test_an_old_haproxy_on_the_apps_network_is_refused(tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path), old=container("webapp-haproxy",
                                                            network="webapp"))
    with pytest.raises(ProxyError, match=r"run `up` once without haproxy\.shared"):
        up_moving(server, inventory(tmp_path), lambda line: None, OWNER)
    assert steps(server) == []


def test_states_differ_reads_maintenance_drain_and_the_slots_in_rotation() -> None:
    old = parse_servers_state(OLD_STATE)
    assert states_differ(old, old) == []
    # A fallback line's operational state is not compared while it is in maintenance.
    assert states_differ(old, parse_servers_state(OLD_STATE.replace(
        "web1-fallback 127.0.0.1 0 5", "web1-fallback 127.0.0.1 2 5"))) == []
    assert states_differ(old, parse_servers_state(state_text((2, 8), (0, 1)))) == [
        "web1 admin state 8, was 0"]
    assert states_differ(old, parse_servers_state(state_text((2, 0), (0, 0)))) == [
        "web2 admin state 0, was 1"]
    assert states_differ(old, {}) == ["web1 missing", "web2 missing", "web1-fallback missing",
                                      "web2-fallback missing"]


def test_other_tasks_refuse_a_half_moved_server(tmp_path: Path) -> None:
    """Both HAProxys run (a move cut short): only one would learn of a swap."""
    containers = json.loads(recorded("docker_inspect_live_web1.json"))
    server = FakeServer(state="live_web1", answers={("docker", "container", "inspect"):
                        CommandResult(json.dumps([*containers, container("webapp-haproxy")]),
                                      "", 0)})
    with pytest.raises(RuntimeApiError, match=r"^s1: half-moved: webapp-haproxy still runs "
                                              r"beside the shared HAProxy \(a move cut "
                                              r"short\); run `fab up` to finish or undo it$"):
        read_slots(server, inventory(tmp_path))
    assert "webapp-haproxy" in server.commands[0]
    # Today's layout: the app's own HAProxy is the one that serves.
    today = make_inventory(tmp_path)
    assert set(read_slots(server, today)) == {"web1", "web2"}
    assert "webapp-haproxy" not in server.commands[-1]


def test_a_moved_server_with_only_the_old_folder_left_loses_it(tmp_path: Path) -> None:
    """Cut after the old container's removal: the app is registered, its state is the shared
    HAProxy's (deploys went on since): only the folder goes."""
    shared = inventory(tmp_path)
    server = MoveServer(shared)
    del server.containers["webapp-haproxy"]
    mine = registration_for(shared, kit_version="0.6.0", by="alice@laptop",
                            at="2026-12-04T10:00:00+00:00")
    server.answers[("sh", "-c", READ_REGISTRY_SCRIPT)] = lambda argv: CommandResult(
        f"{argv[-1]} registration webapp\n{registration_json(mine)}\n", "", 0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(proxy_move, "up_shared", lambda *args: "unchanged")
        done = up_moving(server, shared, lambda line: None, OWNER)
    assert done == "unchanged; moved to the shared HAProxy (the old HAProxy's folder removed)"
    assert steps(server) == ["rm old folder"]
    assert not [argv for argv in server.commands if argv[:3] == ["sh", "-c",
                                                                  proxy_move.COPY_SCRIPT]]


def test_an_old_haproxy_whose_container_is_gone_is_moved_from_its_files(
        tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path))
    del server.containers["webapp-haproxy"]
    server.files["/etc/slotswap/webapp/haproxy/server-state"] = OLD_STATE
    assert up_moving(server, inventory(tmp_path), lambda line: None, OWNER) == (
        "moved to the shared HAProxy")
    assert server.admin_sockets[0] is None  # never the old socket
    assert server.files["/etc/slotswap/_proxy/haproxy/apps/webapp/server-state"] == OLD_STATE
    assert steps(server)[-1] == "rm old folder"
    assert not [argv for argv in server.commands if "USR1" in argv]


def test_a_cut_hand_over_of_the_apps_own_haproxy_is_ended_first(tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path))
    server.containers["webapp-haproxy-next"] = container("webapp-haproxy-next")
    with pytest.raises(ProxyError, match=r"webapp-haproxy-next is left from an upgrade of "
                                         r"webapp's own HAProxy"):
        up_moving(server, inventory(tmp_path), lambda line: None, OWNER)
    server = MoveServer(inventory(tmp_path), old=container("webapp-haproxy", policy="no"))
    with pytest.raises(ProxyError, match="no shared HAProxy runs"):
        up_moving(server, inventory(tmp_path), lambda line: None, OWNER)
    assert steps(server) == []


def test_up_dry_run_plans_the_move_and_only_reads(tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path))
    before = dict(server.files)
    plan = dry_run_move.up_plan_moving(server, inventory(tmp_path))
    text = "\n".join(plan.steps)
    assert plan.summary.startswith("webapp moves from webapp-haproxy to the shared HAProxy")
    order = ["take the shared HAProxy's lock", "copy (where there) /etc/slotswap/webapp/haproxy/"
             "maintenance.map", "runtime API> show servers state webapp  (on webapp-haproxy's "
             "socket", " -c -f ", f"{HAPROXY_INSTANCE_VARIABLE}=<token>", "wait: the shared "
             "admin socket answers", "USR1 webapp-haproxy", "docker wait webapp-haproxy",
             "rm -rf /etc/slotswap/webapp/haproxy", "moved to the shared HAProxy"]
    assert [text.index(step) for step in order] == sorted(text.index(step) for step in order)
    assert server.files == before and server.sent == [] and server.admin_sockets == []
    changing = [argv for argv in server.commands if argv[:2] in (
        ["docker", "run"], ["docker", "rm"], ["docker", "kill"], ["rm", "-rf"], ["mkdir", "-p"])]
    assert changing == []


def test_up_dry_run_of_a_cut_move_finishes_it(tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path), old=container("webapp-haproxy", policy="no"))
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    plan = dry_run_move.up_plan_moving(server, inventory(tmp_path))
    assert "finishing an interrupted move" in plan.summary
    assert "USR1 webapp-haproxy" in "\n".join(plan.steps)
    # With no shared HAProxy, the run refuses: so does its plan.
    del server.containers["slotswap-proxy"]
    plan = dry_run_move.up_plan_moving(server, inventory(tmp_path))
    assert "STOP: s1: webapp-haproxy was told to stop, and no shared" in "\n".join(plan.steps)


def test_maintenance_and_certificates_refuse_a_server_the_app_still_serves_from_its_own(
        tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path))
    with pytest.raises(ProxyError, match=r"^s1: half-moved: webapp-haproxy still serves "
                                         r"webapp here, not \(only\) the shared HAProxy; run "
                                         r"`fab up` to move it; nothing was changed$"):
        refuse_half_moved(server, inventory(tmp_path))
    del server.containers["webapp-haproxy"]
    refuse_half_moved(server, inventory(tmp_path))
    today = FakeServer()
    refuse_half_moved(today, make_inventory(tmp_path))
    # Today's layout: one `docker inspect`, no shared HAProxy there: nothing more asked.
    assert today.commands == [["docker", "container", "inspect", "webapp-haproxy",
                               "slotswap-proxy", "webapp-haproxy-next"]]


@pytest.mark.parametrize("shared", [False, True], ids=["today's layout", "shared"])
def test_maintenance_and_certificates_refuse_a_cut_hand_over(tmp_path: Path,
                                                              shared: bool) -> None:
    """The new container of an HAProxy image hand-over cut short listens beside the old one:
    a map or a certificate given to one would not reach the other; the next `up` ends it."""
    temporary = "slotswap-proxy-next" if shared else "webapp-haproxy-next"
    server = MoveServer(inventory(tmp_path)) if shared else FakeServer(answers={
        ("docker", "container", "inspect"): CommandResult(json.dumps(
            [container("webapp-haproxy"), container(temporary)]), "", 0)})
    if shared:
        del server.containers["webapp-haproxy"]
        server.containers[temporary] = container(temporary)
    with pytest.raises(ProxyError, match=rf"^s1: {temporary} is left from an HAProxy upgrade "
                                         r"that was cut short; run `fab up` to finish or undo "
                                         r"it; nothing was changed$"):
        refuse_half_moved(server, inventory(tmp_path) if shared else make_inventory(tmp_path))


def test_todays_up_refuses_an_app_moved_to_the_shared_haproxy(tmp_path: Path) -> None:
    from slotswap.commands.docker import parse_inspect
    from slotswap.server.half_moved import refuse_moved_back

    today = make_inventory(tmp_path)
    shared_only = parse_inspect(json.dumps([container("slotswap-proxy")]))
    registered = FakeServer(inventory=today, answers={("test", "-f"): CommandResult("", "", 0)})
    with pytest.raises(ProxyError, match=r"^s1: webapp is on the shared HAProxy \(moved there "
                                         r"from its own\); going back"):
        refuse_moved_back(registered, today, shared_only)
    assert registered.commands == [["test", "-f", "/var/lib/slotswap/_proxy/apps/webapp.json"]]
    other_apps = FakeServer(inventory=today, answers={("test", "-f"): CommandResult("", "", 1)})
    refuse_moved_back(other_apps, today, shared_only)  # another app's shared HAProxy
    quiet = FakeServer(inventory=today)
    refuse_moved_back(quiet, today, {})  # no shared HAProxy: nothing asked
    assert quiet.commands == []


def test_a_half_moved_server_is_refused_once_haproxy_shared_is_turned_off(
        tmp_path: Path) -> None:
    """A move cut while both HAProxys serve, then haproxy.shared removed from the inventory:
    today's `up`, a deploy (read_slots), maintenance and certificates all refuse the server,
    or a deploy would swap only the app's own HAProxy while the shared one serves too."""
    from slotswap.commands.docker import parse_inspect
    from slotswap.server.half_moved import refuse_moved_back

    today = make_inventory(tmp_path)
    both = parse_inspect(json.dumps([container("slotswap-proxy"), container("webapp-haproxy")]))
    registered = {("test", "-f"): CommandResult("", "", 0)}
    server = FakeServer(inventory=today, answers=registered)
    with pytest.raises(ProxyError, match=r"^s1: half-moved: webapp is registered on the shared "
                                         r"HAProxy and webapp-haproxy is there too"):
        refuse_moved_back(server, today, both)
    with pytest.raises(ProxyError, match=r"^s1: half-moved: webapp is registered"):
        refuse_half_moved(FakeServer(inventory=today, answers={
            **registered, ("docker", "container", "inspect"): CommandResult(json.dumps(
                [container("slotswap-proxy"), container("webapp-haproxy")]), "", 0)}), today)
    containers = json.loads(recorded("docker_inspect_live_web1.json"))
    deploying = FakeServer(state="live_web1", answers={
        **registered, ("docker", "container", "inspect"): CommandResult(
            json.dumps([*containers, container("slotswap-proxy")]), "", 0)})
    with pytest.raises(RuntimeApiError, match=r"^s1: half-moved: webapp is registered"):
        read_slots(deploying, today)
    # Another app's shared HAProxy (this one not registered there): nothing refused.
    other = FakeServer(state="live_web1", answers={
        ("test", "-f"): CommandResult("", "", 1),
        ("docker", "container", "inspect"): CommandResult(
            json.dumps([*containers, container("slotswap-proxy")]), "", 0)})
    assert set(read_slots(other, today)) == {"web1", "web2"}
    refuse_moved_back(other, today, both)


def test_a_reload_that_took_the_app_in_is_taken_back_before_its_registration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A move into a shared HAProxy that serves another app: reloaded with the app's
    generation in, then its backend not as on the old HAProxy. `current` goes back to the
    generation that ran, HAProxy reloads with it, `.running` says so, and only then is the
    registration removed (else `current` and the workers keep a backend no registration
    names)."""
    from slotswap.commands.docker import parse_inspect
    from slotswap.server.proxy_assembly import Generation
    from slotswap.server.proxy_files import Registry
    from slotswap.server.proxy_generation import ProxyState

    shared = inventory(tmp_path)
    links = {"current": "gen-0000000000aa"}

    def switched(argv: list[str]) -> CommandResult:
        if "mv -T" in argv[2]:
            links["current"] = argv[2].split("ln -sfn ")[-1].split(" ")[0]
        return CommandResult("", "", 0)

    server = FakeServer(inventory=shared, answers={
        ("readlink",): lambda argv: CommandResult(links["current"] + "\n", "", 0),
        ("sh", "-c"): switched})
    reloads: list[str | None] = []
    monkeypatch.setattr(proxy_move, "reload", lambda server, inventory, ran: reloads.append(
        links["current"]))
    running = parse_inspect(json.dumps([container("slotswap-proxy")]))["slotswap-proxy"]
    generation = Generation({}, "0000000000bb")
    links["current"] = generation.name  # the reload with the app in went through
    proxy_move.take_back(server, shared, ProxyState(running, "gen-0000000000aa",
                                                    "gen-0000000000aa"),
                         Registry((), {}, None), started=False, generation=generation,
                         others=["shop"])
    assert links["current"] == "gen-0000000000aa" and reloads == ["gen-0000000000aa"]
    assert server.files["/etc/slotswap/_proxy/haproxy/.running"] == "0000000000aa\n"
    assert ["rm", "-f", "/var/lib/slotswap/_proxy/apps/webapp.json"] in server.commands
    # A reload back that does not start: `current` names the app's generation (the workers
    # run it), so its registration stays; the other tasks refuse the server as half-moved.
    server.commands.clear()
    def fails(server: FakeServer, inventory: Inventory, ran: str | None) -> None:
        links["current"] = ran  # as proxy_generation.reload puts it back
        raise ProxyError("no new worker")

    monkeypatch.setattr(proxy_move, "reload", fails)
    links["current"] = generation.name
    proxy_move.take_back(server, shared, ProxyState(running, "gen-0000000000aa",
                                                    "gen-0000000000aa"),
                         Registry((), {}, None), started=False, generation=generation)
    assert not [argv for argv in server.commands if argv[:2] == ["rm", "-f"]]


def test_a_cut_moves_shared_haproxy_goes_even_when_the_image_changed_since(
        tmp_path: Path) -> None:
    """Cut after the shared HAProxy started (no other app on it), then haproxy.image
    changed: the leftover goes and the move starts again with the new image, rather than
    every `up` refusing the image it was started with."""
    server = MoveServer(inventory(tmp_path))
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    changed = make_inventory(tmp_path, haproxy={"shared": True, "image": "haproxy:3.0"},
                             names=["webapp.test"], timeouts={"drain": 7})
    assert up_moving(server, changed, lambda line: None, OWNER) == "moved to the shared HAProxy"
    assert steps(server)[:4] == ["update no slotswap-proxy", "kill USR1 slotswap-proxy",
                                 "wait slotswap-proxy", "rm --force slotswap-proxy"]
    assert "run slotswap-proxy" in steps(server)


def test_the_move_ends_a_cut_hand_over_of_the_shared_haproxy_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared image hand-over cut short (`slotswap-proxy-next` there) is ended under the
    shared HAProxy's lock before the move, as up_shared ends it; where the old HAProxy was
    told to stop, before the move is finished (the shared HAProxy may serve only as
    slotswap-proxy-next)."""
    ended: list[list[str]] = []

    def end(server: MoveServer, inventory: Inventory, progress: Any, owner: LockOwner,
            registrations: Any) -> bool:
        ended.append([item.app for item in registrations])
        assert any(argv[:3] == ["sh", "-c", TAKE_ALL_SCRIPT] for argv in server.commands)
        if "slotswap-proxy-next" in server.containers:  # finished: it is the shared one
            del server.containers["slotswap-proxy-next"]
            server.containers["slotswap-proxy"] = container("slotswap-proxy")
        return True

    monkeypatch.setattr(proxy_move, "end_interrupted_hand_over", end)
    server = MoveServer(inventory(tmp_path))
    assert up_moving(server, inventory(tmp_path), lambda line: None, OWNER) == (
        "moved to the shared HAProxy")
    assert ended == [["webapp"]]
    ended.clear()
    server = MoveServer(inventory(tmp_path), old=container("webapp-haproxy", policy="no"))
    server.containers["slotswap-proxy-next"] = container("slotswap-proxy-next")
    assert up_moving(server, inventory(tmp_path), lambda line: None, OWNER) == (
        "moved to the shared HAProxy")
    assert ended == [[]] and "slotswap-proxy" in server.containers
    assert "slotswap-proxy-next" in server.commands[0]


def test_the_moves_locks_are_held_as_long_as_a_hand_over_may_take(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The move may send an image, soft-stop a shared HAProxy a cut move left, or end a
    cut hand-over under its locks: their lease is a hand-over's (shared lease + drain)."""
    from slotswap.server import proxy_locks
    from slotswap.server.proxy_locks import shared_lock_lease

    leases: list[int | None] = []
    real = proxy_locks.holding

    def holding(*args: Any, lease: int | None = None) -> Any:
        leases.append(lease)
        return real(*args, lease=lease)

    monkeypatch.setattr(proxy_move, "holding", holding)
    server = MoveServer(inventory(tmp_path))
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    up_moving(server, inventory(tmp_path), lambda line: None, OWNER)
    assert leases and all(lease is not None and lease >= shared_lock_lease(
        inventory(tmp_path)) + 7 for lease in leases)


def test_a_move_is_finished_only_where_the_shared_haproxy_serves_the_app(
        tmp_path: Path) -> None:
    """The old HAProxy told to stop is the point of no return only where the shared HAProxy
    has the app: registered, its backend answering on the shared socket; else one line and
    nothing changed (the old one, maybe still serving, is not stopped)."""
    server = MoveServer(inventory(tmp_path), old=container("webapp-haproxy", policy="no"))
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    server.answers[("test", "-f")] = CommandResult("", "", 1)
    with pytest.raises(ProxyError, match=r"^s1: webapp-haproxy was told to stop, but webapp "
                                         r"is not registered on the shared HAProxy: run `up` "
                                         r"once without haproxy\.shared"):
        up_moving(server, inventory(tmp_path), lambda line: None, OWNER)
    assert steps(server) == []
    server = MoveServer(inventory(tmp_path), old=container("webapp-haproxy", policy="no"),
                        shared_state="1\n# be_id be_name srv_id srv_name\n")
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    with pytest.raises(ProxyError, match=r"^s1: webapp-haproxy was told to stop, but the "
                                         r"shared HAProxy does not answer for webapp's "
                                         r"backend \(.*no server web1, web2"):
        up_moving(server, inventory(tmp_path), lambda line: None, OWNER)
    assert steps(server) == []


def test_the_first_pass_refuses_what_the_move_refuses(tmp_path: Path) -> None:
    """The shared `up`'s first pass (fleet.shared_checks.check_on) refuses a server whose
    move would refuse it, before any server changes: a cut upgrade of the app's own HAProxy,
    one on the app's network, one told to stop with no shared HAProxy."""
    from slotswap.fleet.shared_checks import check_on

    cases = [({"webapp-haproxy-next": container("webapp-haproxy-next")}, "left from an upgrade"),
             ({"webapp-haproxy": container("webapp-haproxy", network="webapp")},
              "runs on webapp's network"),
             ({"webapp-haproxy": container("webapp-haproxy", policy="no")},
              "was told to stop, and no shared HAProxy runs")]
    for containers, refusal in cases:
        server = MoveServer(inventory(tmp_path))
        server.containers.update(containers)
        with pytest.raises(ProxyError, match=refusal):
            check_on(server, inventory(tmp_path))
        assert steps(server) == []
    check_on(MoveServer(inventory(tmp_path)), inventory(tmp_path))  # a move to do: no refusal


def test_up_dry_run_of_a_cut_move_plans_the_leftovers_removal_whatever_its_image(
        tmp_path: Path) -> None:
    server = MoveServer(inventory(tmp_path))
    server.containers["slotswap-proxy"] = container("slotswap-proxy")
    changed = make_inventory(tmp_path, haproxy={"shared": True, "image": "haproxy:3.0"},
                             names=["webapp.test"], timeouts={"drain": 7})
    text = "\n".join(dry_run_move.up_plan_moving(server, changed).steps)
    assert "slotswap-proxy was left by an interrupted move: it goes" in text
    assert "STOP" not in text and "not available yet" not in text
    server = MoveServer(inventory(tmp_path), old=container("webapp-haproxy", network="webapp"))
    text = "\n".join(dry_run_move.up_plan_moving(server, inventory(tmp_path)).steps)
    assert "STOP: s1: webapp-haproxy runs on webapp's network" in text


def test_a_move_cut_with_the_app_in_already_is_not_reloaded_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared HAProxy ran the app's generation before this run (a move cut after its
    reload): nothing to reload back to, and the registration stays (HAProxy serves it)."""
    from slotswap.commands.docker import parse_inspect
    from slotswap.server.proxy_assembly import Generation
    from slotswap.server.proxy_files import Registry
    from slotswap.server.proxy_generation import ProxyState

    generation = Generation({}, "0000000000bb")
    server = FakeServer(inventory=inventory(tmp_path), answers={
        ("readlink",): CommandResult(generation.name + "\n", "", 0)})
    monkeypatch.setattr(proxy_move, "reload", lambda *args: pytest.fail("reloaded"))
    running = parse_inspect(json.dumps([container("slotswap-proxy")]))["slotswap-proxy"]
    proxy_move.take_back(server, inventory(tmp_path),
                         ProxyState(running, generation.name, generation.name),
                         Registry((), {}, None), started=False, generation=generation)
    assert not [argv for argv in server.commands if argv[:2] in (["rm", "-f"], ["sh", "-c"])]
