"""slotswap.proxy's pure parts: the rendered haproxy.cfg, the HAProxy container's argv and spec."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from slotswap.inventory import Inventory, parse_inventory
from slotswap.proxy import (
    LABEL_SPEC,
    Login,
    ProxyError,
    admin_dir,
    admin_socket_path,
    bind_addresses,
    config_dir,
    config_hash,
    container_spec,
    haproxy_run_command,
    render_config,
    runs_config,
    unbindable_addresses,
)

HAPROXY_BINARY = "/usr/sbin/haproxy"
ROOT_LOGIN = Login(0, 0)
DEPLOY_LOGIN = Login(1001, 1002)


def inventory(**settings: Any) -> Inventory:
    data: dict[str, Any] = {
        "app": "webapp",
        "image": "10.77.0.1:5000/demo/webapp",
        "app_port": 3000,
        "healthcheck": {"path": "/health"},
        "haproxy": {"image": "10.77.0.1:5000/slotswap/haproxy:2.6", "http_port": 80},
        "hosts": ["10.77.0.11", "10.77.0.12"],
    }
    data.update(settings)
    return parse_inventory(data, Path("/srv/deploy/hosts.yaml"))


SANDBOX = inventory()
SHOP = inventory(app="shop", image="registry.example.com:5000/acme/shop", app_port=8080,
                 healthcheck={"path": "/healthz?full=1"},
                 haproxy={"image": "haproxy:2.8", "http_port": 8000})


def lines(config: str) -> list[str]:
    return [line.strip() for line in config.splitlines()]


# -- render_config --------------------------------------------------------------------------

KEY_LINES = {
    "sandbox": (SANDBOX, [
        "stats socket /run/slotswap-admin/admin.sock mode 600 uid 0 gid 0 level admin",
        "uid 99",
        "gid 99",
        "server-state-file /usr/local/etc/haproxy/server-state",
        "load-server-state-from-file global",
        "bind 0.0.0.0:8080",
        "default_backend webapp",
        "backend webapp",
        "option httpchk",
        "http-check send meth GET uri /health",
        "http-check expect status 200",
        "server web1 webapp-web1:3000",
        "server web2 webapp-web2:3000",
        "nameserver dns 127.0.0.11:53",
    ]),
    # Other app, ports and path; the ports inside the container stay the same.
    "shop": (SHOP, [
        "stats socket /run/slotswap-admin/admin.sock mode 600 uid 0 gid 0 level admin",
        "bind 0.0.0.0:8080",
        "default_backend shop",
        "backend shop",
        "http-check send meth GET uri /healthz?full=1",
        "server web1 shop-web1:8080",
        "server web2 shop-web2:8080",
    ]),
}


@pytest.mark.parametrize(("inv", "expected"), KEY_LINES.values(), ids=KEY_LINES)
def test_render_config_key_lines(inv: Inventory, expected: list[str]) -> None:
    rendered = lines(render_config(inv, ROOT_LOGIN))
    for line in expected:
        assert rendered.count(line) == 1, line


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_render_config_servers_resolve_late(inv: Inventory) -> None:
    rendered = lines(render_config(inv, ROOT_LOGIN))
    default_server = [line for line in rendered if line.startswith("default-server ")]
    assert len(default_server) == 1
    words = default_server[0].split()
    # A slot with no container must not stop HAProxy from starting (none), and a reload
    # must not leave the live slot without its address for a moment (last: from the
    # server-state file).
    assert words[-2:] == ["init-addr", "last,none"]
    assert words[words.index("resolvers") + 1] == "docker"
    assert "check" in words
    assert [line for line in rendered if line.startswith("server ")] == [
        f"server web1 {inv.app}-web1:{inv.app_port}",
        f"server web2 {inv.app}-web2:{inv.app_port}",
    ]


def test_render_config_names_its_inventory_file() -> None:
    first = render_config(SANDBOX, ROOT_LOGIN).splitlines()[0]
    assert first == ("# Rendered by slotswap from hosts.yaml; `fab up` replaces it. "
                     "Do not edit on the server.")


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_render_config_ends_with_a_newline(inv: Inventory) -> None:
    # HAProxy warns about a last line without LF (a truncated file).
    config = render_config(inv, ROOT_LOGIN)
    assert config.endswith("\n")
    assert not config.endswith("\n\n\n")


def test_render_config_is_stable() -> None:
    # `fab up` compares it with the file on the server: the same inventory, the same text.
    assert render_config(SANDBOX, ROOT_LOGIN) == render_config(inventory(), ROOT_LOGIN)


def test_render_config_ignores_published_ports_and_hosts() -> None:
    other = inventory(haproxy={"image": "haproxy:2.8", "http_port": 8000},
                      hosts=["203.0.113.10"])
    assert render_config(other, ROOT_LOGIN) == render_config(SANDBOX, ROOT_LOGIN)


def test_render_config_gives_the_admin_socket_to_the_login() -> None:
    rendered = lines(render_config(SANDBOX, DEPLOY_LOGIN))
    assert rendered.count(
        "stats socket /run/slotswap-admin/admin.sock mode 600 uid 1001 gid 1002 level admin") == 1
    # Nothing listens for the runtime API on any address.
    assert not [line for line in rendered if line.startswith("stats socket ipv")]
    # The workers (the traffic) run unprivileged whoever the login is.
    assert [line for line in rendered if line.startswith(("uid", "gid"))] == ["uid 99", "gid 99"]


def write_template(folder: Path, text: str) -> Inventory:
    (folder / "templates").mkdir()
    (folder / "templates" / "haproxy.cfg.j2").write_text(text)
    data = {"app": "webapp", "image": "r/webapp", "hosts": ["10.77.0.11"]}
    return parse_inventory(data, folder / "hosts.yaml")


def test_a_template_from_an_older_version_is_refused_with_what_to_change(
        tmp_path: Path) -> None:
    old = write_template(tmp_path, "global\n    stats socket ipv4@0.0.0.0:{{ stats_port_inside }}"
                                   " level admin\n")
    with pytest.raises(ProxyError, match="older slotswap publishes the runtime API on a TCP"):
        render_config(old, ROOT_LOGIN)


def test_a_template_without_the_admin_socket_is_refused(tmp_path: Path) -> None:
    without = write_template(tmp_path, "global\n    maxconn 100\n")
    with pytest.raises(ProxyError, match=r"no `stats socket \{\{ admin_socket \}\} \.\.\.` line"):
        render_config(without, ROOT_LOGIN)


@pytest.mark.skipif(not Path(HAPROXY_BINARY).exists(), reason=f"no {HAPROXY_BINARY} here")
@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_haproxy_accepts_the_rendered_config(inv: Inventory, tmp_path: Path) -> None:
    """HAProxy's own check (-c: parses, binds nothing, resolves nothing)."""
    path = tmp_path / "haproxy.cfg"
    # The files the config names inside the container (the maintenance map `up` creates)
    # are here.
    (tmp_path / "maintenance.map").touch()
    path.write_text(render_config(inv, ROOT_LOGIN).replace("/usr/local/etc/haproxy/",
                                                           f"{tmp_path}/"), encoding="utf-8")
    result = subprocess.run([HAPROXY_BINARY, "-c", "-f", str(path)], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout
    # The only warning: the state file, which exists only during a reload.
    warnings = [line for line in result.stderr.splitlines() if "[WARNING]" in line]
    assert all("server state file" in line for line in warnings), warnings


# -- haproxy_run_command ---------------------------------------------------------------------

def published(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--publish"]


@pytest.mark.parametrize(
    ("inv", "expected"),
    [
        (SANDBOX, ["80:8080"]),
        (SHOP, ["8000:8080"]),
    ],
    ids=["sandbox", "shop"],
)
def test_haproxy_run_command_publishes(inv: Inventory, expected: list[str]) -> None:
    # The HTTP port alone, on all interfaces: the runtime API is a unix socket.
    assert published(haproxy_run_command(inv)) == expected


def test_haproxy_run_command_whole_argv() -> None:
    assert haproxy_run_command(SANDBOX) == [
        "docker", "run", "--detach",
        "--name", "webapp-haproxy",
        "--network", "webapp",
        "--restart", "unless-stopped",
        "--label", "slotswap.app=webapp",
        "--label", "slotswap.role=haproxy",
        "--label", f"{LABEL_SPEC}={container_spec(SANDBOX)}",
        "--user", "0:0",
        "--publish", "80:8080",
        "--volume", "/etc/slotswap/webapp/haproxy:/usr/local/etc/haproxy:ro",
        "--volume", "/etc/slotswap/webapp/haproxy/admin:/run/slotswap-admin",
        "10.77.0.1:5000/slotswap/haproxy:2.6",
        "-f", "/usr/local/etc/haproxy/haproxy.cfg",
    ]


@pytest.mark.parametrize(
    "haproxy_image",
    [
        "haproxy:2.8",
        "webapp-haproxy",
        "webapp",
    ],
)
def test_haproxy_run_command_is_sound_whatever_the_image_is_named(haproxy_image: str) -> None:
    inv = inventory(haproxy={"image": haproxy_image})
    argv = haproxy_run_command(inv)
    assert argv[argv.index("--name") + 1] == "webapp-haproxy"
    assert argv[argv.index("--network") + 1] == "webapp"
    assert f"{LABEL_SPEC}={container_spec(inv)}" in argv
    assert argv[-3:] == [haproxy_image, "-f", "/usr/local/etc/haproxy/haproxy.cfg"]


def test_config_dir() -> None:
    assert config_dir(SANDBOX) == "/etc/slotswap/webapp/haproxy"
    assert config_dir(SHOP) == "/etc/slotswap/shop/haproxy"


def test_admin_socket_is_in_a_folder_of_the_config_dir() -> None:
    assert admin_dir(SHOP) == "/etc/slotswap/shop/haproxy/admin"
    assert admin_socket_path(SHOP) == "/etc/slotswap/shop/haproxy/admin/admin.sock"


def test_an_admin_socket_path_too_long_for_a_unix_socket_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import slotswap.proxy as proxy

    monkeypatch.setattr(proxy, "config_dir", lambda inventory: "/srv/" + "x" * 90)
    with pytest.raises(ProxyError, match="longer than the 107 bytes"):
        admin_socket_path(SANDBOX)


# -- container_spec ---------------------------------------------------------------------------

HAPROXY_DEFAULTS = {"image": "10.77.0.1:5000/slotswap/haproxy:2.6", "http_port": 80}

SPEC_CHANGES = {
    # What the container is created with: a change needs a new container.
    "image": ({"haproxy": {**HAPROXY_DEFAULTS, "image": "haproxy:2.8"}}, True),
    "image tag": ({"haproxy": {**HAPROXY_DEFAULTS,
                               "image": "10.77.0.1:5000/slotswap/haproxy:2.8"}}, True),
    "http_port": ({"haproxy": {**HAPROXY_DEFAULTS, "http_port": 8080}}, True),
    # What a config reload or a deploy changes: the same container.
    "nothing": ({}, False),
    "app_port": ({"app_port": 8080}, False),
    "healthcheck": ({"healthcheck": {"path": "/ready"}}, False),
    "app image": ({"image": "registry.example.com/acme/webapp"}, False),
    "timeouts": ({"timeouts": {"healthy": 5, "drain": 5, "stop": 5}}, False),
    "hosts": ({"hosts": ["203.0.113.10"]}, False),
    # No longer used: accepted so that older inventories load, and changes nothing.
    "stats_port": ({"haproxy": {**HAPROXY_DEFAULTS, "stats_port": 9998}}, False),
}


@pytest.mark.parametrize(("settings", "changes"), SPEC_CHANGES.values(), ids=SPEC_CHANGES)
def test_container_spec_changes_with_image_and_ports(settings: dict[str, Any],
                                                     changes: bool) -> None:
    assert (container_spec(inventory(**settings)) != container_spec(SANDBOX)) is changes


def test_container_spec_differs_from_the_one_of_a_published_stats_port() -> None:
    """A container made by the version that published the runtime API on a TCP port has a
    spec without the admin socket: `fab up` recreates it."""
    import hashlib

    old = hashlib.sha256(b"10.77.0.1:5000/slotswap/haproxy:2.6|80|9999").hexdigest()[:16]
    assert container_spec(SANDBOX) != old


def test_container_spec_is_short_hex() -> None:
    spec = container_spec(SANDBOX)
    assert len(spec) == 16
    int(spec, 16)


def test_bind_addresses_are_read_from_bind_lines_only() -> None:
    config = ("global\n    stats socket ipv4@0.0.0.0:9999 level admin\n"
              "frontend http\n    bind 0.0.0.0:8080\n    bind 10.9.9.9:8081,:8082 ssl\n"
              "    bind ipv6@[2001:db8::1]:443\n    bind /run/haproxy.sock\n"
              "    bind unix@/run/x.sock\n    bind :::8443 v4v6\n")
    assert bind_addresses(config) == ["0.0.0.0", "10.9.9.9", "", "2001:db8::1", "::"]


def test_unbindable_addresses_are_the_ip_literals_the_container_lacks() -> None:
    config = ("frontend http\n    bind 0.0.0.0:8080\n    bind 10.9.9.9:8081\n"
              "    bind 10.111.1.2:8082\n    bind 127.0.0.1:8083\n    bind *:8084\n"
              "    bind example.org:8085\n")
    assert unbindable_addresses(config, {"10.111.1.2"}) == ["10.9.9.9"]
    assert unbindable_addresses(render_config(inventory(), ROOT_LOGIN), set()) == []


def test_unchanged_means_the_file_and_what_runs_are_the_wanted_config() -> None:
    wanted = "global\n"
    running = config_hash(wanted) + "\n"
    assert runs_config(wanted, running, wanted)
    # A failed reload left the file but HAProxy runs the one before: not unchanged.
    assert not runs_config(wanted, config_hash("old\n"), wanted)
    assert not runs_config(wanted, None, wanted)  # never seen running
    assert not runs_config("old\n", running, wanted)
