"""The hand-over from a running HAProxy to a container of a new image, against a fake
server: the order of the steps, and the one recovery path when the new one does not take
over (the new container removed, the old config back, the old HAProxy reloaded)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slotswap.commands.docker import HAPROXY_INSTANCE_VARIABLE, ContainerInfo, parse_inspect
from slotswap.commands.runtime_api import RuntimeApiError, parse_servers_state
from slotswap.config.inventory import Inventory
from slotswap.config.layout import ProxyError
from slotswap.remote.server import CommandResult
from slotswap.server.haproxy import reach_unpublished_slots
from slotswap.server.haproxy_handover import hand_over_to_new_haproxy, on_host_network
from slotswap.server.slots import read_slots
from tests.unit.fake_server import FIXTURES, FakeServer, make_inventory, recorded

FRONTEND_OPEN = "# pxname,svname,status\nhttp,FRONTEND,OPEN\n"


def exited(argv: list[str]) -> CommandResult:
    state = {"Running": False, "Status": "exited"}
    return CommandResult(json.dumps([{"Name": f"/{argv[-1]}", "State": state}]), "", 0)


class HandOverServer(FakeServer):
    """Records commands; HAProxy's admin socket answers as the container that made it last."""

    def __init__(self, *, new_starts: bool) -> None:
        super().__init__(answers={("docker", "container", "inspect"): exited,
                                  ("cat",): CommandResult("1\n", "", 0)})
        self.new_starts = new_starts
        self.instance: str | None = None  # the new container's token, once it answers

    def run(self, argv: Sequence[str], **options: Any) -> CommandResult:
        if argv[:2] == ["docker", "run"] and self.new_starts:
            token = next(word for word in argv if word.startswith(HAPROXY_INSTANCE_VARIABLE))
            self.instance = token.partition("=")[2]
        return super().run(argv, **options)

    def runtime_api(self, command: str) -> str:
        if command.startswith("show stat ") and "; " in command:  # both, one round trip
            return "".join(self.runtime_api(part) + "\n" for part in command.split("; "))
        if command.startswith("show env"):
            return f"{HAPROXY_INSTANCE_VARIABLE}={self.instance}\n" if self.instance else ""
        if command == "show stat":
            return FRONTEND_OPEN
        return "1\n# be_id be_name\n"

    def close_runtime_api(self) -> None:
        self.commands.append(["<close admin session>"])


def inventory(tmp_path: Path) -> Inventory:
    return make_inventory(tmp_path, haproxy={"image": "haproxy:3.0"})


OLD = ContainerInfo("webapp-haproxy", True, "running", "haproxy:2.8", "sha256:1", {},
                    {"host": ""}, 0, "")


def docker_steps(server: HandOverServer) -> list[list[str]]:
    return [argv[:3] for argv in server.commands if argv[0] in ("docker", "timeout")]


def test_the_new_haproxy_takes_over_before_the_old_one_stops(tmp_path: Path) -> None:
    server, said = HandOverServer(new_starts=True), []
    hand_over_to_new_haproxy(server, inventory(tmp_path), said.append, OLD, restore=True)
    assert docker_steps(server) == [
        ["docker", "rm", "--force"],  # a leftover temporary container
        ["docker", "run", "--detach"],
        ["docker", "update", "--restart"],
        ["docker", "kill", "--signal"],
        ["timeout", "30", "docker"],
        ["docker", "rm", "--force"],
        ["docker", "rename", "webapp-haproxy-next"],
    ]
    assert ["docker", "kill", "--signal", "USR1", "webapp-haproxy"] in server.commands
    # The slots' state was saved for the new process, and kept for any later restart.
    assert "/etc/slotswap/webapp/haproxy/server-state" in server.files
    assert ["rm", "-f", "/etc/slotswap/webapp/haproxy/server-state"] not in server.commands
    assert any("accepts connections" in line for line in said)


