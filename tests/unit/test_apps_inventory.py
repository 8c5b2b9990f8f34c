"""The inventory's keys for several apps on one server (docs/apps-design.md, build step 1):
haproxy.shared, haproxy.default, the top-level names, and which of the server's shared
settings a file writes itself. Each bad value is refused in one line naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slotswap.config.inventory import SHARED_KEYS, InventoryError
from slotswap.config.loader import load_inventory
from slotswap.server import proxy_registry
from tests.unit.fake_server import make_inventory

FILES = {"chain": "certs/fullchain.pem", "key": "certs/privkey.pem"}


def refused(key: str, **settings: Any) -> str:
    with pytest.raises(InventoryError) as caught:
        make_inventory(**settings)
    assert caught.value.key == key
    message = str(caught.value)
    assert message.startswith(f"/srv/hosts.yaml: {key}: ")
    assert "\n" not in message
    return message.removeprefix(f"/srv/hosts.yaml: {key}: ")


def test_an_app_uses_its_own_haproxy_unless_it_says_shared() -> None:
    inventory = make_inventory()
    assert not inventory.haproxy.shared and not inventory.haproxy.default
    assert inventory.names == () and inventory.route_names == ()


def test_an_http_only_shared_app_routes_by_its_names() -> None:
    inventory = make_inventory(haproxy={"shared": True},
                               names=["shop.example.com", "*.shop.example.com"])
    assert inventory.route_names == ("shop.example.com", "*.shop.example.com")
    assert inventory.route_names_key == "names"


def test_an_https_shared_app_routes_by_https_names() -> None:
    inventory = make_inventory(haproxy={"shared": True},
                               https={"names": ["shop.example.com"], "files": FILES})
    assert inventory.route_names == ("shop.example.com",)
    assert inventory.route_names_key == "https.names"


def test_the_default_app_needs_no_names() -> None:
    inventory = make_inventory(haproxy={"shared": True, "default": True})
    assert inventory.haproxy.default and inventory.route_names == ()


@pytest.mark.parametrize(("key", "settings", "expected"), [
    ("names", {"haproxy": {"shared": True}},
     "required with haproxy.shared: true and no https section: the host names routed to "
     "this app (or haproxy.default: true, for every name no app claims)"),
    ("names", {"names": ["shop.example.com"]},
     "only with haproxy.shared: true (the shared HAProxy routes by them; an app's own "
     "HAProxy answers every name)"),
    ("names", {"haproxy": {"shared": True}, "names": ["a.example.com"],
               "https": {"names": ["a.example.com"], "files": FILES}},
     "with an https section, the app's names are https.names: remove names"),
    ("names", {"haproxy": {"shared": True}, "names": []},
     "expected a list of the DNS names clients use, got an empty list"),
    ("names", {"haproxy": {"shared": True}, "names": "shop.example.com"},
     "expected a list of the DNS names clients use, got 'shop.example.com'"),
    ("names[1]", {"haproxy": {"shared": True}, "names": ["a.example.com", "Shop.example.com"]},
     "expected a lowercase DNS name, got 'Shop.example.com'"),
    ("names[0]", {"haproxy": {"shared": True}, "names": ["*.*.example.com"]},
     "expected a lowercase DNS name, got '*.*.example.com'"),
    ("names[0]", {"haproxy": {"shared": True}, "names": ["shop.example.com:80"]},
     "expected a lowercase DNS name, got 'shop.example.com:80'"),
    ("names", {"haproxy": {"shared": True}, "names": ["a.example.com", "a.example.com"]},
     "a.example.com is listed twice"),
    ("haproxy.default", {"haproxy": {"default": True}},
     "only with haproxy.shared: true (the default app of the server's shared HAProxy)"),
    ("haproxy.shared", {"haproxy": {"shared": "yes"}}, "expected true or false"),
])
def test_each_bad_value_is_one_line_naming_its_key(
        key: str, settings: dict[str, Any], expected: str) -> None:
    assert refused(key, **settings).startswith(expected)


def test_the_file_says_which_shared_settings_it_writes_itself() -> None:
    assert make_inventory().shared_keys_written == ()
    inventory = make_inventory(
        haproxy={"image": "haproxy:2.8", "http_port": 8080, "slot_ports": [18083, 18084],
                 "trusted_proxies": [], "shared": True},
        https={"names": ["shop.example.com"], "files": FILES, "port": 8443})
    # trusted_proxies: [] is written (trust no one, said on purpose); slot_ports is the app's.
    assert inventory.shared_keys_written == (
        "haproxy.image", "haproxy.http_port", "https.port", "haproxy.trusted_proxies")
    # An https section that leaves its port out does not write it.
    inventory = make_inventory(https={"names": ["shop.example.com"], "files": FILES})
    assert inventory.shared_keys_written == ()


def test_the_loader_and_the_registry_name_the_same_shared_keys() -> None:
    # One definition, in the config layer; the registry's is the same object.
    assert proxy_registry.SHARED_KEYS is SHARED_KEYS


def test_a_shared_inventory_loads_as_any_other(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"app": "shop", "image": "acme/shop", "hosts": ["s1"],
                                    "haproxy": {"shared": True}, "names": ["shop.example"]}))
    inventory = load_inventory(path)
    assert inventory.haproxy.shared and inventory.route_names == ("shop.example",)
