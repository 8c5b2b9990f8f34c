"""The layout seam (docs/apps-design.md, build step 7): with `haproxy.shared: true` every
per-app task finds the HAProxy that serves its app, its admin socket and its own files in
it (apps/<app>/: server-state, maintenance.map, site.pem) through config/layout.py; for
today's inventory each seam function gives exactly today's value (the other unit tests,
unchanged, are the proof that nothing else moved). What the shared layout cannot do yet
refuses with one line; today's up, down, carry-over and web removal never run for it."""

from __future__ import annotations

import pytest

from slotswap.commands.runtime_api import AdminState
from slotswap.config import layout
from slotswap.config.layout import ProxyError
from slotswap.core.validation import InputError
from slotswap.fleet import certs, dry_run
from slotswap.https import install as tls
from slotswap.server import carry_over, haproxy, maintenance, web_removal
from slotswap.server.haproxy_state import save_slot_state, save_slot_state_ahead, state_path
from slotswap.server.slots import containers_to_read, read_slots
from slotswap.server.swap_steps import back_steps, plan_swap, swap_steps
from tests.unit.fake_server import FakeServer, make_inventory

SHARED = make_inventory(haproxy={"shared": True}, names=["shop.example"])
TODAY = make_inventory()
PROXY = "/etc/slotswap/_proxy/haproxy"
APP = f"{PROXY}/apps/webapp"
INSIDE = "/usr/local/etc/haproxy"
OWN = "/etc/slotswap/webapp/haproxy"


def test_each_seam_function_names_the_shared_haproxy_and_the_app_s_files_in_it() -> None:
    assert layout.haproxy_dir(SHARED) == PROXY == layout.proxy_haproxy_dir(SHARED)
    assert layout.admin_dir(SHARED) == f"{PROXY}/admin" == layout.proxy_admin_dir(SHARED)
    assert layout.admin_socket_path(SHARED) == layout.proxy_admin_socket_path(SHARED)
    assert layout.serving_haproxy(SHARED) == layout.PROXY_CONTAINER == "slotswap-proxy"
    assert layout.next_container(SHARED) == "slotswap-proxy-next"
    files = layout.app_files(SHARED, "webapp")
    assert layout.state_file_path(SHARED) == files.server_state == f"{APP}/server-state"
    assert layout.maintenance_map_on_server(SHARED) == files.maintenance_map
    assert layout.maintenance_map_in_haproxy(SHARED) == \
        layout.app_files_in_haproxy("webapp").maintenance_map == \
        f"{INSIDE}/apps/webapp/maintenance.map"
    assert layout.cert_on_server(SHARED) == files.cert == f"{APP}/site.pem"
    assert layout.cert_source_in(layout.haproxy_dir(SHARED), SHARED) == files.source
    assert layout.cert_in_haproxy(SHARED) == layout.app_files_in_haproxy("webapp").cert
    # What only today's up, down and hand-over use stays the app's own.
    assert layout.own_haproxy_dir(SHARED) == OWN
    assert layout.own_next_container(SHARED) == "webapp-haproxy-next"


def test_for_today_s_inventory_each_seam_function_gives_today_s_value() -> None:
    assert layout.haproxy_dir(TODAY) == layout.own_haproxy_dir(TODAY) == OWN
    assert layout.admin_socket_path(TODAY) == f"{OWN}/admin/admin.sock"
    assert layout.serving_haproxy(TODAY) == TODAY.haproxy_container == "webapp-haproxy"
    assert layout.next_container(TODAY) == layout.own_next_container(TODAY) == \
        "webapp-haproxy-next"
    assert layout.state_file_path(TODAY) == f"{OWN}/{layout.STATE_NAME}"
    assert layout.maintenance_map_on_server(TODAY) == layout.map_path_on_server(OWN)
    assert layout.maintenance_map_in_haproxy(TODAY) == layout.map_path_in_haproxy()
    assert layout.cert_on_server(TODAY) == layout.cert_path_on_server(OWN)
    assert layout.cert_source_in(OWN, TODAY) == layout.source_path_on_server(OWN)
    assert layout.cert_in_haproxy(TODAY) == layout.cert_path_in_haproxy()


