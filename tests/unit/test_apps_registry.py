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
from slotswap.core.validation import InputError
from slotswap.server.proxy_contradictions import (
    ProxyContradiction,
    check_contradictions,
    find_contradictions,
    free_slot_ports,
    kit_version_contradiction,
)
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
    assert layout.current_file_in_haproxy("hosts.map") == (
        "/usr/local/etc/haproxy/current/hosts.map")
    assert layout.fragment_in_generation("shop") == "backends/shop.cfg"


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
    ("drain", 3600.5, "drain: expected a number of seconds greater than 0 and at most 3600, "
     "got 3600.5"),
    ("drain", 1e308, "drain: expected a number of seconds greater than 0 and at most 3600"),
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


def test_a_drain_of_an_hour_is_the_longest() -> None:
    longest = registration(drain=3600)
    assert parse_registration(registration_json(longest), WHERE, "shop").drain == 3600.0


def test_a_default_app_needs_no_names_and_unknown_keys_are_left_out() -> None:
    data = json.loads(registration_json(registration(default=True, names=())))
    data["paths"] = ["/api"]  # a newer kit's
    data["shared_settings"] = {"haproxy.slot_ports": [1, 2], "a\nb": 1}
    assert parse_registration(json.dumps(data), WHERE) == registration(default=True, names=())


def test_unknown_keys_of_the_settings_are_left_out() -> None:
    data = json.loads(settings_json(SharedSettings(dict(DEFAULTS), "admin")))
    data["values"]["haproxy.default"] = True  # a newer kit's
    data["values"]["a\nb"] = "c\nd"
    data["a\nb"] = 1
    assert parse_settings(json.dumps(data), "s1: settings.json") == (
        SharedSettings(dict(DEFAULTS), "admin"))


def test_no_key_read_from_a_file_breaks_a_message_in_two() -> None:
    data = json.loads(registration_json(registration()))
    data["shared_settings"] = {"a\nb": 1, "https.port": "443\nevil"}
    data["x\ny"] = {"z\nw": 1}
    with pytest.raises(RegistryFileError) as caught:
        parse_registration(json.dumps(data), WHERE, "shop")
    assert str(caught.value) == (f"{WHERE}: shared_settings.https.port: expected an integer "
                                 "from 1 to 65535, got '443\\nevil'")


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
    ("values", {"a\nb": 1, "https.port": 0},
     "values.https.port: expected an integer from 1 to 65535, got 0"),
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


# -- contradictions, each one line ----------------------------------------------------------

ADMIN_OWNS = SharedSettings({**DEFAULTS, "haproxy.image": "haproxy:2.8"}, "admin",
                            "alice@laptop", "2026-12-01T10:00:00+00:00", "0.5.0", "admin", "up")


def contradiction(mine: Registration, registrations: list[Registration],
                  settings: SharedSettings | None = None, **options: Any) -> str:
    with pytest.raises(ProxyContradiction) as caught:
        check_contradictions("s1", mine, registrations, settings,
                             **{"names_key": "https.names", **options})
    assert isinstance(caught.value, InputError)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_a_shared_key_written_by_a_non_owner_is_refused_even_with_the_same_value() -> None:
    admin = registration("admin", slot_ports=(18091, 18092),
                         shared_settings={"haproxy.image": "haproxy:2.8"})
    shop = registration(shared_settings={"haproxy.image": "haproxy:3.0"})
    assert contradiction(shop, [admin], ADMIN_OWNS) == (
        "s1: haproxy.image: shop's hosts.yaml sets haproxy:3.0, but the shared HAProxy takes "
        "its settings from admin's inventory (haproxy:2.8, alice@laptop, 2026-12-01); set them "
        "in one inventory only: remove haproxy.image from shop's, or from admin's and run its "
        "up first; nothing was changed")
    same = registration(shared_settings={"haproxy.image": "haproxy:2.8"})
    assert contradiction(same, [admin], ADMIN_OWNS).startswith(
        "s1: haproxy.image: shop's hosts.yaml sets haproxy:2.8, but")
    # A key the owner does not write itself: remove the ones it writes.
    port = registration(shared_settings={"https.port": 8443, "haproxy.trusted_proxies":
                                         ("10.0.0.0/8",)})
    assert contradiction(port, [admin], ADMIN_OWNS) == (
        "s1: https.port: shop's hosts.yaml sets 8443, but the shared HAProxy takes its "
        "settings from admin's inventory (443, alice@laptop, 2026-12-01); set them in one "
        "inventory only: remove https.port from shop's, or haproxy.image from admin's and run "
        "its up first; nothing was changed")