def test_a_new_haproxy_that_does_not_take_over_leaves_the_old_one(tmp_path: Path) -> None:
    server = HandOverServer(new_starts=False)  # its container is seen exited at once
    with pytest.raises(ProxyError, match=r"did not take over \(webapp-haproxy-next "
                                               r"stopped while starting\); webapp-haproxy "
                                               r"keeps serving with its image haproxy:2\.8"):
        hand_over_to_new_haproxy(server, inventory(tmp_path), lambda line: None, OLD,
                                       restore=True)
    # The new container goes, the previous config comes back, the old HAProxy reloads (its
    # admin socket made anew); it is never told to stop.
    tail = server.commands[server.commands.index(["docker", "rm", "--force",
                                                  "webapp-haproxy-next"], 2):]
    assert ["mv", "-f", "/etc/slotswap/webapp/haproxy/haproxy.cfg.prev",
            "/etc/slotswap/webapp/haproxy/haproxy.cfg"] in tail
    assert ["docker", "kill", "--signal", "USR2", "webapp-haproxy"] in tail
    assert not [argv for argv in server.commands if "USR1" in argv and "webapp-haproxy" in argv]
    assert not [argv for argv in server.commands if argv[:2] == ["docker", "rename"]]
    # The new one, which may listen already, drains before it goes: no connection reset.
    assert server.commands.index(["docker", "kill", "--signal", "USR1",
                                  "webapp-haproxy-next"]) < server.commands.index(
        ["docker", "rm", "--force", "webapp-haproxy-next"], 2)


def recorded_server(extra: list[dict[str, Any]]) -> FakeServer:
    """Answers read_slots with recorded outputs; `extra` adds containers to `docker inspect`."""
    containers = json.loads(recorded("docker_inspect_live_web1.json")) + extra
    return FakeServer(state="live_web1", answers={
        ("docker", "container", "inspect"): CommandResult(json.dumps(containers), "", 0)})


def test_a_deploy_refuses_a_server_left_mid_hand_over(tmp_path: Path) -> None:
    """Two HAProxies serve there, and only the new one would learn of a swap."""
    inv = inventory(tmp_path)
    assert set(read_slots(recorded_server([]), inv)) == {"web1", "web2"}
    left = [{"Name": "/webapp-haproxy-next", "State": {"Running": True, "Status": "running"}}]
    with pytest.raises(RuntimeApiError, match=r"webapp-haproxy-next is left from an HAProxy "
                                              r"upgrade that was cut short; run `fab up`"):
        read_slots(recorded_server(left), inv)


def test_recorded_answers_of_haproxy_on_the_servers_network() -> None:
    inspected = parse_inspect((FIXTURES / "docker_inspect_haproxy_host_network.json").read_text())
    assert on_host_network(inspected["webapp-haproxy"])
    states = parse_servers_state(
        (FIXTURES / "show_servers_state_loopback_slots.txt").read_text(encoding="utf-8"))
    assert {slot: state.resolved_address for slot, state in states.items()} == {
        "web1": "127.0.0.1", "web2": "127.0.0.1"}


def slots_server(bindings: dict[str, Any]) -> FakeServer:
    """web1 runs, published on the loopback as `bindings` say; HAProxy has it at 127.0.0.1."""
    web1 = {"Name": "/webapp-web1", "State": {"Running": True, "Status": "running"},
            "Config": {"Labels": {"slotswap.version": "v1"}},
            "HostConfig": {"PortBindings": bindings},
            "NetworkSettings": {"Networks": {"webapp": {"IPAddress": "10.111.2.3"}}}}
    return FakeServer(
        answers={("docker",): CommandResult(json.dumps([web1]), "", 1)},  # web2 is missing
        api={"show servers state": recorded("show_servers_state_loopback_slots.txt")})


