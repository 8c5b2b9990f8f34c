"""The shared HAProxy's registry (several apps on one server, docs/apps-design.md, decisions
1 and 2): its paths and names, the registrations and shared settings as JSON, the shared
settings an app uses and who owns them, and the contradictions between apps, each one line."""

from __future__ import annotations

import dataclasses

import pytest

from slotswap.commands import docker
from slotswap.config import layout
from slotswap.config.layout import ProxyError
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
