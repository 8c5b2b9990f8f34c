"""The reference inventories of two apps sharing servers (docs/two-apps): both load, `check`
renders each app's backend, and neither contradicts the other on a server, whichever `up`
runs first."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.cli.check import render_templates
from slotswap.config.loader import load_inventory
from slotswap.server.proxy_contradictions import find_contradictions
from slotswap.server.proxy_files import registration_for

FOLDER = Path(__file__).resolve().parents[2] / "docs" / "two-apps"


def registration(name: str):
    inventory = load_inventory(FOLDER / f"{name}.yaml")
    return inventory, registration_for(inventory, kit_version="1.0.0", by="ops@laptop",
                                       at="2026-12-04T10:00:00+00:00")


@pytest.mark.parametrize("name", ["shop", "admin"])
def test_each_loads_on_the_shared_haproxy_and_check_renders_its_backend(name: str) -> None:
    inventory = load_inventory(FOLDER / f"{name}.yaml")

    assert inventory.haproxy.shared
    assert render_templates(inventory) == ["haproxy-backend.cfg.j2"]


@pytest.mark.parametrize(("first", "second"), [("shop", "admin"), ("admin", "shop")])
def test_neither_contradicts_the_other(first: str, second: str) -> None:
    _, present = registration(first)
    inventory, mine = registration(second)

    found = find_contradictions("web-a", mine, [present], None,
                                names_key=inventory.route_names_key)

    assert found.contradiction is None
    assert {present.app, mine.app} == {"shop", "admin"}


def test_only_the_shop_writes_the_shared_settings() -> None:
    assert registration("shop")[1].shared_settings
    assert not registration("admin")[1].shared_settings
