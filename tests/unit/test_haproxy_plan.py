"""`up`'s one decision about HAProxy (slotswap.server.haproxy_plan), which the run and the
dry run both follow: kept and reloaded, handed over, recreated, started."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.commands.docker import ContainerInfo
from slotswap.server.haproxy_config import config_hash
from slotswap.server.haproxy_handover import LABEL_SPEC, container_spec
from slotswap.server.haproxy_plan import plan_haproxy
from tests.unit.fake_server import make_inventory

WANTED = "global\n  maxconn 100\n"


def haproxy(tmp_path: Path, *, running: bool = True, host: bool = True,
            same_spec: bool = True) -> ContainerInfo:
    spec = container_spec(make_inventory(tmp_path)) if same_spec else "older"
    return ContainerInfo("webapp-haproxy", running, "running" if running else "exited",
                         "haproxy:2.8", "sha256:1", {LABEL_SPEC: spec},
                         {"host": ""} if host else {"webapp": "172.18.0.2"}, 0,
                         "2026-11-26T10:00:00Z")


@pytest.mark.parametrize(("container", "carried", "expected"), [
    # (replace, hand_over, reload, start)
    ({}, False, (False, False, True, "")),  # running as wanted: kept, a reload if need be
    ({"same_spec": False}, False, (True, True, False, "")),  # new image: a hand-over
    ({}, True, (True, True, False, "")),  # another login's folders: a hand-over
    ({"same_spec": False, "host": False}, False, (True, False, False, "")),  # recreated
    ({"running": False}, False, (False, False, False, "start")),
    (None, False, (False, False, False, "run")),
])
def test_what_up_does_with_haproxy(tmp_path: Path, container: dict[str, bool] | None,
                                   carried: bool,
                                   expected: tuple[bool, bool, bool, str]) -> None:
    inventory = make_inventory(tmp_path)
    found = haproxy(tmp_path, **container) if container is not None else None
    plan = plan_haproxy(found, inventory, carried=carried, current=WANTED,
                        running=config_hash(WANTED) + "\n", wanted=WANTED)
    assert (plan.replace, plan.hand_over, plan.reload, plan.start) == expected
    assert plan.config_changed is False and plan.new_config == plan.replace


def test_a_config_on_disk_that_never_ran_is_a_change(tmp_path: Path) -> None:
    """A cut between writing the config and the reload (path 8): the file is the one wanted,
    HAProxy does not run it."""
    inventory = make_inventory(tmp_path)
    plan = plan_haproxy(haproxy(tmp_path), inventory, carried=False, current=WANTED,
                        running=config_hash("older") + "\n", wanted=WANTED)
    assert plan.config_changed and plan.new_config and plan.reload