def test_the_owner_and_an_app_after_an_owner_gone_may_write_shared_keys() -> None:
    admin = registration("admin", slot_ports=(18091, 18092),
                         shared_settings={"haproxy.image": "haproxy:2.8"})
    writes = {"haproxy.image": "haproxy:3.0"}
    mine = dataclasses.replace(admin, shared_settings=writes)
    assert check_contradictions("s1", mine, [admin, registration()], ADMIN_OWNS,
                                names_key="https.names") == ()
    leaving = dataclasses.replace(admin, state="leaving")
    assert check_contradictions("s1", registration(shared_settings=writes), [leaving],
                                ADMIN_OWNS, names_key="https.names") == ()
    # No record of an owner (lost): a present app whose registration writes them owns them.
    assert contradiction(registration(shared_settings=writes), [admin]).startswith(
        "s1: haproxy.image: shop's hosts.yaml sets haproxy:3.0, but the shared HAProxy takes "
        "its settings from admin's inventory (haproxy:2.8, alice@laptop, 2026-12-01)")


def test_a_name_or_the_same_wildcard_routes_to_one_app() -> None:
    admin = registration("admin", names=("api.example.com", "*.example.com"),
                         slot_ports=(18091, 18092))
    shop = registration(names=("shop.test", "api.example.com"))
    assert contradiction(shop, [admin]) == (
        "s1: https.names: api.example.com is admin's; a name routes to one app; nothing was "
        "changed")
    wildcard = registration(names=("*.example.com",))
    assert contradiction(wildcard, [admin], names_key="names") == (
        "s1: names: *.example.com is admin's; a name routes to one app; nothing was changed")


def test_two_default_apps() -> None:
    admin = registration("admin", default=True, names=(), slot_ports=(18091, 18092))
    assert contradiction(registration(default=True), [admin]) == (
        "s1: haproxy.default: shop's hosts.yaml sets it, but admin is the default app; one "
        "app per server gets the names no app routes; nothing was changed")


@pytest.mark.parametrize(("theirs", "mine", "line"), [
    # my slot port, their slot port
    ({"slot_ports": (18081, 18082)}, {"slot_ports": (18082, 18083)},
     "s1: haproxy.slot_ports: 18082 is admin's; set [18083, 18084] here; nothing was changed"),
    # my slot port, their check port
    ({"slot_ports": (18000, 18001), "check_ports": (18100, 18101)},
     {"slot_ports": (18101, 18102)},
     "s1: haproxy.slot_ports: 18101 is admin's check port; set [18102, 18103] here; "
     "nothing was changed"),
    # my check port, their slot port
    ({"slot_ports": (18182, 18190)}, {"slot_ports": (18081, 18082),
                                      "check_ports": (18181, 18182)},
     "s1: haproxy.slot_ports: 18182 (the check port of 18082) is admin's; set [18083, 18084] "
     "here; nothing was changed"),
    # my check port, their check port
    ({"slot_ports": (18091, 18092), "check_ports": (18181, 18182)},
     {"slot_ports": (18081, 18082), "check_ports": (18181, 18182)},
     "s1: haproxy.slot_ports: 18181 (the check port of 18081) is admin's check port; set "
     "[18083, 18084] here; nothing was changed"),
])
def test_slot_and_check_ports_that_overlap_another_apps(
        theirs: dict[str, Any], mine: dict[str, Any], line: str) -> None:
    assert contradiction(registration(**mine), [registration("admin", **theirs)]) == line


def test_the_suggested_pair_avoids_every_slot_and_check_port_and_its_own_check_ports() -> None:
    shop = registration("shop", slot_ports=(18081, 18082), check_ports=(18181, 18182))
    api = registration("api", names=("api.test",), slot_ports=(18184, 18190))
    taken = {18081, 18082, 18181, 18182, 18184, 18190}
    with_checks = registration("admin", slot_ports=(18081, 18082), check_ports=(18181, 18182))
    # 18083: its check ports 18183, 18184 (api's); 18084: 18184 again; 18085 is free.
    assert free_slot_ports(with_checks, taken) == (18085, 18086)
    assert contradiction(with_checks, [shop, api]) == (
        "s1: haproxy.slot_ports: 18081 is shop's; set [18085, 18086] here; nothing was changed")
    without = registration("admin", slot_ports=(18081, 18082))
    assert free_slot_ports(without, taken) == (18083, 18084)
    # Near the top: from 1024 up, never past 65435 (room for the check ports).
    top = registration("admin", slot_ports=(65433, 65434), check_ports=(65533, 65534))
    assert free_slot_ports(top, {65433, 65434}) == (1024, 1025)
    assert free_slot_ports(top, set(range(1, 65536))) is None


def test_another_apps_own_haproxy_on_a_shared_port() -> None:
    ports = {"haproxy.http_port": 80, "https.port": 443}
    assert contradiction(registration(), [], shared_ports=ports,
                         own_haproxys=[("shop", (80, 443)), ("legacy", (8080, 443))]) == (
        "s1: https.port: 443 is bound by legacy's own HAProxy; shop's shared HAProxy would "
        "split its connections with it: `down` legacy, give it other public ports, or move "
        "it to the shared HAProxy first (its `up` with haproxy.shared); nothing was changed")


