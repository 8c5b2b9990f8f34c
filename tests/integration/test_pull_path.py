"""The pull path: a tag that cannot be pulled again is not deployed from an older copy unless
the operator says so (--allow-stale); the registry is asked once per run; the round trips a
no-op and a real deploy make on each server (`timings` in --json)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from testbed import sandbox

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
# Round trips per server (SSH commands, runtime-API lines, admin channels opened), without
# the polls of HAProxy while its checks run and during the watch (every 50 ms, for as long
# as those last) and the lock's renewals. Before the registry was asked once and the state
# read in fewer round trips: 10 for a no-op, 23 for a deploy; now 6 and 20. A deploy also
# reads the app's role containers before its switch (those a removed `roles` section left
# stop after the window), in the same `docker inspect` as the slots' containers; 22 in all.
NO_OP_ROUND_TRIPS = 6
DEPLOY_ROUND_TRIPS = 22
NOT_COUNTED = ("health checks", "watch", "lease")


@contextlib.contextmanager
def registry_stopped() -> Iterator[None]:
    """The sandbox's registry is down (its process ended) until the block is over."""
    sandbox.wait_gone(sandbox.kill_pidfile(sandbox.RUN_DIR / "registry.pid"))
    try:
        yield
    finally:
        sandbox.start_registry()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_tag_that_cannot_be_pulled_again_is_not_deployed_from_an_old_copy(
        fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    # Every server has a copy of v2 (deployed once), and serves v1 again.
    assert box.fab("deploy", "--tag", "v2").returncode == 0
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    before = {address: box.containers(address) for address in box.addresses}
    with registry_stopped():
        refused = box.fab("deploy", "--tag", "v2")
        assert refused.returncode == 1
        errors = error_lines(refused.stderr)
        assert len(errors) == 1 and len(refused.stderr.strip().splitlines()) == 1, \
            refused.stderr
        assert errors[0].startswith("error: nothing was changed")
        assert "cannot pull" in errors[0] and "--allow-stale" in errors[0]
        for address in box.addresses:
            assert box.containers(address) == before[address]
            assert box.served_versions(address) == {"v1"}
        with box.load() as load:
            allowed = box.fab("deploy", "--tag", "v2", "--allow-stale")
        report = load.stop()
        print(report.summary())
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.count("--allow-stale") == len(box.addresses)  # a warning each
    assert report.failed == 0, report.failures
    assert set(box.live_versions().values()) == {"v2"}


def deploy_document(box: Sandbox, tag: str, *flags: str) -> tuple[dict[str, Any], str]:
    result = box.fab("deploy", "--tag", tag, "--json", *flags)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def counted_round_trips(server: dict[str, Any]) -> int:
    steps = server["timings"]["steps"]
    return sum(step["round_trips"] for name, step in steps.items()
               if name not in NOT_COUNTED)


def test_the_registry_is_asked_once_and_each_server_makes_few_round_trips(
        fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    deployed, _ = deploy_document(box, "v1", "--force")
    no_op, said = deploy_document(box, "v1")
    print(json.dumps({"deploy": [s["timings"] for s in deployed["servers"]],
                      "no-op": [s["timings"] for s in no_op["servers"]]}, indent=1))
    assert [s["outcome"] for s in no_op["servers"]] == ["unchanged"] * len(box.addresses)
    for server in no_op["servers"]:
        assert counted_round_trips(server) <= NO_OP_ROUND_TRIPS, server["timings"]
    for server in deployed["servers"]:
        assert server["outcome"] == "deployed"
        assert counted_round_trips(server) <= DEPLOY_ROUND_TRIPS, server["timings"]
    # Only the first server pulled: the others' copies have the ID that pull gave.
    image_steps = [s["timings"]["steps"]["image"]["round_trips"] for s in no_op["servers"]]
    assert image_steps == [1] * len(box.addresses)
    assert said.count("pulling ") == 1 and said.count("not pulled") == len(box.addresses) - 1
    for phase in ("connect, lock", "image", "unchanged?", "unlock"):
        assert phase in no_op["timings"]
    assert "swaps" in deployed["timings"] and "watch window" in deployed["timings"]
