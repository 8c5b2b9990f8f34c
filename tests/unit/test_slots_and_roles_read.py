"""A deploy's first read of a server (slots.read_slots_and_roles): HAProxy's view, then the
slots' containers and every role container of the app in one `docker container inspect`.
What Docker answers decides between "this container does not exist" and "Docker failed":
only the first may read as a slot with no container."""

from __future__ import annotations

import json

import pytest

from slotswap.commands import docker
from slotswap.commands.role_containers import INSPECT_WITH_ROLES_SCRIPT
from slotswap.remote.server import CommandResult, RemoteCommandError
from slotswap.server.slots import read_slots_and_roles
from tests.unit.fake_server import FakeServer, recorded

SCRIPT = ("sh", "-c", INSPECT_WITH_ROLES_SCRIPT)


def server_answering(result: CommandResult) -> FakeServer:
    return FakeServer(state="live_web1", answers={SCRIPT: result})


def test_the_slots_and_the_role_containers_come_from_one_command() -> None:
    server = FakeServer(state="live_web1")
    views, roles = read_slots_and_roles(server, server.inventory)
    assert views["web1"].running and views["web1"].version == "v1"
    assert roles == []
    assert [argv[:3] for argv in server.commands] == [list(SCRIPT)]
    # Today's layout: the shared HAProxy too (a half-moved server: server/half_moved.py).
    assert server.commands[0][3:] == ["sh", "webapp", "webapp-web1", "webapp-web2",
                                      "webapp-haproxy-next", "slotswap-proxy"]


def test_role_containers_are_told_by_their_generation_label() -> None:
    items = json.loads(recorded("docker_inspect_live_web1.json"))
    worker = json.loads(json.dumps(items[0]))
    worker["Name"] = "/webapp-worker-web1-1"
    worker["Config"]["Labels"][docker.LABEL_GENERATION] = "web1"
    server = server_answering(CommandResult(json.dumps([*items, worker]), "", 0))
    views, roles = read_slots_and_roles(server, server.inventory)
    assert [info.name for info in roles] == ["webapp-worker-web1-1"]
    assert views["web1"].container is not None
    assert views["web1"].container.name == "webapp-web1"


def test_a_role_container_gone_between_the_listing_and_the_inspection_is_just_gone() -> None:
    stdout = recorded("docker_inspect_live_web1.json")
    server = server_answering(CommandResult(
        stdout, "Error: No such object: 0123abcd\n", 1))
    views, roles = read_slots_and_roles(server, server.inventory)
    assert views["web1"].running and roles == []


@pytest.mark.parametrize(("exit_code", "stderr", "said"), [
    # docker ps failed: the script exits 125, Docker's own error last.
    (125, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the "
          "docker daemon running?\n", "Cannot connect to the Docker daemon"),
    (125, "sh: 1: docker: not found\n", "docker: not found"),
    # Killed with no word: never "no container".
    (137, "", "no error output"),
    (1, "", "no error output"),
    # A missing container beside another error: the error wins.
    (1, "Error: No such object: webapp-web2\nError response from daemon: i/o timeout\n",
     "i/o timeout"),
])
def test_a_docker_that_fails_never_reads_as_slots_gone(exit_code: int, stderr: str,
                                                       said: str) -> None:
    server = server_answering(CommandResult("", stderr, exit_code))
    with pytest.raises(RemoteCommandError) as raised:
        read_slots_and_roles(server, server.inventory)
    message = str(raised.value)
    assert said in message and "\n" not in message
    # Named as what it reads, not as the script's text.
    assert message.startswith("s1: `docker container inspect webapp-web1 webapp-web2 "
                              "webapp-haproxy-next slotswap-proxy <the role containers>` "
                              "exited")


def test_no_error_output_is_not_known_to_be_a_missing_container() -> None:
    assert not docker.only_missing_containers("")
    assert docker.only_missing_containers("Error: No such container: webapp-web2\n")