@pytest.mark.parametrize(("mine", "theirs", "refused"), [
    ("0.4.2", "0.5.0", True), ("0.5.0", "0.5.0", False), ("0.5", "0.5.0", False),
    ("0.10.0", "0.9.9", False), ("0.9.9", "0.10.0", True), ("1.0", "0.99.1", False),
    # A dev, pre- or post-release compares as its release; the same string is the same kit.
    ("0.6.0.dev1", "0.6.0.dev1", False), ("0.6.0", "0.6.0.dev1", False),
    ("0.6.0.dev1", "0.6.0", False), ("0.6.0rc1", "0.6.0", False), ("0.6.0", "0.6.0rc1", False),
    ("0.6.0.post1", "0.6.0", False), ("0.6.0+local.7", "0.6.0.dev3", False),
    ("0.5.0.dev1", "0.6.0", True), ("0.5.9rc2", "0.6.0.dev1", True),
    ("unknown (not installed)", "unknown (not installed)", False),
    ("0.6.0-custom build", "0.6.0-custom build", False),
])
def test_a_kit_older_than_the_one_that_assembled_the_running_generation(
        mine: str, theirs: str, refused: bool) -> None:
    settings = dataclasses.replace(ADMIN_OWNS, assembled_by=theirs)
    line = kit_version_contradiction("s1", mine, settings)
    assert (line is not None) == refused
    if mine == "0.4.2":
        assert line == ("s1's shared HAProxy was assembled by slotswap 0.5.0, admin's up; "
                        "this is 0.4.2: upgrade; nothing was changed")
    assert kit_version_contradiction("s1", mine, None) is None


def test_a_version_that_cannot_be_compared_is_refused() -> None:
    line = contradiction(registration(kit_version="unknown (not installed)"), [], ADMIN_OWNS)
    assert line == (
        "s1's shared HAProxy was assembled by slotswap 0.5.0, admin's up; this is unknown (not "
        "installed): cannot tell which is newer (versions compare as numbers such as 0.5.0); "
        "run the same slotswap; nothing was changed")
    checkout = dataclasses.replace(ADMIN_OWNS, assembled_by="unknown (not installed)")
    assert "cannot tell which is newer" in (
        kit_version_contradiction("s1", "0.6.0", checkout) or "")
    custom = dataclasses.replace(ADMIN_OWNS, assembled_by="0.6.0-custom")
    for mine in ("0.6.0", "0.6.0-custom2", "0.7.0"):
        assert "cannot tell which is newer" in (
            kit_version_contradiction("s1", mine, custom) or "")


def test_the_checks_run_in_a_fixed_order_and_leaving_apps_are_ignored() -> None:
    admin = registration("admin", names=("shop.example.com",), default=True,
                         shared_settings={"haproxy.image": "haproxy:2.8"})
    mine = registration(default=True, shared_settings={"haproxy.image": "haproxy:2.8"},
                        kit_version="0.4.0")
    lines = []
    for step in range(5):
        found = find_contradictions("s1", mine, [admin], ADMIN_OWNS, names_key="https.names",
                                    shared_ports={"haproxy.http_port": 80},
                                    own_haproxys=[("legacy", (80,))])
        assert found.contradiction is not None
        lines.append(found.contradiction.split(": ")[1])
        mine = [dataclasses.replace(mine, kit_version="0.5.0"),
                dataclasses.replace(mine, shared_settings={}),
                dataclasses.replace(mine, names=("shop.test",)),
                dataclasses.replace(mine, default=False),
                dataclasses.replace(mine, slot_ports=(18083, 18084))][step]
    assert lines == ["upgrade; nothing was changed", "haproxy.image", "https.names",
                     "haproxy.default", "haproxy.slot_ports"]
    last = find_contradictions("s1", mine, [admin], ADMIN_OWNS, names_key="https.names",
                               shared_ports={"haproxy.http_port": 80},
                               own_haproxys=[("legacy", (80,))])
    assert (last.contradiction or "").startswith("s1: haproxy.http_port: 80 is bound by legacy")
    # The same app beside a leaving one, and its own old registration: nothing to refuse.
    gone = dataclasses.replace(admin, state="leaving")
    assert check_contradictions("s1", mine, [gone, mine], ADMIN_OWNS,
                                names_key="https.names") == ()


def test_an_exact_name_under_another_apps_wildcard_is_a_notice() -> None:
    admin = registration("admin", names=("*.example.com", "admin.test"),
                         slot_ports=(18091, 18092))
    shop = registration(names=("shop.example.com", "*.test", "a.b.example.com"))
    assert check_contradictions("s1", shop, [admin], None, names_key="https.names") == (
        "s1: shop.example.com is shop's, under admin's *.example.com: the exact name wins",
        "s1: admin.test is admin's, under shop's *.test: the exact name wins",
    )
