"""tasks.proxy's pure parts: the rendered haproxy.cfg, the HAProxy container's argv and spec."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tasks.inventory import Inventory, parse_inventory
from tasks.proxy import (
    LABEL_SPEC,
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


def inventory(**settings: Any) -> Inventory:
    data: dict[str, Any] = {
        "app": "webapp",
        "image": "10.77.0.1:5000/demo/webapp",
        "app_port": 3000,
        "healthcheck": {"path": "/health"},
        "haproxy": {"image": "10.77.0.1:5000/slotswap/haproxy:2.6", "http_port": 80,
                    "stats_port": 9999},
        "hosts": ["10.77.0.11", "10.77.0.12"],
    }
    data.update(settings)
    return parse_inventory(data, Path("/srv/deploy/hosts.yaml"))


SANDBOX = inventory()
SHOP = inventory(app="shop", image="registry.example.com:5000/acme/shop", app_port=8080,
                 healthcheck={"path": "/healthz?full=1"},
                 haproxy={"image": "haproxy:2.8", "http_port": 8000, "stats_port": 8001})


def lines(config: str) -> list[str]:
    return [line.strip() for line in config.splitlines()]


# -- render_config --------------------------------------------------------------------------

KEY_LINES = {
    "sandbox": (SANDBOX, [
        "stats socket ipv4@0.0.0.0:9999 level admin",
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
        "stats socket ipv4@0.0.0.0:9999 level admin",
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
    rendered = lines(render_config(inv))
    for line in expected:
        assert rendered.count(line) == 1, line


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_render_config_servers_resolve_late(inv: Inventory) -> None:
    rendered = lines(render_config(inv))
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
    first = render_config(SANDBOX).splitlines()[0]
    assert first == ("# Rendered by slotswap from hosts.yaml; `fab up` replaces it. "
                     "Do not edit on the server.")


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_render_config_ends_with_a_newline(inv: Inventory) -> None:
    # HAProxy warns about a last line without LF (a truncated file).
    config = render_config(inv)
    assert config.endswith("\n")
    assert not config.endswith("\n\n\n")


def test_render_config_is_stable() -> None:
    # `fab up` compares it with the file on the server: the same inventory, the same text.
    assert render_config(SANDBOX) == render_config(inventory())


def test_render_config_ignores_published_ports_and_hosts() -> None:
    other = inventory(haproxy={"image": "haproxy:2.8", "http_port": 8000, "stats_port": 8001},
                      hosts=["203.0.113.10"])
    assert render_config(other) == render_config(SANDBOX)


@pytest.mark.skipif(not Path(HAPROXY_BINARY).exists(), reason=f"no {HAPROXY_BINARY} here")
@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_haproxy_accepts_the_rendered_config(inv: Inventory, tmp_path: Path) -> None:
    """HAProxy's own check (-c: parses, binds nothing, resolves nothing)."""
    path = tmp_path / "haproxy.cfg"
    path.write_text(render_config(inv), encoding="utf-8")
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
        (SANDBOX, ["80:8080", "127.0.0.1:9999:9999"]),
        (SHOP, ["8000:8080", "127.0.0.1:8001:9999"]),
    ],
    ids=["sandbox", "shop"],
)
def test_haproxy_run_command_publishes(inv: Inventory, expected: list[str]) -> None:
    ports = published(haproxy_run_command(inv))
    assert ports == expected
    http, stats = ports
    assert http.count(":") == 1  # no host address: all interfaces
    assert stats.startswith("127.0.0.1:")  # the admin socket: loopback only


def test_haproxy_run_command_whole_argv() -> None:
    assert haproxy_run_command(SANDBOX) == [
        "docker", "run", "--detach",
        "--name", "webapp-haproxy",
        "--network", "webapp",
        "--restart", "unless-stopped",
        "--label", "slotswap.app=webapp",
        "--label", "slotswap.role=haproxy",
        "--label", f"{LABEL_SPEC}={container_spec(SANDBOX)}",
        "--publish", "80:8080",
        "--publish", "127.0.0.1:9999:9999",
        "--volume", "/etc/slotswap/webapp/haproxy:/usr/local/etc/haproxy:ro",
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


# -- container_spec ---------------------------------------------------------------------------

HAPROXY_DEFAULTS = {"image": "10.77.0.1:5000/slotswap/haproxy:2.6", "http_port": 80,
                    "stats_port": 9999}

SPEC_CHANGES = {
    # What the container is created with: a change needs a new container.
    "image": ({"haproxy": {**HAPROXY_DEFAULTS, "image": "haproxy:2.8"}}, True),
    "image tag": ({"haproxy": {**HAPROXY_DEFAULTS,
                               "image": "10.77.0.1:5000/slotswap/haproxy:2.8"}}, True),
    "http_port": ({"haproxy": {**HAPROXY_DEFAULTS, "http_port": 8080}}, True),
    "stats_port": ({"haproxy": {**HAPROXY_DEFAULTS, "stats_port": 9998}}, True),
    "ports swapped": ({"haproxy": {**HAPROXY_DEFAULTS, "http_port": 9999,
                                   "stats_port": 80}}, True),
    # What a config reload or a deploy changes: the same container.
    "nothing": ({}, False),
    "app_port": ({"app_port": 8080}, False),
    "healthcheck": ({"healthcheck": {"path": "/ready"}}, False),
    "app image": ({"image": "registry.example.com/acme/webapp"}, False),
    "timeouts": ({"timeouts": {"healthy": 5, "drain": 5, "stop": 5}}, False),
    "hosts": ({"hosts": ["203.0.113.10"]}, False),
}


@pytest.mark.parametrize(("settings", "changes"), SPEC_CHANGES.values(), ids=SPEC_CHANGES)
def test_container_spec_changes_with_image_and_ports(settings: dict[str, Any],
                                                     changes: bool) -> None:
    assert (container_spec(inventory(**settings)) != container_spec(SANDBOX)) is changes


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
    assert unbindable_addresses(render_config(inventory()), set()) == []


def test_unchanged_means_the_file_and_what_runs_are_the_wanted_config() -> None:
    wanted = "global\n"
    running = config_hash(wanted) + "\n"
    assert runs_config(wanted, running, wanted)
    # A failed reload left the file but HAProxy runs the one before: not unchanged.
    assert not runs_config(wanted, config_hash("old\n"), wanted)
    assert not runs_config(wanted, None, wanted)  # never seen running
    assert not runs_config("old\n", running, wanted)
