"""The shared HAProxy's registry (several apps on one server, docs/apps-design.md, decisions
1 and 2): its paths and names, the registrations and shared settings as JSON, the shared
settings an app uses and who owns them, and the contradictions between apps, each one line."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from slotswap.commands import docker
from slotswap.config import layout
from slotswap.config.layout import ProxyError
from slotswap.server.proxy_registry import (
    Registration,
    RegistryFileError,
    SharedSettings,
    assembled,
    current_owner,
    effective_settings,
    longest_drain,
    others_present,
    parse_registration,
    parse_settings,
    present,
    registration_json,
    routing_differs,
    settings_after_down,
    settings_json,
)
from tests.unit.fake_server import make_inventory


def test_root_keeps_the_shared_folders_beside_the_apps_system_folders() -> None:
    inventory = make_inventory()
    assert layout.proxy_state_dir(inventory) == "/var/lib/slotswap/_proxy"
    assert layout.proxy_config_dir(inventory) == "/etc/slotswap/_proxy"
    assert layout.proxy_lock_dir(inventory) == "/var/lib/slotswap/_proxy/lock"
    assert layout.registration_path(inventory, "shop") == "/var/lib/slotswap/_proxy/apps/shop.json"
    assert layout.proxy_settings_path(inventory) == "/var/lib/slotswap/_proxy/settings.json"
    haproxy = "/etc/slotswap/_proxy/haproxy"
    assert layout.proxy_haproxy_dir(inventory) == haproxy
    assert layout.proxy_admin_socket_path(inventory) == f"{haproxy}/admin/admin.sock"
    assert layout.proxy_service_path(inventory) == f"{haproxy}/maintenance.lua"
    assert layout.fallback_cert_path(inventory) == f"{haproxy}/fallback.pem"
    shop = layout.app_files(inventory, "shop")
    assert shop.fragment == f"{haproxy}/apps/shop/backend.cfg"
    assert shop.server_state == f"{haproxy}/apps/shop/server-state"
    assert shop.maintenance_map == f"{haproxy}/apps/shop/maintenance.map"
    assert shop.cert == f"{haproxy}/apps/shop/site.pem"
    assert shop.source == f"{haproxy}/apps/shop/site.source"
    assert layout.generation_dir(inventory, "0123456789ab") == f"{haproxy}/gen-0123456789ab"
    assert layout.current_link(inventory) == f"{haproxy}/current"
    assert layout.previous_link(inventory) == f"{haproxy}/previous"
    assert layout.proxy_running_path(inventory) == f"{haproxy}/.running"


def test_a_kit_dir_keeps_them_in_its_own_proxy_folder() -> None:
    remote = make_inventory(remote_dir="/srv/kit")
    assert layout.proxy_state_dir(remote) == "/srv/kit/_proxy/state"
    assert layout.proxy_config_dir(remote) == "/srv/kit/_proxy/config"
    assert layout.registration_path(remote, "admin") == "/srv/kit/_proxy/state/apps/admin.json"
    home = dataclasses.replace(make_inventory(), login_home="/home/deploy")
    assert layout.proxy_state_dir(home) == "/home/deploy/.slotswap/_proxy/state"
    assert layout.app_files(home, "shop").fragment == (
        "/home/deploy/.slotswap/_proxy/config/haproxy/apps/shop/backend.cfg")
    # Beside the app's own folders, never one of them.
    assert layout.proxy_state_dir(home) != home.state_dir


def test_names_that_reach_a_path_are_checked() -> None:
    inventory = make_inventory()
    with pytest.raises(ValueError, match="invalid app name"):
        layout.registration_path(inventory, "../etc")
    with pytest.raises(ValueError, match="invalid app name"):
        layout.app_files(inventory, "_proxy")
    with pytest.raises(ValueError, match="12 lowercase hex"):
        layout.generation_dir(inventory, "../0123456789")
    long = make_inventory(remote_dir="/srv/" + "k" * 90)
    with pytest.raises(ProxyError, match="longer than the 107 bytes"):
        layout.proxy_admin_socket_path(long)


def test_the_shared_haproxy_as_its_container_sees_it() -> None:
    assert layout.proxy_config_args_in_haproxy() == (
        "-f", "/usr/local/etc/haproxy/current/haproxy.cfg",
        "-f", "/usr/local/etc/haproxy/current/backends")
    shop = layout.app_files_in_haproxy("shop")
    assert shop.server_state == "/usr/local/etc/haproxy/apps/shop/server-state"
    assert shop.maintenance_map == "/usr/local/etc/haproxy/apps/shop/maintenance.map"
    assert shop.cert == "/usr/local/etc/haproxy/apps/shop/site.pem"
    assert layout.fallback_cert_in_haproxy() == "/usr/local/etc/haproxy/fallback.pem"


def test_the_shared_container_is_no_apps() -> None:
    labels = dict(layout.PROXY_LABELS)
    assert labels == {docker.LABEL_ROLE: "haproxy", "slotswap.shared": "1"}
    assert docker.LABEL_APP not in labels
    assert layout.PROXY_CONTAINER == "slotswap-proxy"
    # An app's containers end in -web1, -web2, -haproxy, -<role>-webN-<n>, -release-*,
    # -exec-*: even an app named "slotswap" has no container of that name.
    app = make_inventory(app="slotswap")
    assert layout.PROXY_CONTAINER not in (app.container_name("web1"),
                                          app.container_name("web2"), app.haproxy_container)


# -- registrations and shared settings as JSON ----------------------------------------------

WHERE = "s1: /var/lib/slotswap/_proxy/apps/shop.json"
DEFAULTS: dict[str, object] = {"haproxy.image": "haproxy:2.8", "haproxy.http_port": 80,
                               "https.port": 443, "haproxy.trusted_proxies": ()}


def registration(app: str = "shop", **changes: Any) -> Registration:
    fields: dict[str, Any] = {
        "app": app, "names": (f"{app}.example.com",), "default": False, "https": True,
        "slot_ports": (18081, 18082), "check_ports": None, "shared_settings": {},
        "drain": 30.0, "kit_version": "0.5.0", "by": "alice@laptop",
        "at": "2026-12-01T10:00:00+00:00"}
    return Registration(**{**fields, **changes})


def test_a_registration_and_the_settings_come_back_as_they_were_written() -> None:
    full = registration(names=("shop.example.com", "*.shop.example.com"),
                        check_ports=(18181, 18182), state="leaving", shared_settings={
                            "haproxy.image": "registry.example.com:5000/haproxy:3.0",
                            "haproxy.http_port": 8080, "https.port": 8443,
                            "haproxy.trusted_proxies": ("10.0.0.0/8", "2001:db8::/32")})
    assert parse_registration(registration_json(full), WHERE, "shop") == full
    settings = SharedSettings(dict(DEFAULTS), "admin", "alice@laptop",
                              "2026-12-01T10:00:00+00:00", "0.5.0", "admin", "up")
    assert parse_settings(settings_json(settings), "s1: settings.json") == settings
    assert parse_settings(settings_json(SharedSettings()), "s1: settings.json") == (
        SharedSettings())


def bad(parse: Callable[[str], object], written: str, key: str, value: object) -> str:
    """The one line ``parse`` gives for ``written`` with ``value`` at ``key`` (MISSING: the
    key removed)."""
    data = json.loads(written)
    if value is MISSING:
        del data[key]
    else:
        data[key] = value
    with pytest.raises(RegistryFileError) as caught:
        parse(json.dumps(data))
    assert "\n" not in str(caught.value)
    return str(caught.value)


MISSING = object()


@pytest.mark.parametrize(("key", "value", "line"), [
    ("app", "Shop", "app: invalid app name 'Shop'"),
    ("app", "admin", "app: expected shop (the file's name), got 'admin'"),
    ("names", ["shop.example.com", "Bad Name"], "names[1]: expected a lowercase DNS name, "
     "got 'Bad Name'"),
    ("names", ["*.*.example.com"], "names[0]: expected a lowercase DNS name"),
    ("names", ["a.example.com", "a.example.com"], "names[1]: a.example.com is listed twice"),
    ("names", [], "names: expected a list of DNS names (empty only for the default app)"),
    ("names", "shop.example.com", "names: expected a list of DNS names"),
    ("default", "yes", "default: expected true or false, got 'yes'"),
    ("https", 1, "https: expected true or false, got 1"),
    ("slot_ports", [18081], "slot_ports: expected a list of two ports, got a list"),
    ("slot_ports", [18081, 65500], "slot_ports[1]: expected an integer from 1 to 65435"),
    ("slot_ports", [18081, "18082"], "slot_ports[1]: expected an integer from 1 to 65435"),
    ("slot_ports", [18081, 18081], "slot_ports: expected two different ports, got 18081 twice"),
    ("check_ports", [0, 18182], "check_ports[0]: expected an integer from 1 to 65535, got 0"),
    ("shared_settings", {"haproxy.slot_ports": [1, 2]},
     "shared_settings.haproxy.slot_ports: unknown key"),
    ("shared_settings", {"haproxy.image": "haproxy:2.8; rm -rf /"},
     "shared_settings.haproxy.image: invalid image reference"),
    ("shared_settings", {"haproxy.http_port": True},
     "shared_settings.haproxy.http_port: expected an integer from 1 to 65535"),
    ("shared_settings", {"https.port": 70000},
     "shared_settings.https.port: expected an integer from 1 to 65535, got 70000"),
    ("shared_settings", {"haproxy.trusted_proxies": ["10.0.0.1/8"]},
     "shared_settings.haproxy.trusted_proxies[0]: 10.0.0.1/8 has bits set"),
    ("shared_settings", {"haproxy.trusted_proxies": "10.0.0.0/8"},
     "shared_settings.haproxy.trusted_proxies: expected a list of networks"),
    ("shared_settings", [], "shared_settings: expected a mapping"),
    ("drain", 0, "drain: expected a number of seconds greater than 0, got 0"),
    ("kit_version", "0.5\n", "kit_version: expected a slotswap version on one line"),
    ("by", "", "by: expected user@machine, got ''"),
    ("at", "yesterday", "at: expected a moment in ISO 8601"),
    ("state", "gone", "state: expected present or leaving, got 'gone'"),
    ("fragment", "1", "fragment: expected an integer from 1 to 1000, got '1'"),
    ("drain", MISSING, "drain: required key is missing"),
])
def test_every_bad_field_of_a_registration_is_one_line_naming_file_and_key(
        key: str, value: object, line: str) -> None:
    found = bad(lambda text: parse_registration(text, WHERE, "shop"),
                registration_json(registration()), key, value)
    assert found.startswith(f"{WHERE}: {line}")


def test_a_default_app_needs_no_names_and_unknown_keys_are_left_out() -> None:
    data = json.loads(registration_json(registration(default=True, names=())))
    data["paths"] = ["/api"]  # a newer kit's
    assert parse_registration(json.dumps(data), WHERE) == registration(default=True, names=())


@pytest.mark.parametrize(("text", "line"), [
    ("{", f"{WHERE}: not JSON (Expecting property name"),
    ("[]", f"{WHERE}: expected a JSON object, got an empty list"),
])
def test_a_file_that_is_no_json_object_is_one_line(text: str, line: str) -> None:
    with pytest.raises(RegistryFileError) as caught:
        parse_registration(text, WHERE)
    assert str(caught.value).startswith(line)


@pytest.mark.parametrize(("key", "value", "line"), [
    ("owner", "_proxy", "owner: invalid app name '_proxy'"),
    ("values", {"haproxy.image": 2.8}, "values.haproxy.image: expected an image reference"),
    ("values", {"haproxy.default": True}, "values.haproxy.default: unknown key"),
    ("assembled_task", "up; reboot", "assembled_task: expected a task's name such as up"),
    ("assembled_app", "Admin", "assembled_app: invalid app name 'Admin'"),
    ("at", "soon", "at: expected a moment in ISO 8601"),
    ("owner", MISSING, "owner: required key is missing"),
])
def test_every_bad_field_of_the_settings_is_one_line_naming_file_and_key(
        key: str, value: object, line: str) -> None:
    found = bad(lambda text: parse_settings(text, "s1: settings.json"),
                settings_json(SharedSettings(dict(DEFAULTS), "admin")), key, value)
    assert found.startswith(f"s1: settings.json: {line}")


# -- registrations read back: what later steps use ------------------------------------------

def test_leaving_registrations_are_in_nothing_present() -> None:
    shop, admin = registration("shop", drain=10.0), registration("admin", drain=90.0)
    api = registration("api", drain=120.0, state="leaving")
    assert present([shop, admin, api]) == (shop, admin)
    assert others_present([shop, admin, api], "shop") == (admin,)
    assert longest_drain([shop, admin, api]) == 90.0
    assert longest_drain([api]) is None


def test_what_routing_uses_differs() -> None:
    shop = registration()
    assert not routing_differs(shop, dataclasses.replace(shop, drain=5.0, by="bob@ci"))
    assert routing_differs(None, shop)
    for changes in ({"names": ("*.example.com",)}, {"default": True}, {"https": False},
                    {"slot_ports": (18083, 18084)}, {"check_ports": (18181, 18182)},
                    {"state": "leaving"},
                    {"names": tuple(reversed(("a.example.com", "b.example.com")))}):
        assert routing_differs(dataclasses.replace(shop, names=("a.example.com",
                                                                "b.example.com")),
                               dataclasses.replace(shop, **changes)), changes


# -- the shared settings an app uses, and their owner ---------------------------------------

BY = {"by": "bob@ci", "at": "2026-12-02T09:00:00+00:00"}


def test_the_first_app_on_a_server_gets_its_keys_over_the_kit_defaults() -> None:
    used = effective_settings("admin", {"haproxy.image": "haproxy:3.0"}, DEFAULTS, None, [],
                              **BY)
    assert used.values == {**DEFAULTS, "haproxy.image": "haproxy:3.0"}
    assert used.record == SharedSettings(used.values, "admin", **BY)
    plain = effective_settings("admin", {}, DEFAULTS, None, [], **BY)
    assert plain.values == DEFAULTS
    assert plain.record.owner is None


def test_an_app_that_writes_no_shared_key_uses_the_recorded_values() -> None:
    recorded = SharedSettings({**DEFAULTS, "https.port": 8443}, "admin", "alice@laptop",
                              "2026-12-01T10:00:00+00:00")
    used = effective_settings("shop", {}, DEFAULTS, recorded, [registration("admin")], **BY)
    assert used.values["https.port"] == 8443  # never the kit's default
    assert used.record is recorded


def test_the_owner_changes_its_values_and_keeps_the_others() -> None:
    recorded = SharedSettings({**DEFAULTS, "https.port": 8443}, "admin", "alice@laptop",
                              "2026-12-01T10:00:00+00:00")
    used = effective_settings("admin", {"haproxy.image": "haproxy:3.0"}, DEFAULTS, recorded,
                              [registration("shop"), registration("admin")], **BY)
    assert used.values == {**DEFAULTS, "https.port": 8443, "haproxy.image": "haproxy:3.0"}
    assert used.record == SharedSettings(used.values, "admin", **BY)
    again = effective_settings("admin", {"haproxy.image": "haproxy:3.0"}, DEFAULTS,
                               used.record, [registration("shop")], by="x@y", at="2027-01-01")
    assert again.record is used.record  # unchanged: who and when stay


def test_ownership_passes_when_the_owner_drops_the_keys_and_the_values_stay() -> None:
    recorded = SharedSettings({**DEFAULTS, "haproxy.image": "haproxy:3.0"}, "admin")
    used = effective_settings("admin", {}, DEFAULTS, recorded, [registration("shop")], **BY)
    assert used.values["haproxy.image"] == "haproxy:3.0"
    assert used.record == SharedSettings(used.values, None, **BY)
    # Another app may then write them.
    shop = effective_settings("shop", {"haproxy.image": "haproxy:3.1"}, DEFAULTS,
                              used.record, [registration("admin")], **BY)
    assert shop.record.owner == "shop"


def test_ownership_passes_at_the_owners_down() -> None:
    recorded = SharedSettings({**DEFAULTS, "haproxy.image": "haproxy:3.0"}, "admin")
    others = [registration("shop"), registration("admin", state="leaving")]
    after = settings_after_down("admin", recorded, others, **BY)
    assert after == SharedSettings(recorded.values, None, **BY)
    assert settings_after_down("shop", recorded, [registration("admin")], **BY) is recorded
    # The last app's down: no shared HAProxy runs, nothing to record.
    assert settings_after_down("admin", recorded, [registration("admin")], **BY) is None


def test_an_owner_gone_owns_nothing() -> None:
    recorded = SharedSettings(dict(DEFAULTS), "admin")
    gone = [registration("admin", state="leaving"), registration("api")]
    assert current_owner(recorded, gone) is None
    used = effective_settings("shop", {"haproxy.image": "haproxy:3.0"}, DEFAULTS, recorded,
                              gone, **BY)
    assert used.record.owner == "shop"
    with pytest.raises(ValueError, match="a contradiction"):
        effective_settings("shop", {"haproxy.image": "haproxy:3.0"}, DEFAULTS, recorded,
                           [registration("admin")], **BY)


def test_the_assembling_run_is_recorded() -> None:
    record = assembled(SharedSettings(dict(DEFAULTS)), "0.5.0", "admin", "up")
    assert (record.assembled_by, record.assembled_app, record.assembled_task) == (
        "0.5.0", "admin", "up")
