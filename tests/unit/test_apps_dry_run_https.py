"""`up --dry-run` of an HTTPS app on a server's shared HAProxy (fleet/dry_run_proxy_certs.py):
the certificate steps the run makes (proxy_up.up_shared, proxy_certs.place), decided from
what the server has: the file alone before the check where the running generation does not
list the app's certificate; `set ssl cert` + `commit ssl cert`, then the file, under the
other apps' locks where it does; nothing where it is there and served; with ACME a
certificate there kept, the stand-in where there is none, no CA asked. A plan only reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from invoke import Context

from slotswap.cli import plan, tasks
from slotswap.config.inventory import Inventory
from slotswap.config.layout import CERTS_LIST_NAME, generation_dir
from slotswap.fleet import certs, dry_run_move, dry_run_proxy
from slotswap.https.files import CertificateBundle, placeholder
from tests.unit.fake_server import make_inventory
from tests.unit.shared_proxy_server import BLOG, Shared, only_read
from tests.unit.test_apps_move_steps import MoveServer

APPS = "/etc/slotswap/_proxy/haproxy/apps"
INSIDE = "/usr/local/etc/haproxy/apps/shop/site.pem"
CA = "https://ca.example/dir"


def https_shop(acme: bool = False, health: str = "/healthz") -> Inventory:
    https: dict[str, object] = {"names": ["shop.test"]}
    https.update({"acme": {"directory": CA}} if acme
                 else {"files": {"chain": "c.pem", "key": "k.pem"}})
    return make_inventory(Path("/srv/shop"), app="shop", healthcheck={"path": health},
                          haproxy={"shared": True, "slot_ports": [18181, 18182]}, https=https)


def bundle(source: str = "files") -> CertificateBundle:
    made = placeholder(("shop.test",))
    return CertificateBundle(made.chain_pem, made.key_pem, source)


def server_with(shop: Inventory, *, serving: CertificateBundle | None = None,
                on_disk: CertificateBundle | None = None) -> Shared:
    """shop (HTTPS) and blog on the shared HAProxy; `serving`: the certificate HAProxy
    serves for shop (`show ssl cert`); `on_disk`: shop's site.pem."""
    server = Shared([shop, BLOG])
    listed = server.generation.files[CERTS_LIST_NAME]
    assert INSIDE in listed
    server.files[f"{generation_dir(shop, server.generation.sha12)}/{CERTS_LIST_NAME}"] = listed
    if serving is not None:
        serial = serving.info().serial
        server.api["show ssl cert /"] = f"Filename: {INSIDE}\nSerial: {serial}\n"
    if on_disk is not None:
        server.files[f"{APPS}/shop/site.pem"] = on_disk.haproxy_pem()
    return server


def indexes(text: str, *parts: str) -> list[int]:
    found = [text.index(part) for part in parts]
    assert found == sorted(found), "\n".join(parts)
    return found


def test_a_new_https_app_gets_its_file_before_the_check_and_no_runtime_api_line() -> None:
    shop = https_shop()
    server = Shared([BLOG])  # shop comes in: the running generation lists no shop
    before = dict(server.files)
    plan = dry_run_proxy.up_plan_shared(server, shop, bundle())
    text = "\n".join(plan.steps)
    assert plan.summary.endswith("; its certificate installed; a reload"), plan.summary
    indexes(text, "HTTPS: the app's certificate goes in: the files of https.files",
            f"write {APPS}/shop/site.pem (mode 0600)",
            f"write {APPS}/shop/site.source (mode 0600): where it came from: files",
            " -c -f ", "take blog's lock", "HUP")
    assert "set ssl cert" not in text
    only_read(server, before)


def test_a_renewed_file_of_a_listed_certificate_goes_in_with_no_reload() -> None:
    """The routing stays (the generation runs already): no reload, the runtime API."""
    shop, new = https_shop(), bundle()
    server = server_with(shop, serving=bundle(), on_disk=bundle())
    before = dict(server.files)
    plan = dry_run_proxy.up_plan_shared(server, shop, new)
    text = "\n".join(plan.steps)
    assert plan.summary.endswith("unchanged: the shared HAProxy runs this generation already"
                                 "; its certificate installed with no reload"), plan.summary
    indexes(text, "runtime API> show ssl cert  (another app's certificate change",
            f"runtime API> set ssl cert {INSIDE} <<<the certificate and its key",
            f"runtime API> commit ssl cert {INSIDE}", f"write {APPS}/shop/site.pem")
    assert "HUP" not in text and " -c -f " not in text
    only_read(server, before)


def test_a_listed_certificate_goes_in_after_the_check_under_the_other_apps_locks() -> None:
    shop = https_shop()
    server = server_with(shop, serving=bundle(), on_disk=bundle())
    changed = https_shop(health="/up")  # another backend: a reload
    plan = dry_run_proxy.up_plan_shared(server, changed, bundle())
    text = "\n".join(plan.steps)
    indexes(text, " -c -f ", "take blog's lock", f"set ssl cert {INSIDE}",
            f"commit ssl cert {INSIDE}", f"write {APPS}/shop/site.pem", "HUP")


