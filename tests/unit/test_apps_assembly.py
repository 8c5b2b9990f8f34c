"""The shared HAProxy's generation, pure (docs/apps-design.md, build step 3): which files it
holds and what is in them, its name, and what assembling refuses. test_apps_routing.py runs
such a generation under HAProxy."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from slotswap.server.haproxy_config import Login
from slotswap.server.proxy_assembly import (
    AssemblyError,
    assemble,
    generation_hash,
    inventory_shared_values,
    render_fragment,
)
from slotswap.server.proxy_registry import Registration
from tests.unit.fake_server import make_inventory

FILES = {"chain": "certs/fullchain.pem", "key": "certs/privkey.pem"}
SHARED = {"haproxy.image": "haproxy:2.8", "haproxy.http_port": 80, "https.port": 443,
          "haproxy.trusted_proxies": []}
LOGIN = Login(1000, 1000)
INSIDE = "/usr/local/etc/haproxy"


def registration(app: str, names: tuple[str, ...], *, https: bool = False,
                 default: bool = False, state: str = "present") -> Registration:
    return Registration(app=app, names=names, default=default, https=https,
                        slot_ports=(18081, 18082), check_ports=None, shared_settings={},
                        drain=1.0, kit_version="test", by="me@here", at="2026-01-01T00:00:00Z",
                        state=state)  # type: ignore[arg-type]


def fragment(app: str, extra: str = "") -> str:
    return f"# {app}\nbackend {app}\n    balance first\n{extra}"


SHOP = registration("shop", ("shop.test", "*.shop.test"), https=True)
ADMIN = registration("admin", ("admin.test", "special.shop.test"), https=True)
BLOG = registration("blog", ("blog.test",))
FRAGMENTS = {app: fragment(app) for app in ("shop", "admin", "blog")}


def test_a_generation_holds_the_shared_part_each_fragment_the_maps_and_the_crt_list() -> None:
    generation = assemble([SHOP, ADMIN, BLOG], FRAGMENTS, SHARED, LOGIN)
    assert sorted(generation.files) == [
        "backends/admin.cfg", "backends/blog.cfg", "backends/shop.cfg", "certs.list",
        "haproxy.cfg", "hosts.map", "wildcards.map"]
    assert generation.files["backends/shop.cfg"] == FRAGMENTS["shop"]  # as it is
    assert generation.files["hosts.map"] == (
        "admin.test admin\nspecial.shop.test admin\nblog.test blog\nshop.test shop\n")
    assert generation.files["wildcards.map"] == "shop.test shop\n"
    assert generation.files["certs.list"] == (
        f"{INSIDE}/fallback.pem !*\n{INSIDE}/apps/admin/site.pem\n{INSIDE}/apps/shop/site.pem\n")
    assert generation.name == f"gen-{generation.sha12}" and len(generation.sha12) == 12
    assert generation.sha12 == generation_hash(generation.files)
    config = generation.files["haproxy.cfg"]
    assert f"bind 0.0.0.0:443 ssl crt-list {INSIDE}/current/certs.list alpn h2,http/1.1" \
        in config
    assert f"map_str({INSIDE}/current/hosts.map)" in config
    assert "field(2,.,0),map_str(" in config
    assert "http-request deny deny_status 404 unless { var(txn.slotswap_app) -m found }" \
        in config
    assert "use_backend %[var(txn.slotswap_app)]" in config
    assert "stats maxconn 50" in config and "uid 1000 gid 1000 level admin" in config
    assert "load-server-state-from-file" not in config and "server-state-file" not in config


def test_the_order_of_registrations_changes_nothing() -> None:
    assert assemble([BLOG, SHOP, ADMIN], FRAGMENTS, SHARED, LOGIN) \
        == assemble([SHOP, ADMIN, BLOG], FRAGMENTS, SHARED, LOGIN)


def test_the_default_app_s_certificate_comes_first_and_takes_unknown_names() -> None:
    shop = dataclasses.replace(SHOP, default=True)
    generation = assemble([shop, ADMIN, BLOG], FRAGMENTS, SHARED, LOGIN)
    assert generation.files["certs.list"].splitlines() == [
        f"{INSIDE}/apps/shop/site.pem !*", f"{INSIDE}/apps/admin/site.pem",
        f"{INSIDE}/apps/shop/site.pem"]
    config = generation.files["haproxy.cfg"]
    assert "http-request set-var(txn.slotswap_app) str(shop) unless" in config
    assert "deny_status 404" not in config
    # An HTTP-only default app: the stand-in stays first.
    blog = dataclasses.replace(BLOG, default=True, names=())
    listed = assemble([SHOP, blog], FRAGMENTS, SHARED, LOGIN).files["certs.list"]
    assert listed.splitlines()[0] == f"{INSIDE}/fallback.pem !*"


def test_a_changed_fragment_or_setting_is_another_generation() -> None:
    first = assemble([SHOP, BLOG], FRAGMENTS, SHARED, LOGIN)
    changed = {**FRAGMENTS, "blog": fragment("blog", "    timeout server 60s\n")}
    assert assemble([SHOP, BLOG], changed, SHARED, LOGIN).sha12 != first.sha12
    moved = {**SHARED, "haproxy.http_port": 8080}
    assert assemble([SHOP, BLOG], FRAGMENTS, moved, LOGIN).sha12 != first.sha12
    assert generation_hash({"a": "bc"}) != generation_hash({"ab": "c"})


def test_a_leaving_app_is_in_no_generation() -> None:
    leaving = dataclasses.replace(ADMIN, state="leaving")
    generation = assemble([SHOP, leaving, BLOG], {"shop": FRAGMENTS["shop"],
                                                  "blog": FRAGMENTS["blog"]}, SHARED, LOGIN)
    assert "backends/admin.cfg" not in generation.files
    assert "admin" not in generation.files["hosts.map"] + generation.files["certs.list"]
    assert generation == assemble([SHOP, BLOG], FRAGMENTS, SHARED, LOGIN)


def test_no_https_bind_and_no_crt_list_while_no_app_has_https() -> None:
    admin = dataclasses.replace(ADMIN, https=False)
    generation = assemble([admin, BLOG], FRAGMENTS, SHARED, LOGIN)
    assert "certs.list" not in generation.files
    config = generation.files["haproxy.cfg"]
    assert [line.strip() for line in config.splitlines() if line.strip().startswith("bind")] \
        == ["bind 0.0.0.0:80"]
    assert "crt-list" not in config and "ssl-default-bind" not in config


def test_trusted_proxies_keep_their_headers_in_the_frontend() -> None:
    shared = {**SHARED, "haproxy.trusted_proxies": ["10.0.0.0/8"]}
    config = assemble([BLOG], FRAGMENTS, shared, LOGIN).files["haproxy.cfg"]
    assert "acl from_trusted_proxy src 10.0.0.0/8" in config
    assert "http-request del-header X-Forwarded-Host unless from_trusted_proxy" in config
    # As the registry gives them back (a tuple), the same config.
    recorded = {**SHARED, "haproxy.trusted_proxies": ("10.0.0.0/8",)}
    assert assemble([BLOG], FRAGMENTS, recorded, LOGIN).files["haproxy.cfg"] == config


@pytest.mark.parametrize(("registrations", "fragments", "shared", "expected"), [
    ([registration("shop", ("Shop.test",))], FRAGMENTS, SHARED,
     "shop's registration: 'Shop.test' is not a lowercase DNS name"),
    ([registration("shop", ("*.*.shop.test",))], FRAGMENTS, SHARED, "'*.*.shop.test'"),
    ([registration("shop", ("shop.test map /etc/passwd",))], FRAGMENTS, SHARED,
     "not a lowercase DNS name"),
    ([registration("Shop x", ("shop.test",))], FRAGMENTS, SHARED, "invalid app name"),
    ([registration("shop", ())], FRAGMENTS, SHARED, "no names, and not the default app"),
    ([SHOP, registration("blog", ("shop.test",))], FRAGMENTS, SHARED,
     "shop.test is registered by blog and by shop"),
    ([dataclasses.replace(SHOP, default=True), dataclasses.replace(BLOG, default=True)],
     FRAGMENTS, SHARED, "blog and shop are each registered as the default app"),
    ([SHOP], {}, SHARED, "shop is registered but has no fragment"),
    ([SHOP], {"shop": fragment("admin")}, SHARED, "an app's fragment is one section, "
     "`backend shop`; found: backend admin"),
    ([SHOP], {"shop": fragment("shop") + "frontend evil\n"}, SHARED, "found: backend shop, "
     "frontend evil"),
    ([dataclasses.replace(SHOP, state="leaving")], FRAGMENTS, SHARED, "no app is present"),
    ([SHOP], FRAGMENTS, {**SHARED, "https.port": "443; evil"},
     "shared setting https.port: expected an integer from 1 to 65535, got '443; evil'"),
    ([SHOP], FRAGMENTS, {**SHARED, "haproxy.trusted_proxies": ["10.0.0.1/8"]},
     "shared setting haproxy.trusted_proxies[0]: 10.0.0.1/8 has bits set after its first 8"),
    ([SHOP], FRAGMENTS, {**SHARED, "haproxy.trusted_proxies": ("10.0.0.0/8 evil",)},
     "expected a network in CIDR form such as 10.0.0.0/8"),
    ([SHOP], FRAGMENTS, {**SHARED, "haproxy.image": "haproxy:2.8\nevil"},
     "shared setting haproxy.image: invalid image reference"),
    ([SHOP], FRAGMENTS, {"https.port": 443}, "shared setting haproxy.http_port: required"),
])
def test_assembling_refuses_what_no_config_line_may_hold(
        registrations: list[Registration], fragments: dict[str, str],
        shared: dict[str, object], expected: str) -> None:
    with pytest.raises(AssemblyError) as caught:
        assemble(registrations, fragments, shared, LOGIN)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def shop_inventory(folder: Path, **settings: Any) -> Any:
    return make_inventory(folder, app="shop", haproxy={"shared": True},
                          https={"names": ["shop.test", "*.shop.test"], "files": FILES},
                          **settings)


def test_a_fragment_is_the_app_s_backend_with_the_server_s_https_port(tmp_path: Path) -> None:
    inventory = shop_inventory(tmp_path)
    assert inventory.https.port == 443
    text = render_fragment(inventory, {**SHARED, "https.port": 8443}, thumbprint="abc_-1")
    lines = [line.strip() for line in text.splitlines()]
    backend = lines.index("backend shop")
    assert all(line.startswith("#") for line in lines[:backend])
    assert "https://%[req.fhdr(host),field(1,:),lower]:8443%[pathq] code 301" in text
    assert "https://shop.test:8443%[pathq] code 301 if !{ ssl_fc }" in text
    assert '"%[path,field(-1,/)].abc_-1"' in text
    assert f"str(page),map({INSIDE}/apps/shop/maintenance.map)" in text
    assert "use-service lua.slotswap_maintenance if { var(txn.slotswap_page) -m found }" in text
    assert lines[-2:] == ["load-server-state-from-file local",
                          f"server-state-file-name {INSIDE}/apps/shop/server-state"]
    ordered = [next(i for i, line in enumerate(lines) if mark in line) for mark in (
        "acme-challenge", "redirect location", "use-service", "X-Forwarded-Host",
        "balance first", "disable-l7-retry", "option httpchk", "server web1 ",
        "server web1-fallback", "load-server-state-from-file")]
    assert ordered == sorted(ordered)


def test_a_fragment_of_only_wildcards_refuses_plain_http(tmp_path: Path) -> None:
    inventory = make_inventory(tmp_path, app="shop", haproxy={"shared": True},
                               https={"names": ["*.shop.test"], "files": FILES})
    text = render_fragment(inventory, inventory_shared_values(inventory))
    assert "http-request deny deny_status 400 if !{ ssl_fc }" in text
    assert "acme-challenge" not in text  # files, no thumbprint


def test_a_project_overrides_its_backend_template_but_not_the_whole_config(
        tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "haproxy-backend.cfg.j2").write_text(
        "backend {{ backend }}\n    balance roundrobin\n")
    inventory = shop_inventory(tmp_path)
    assert render_fragment(inventory, SHARED) == "backend shop\n    balance roundrobin\n"
    (templates / "haproxy.cfg.j2").write_text("global\n")
    with pytest.raises(AssemblyError) as caught:
        render_fragment(inventory, SHARED)
    assert str(caught.value) == (
        f"{templates / 'haproxy.cfg.j2'}: with haproxy.shared: true the server's HAProxy is "
        "shared and its config is the kit's; a project changes its own backend only, in "
        "haproxy-backend.cfg.j2 (copy the kit's and edit it)")


def test_a_project_s_backend_template_stays_in_its_backend(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "haproxy-backend.cfg.j2").write_text(
        "backend {{ backend }}\nfrontend other\n    bind :81\n")
    with pytest.raises(AssemblyError) as caught:
        render_fragment(shop_inventory(tmp_path), SHARED)
    assert "found: backend shop, frontend other" in str(caught.value)
    (templates / "haproxy-backend.cfg.j2").write_text("backend {{ nope }}\n")
    with pytest.raises(AssemblyError) as caught:
        render_fragment(shop_inventory(tmp_path), SHARED)
    assert str(caught.value) == "haproxy-backend.cfg.j2: 'nope' is undefined"


def test_a_thumbprint_is_base64url(tmp_path: Path) -> None:
    with pytest.raises(AssemblyError):
        render_fragment(shop_inventory(tmp_path), SHARED, thumbprint='x" if TRUE')
