"""Which platform `build` builds for: build.platform, else what `up` recorded for the
servers, else this machine's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap import platforms
from slotswap.inventory import load_inventory


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "hosts.yaml").write_text("app: webapp\nimage: r.example/webapp\n"
                                         "hosts: [192.0.2.1, 192.0.2.2]\n")
    return load_inventory(tmp_path / "hosts.yaml")


def test_nothing_recorded_builds_for_this_machine(inventory) -> None:
    assert platforms.for_build(inventory)[0] is None


def test_what_up_saw_is_kept_when_the_servers_agree(inventory) -> None:
    assert platforms.record(inventory, {"s1": "linux/arm64", "s2": "linux/arm64"}) == \
        "linux/arm64"
    assert platforms.for_build(inventory) == ("linux/arm64",
                                              "the servers' platform, as `up` found it")


def test_servers_that_differ_record_nothing(inventory) -> None:
    assert platforms.record(inventory, {"s1": "linux/arm64", "s2": "linux/amd64"}) is None
    assert platforms.recorded(inventory) is None


def test_the_inventory_wins(inventory, tmp_path: Path) -> None:
    platforms.record(inventory, {"s1": "linux/arm64"})
    (tmp_path / "hosts.yaml").write_text("app: webapp\nimage: r.example/webapp\n"
                                         "build: {platform: linux/amd64}\nhosts: [192.0.2.1]\n")
    assert platforms.for_build(load_inventory(tmp_path / "hosts.yaml"))[0] == "linux/amd64"