def test_a_slot_not_published_where_the_config_says_is_reached_on_the_apps_network(
        tmp_path: Path) -> None:
    inv = inventory(tmp_path)
    published = slots_server({"3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}]})
    assert reach_unpublished_slots(published, inv, print) == []
    assert published.sent == []
    # Made by an earlier slotswap (nothing published), or before slot_ports changed.
    for bindings in ({}, {"3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "28081"}]}):
        server = slots_server(bindings)
        assert reach_unpublished_slots(server, inv, print) == ["web1"]
        assert server.sent == ["set server webapp/web1 addr 10.111.2.3 port 3000; "
                               "set server webapp/web1 check-port 3000"]


def left_containers(old_policy: str) -> CommandResult:
    """An HAProxy and its `-next` both running, as a hand-over cut at its end leaves them."""
    def container(name: str, policy: str) -> dict[str, Any]:
        return {"Name": f"/{name}", "State": {"Running": True, "Status": "running"},
                "HostConfig": {"RestartPolicy": {"Name": policy}},
                "NetworkSettings": {"Networks": {"host": {}}}}
    return CommandResult(json.dumps([container("webapp-haproxy", old_policy),
                                     container("webapp-haproxy-next", "unless-stopped")]),
                         "", 0)


def test_up_finishes_a_hand_over_cut_while_the_old_haproxy_drains(tmp_path: Path) -> None:
    """Cut after the old HAProxy got its soft stop (restart policy `no`, SIGUSR1): the new
    one holds the listeners, so it stays and takes the name; the old one is never reloaded
    and the new one never killed."""
    from slotswap.server.haproxy_handover import finish_interrupted_handover

    server = FakeServer(answers={("docker", "container", "inspect"): left_containers("no")})
    lines: list[str] = []
    assert finish_interrupted_handover(server, inventory(tmp_path), lines.append)
    assert not [argv for argv in server.commands if "USR2" in argv]
    assert ["docker", "rm", "--force", "webapp-haproxy-next"] not in server.commands
    steps = [argv[:3] for argv in server.commands if argv[0] in ("docker", "timeout")]
    assert steps[1:] == [
        ["docker", "update", "--restart"],
        ["docker", "kill", "--signal"],
        ["timeout", "30", "docker"],
        ["docker", "rm", "--force"],
        ["docker", "rename", "webapp-haproxy-next"],
    ]
    assert ["docker", "rm", "--force", "webapp-haproxy"] in server.commands
    assert "finishing an interrupted hand-over" in lines[0]


def test_up_undoes_a_hand_over_cut_before_the_old_haproxy_was_told_to_stop(
        tmp_path: Path) -> None:
    from slotswap.server.haproxy_handover import finish_interrupted_handover

    server = FakeServer(answers={("docker", "container", "inspect"):
                                 left_containers("unless-stopped")})
    assert finish_interrupted_handover(server, inventory(tmp_path), lambda _: None)
    assert ["docker", "rm", "--force", "webapp-haproxy-next"] in server.commands
    assert ["docker", "kill", "--signal", "USR2", "webapp-haproxy"] in server.commands
    assert not [argv for argv in server.commands if "USR1" in argv and "webapp-haproxy" in argv]


class CheckingServer(FakeServer):
    """run_chain raises at a failed command, as Server's does."""

    def run_chain(self, *commands: Sequence[str],
                  timeout: float | None = None) -> CommandResult:
        from slotswap.remote.server import RemoteCommandError

        result = super().run_chain(*commands, timeout=timeout)
        if not result.ok:
            raise RemoteCommandError(self.name, "chain", result.exit_code, result.stderr)
        return result


def inspected_old(running: bool) -> CommandResult:
    state = {"Running": running, "Status": "running" if running else "exited"}
    return CommandResult(json.dumps([{"Name": "/webapp-haproxy", "State": state}]), "", 0)


@pytest.mark.parametrize(("inspected", "goes_on"), [
    (inspected_old(False), True),
    (CommandResult("[]\n", "Error: No such container: webapp-haproxy\n", 1), True),
    (inspected_old(True), False),
    (CommandResult("", "Cannot connect to the Docker daemon\n", 1), False),
], ids=["exited", "gone", "running", "docker does not answer"])
def test_an_old_haproxy_that_exits_as_it_is_told_again_to_stop_is_no_failure(
        tmp_path: Path, inspected: CommandResult, goes_on: bool) -> None:
    """The `up` that finishes a cut hand-over tells the old HAProxy to stop again; its last
    connection may end right then, and `docker kill` finds it not running: it has stopped,
    the hand-over goes on at once (no wait for it to drain, seen on the sandbox). A kill
    that fails while it runs, or where Docker does not say, still fails the run."""
    from slotswap.remote.server import RemoteCommandError
    from slotswap.server.haproxy_handover import finish_interrupted_handover

    answers = iter([left_containers("no"), inspected])
    server = CheckingServer(answers={
        ("docker", "container", "inspect"): lambda argv: next(answers),
        ("docker", "kill"): CommandResult("", "Error response from daemon: Cannot kill "
                                          "container: webapp-haproxy: is not running\n", 1)})
    said: list[str] = []
    if not goes_on:
        with pytest.raises(RemoteCommandError):
            finish_interrupted_handover(server, inventory(tmp_path), said.append)
        assert not [argv for argv in server.commands if argv[:2] == ["docker", "rename"]]
        return
    assert finish_interrupted_handover(server, inventory(tmp_path), said.append)
    assert server.commands[-1] == ["docker", "rename", "webapp-haproxy-next", "webapp-haproxy"]
    assert not [argv for argv in server.commands if argv[0] == "timeout"]  # no drain wait
    assert not [line for line in said if "removed anyway" in line]
