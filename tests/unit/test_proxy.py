"""HAProxy's pure parts: the rendered haproxy.cfg (slotswap.server.haproxy_config), the
HAProxy container's argv and spec (slotswap.server.haproxy_handover), its folders
(slotswap.config.layout)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    ProxyError,
    admin_dir,
    admin_socket_path,
    haproxy_dir,
    next_container,
)
from slotswap.config.loader import parse_inventory
from slotswap.server import maintenance
from slotswap.server.haproxy_config import (
    FORWARDING_HEADERS,
    Login,
    bind_addresses,
    config_hash,
    render_config,
    runs_config,
    unbindable_addresses,
)
from slotswap.server.haproxy_handover import (
    LABEL_SPEC,
    container_spec,
    frontend_open,
    haproxy_run_command,
    on_host_network,
)
from tests.unit.fake_server import make_inventory

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
                 haproxy={"image": "haproxy:2.8", "http_port": 8000,
                          "slot_ports": [28081, 28082],
                          "trusted_proxies": ["10.0.0.0/16", "192.0.2.7", "2001:db8::/32"]})


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
        "bind 0.0.0.0:80",
        "default_backend webapp",
        "backend webapp",
        "option httpchk",
        "http-check send meth GET uri /health",
        "http-check expect status 200",
        "server web1 127.0.0.1:18081",
        "server web2 127.0.0.1:18082",
    ]),
    # Other app, ports and path: HAProxy binds the server's port itself.
    "shop": (SHOP, [
        "stats socket /run/slotswap-admin/admin.sock mode 600 uid 0 gid 0 level admin",
        "bind 0.0.0.0:8000",
        "default_backend shop",
        "backend shop",
        "http-check send meth GET uri /healthz?full=1",
        "server web1 127.0.0.1:28081",
        "server web2 127.0.0.1:28082",
    ]),
}


@pytest.mark.parametrize(("inv", "expected"), KEY_LINES.values(), ids=KEY_LINES)
def test_render_config_key_lines(inv: Inventory, expected: list[str]) -> None:
    rendered = lines(render_config(inv, ROOT_LOGIN))
    for line in expected:
        assert rendered.count(line) == 1, line


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_render_config_reaches_the_slots_on_the_loopback(inv: Inventory) -> None:
    rendered = lines(render_config(inv, ROOT_LOGIN))
    default_server = [line for line in rendered if line.startswith("default-server ")]
    assert len(default_server) == 1
    assert "check" in default_server[0].split()
    # Fixed addresses: nothing to resolve (no Docker DNS on the server's network).
    assert not [line for line in rendered if line.startswith(("resolvers", "nameserver"))]
    assert [line for line in rendered if line.startswith("server ")] == [
        f"server web1 127.0.0.1:{inv.haproxy.slot_ports[0]}",
        f"server web2 127.0.0.1:{inv.haproxy.slot_ports[1]}",
        f"server web1-fallback 127.0.0.1:{inv.haproxy.slot_ports[0]} disabled",
        f"server web2-fallback 127.0.0.1:{inv.haproxy.slot_ports[1]} disabled",
    ]


def test_render_config_checks_a_health_port_of_its_own_on_the_loopback() -> None:
    inv = inventory(healthcheck={"path": "/health", "port": 9000})
    rendered = lines(render_config(inv, ROOT_LOGIN))
    assert [line for line in rendered if line.startswith("server ")] == [
        "server web1 127.0.0.1:18081 port 18181",
        "server web2 127.0.0.1:18082 port 18182",
        "server web1-fallback 127.0.0.1:18081 port 18181 disabled",
        "server web2-fallback 127.0.0.1:18082 port 18182 disabled",
    ]


def section(config: str, header: str) -> list[str]:
    """The lines of one section of a rendered config, stripped, without its header and
    comments."""
    raw = config.splitlines()
    start = raw.index(header) + 1
    end = next((i for i in range(start, len(raw)) if raw[i][:1].isalpha()), len(raw))
    return [line.strip() for line in raw[start:end]
            if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_render_config_retries_only_gets_a_slot_closed_without_an_answer(
        inv: Inventory) -> None:
    config = render_config(inv, ROOT_LOGIN)
    defaults = section(config, "defaults")
    # A refused connection and a connection closed with nothing received are tried again,
    # on the other slot at every retry; a slow answer is never sent twice.
    assert "retry-on conn-failure empty-response" in defaults
    assert "retries 3" in defaults
    assert "option redispatch 1" in defaults
    assert not [line for line in lines(config) if "response-timeout" in line]
    # Only GET and HEAD (METH_GET) are re-sent after they reached a slot.
    backend = section(config, f"backend {inv.app}")
    assert backend.count("http-request disable-l7-retry if !METH_GET") == 1


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_render_config_gives_the_old_slot_a_line_that_only_takes_what_the_new_cannot(
        inv: Inventory) -> None:
    backend = section(render_config(inv, ROOT_LOGIN), f"backend {inv.app}")
    # New requests go to the first usable line: a slot in rotation, never a fallback line,
    # which come last and start in maint; a retry avoids the line that failed.
    assert "balance first" in backend
    assert not [line for line in backend if line.startswith("balance ") and "first" not in line]
    servers = [line.split()[1] for line in backend if line.startswith("server ")]
    assert servers == ["web1", "web2", "web1-fallback", "web2-fallback"]
    assert all(line.endswith(" disabled") for line in backend
               if line.startswith("server ") and "-fallback " in line)


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


def test_render_config_ignores_the_haproxy_image_and_hosts() -> None:
    other = inventory(haproxy={"image": "haproxy:2.8", "http_port": 80},
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
    return make_inventory(folder, image="r/webapp", hosts=["10.77.0.11"])


def test_a_template_from_an_older_version_is_refused_with_what_to_change(
        tmp_path: Path) -> None:
    old = write_template(tmp_path, "global\n    stats socket ipv4@0.0.0.0:{{ stats_port_inside }}"
                                   " level admin\n")
    with pytest.raises(ProxyError, match="older slotswap publishes the runtime API on a TCP"):
        render_config(old, ROOT_LOGIN)


def test_a_template_for_haproxy_on_the_apps_network_is_refused_with_what_to_change(
        tmp_path: Path) -> None:
    old = write_template(tmp_path, "global\n    stats socket {{ admin_socket }} level admin\n"
                                   "frontend http\n    bind 0.0.0.0:{{ http_port_inside }}\n")
    with pytest.raises(ProxyError, match="runs HAProxy on the app's Docker network"):
        render_config(old, ROOT_LOGIN)
    (tmp_path / "dns").mkdir()
    dns = write_template(tmp_path / "dns",
                         "global\n    stats socket {{ admin_socket }} level admin\n"
                         "resolvers docker\n    nameserver dns 127.0.0.11:53\n")
    with pytest.raises(ProxyError, match="resolves the slots through Docker's DNS"):
        render_config(dns, ROOT_LOGIN)


def test_a_template_without_the_admin_socket_is_refused(tmp_path: Path) -> None:
    without = write_template(tmp_path, "global\n    maxconn 100\n")
    with pytest.raises(ProxyError, match=r"no `stats socket \{\{ admin_socket \}\} \.\.\.` line"):
        render_config(without, ROOT_LOGIN)


def test_a_clients_forwarding_headers_are_removed_and_haproxy_sets_its_own() -> None:
    config = lines(render_config(SANDBOX, ROOT_LOGIN))
    for header in FORWARDING_HEADERS:
        assert f"http-request del-header {header}" in config
    assert "from_trusted_proxy" not in "\n".join(config)
    # Removed before HAProxy sets them; set only where none is left.
    first_set = next(i for i, line in enumerate(config) if line.startswith("http-request set"))
    assert max(i for i, line in enumerate(config) if "del-header" in line) < first_set
    assert "option forwardfor" in config
    assert ("http-request set-header X-Real-IP %[src] unless { req.hdr(X-Real-IP) -m found }"
            in config)


def test_the_forwarding_headers_of_trusted_proxies_are_kept() -> None:
    assert SHOP.haproxy.trusted_proxies == ("10.0.0.0/16", "192.0.2.7/32", "2001:db8::/32")
    config = lines(render_config(SHOP, ROOT_LOGIN))
    assert "acl from_trusted_proxy src 10.0.0.0/16 192.0.2.7/32 2001:db8::/32" in config
    for header in FORWARDING_HEADERS:
        assert f"http-request del-header {header} unless from_trusted_proxy" in config


@pytest.mark.skipif(not Path(HAPROXY_BINARY).exists(), reason=f"no {HAPROXY_BINARY} here")
@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_haproxy_accepts_the_rendered_config(inv: Inventory, tmp_path: Path) -> None:
    """HAProxy's own check (-c: parses, binds nothing, resolves nothing)."""
    path = tmp_path / "haproxy.cfg"
    # The files the config names inside the container (the maintenance map and service `up`
    # writes) are here.
    (tmp_path / "maintenance.map").touch()
    (tmp_path / "maintenance.lua").write_text(
        maintenance.service_script().replace("/usr/local/etc/haproxy/", f"{tmp_path}/"))
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


