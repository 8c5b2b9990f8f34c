"""The shared HAProxy's files on a server (server/proxy_files.py): the registry read in one
round trip, by a real sh on local folders; `current` switched and old generations pruned by
a real sh; an app's registration from its inventory; a shared inventory with HTTPS loads."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from slotswap.config.inventory import Inventory
from slotswap.server.proxy_files import (
    parse_registry,
    prune_generations_command,
    read_registry_command,
    registration_for,
    switch_command,
)
from slotswap.server.proxy_registry import RegistryFileError, registration_json
from tests.unit.fake_server import make_inventory

MARK = "::mark-1234::"


def shared(tmp_path: Path, app: str = "shop", **settings: object) -> Inventory:
    return make_inventory(tmp_path, app=app, remote_dir=str(tmp_path / "kit"),
                          haproxy={"shared": True, **settings.pop("haproxy", {})},  # type: ignore[dict-item]
                          names=[f"{app}.test"], **settings)


def sh(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False,
                          env={"PATH": "/usr/bin:/bin"})


def test_an_apps_registration_comes_from_its_inventory(tmp_path: Path) -> None:
    inventory = shared(tmp_path, haproxy={"slot_ports": [18183, 18184], "http_port": 8080},
                       healthcheck={"path": "/health", "port": 9000}, timeouts={"drain": 12})
    mine = registration_for(inventory, kit_version="0.3.0", by="alice@laptop",
                            at="2026-12-04T09:00:00+00:00")
    assert (mine.app, mine.names, mine.default, mine.https) == ("shop", ("shop.test",),
                                                                False, False)
    assert mine.slot_ports == (18183, 18184) and mine.check_ports == (18283, 18284)
    assert mine.shared_settings == {"haproxy.http_port": 8080} and mine.drain == 12.0


def test_the_registry_is_read_in_one_round_trip_by_a_real_sh(tmp_path: Path) -> None:
    shop, admin = shared(tmp_path), shared(tmp_path, "admin")
    at = "2026-12-04T09:00:00+00:00"
    folder = tmp_path / "kit" / "_proxy"
    (folder / "state" / "apps").mkdir(parents=True)
    (folder / "config" / "haproxy" / "apps" / "shop").mkdir(parents=True)
    for inventory in (shop, admin):
        mine = registration_for(inventory, kit_version="0.3.0", by="a@b", at=at)
        (folder / "state" / "apps" / f"{inventory.app}.json").write_text(registration_json(mine))
    (folder / "config" / "haproxy" / "apps" / "shop" / "backend.cfg").write_text(
        "backend shop\n    balance first\n")
    answer = sh(read_registry_command(shop, MARK))
    assert answer.returncode == 0, answer.stderr
    registry = parse_registry(answer.stdout, MARK, "s1")
    assert [item.app for item in registry.registrations] == ["admin", "shop"]
    assert registry.fragments == {"admin": None, "shop": "backend shop\n    balance first\n"}
    assert registry.settings is None and registry.of("shop") is not None
    assert [item.app for item in registry.others("shop")] == ["admin"]


def test_a_registration_that_is_not_the_kits_is_refused_in_one_line() -> None:
    stdout = f"{MARK} registration shop\n{{\"app\": \"shop\", \"names\": [\"Bad Name\"]}}\n"
    with pytest.raises(RegistryFileError) as raised:
        parse_registry(stdout, MARK, "s1: /var/lib/slotswap/_proxy/apps")
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("s1: /var/lib/slotswap/_proxy/apps/shop.json: ")


def test_current_is_switched_in_one_rename_and_previous_names_what_ran(tmp_path: Path) -> None:
    inventory = shared(tmp_path)
    folder = tmp_path / "kit" / "_proxy" / "config" / "haproxy"
    for name in ("gen-aaaaaaaaaaaa", "gen-bbbbbbbbbbbb", "gen-cccccccccccc"):
        (folder / name).mkdir(parents=True)
    assert sh(switch_command(inventory, "gen-aaaaaaaaaaaa", None)).returncode == 0
    assert (folder / "current").readlink() == Path("gen-aaaaaaaaaaaa")
    assert not (folder / "previous").exists()
    assert sh(switch_command(inventory, "gen-bbbbbbbbbbbb", "gen-aaaaaaaaaaaa")).returncode == 0
    assert (folder / "current").readlink() == Path("gen-bbbbbbbbbbbb")
    assert (folder / "previous").readlink() == Path("gen-aaaaaaaaaaaa")
    assert not (folder / ".current.tmp").exists()
    keep = dict.fromkeys(["gen-bbbbbbbbbbbb", "gen-aaaaaaaaaaaa"])
    assert sh(prune_generations_command(inventory, keep)).returncode == 0
    assert sorted(path.name for path in folder.iterdir()) == [
        "current", "gen-aaaaaaaaaaaa", "gen-bbbbbbbbbbbb", "previous"]


def test_a_shared_inventory_loads_with_https_too(tmp_path: Path) -> None:
    files = {"chain": "c.pem", "key": "k.pem"}
    https = make_inventory(tmp_path, haproxy={"shared": True},
                           https={"names": ["shop.test"], "files": files})
    assert https.haproxy.shared and https.route_names == ("shop.test",)