def test_the_certificate_there_and_served_is_left_alone() -> None:
    shop, same = https_shop(), bundle()
    server = server_with(shop, serving=same, on_disk=same)
    plan = dry_run_proxy.up_plan_shared(server, shop, same)
    text = "\n".join(plan.steps)
    assert f"HTTPS: {APPS}/shop/site.pem is this certificate already" in text
    assert "ssl cert" not in text and "site.pem (mode" not in text
    assert plan.summary.endswith("runs this generation already"), plan.summary


def test_served_but_not_on_disk_writes_the_file_only() -> None:
    shop, same = https_shop(), bundle()
    server = server_with(shop, serving=same, on_disk=bundle())
    text = "\n".join(dry_run_proxy.up_plan_shared(server, shop, same).steps)
    assert "set ssl cert" not in text and f"write {APPS}/shop/site.pem (mode 0600)" in text


def test_with_acme_a_certificate_there_is_kept_and_none_asks_the_ca() -> None:
    shop = https_shop(acme=True)
    stand_in = certs.material_for_up(shop)
    assert stand_in is not None
    server = server_with(shop, serving=bundle(f"acme {CA}"), on_disk=bundle(f"acme {CA}"))
    text = "\n".join(dry_run_proxy.up_plan_shared(server, shop, stand_in).steps)
    assert f"HTTPS (ACME): {APPS}/shop/site.pem is kept as it is" in text
    assert "after every server's `up` the ACME CA is asked" in text and "ssl cert" not in text
    fresh = Shared([BLOG])
    before = dict(fresh.files)
    plan = dry_run_proxy.up_plan_shared(fresh, shop, stand_in)
    text = "\n".join(plan.steps)
    indexes(text, "HTTPS: the app's certificate goes in: a stand-in; after every server's "
            "`up` the ACME CA is asked", f"write {APPS}/shop/site.pem",
            f"write {APPS}/shop/site.source (mode 0600): where it came from: stand-in",
            " -c -f ")
    only_read(fresh, before)


def test_an_app_without_https_or_a_down_has_no_certificate_steps() -> None:
    server = Shared([BLOG])
    text = "\n".join(dry_run_proxy.up_plan_shared(server, BLOG, None).steps)
    assert "HTTPS" not in text and "site.pem" not in text
    shop = https_shop()
    down = "\n".join(dry_run_proxy.down_plan_shared(server_with(shop), shop).steps)
    assert "HTTPS" not in down and "ssl cert" not in down


def test_without_its_own_haproxy_the_move_s_plan_is_the_shared_one_certificate_too() -> None:
    server = Shared([BLOG])
    plan = dry_run_move.up_plan_moving(server, https_shop(), bundle())
    assert f"write {APPS}/shop/site.pem" in "\n".join(plan.steps)


def test_the_move_plans_against_the_certificate_it_copies_from_the_old_haproxy(
        tmp_path: Path) -> None:
    """The move copies the old HAProxy's certificate into the app's folder first
    (proxy_move.copy_from_old): the same certificate is then left alone, another goes in
    before the check (the shared HAProxy does not list it yet)."""
    moving = make_inventory(tmp_path, haproxy={"shared": True}, timeouts={"drain": 7},
                            https={"names": ["webapp.test"],
                                   "files": {"chain": "c.pem", "key": "k.pem"}})
    same = bundle()
    server = MoveServer(moving)
    server.files["/etc/slotswap/webapp/haproxy/certs/site.pem"] = same.haproxy_pem()
    before = dict(server.files)
    text = "\n".join(dry_run_move.up_plan_moving(server, moving, same).steps)
    assert f"{APPS}/webapp/site.pem is this certificate already" in text
    assert server.files == before and server.sent == []
    text = "\n".join(dry_run_move.up_plan_moving(server, moving, bundle()).steps)
    indexes(text, "copy (where there)", f"write {APPS}/webapp/site.pem (mode 0600)", " -c -f ")


def test_the_task_s_dry_run_of_an_https_app_is_no_longer_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`fab up --dry-run` gives the plans the run's certificate (with ACME, the stand-in
    material_for_up makes: no CA asked)."""
    server = Shared([BLOG])
    before = dict(server.files)
    monkeypatch.setattr(plan, "servers_of", lambda inventory: [server])
    path = tmp_path / "hosts.yaml"
    path.write_text("app: shop\nimage: acme/shop\nhosts: [203.0.113.10]\n"
                    "haproxy: {shared: true, slot_ports: [18181, 18182]}\n"
                    f"https: {{names: [shop.test], acme: {{directory: '{CA}'}}}}\n")
    tasks.up(Context(), inventory=str(path), dry_run=True)
    out = capsys.readouterr().out
    assert "HTTPS: the app's certificate goes in: a stand-in; after every server's `up` the " \
           "ACME CA is asked" in out, out
    assert f"write {APPS}/shop/site.source (mode 0600): where it came from: stand-in" in out
    only_read(server, before)