@pytest.mark.parametrize("inv", [SANDBOX, SHOP], ids=["sandbox", "shop"])
def test_haproxy_run_command_publishes_nothing(inv: Inventory) -> None:
    # On the server's network, HAProxy binds its ports itself; the runtime API is a unix
    # socket.
    assert published(haproxy_run_command(inv)) == []


def test_haproxy_run_command_under_the_hand_overs_temporary_name() -> None:
    argv = haproxy_run_command(SANDBOX, next_container(SANDBOX))
    assert argv[argv.index("--name") + 1] == "webapp-haproxy-next"
    assert argv[1:] != haproxy_run_command(SANDBOX)[1:]
    assert argv[argv.index("--name") + 2:] == haproxy_run_command(SANDBOX)[
        haproxy_run_command(SANDBOX).index("--name") + 2:]


def test_haproxy_run_command_whole_argv() -> None:
    assert haproxy_run_command(SANDBOX) == [
        "docker", "run", "--detach",
        "--name", "webapp-haproxy",
        "--network", "host",
        "--restart", "unless-stopped",
        "--label", "slotswap.app=webapp",
        "--label", "slotswap.role=haproxy",
        "--label", f"{LABEL_SPEC}={container_spec(SANDBOX)}",
        "--user", "0:0",
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
    assert argv[argv.index("--network") + 1] == "host"
    assert f"{LABEL_SPEC}={container_spec(inv)}" in argv
    assert argv[-3:] == [haproxy_image, "-f", "/usr/local/etc/haproxy/haproxy.cfg"]


def test_config_dir() -> None:
    assert haproxy_dir(SANDBOX) == "/etc/slotswap/webapp/haproxy"
    assert haproxy_dir(SHOP) == "/etc/slotswap/shop/haproxy"


def test_admin_socket_is_in_a_folder_of_the_config_dir() -> None:
    assert admin_dir(SHOP) == "/etc/slotswap/shop/haproxy/admin"
    assert admin_socket_path(SHOP) == "/etc/slotswap/shop/haproxy/admin/admin.sock"


def test_an_admin_socket_path_too_long_for_a_unix_socket_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import slotswap.config.layout as layout

    monkeypatch.setattr(layout, "haproxy_dir", lambda inventory: "/srv/" + "x" * 90)
    with pytest.raises(ProxyError, match="longer than the 107 bytes"):
        admin_socket_path(SANDBOX)


# -- container_spec ---------------------------------------------------------------------------

HAPROXY_DEFAULTS = {"image": "10.77.0.1:5000/slotswap/haproxy:2.6", "http_port": 80}

SPEC_CHANGES = {
    # What the container is created with: a change needs a new container.
    "image": ({"haproxy": {**HAPROXY_DEFAULTS, "image": "haproxy:2.8"}}, True),
    "image tag": ({"haproxy": {**HAPROXY_DEFAULTS,
                               "image": "10.77.0.1:5000/slotswap/haproxy:2.8"}}, True),
    # What a config reload or a deploy changes: the same container. HAProxy binds its
    # ports itself: a port is a line of its config.
    "http_port": ({"haproxy": {**HAPROXY_DEFAULTS, "http_port": 8080}}, False),
    "slot_ports": ({"haproxy": {**HAPROXY_DEFAULTS, "slot_ports": [3001, 3002]}}, False),
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


def test_container_spec_differs_from_the_one_on_the_apps_network() -> None:
    """A container made by the version that ran HAProxy on the app's network (ports published
    by Docker): `fab up` moves it to the server's network."""
    import hashlib

    old = hashlib.sha256(b"10.77.0.1:5000/slotswap/haproxy:2.6|80|unix-socket").hexdigest()[:16]
    assert container_spec(SANDBOX) != old


def test_on_host_network() -> None:
    from slotswap.commands.docker import ContainerInfo

    def info(addresses: dict[str, str]) -> ContainerInfo:
        return ContainerInfo("webapp-haproxy", True, "running", "haproxy:2.8", "sha256:1", {},
                             addresses, 0, "")

    assert on_host_network(info({"host": ""}))
    assert not on_host_network(info({"webapp": "10.111.1.2"}))


FRONTEND_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status\n"
    "http,FRONTEND,,,0,1,262119,2,0,0,0,0,0,,,,,{status}\n"
    "webapp,web1,0,0,0,1,,2,0,0,,0,,0,0,0,0,UP\n"
    "webapp,BACKEND,0,0,0,1,26212,2,0,0,0,0,,0,0,0,0,UP\n")


def test_frontend_open() -> None:
    assert frontend_open(FRONTEND_STAT.format(status="OPEN"))
    assert not frontend_open(FRONTEND_STAT.format(status="STOP"))
    assert not frontend_open(FRONTEND_STAT.replace("http,FRONTEND", "http,OTHER").format(
        status="OPEN"))


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


def test_only_a_config_haproxy_ran_is_kept_to_be_put_back() -> None:
    from slotswap.server.haproxy_handover import keep_config_that_ran

    folder = "/etc/slotswap/webapp/haproxy"
    ran, never = "global # ran\n", "global # written, never applied\n"
    keep = ["cp", "-f", f"{folder}/haproxy.cfg", f"{folder}/haproxy.cfg.prev"]
    assert keep_config_that_ran(folder, ran, None, config_hash(ran) + "\n") == keep
    # A run cut between writing the new config and the reload: the kept one is the one that
    # ran, and stays; the file on disk never ran and is not kept.
    assert keep_config_that_ran(folder, never, ran, config_hash(ran)) == ["true"]
    # Neither ran: nothing to put back, rather than a config HAProxy may not start with.
    assert keep_config_that_ran(folder, never, "other\n", config_hash(ran)) == [
        "rm", "-f", f"{folder}/haproxy.cfg.prev"]
    assert keep_config_that_ran(folder, never, None, config_hash(ran)) == [
        "rm", "-f", f"{folder}/haproxy.cfg.prev"]
    # No record at all (a server set up before it existed): the file is what was applied.
    assert keep_config_that_ran(folder, never, None, None) == keep


def test_a_reload_after_a_cut_one_keeps_the_config_that_ran(monkeypatch: Any) -> None:
    """The `up` after one cut between writing its config and the reload: the never-applied
    file does not become the copy put back when the new config does not start."""
    from slotswap.server import haproxy_handover
    from slotswap.server.haproxy_handover import reload_with_new_config
    from tests.unit.fake_server import FakeServer

    monkeypatch.setattr(haproxy_handover, "RELOAD_TIMEOUT", 0.2)
    folder = "/etc/slotswap/webapp/haproxy"
    ran, never = "global # ran\n", "global # written, never applied\n"
    server = FakeServer(api={"show info": "Pid: 7\n"})
    server.files.update({f"{folder}/haproxy.cfg": never, f"{folder}/haproxy.cfg.prev": ran,
                         f"{folder}/haproxy.cfg.running-sha256": config_hash(ran) + "\n"})
    with pytest.raises(ProxyError, match="did not start with it"):
        reload_with_new_config(server, server.inventory, lambda _: None, "global # new\n")
    assert ["cp", "-f", f"{folder}/haproxy.cfg", f"{folder}/haproxy.cfg.prev"] \
        not in server.commands
    assert ["mv", "-f", f"{folder}/haproxy.cfg.prev", f"{folder}/haproxy.cfg"] \
        in server.commands
