"""The simulated shared HAProxy (several apps on one server, docs/apps-design.md build step
5) held to HAProxy 2.6.12 running a two-app generation (fixtures/README.md, `apps_*`):
its answers' formats, its loading rules (`-f current/haproxy.cfg -f current/backends`,
each backend's own state file), routing by Host, and one app's lines never moved by
another's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slotswap.commands import runtime_api as haproxy
from slotswap.config.layout import app_files, current_in_haproxy
from tests.unit.fake_server import recorded
from tests.unit.simulated_apps import AppsServer
from tests.unit.simulated_shared_proxy import start_shared

RECORDED_APPS = ("admin", "shop")  # as recorded: backends/admin.cfg, then backends/shop.cfg


@pytest.fixture
def apps(tmp_path: Path) -> AppsServer:
    return AppsServer(tmp_path, apps=RECORDED_APPS)


def rows(stat: str) -> list[tuple[str, str, str]]:
    return [(row["pxname"], row["svname"], row["iid"]) for row in haproxy.parse_stat_rows(stat)]


def state_keys(text: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """A `show servers state` answer: its first two lines, each row's backend and server."""
    lines = text.split("\n")
    return lines[:2], [tuple(line.split()[:4]) for line in lines[2:] if line]


# -- the answers' formats --------------------------------------------------------------------

def test_an_unscoped_show_stat_lists_the_frontend_then_each_backend_and_its_own_row(
        apps: AppsServer) -> None:
    answer, real = apps.api("show stat"), recorded("apps_show_stat.csv")
    assert rows(answer) == rows(real)
    assert answer.split("\n")[0] == real.split("\n")[0] and answer.endswith(",\n\n")


def test_show_stat_of_one_backend_lists_its_servers_only(apps: AppsServer) -> None:
    answer, real = apps.api("show stat shop 4 -1"), recorded("apps_show_stat_shop.csv")
    assert rows(answer) == rows(real)
    assert haproxy.parse_show_stat(answer).keys() == haproxy.parse_show_stat(real).keys()
    assert answer.endswith(",\n\n") and real.endswith(",\n\n")


@pytest.mark.parametrize("scope", ["", " shop", " admin"])
def test_show_servers_state_lists_every_backend_or_the_one_named(apps: AppsServer,
                                                                 scope: str) -> None:
    name = f"apps_show_servers_state{scope.replace(' ', '_')}.txt"
    answer, real = apps.api(f"show servers state{scope}"), recorded(name)
    assert state_keys(answer) == state_keys(real)
    assert answer.endswith(" 0\n\n") and real.endswith(" 0\n\n")
    assert haproxy.parse_servers_state(answer).keys() == haproxy.parse_servers_state(real).keys()


def test_maps_are_shown_added_to_and_cleared_by_path(apps: AppsServer) -> None:
    entry = re.compile(r"0x[0-9a-f]+ \S+ .+")
    hosts = apps.api(f"show map {current_in_haproxy()}/hosts.map")
    real = recorded("apps_show_map_hosts.txt")
    for answer in (hosts, real):
        assert answer.endswith("\n\n") and all(map(entry.fullmatch, answer.split("\n")[:-2]))
    assert [line.split()[1:] for line in hosts.split("\n")[:-2]] \
        == [line.split()[1:] for line in real.split("\n")[:-2]]
    page = apps.map_in_haproxy("admin")
    assert apps.api(f"add map {page} page <h1>down</h1>") == recorded("apps_add_map.txt")
    assert apps.api(f"show map {page}").split(" ", 1)[1] \
        == recorded("apps_show_map_maintenance_page.txt").split(" ", 1)[1]
    assert apps.request("admin.test").status == 503
    assert apps.request("shop.test").status == 200  # its map only
    assert apps.api(f"clear map {page}") == recorded("apps_clear_map.txt")
    assert apps.api(f"show map {page}") == recorded("apps_show_map_maintenance_cleared.txt")
    assert apps.request("admin.test").status == 200


def test_each_certificate_is_shown_by_its_path(apps: AppsServer) -> None:
    path = apps.cert_in_haproxy("shop")
    answer = apps.api(f"show ssl cert {path}").split("\n")
    real = recorded("apps_show_ssl_cert_shop.txt").split("\n")
    assert [line.split(":")[0] for line in answer] == [line.split(":")[0] for line in real]
    assert answer[0] == f"Filename: {path}"
    for field in ("Subject Alternative Name", "Subject", "Issuer", "Status", "Algorithm"):
        assert [line for line in answer if line.startswith(field + ":")] \
            == [line for line in real if line.startswith(field + ":")]
    assert "DNS:admin.test" in apps.api(f"show ssl cert {apps.cert_in_haproxy('admin')}")