def test_the_swap_writes_the_app_s_own_state_file_and_names_its_backend() -> None:
    server = FakeServer(inventory=SHARED, state="live_web1")
    assert state_path(server, SHARED) == f"{APP}/server-state"
    save_slot_state_ahead(server, SHARED, "webapp", {"web2": AdminState.READY})
    assert list(server.files) == [f"{APP}/server-state"]
    assert "\n3 webapp 2 web2 " in server.files[f"{APP}/server-state"]
    save_slot_state(server, SHARED)
    assert list(server.files) == [f"{APP}/server-state"]
    # The swap's plan (what the run and its dry run take): every file the state file, every
    # runtime-API line the app's backend.
    views = read_slots(server, SHARED)
    plan = plan_swap(views, SHARED, "v2", restart=False)
    steps = swap_steps(plan, SHARED) + back_steps(plan, SHARED)
    writes = {step.text for step in steps if step.kind == "write" and "server-state" in step.text}
    assert writes == {f"{APP}/server-state"}
    for step in steps:
        if step.kind == "api":
            assert " webapp" in step.text or "webapp/" in step.text, step.text


def test_a_cut_hand_over_of_the_shared_haproxy_is_what_a_deploy_looks_for() -> None:
    assert "slotswap-proxy-next" in containers_to_read(SHARED)
    assert "webapp-haproxy-next" in containers_to_read(TODAY)


def test_maintenance_writes_and_names_the_app_s_own_map() -> None:
    server = FakeServer(inventory=SHARED)
    entries = [("retry", "90"), ("page", "PGgxPg==")]
    maintenance.switch_on(server, layout.haproxy_dir(SHARED), entries, lambda line: None)
    path, inside = f"{APP}/maintenance.map", f"{INSIDE}/apps/webapp/maintenance.map"
    assert server.files == {path: "retry 90\npage PGgxPg==\n"}
    assert server.sent == [f"clear map {inside}; add map {inside} retry 90; "
                           f"add map {inside} page PGgxPg=="]
    maintenance.switch_off(server, layout.haproxy_dir(SHARED), lambda line: None)
    assert server.files == {path: ""}
    assert server.sent[-1] == f"clear map {inside}"
    asked: list[str] = []
    server.api["show map"] = lambda line: asked.append(line) or "0x1 page PGgxPg==\n"
    assert maintenance.is_on(server)
    assert asked == [f"show map {inside}"]


def test_maintenance_s_dry_run_shows_the_app_s_map() -> None:
    server = FakeServer(inventory=SHARED, api={"show map": "\n"})
    text = "\n".join(dry_run.maintenance_plan(server, SHARED, None).steps)
    assert f"{APP}/maintenance.map" in text
    assert f"clear map {INSIDE}/apps/webapp/maintenance.map" in text


def test_the_certificate_is_read_from_the_app_s_files() -> None:
    server = FakeServer(inventory=SHARED, api={"show ssl cert": "Serial: 0A\n"})
    server.files[f"{APP}/site.source"] = "files\n"
    assert tls.served(server).serial == "A"
    assert tls.installed_source(server, layout.haproxy_dir(SHARED)) == "files"
    assert server.sent == []  # read only


def test_what_the_shared_layout_cannot_do_yet_refuses_in_one_line() -> None:
    https = make_inventory(haproxy={"shared": True},
                           https={"names": ["shop.example"], "acme": {}})
    assert certs.material_for_up(https) is not None  # HTTPS per app: test_apps_certificates
    for refused in (lambda: dry_run.up_plan(FakeServer(inventory=SHARED), SHARED),
                    lambda: dry_run.down_plan(FakeServer(inventory=SHARED), SHARED)):
        with pytest.raises(InputError, match=r"not available with haproxy\.shared yet") as error:
            refused()
        assert "\n" not in str(error.value)


def test_today_s_up_down_carry_over_and_web_removal_never_run_for_a_shared_inventory() -> None:
    server = FakeServer(inventory=SHARED)
    for wrong in (lambda: haproxy.up_server(server, SHARED, lambda line: None),
                  lambda: haproxy.up_worker_only(server, SHARED, lambda line: None),
                  lambda: haproxy.down_server(server, SHARED, lambda line: None),
                  lambda: web_removal.removal_steps(SHARED, {}),
                  lambda: carry_over.carried_over(server, SHARED, None, lambda line: None,
                                                  haproxy_dir=OWN, admin_dir=OWN).__enter__()):
        with pytest.raises(ProxyError, match=r"never run with haproxy\.shared"):
            wrong()
    assert server.commands == [] and server.sent == [] and server.files == {}
    # A worker-only host's check for the web left on it looks for the app's own names only.
    assert "slotswap-proxy" not in str(web_removal.web_container_names(SHARED))
