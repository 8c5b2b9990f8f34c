"""delivery: registry against scripted servers: the registry is asked once per run (the first
server's pull), the others pull only when their copy differs; a copy that cannot be pulled
again is that server's failure unless --allow-stale."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from slotswap.commands import docker
from slotswap.fleet.delivery import RegistryDelivery
from slotswap.remote.server import CommandResult
from slotswap.server.images import StaleImageError, ensure_image
from tests.unit.fake_server import FakeServer

REF = "registry.example.com/acme/app:v2"
NEW, OLD = "sha256:" + "1" * 64, "sha256:" + "2" * 64
UNREACHABLE = ("Error response from daemon: Get \"https://registry.example.com/v2/\": dial "
               "tcp 203.0.113.5:443: connect: connection refused")


class PullServer(FakeServer):
    """Has a copy of REF with image ID `copy` (None: no copy); its pull gives `pulled`
    (None: the registry cannot be reached)."""

    def __init__(self, name: str, copy: str | None, pulled: str | None) -> None:
        super().__init__(name)
        self.copy, self.pulled = copy, pulled

    def run(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self.commands.append(list(argv))
        if argv == docker.image_id(REF):
            return CommandResult(f"{self.copy}\n", "", 0) if self.copy else CommandResult(
                "", f"Error: No such image: {REF}", 1)
        assert argv == docker.pull_and_id(REF), argv
        if self.pulled is None:
            return CommandResult("", UNREACHABLE, 1)
        self.copy = self.pulled
        return CommandResult(f"{self.pulled}\n", "", 0)

    @property
    def pulls(self) -> int:
        return self.commands.count(docker.pull_and_id(REF))


def deliver_to(servers: list[PullServer], *, allow_stale: bool = False
               ) -> tuple[dict[str, list[str]], dict[str, Exception]]:
    """Every server at once, as rollout.prepare does; the lines each said, the errors."""
    said: dict[str, list[str]] = {server.name: [] for server in servers}
    failed: dict[str, Exception] = {}
    deliver = RegistryDelivery(None, allow_stale)

    def one(server: PullServer) -> None:
        try:
            deliver(server, REF, said[server.name].append, refresh=True)
        except Exception as error:
            failed[server.name] = error

    threads = [threading.Thread(target=one, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return said, failed


def test_only_the_first_server_asks_the_registry_when_the_others_have_its_image() -> None:
    servers = [PullServer("s1", OLD, NEW), PullServer("s2", NEW, NEW), PullServer("s3", NEW, NEW)]
    said, failed = deliver_to(servers)
    assert failed == {}
    assert [server.pulls for server in servers] == [1, 0, 0]
    assert [len(server.commands) for server in servers] == [1, 1, 1]  # one round trip each
    assert said["s2"] == [f"{REF} already there (image 111111111111, the registry's now), "
                          "not pulled"]


def test_a_server_whose_copy_differs_from_what_the_first_pulled_pulls_too() -> None:
    servers = [PullServer("s1", NEW, NEW), PullServer("s2", OLD, NEW), PullServer("s3", None, NEW)]
    _, failed = deliver_to(servers)
    assert failed == {}
    assert [server.pulls for server in servers] == [1, 1, 1]
    assert [server.copy for server in servers] == [NEW, NEW, NEW]


def test_a_server_without_a_copy_pulls_without_waiting_for_the_first() -> None:
    first = PullServer("s1", None, NEW)
    release = threading.Event()
    pull = first.run

    def slow_pull(argv: list[str], **options: Any) -> CommandResult:
        if argv == docker.pull_and_id(REF):
            assert release.wait(5), "the second server waited for the first one's pull"
        return pull(argv, **options)

    second = PullServer("s2", None, NEW)
    second_pull = second.run

    def pull_then_release(argv: list[str], **options: Any) -> CommandResult:
        answer = second_pull(argv, **options)
        if argv == docker.pull_and_id(REF):
            release.set()
        return answer

    first.run, second.run = slow_pull, pull_then_release  # type: ignore[method-assign]
    _, failed = deliver_to([first, second])
    assert failed == {} and first.copy == second.copy == NEW


def test_a_copy_that_cannot_be_pulled_again_is_refused_on_every_server() -> None:
    servers = [PullServer(name, OLD, None) for name in ("s1", "s2")]
    _, failed = deliver_to(servers)
    assert set(failed) == {"s1", "s2"}
    assert all(isinstance(error, StaleImageError) for error in failed.values())
    message = str(failed["s1"])
    assert message.startswith(f"s1: cannot pull {REF}: Error response from daemon")
    assert message.endswith("its copy of that tag may be an older push, so it is not deployed "
                            "(--allow-stale deploys it anyway)")
    assert "\n" not in message


def test_with_allow_stale_the_copy_is_deployed_with_a_warning() -> None:
    servers = [PullServer(name, OLD, None) for name in ("s1", "s2")]
    said, failed = deliver_to(servers, allow_stale=True)
    assert failed == {}
    assert said["s1"][-1].startswith(f"WARNING: cannot pull {REF}: ")
    assert said["s1"][-1].endswith("deploying the copy on the server, which may be an older "
                                   "push of that tag (--allow-stale)")


def test_ensure_image_refuses_a_copy_it_could_not_refresh() -> None:
    # What a deploy did before: a warning, and the copy went into service.
    server = PullServer("s1", OLD, None)
    with pytest.raises(StaleImageError):
        ensure_image(server, REF, print, refresh=True)
    # Without refresh (up, a rollback) a copy is used as it is: nothing is pulled.
    assert ensure_image(server, REF, print) is None
    assert server.pulls == 1