@pytest.mark.parametrize(("command", "name"), [
    ("show stat nosuch 4 -1", "apps_error_show_stat_no_such_proxy.txt"),
    ("show servers state nosuch", "apps_error_show_servers_state_cant_find_backend.txt"),
    ("set server nosuch/web1 state ready", "apps_error_set_server_no_such_backend.txt"),
    ("set server shop/web9 state ready", "apps_error_set_server_no_such_server.txt"),
    ("show map /usr/local/etc/haproxy/apps/nosuch/maintenance.map",
     "apps_error_show_map_unknown.txt"),
])
def test_what_names_nothing_is_answered_as_haproxy_does(apps: AppsServer, command: str,
                                                       name: str) -> None:
    assert apps.server.haproxy.answer(command) == recorded(name)


# -- loading a generation ---------------------------------------------------------------------

def test_a_generation_loads_each_backend_in_lexical_order_with_its_own_state(
        tmp_path: Path) -> None:
    apps = AppsServer(tmp_path, apps=("shop", "admin"))
    assert list(apps.server.haproxy.backends) == ["admin", "shop"]
    apps.api("set server shop/web1 state drain")
    apps.save_state("shop")
    apps.server.restart_haproxy()
    assert apps.server.haproxy.warnings == []  # each state file was saved
    assert apps.server.haproxy.backends["shop"].lines["web1"].admin_name == "DRAIN"
    assert apps.server.haproxy.backends["admin"].lines["web1"].admin_name == "READY"
    assert apps.server.haproxy.backends["admin"].lines["web2"].admin_name == "MAINT"


def test_a_missing_state_file_is_a_warning_and_only_cfg_files_not_dot_files_load(
        apps: AppsServer) -> None:
    files, inventory = apps.server.files, apps.server.inventory
    files.unlink(app_files(inventory, "admin").server_state)
    backends = f"{apps.folder}/{apps.generation.name}/backends"
    files.write(f"{backends}/.zzz.cfg", "backend hidden\n")
    files.write(f"{backends}/notes.txt", "backend notes\n")
    apps.server.restart_haproxy()
    assert list(apps.server.haproxy.backends) == ["admin", "shop"]
    assert apps.server.haproxy.warnings == [
        "Proxy 'admin': Can't open server state file '/usr/local/etc/haproxy/apps/admin/"
        "server-state': No such file or directory."]
    # No state: every slot line as the config starts it, READY.
    assert apps.server.haproxy.backends["admin"].lines["web2"].admin_name == "READY"
    assert apps.server.haproxy.backends["shop"].lines["web2"].admin_name == "MAINT"


def test_current_is_resolved_at_each_start(apps: AppsServer) -> None:
    without_admin = apps.assemble(("shop",))
    apps.switch(without_admin)
    assert list(apps.server.haproxy.backends) == ["admin", "shop"]  # not reloaded yet
    start_shared(apps.server.haproxy, apps.server.files, apps.folder)
    assert list(apps.server.haproxy.backends) == ["shop"]
    assert apps.request("admin.test").status == 404
    assert apps.server.haproxy.answer("show servers state admin") == "Can't find backend.\n\n"
    assert apps.request("shop.test").container.version == "v1"  # type: ignore[union-attr]


# -- routing ----------------------------------------------------------------------------------

def test_the_host_routes_exactly_then_by_one_wildcard_label_else_404(apps: AppsServer) -> None:
    assert apps.request("SHOP.test:8443").backend == "shop"
    assert apps.request("x.shop.test").backend == "shop"
    assert apps.request("admin.test").container.name == "admin-web1"  # type: ignore[union-attr]
    for host in ("a.b.shop.test", "unknown.test", "shop.test.", "127.0.0.1", None):
        assert apps.request(host).status == 404, host


def test_a_default_app_takes_the_names_no_app_claims(tmp_path: Path) -> None:
    apps = AppsServer(tmp_path, default="b")
    assert apps.request("unknown.test").backend == "b"
    assert apps.request("a.test").backend == "a"


# -- one app's lines, never another's ----------------------------------------------------------

def test_a_line_set_on_a_leaves_b_s_state_byte_identical(tmp_path: Path) -> None:
    apps = AppsServer(tmp_path)
    before = apps.api("show servers state b")
    assert apps.api("set server a/web2 state ready") == "\n"
    assert apps.api("show servers state b") == before
    assert apps.server.haproxy.backends["a"].lines["web2"].admin_name == "READY"
    assert apps.request("b.test").container.version == "v1"  # type: ignore[union-attr]
