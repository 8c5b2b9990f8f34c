"""Around the swap, on the sandbox: maintenance mode under load (503 pages, no connection
error, no reload, the app kept running), `exec` beside the live version, the release
command, volumes, health checks an app that checks the Host header passes, and builds."""

from __future__ import annotations

import dataclasses
import http.client
import json
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from slotswap.commands import runtime_api as haproxy
from slotswap.config.loader import load_inventory
from slotswap.remote.server import Server
from slotswap.server import maintenance
from testbed import sandbox
from tests.integration.conftest import (
    FAB,
    FORGED_HEADERS,
    ROOT,
    forwarded_by_haproxy,
    seen_headers,
    wait_for,
)

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
MESSAGE = "Back <soon> & better"
OTHER_MESSAGE = "Zurück um 14:00 — «bientôt»\tsoon"


def get(address: str) -> tuple[int, Message, str]:
    """Status, headers (names in any case, as HTTP has them) and body of GET /."""
    status, headers, body = get_bytes(address)
    return status, headers, body.decode()


def get_bytes(address: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def maintenance_page(box: Sandbox, message: str) -> bytes:
    """The page as the kit renders it from the template, which every server must serve."""
    return maintenance.render_page(load_inventory(box.inventory), message).encode()


def haproxy_pid(box: Sandbox, name: str) -> str:
    """The HAProxy worker's process ID on that server: a reload changes it."""
    inventory = load_inventory(box.inventory)
    server = Server(next(host for host in inventory.hosts if host.name == name), inventory)
    try:
        return haproxy.parse_info(server.runtime_api("show info"))["Pid"]
    finally:
        server.close()


def answers(address: str) -> bool:
    try:
        get(address)
    except OSError:
        return False  # HAProxy is starting again
    return True


def app_containers(box: Sandbox) -> dict[str, str]:
    return {a: box.ssh(a, "docker ps --quiet --no-trunc --filter label=slotswap.role=app")
            for a in box.addresses}


def test_maintenance_mode_answers_503_pages_without_connection_errors(
        fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    apps = app_containers(box)
    with box.load() as switching_on:
        on = box.fab("maintenance.on", "--message", MESSAGE, "--retry-after", "90")
    turned_on = switching_on.stop()
    assert on.returncode == 0, on.stderr
    assert set(turned_on.outcomes) <= {"200", "503"}, turned_on.outcomes
    page = maintenance_page(box, MESSAGE)
    assert b"Back &lt;soon&gt; &amp; better" in page and page.count(b"\n") > 5
    for address in box.addresses:
        status, headers, body = get_bytes(address)
        assert status == 503
        assert headers.get("Retry-After") == "90"
        assert headers.get("Content-Type") == "text/html; charset=utf-8"
        assert body == page  # byte for byte: its newlines, its UTF-8
    # Another message while on: the new page at once, and no reload for it.
    pid = haproxy_pid(box, "s1")
    assert box.fab("maintenance.on", "--message", OTHER_MESSAGE).returncode == 0
    for address in box.addresses:
        assert get_bytes(address)[2] == maintenance_page(box, OTHER_MESSAGE)
    assert haproxy_pid(box, "s1") == pid
    status = box.fab("status", "--json")
    assert all(server["maintenance"] for server in json.loads(status.stdout)["servers"])
    assert "(MAINTENANCE: answering 503)" in box.fab("status").stdout
    # A second `up` changes nothing and keeps the mode.
    assert "unchanged" in box.fab("up").stdout
    assert get(box.addresses[0])[0] == 503

    with box.load() as switching_off:
        off = box.fab("maintenance.off")
    turned_off = switching_off.stop()
    assert off.returncode == 0, off.stderr
    assert set(turned_off.outcomes) <= {"200", "503"}, turned_off.outcomes
    for address in box.addresses:
        assert get(address)[0] == 200
    assert app_containers(box) == apps  # the app ran all along, untouched
    # Off, and known to be: the empty map's empty answer is not "unknown" (null).
    status = box.fab("status", "--json")
    assert [server["maintenance"] for server in json.loads(status.stdout)["servers"]] == [
        False] * len(box.addresses)


def test_maintenance_survives_a_restart_of_haproxy(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    assert box.fab("maintenance.on", "--hosts", "s1").returncode == 0
    try:
        box.ssh(box.addresses[0], "docker restart webapp-haproxy")
        assert wait_for(lambda: answers(box.addresses[0]), timeout=20)
        status, _, body = get_bytes(box.addresses[0])
        assert (status, body) == (503, maintenance_page(box, maintenance.DEFAULT_MESSAGE))
        assert get(box.addresses[1])[0] == 200  # --hosts: only s1
    finally:
        assert box.fab("maintenance.off").returncode == 0
    assert get(box.addresses[0])[0] == 200


def get_headers(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """The forwarding headers the app got (the example app's /headers), over plain HTTP."""
    connection = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        connection.request("GET", "/headers", headers={"Host": "shop.example",
                                                       "Connection": "close", **(headers or {})})
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        return seen_headers(body)
    finally:
        connection.close()


def test_forged_forwarding_headers_never_reach_the_app(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    assert get_headers(box.addresses[0], FORGED_HEADERS) == forwarded_by_haproxy(
        sandbox.BRIDGE_IP, "http", "shop.example", 80)


def test_the_headers_of_a_trusted_proxy_are_kept(fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """haproxy.trusted_proxies: this machine (the sandbox's bridge address) plays the load
    balancer in front of HAProxy; a list without it changes nothing."""
    box = fleet_on_v1
    address = box.addresses[0]
    elsewhere = box.inventory_copy(tmp_path, haproxy={"trusted_proxies": ["10.99.0.0/16"]})
    try:
        assert box.fab("up", inventory=elsewhere).returncode == 0
        assert get_headers(address, FORGED_HEADERS) == forwarded_by_haproxy(
            sandbox.BRIDGE_IP, "http", "shop.example", 80)
        trusted = box.inventory_copy(tmp_path, haproxy={
            "trusted_proxies": ["10.99.0.0/16", f"{sandbox.BRIDGE_IP}/32"]})
        check = box.fab("check", inventory=trusted)
        assert check.returncode == 0
        assert f"haproxy.trusted_proxies: 10.99.0.0/16, {sandbox.BRIDGE_IP}/32" in check.stdout
        assert box.fab("up", inventory=trusted).returncode == 0
        # Kept as the proxy sent them; HAProxy adds those it left out, and the proxy's own
        # address to X-Forwarded-For.
        sent = {name: value for name, value in FORGED_HEADERS.items()
                if name not in ("X-Real-IP", "X-Forwarded-Port")}
        assert get_headers(address, sent) == {
            **FORGED_HEADERS, "X-Forwarded-For": f"1.2.3.4, {sandbox.BRIDGE_IP}",
            "X-Real-IP": sandbox.BRIDGE_IP, "X-Forwarded-Port": "80"}
    finally:
        assert box.fab("up").returncode == 0
    assert get_headers(address, FORGED_HEADERS) == forwarded_by_haproxy(
        sandbox.BRIDGE_IP, "http", "shop.example", 80)


def test_exec_runs_beside_the_live_version_and_passes_its_exit_code_on(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, env={"plain": {"GREETING": "hello there"}})
    assert box.fab("deploy", "--tag", "v2", inventory=inventory).returncode == 0

    version = box.fab("exec", "--command", "version", inventory=inventory)
    assert version.returncode == 0
    assert version.stdout.strip().splitlines()[-1] == "v2"
    assert "a one-off container of v2" in version.stderr + version.stdout

    env = box.fab("exec", "--command", "env GREETING", "--hosts", "s2", inventory=inventory)
    assert env.returncode == 0 and env.stdout.strip().splitlines()[-1] == "hello there"

    failed = box.fab("exec", "--command", "exit 3", inventory=inventory)
    assert failed.returncode == 3

    # docker exec: the command as given, without the image's entrypoint in front
    live = box.fab("exec", "--live", "--command", "/webapp version", inventory=inventory)
    assert live.returncode == 0 and "the live container webapp-web" in live.stdout + live.stderr

    bad = box.fab("exec", "--command", "", inventory=inventory)
    assert bad.returncode == 2 and "--command is required" in bad.stderr
    for address in box.addresses:
        assert box.ssh(address, "docker ps --all --quiet --filter label=slotswap.role=one-off"
                       ) == ""


def volume_file(box: Sandbox, address: str, volume: str, name: str) -> str:
    mountpoint = box.ssh(address, f"docker volume inspect --format '{{{{.Mountpoint}}}}' {volume}")
    return box.ssh(address, f"cat {mountpoint.strip()}/{name} 2>/dev/null || true")


def get_path(address: str, path: str, host: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{address}{path}",
                                     headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def shared_folder() -> Iterator[Path]:
    """A host folder every sandbox server sees (they share this machine's files), which the
    app's user (65534) may write."""
    folder = Path(tempfile.mkdtemp(prefix="slotswap-shared-", dir="/var/tmp"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_release_command_runs_once_before_any_switch_and_volumes_keep_files(
        fleet_on_v1: Sandbox, tmp_path: Path, shared_folder: Path) -> None:
    box = fleet_on_v1
    # Each slot appends its version to a file in a named volume and in a host folder when
    # it starts, and serves both files on /marks.
    inventory = box.inventory_copy(
        tmp_path, container={"volumes": ["webapp-data:/data", f"{shared_folder}:/shared"],
                             "labels": {"team": "web"}},
        env={"plain": {"MARK_ON_START": "/data/started.log,/shared/started.log"}},
        release={"command": ["mark", "/data/releases.log"]})
    assert box.fab("deploy", "--tag", "v1", inventory=inventory).returncode == 0
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    report = load.stop()
    assert result.returncode == 0, result.stderr
    assert report.failed == 0, report.failures
    output = result.stdout + result.stderr
    # Once, on the first server, before its first switch.
    assert output.count("release command done") == 1
    assert output.index("release command done") < output.index("is taking traffic")
    assert volume_file(box, box.addresses[0], "webapp-data", "releases.log").split() == \
        ["v1", "v2"]
    assert volume_file(box, box.addresses[1], "webapp-data", "releases.log") == ""
    # v2 reads in the volume what v1's release wrote there.
    read = box.fab("exec", "--command", "cat /data/releases.log", inventory=inventory)
    assert read.returncode == 0 and read.stdout.split()[-2:] == ["v1", "v2"]
    # The v2 slot serves what the v1 slot wrote when it started: in the server's own named
    # volume, and in the host folder all three servers' slots share.
    for address in box.addresses:
        status, body = get_path(address, "/marks")
        assert status == 200, body
        lines = body.splitlines()
        assert lines[0] == "version=v2"
        assert {"/data/started.log v1", "/data/started.log v2"} <= set(lines), body
        assert lines.count("/shared/started.log v1") >= len(box.addresses), body
    labels = box.ssh(box.addresses[0], "docker inspect --format '{{index .Config.Labels "
                     "\"team\"}}' webapp-web1 webapp-web2")
    assert set(labels.split()) == {"web"}
    history = box.fab("history", "--lines", "3", inventory=inventory)
    assert "release" in history.stdout and "released" in history.stdout
    # What the release command printed is in the history, shown on request.
    mark = "marked /data/releases.log with v2"
    assert mark in output and mark not in history.stdout
    shown = box.fab("history", "--lines", "3", "--output", inventory=inventory)
    assert mark in shown.stdout, shown.stdout
    document = json.loads(box.fab("history", "--json", inventory=inventory).stdout)
    first = document["servers"][0]["entries"]
    assert any(mark in entry["output"] for entry in first if entry["task"] == "release")


def test_a_failing_release_command_changes_nothing_and_can_be_skipped(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, release={"command": ["exit", "4"]})
    serving = box.live_versions()
    before = {a: box.containers(a) for a in box.addresses}
    tag = "v2" if set(serving.values()) == {"v1"} else "v1"
    with box.load() as load:
        failed = box.fab("deploy", "--tag", tag, inventory=inventory)
    report = load.stop()
    assert failed.returncode == 1
    assert report.failed == 0, report.failures
    assert "the release command `exit 4` exited 4 on s1; nothing was changed" \
        in failed.stderr
    assert "exiting with 4" in failed.stderr  # its output
    assert box.live_versions() == serving
    assert {a: box.containers(a) for a in box.addresses} == before
    skipped = box.fab("deploy", "--tag", tag, "--skip-release", inventory=inventory)
    assert skipped.returncode == 0
    assert "release command" not in skipped.stdout + skipped.stderr


STATE = "/var/lib/slotswap/webapp"


def test_the_history_is_the_logins_alone_and_keeps_no_secret_a_release_printed(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    """A release command prints a line with the app's secret in it: the screen, the history
    file and `fab history --output` show it masked; a state folder an older release left
    open (0755, history 0644) is closed by the deploy."""
    token = f"pw-{time.time_ns()}"
    box = dataclasses.replace(fleet_on_v1, env={**fleet_on_v1.env, "DB_PASSWORD": token})
    inventory = box.inventory_copy(
        tmp_path, env={"secret": ["DB_PASSWORD"],
                       "plain": {"DATABASE_URL": f"postgres://app:{token}@db/app"}},
        release={"command": ["env", "DATABASE_URL"]})
    for address in box.addresses:
        box.ssh(address, f"chmod 755 {STATE} && touch {STATE}/history.jsonl && "
                f"chmod 644 {STATE}/history.jsonl")
    tag = "v2" if set(box.live_versions().values()) == {"v1"} else "v1"
    result = box.fab("deploy", "--tag", tag, inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert "release | postgres://app:******@db/app" in result.stdout + result.stderr
    for address in box.addresses:
        modes = box.ssh(address, f"stat -c '%a %n' {STATE} {STATE}/history.jsonl").split("\n")
        assert modes[:2] == [f"700 {STATE}", f"600 {STATE}/history.jsonl"], (address, modes)
        assert box.ssh(address, f"find {STATE} -perm /077").strip() == ""
    kept = box.ssh(box.addresses[0], f"cat {STATE}/history.jsonl")
    assert "postgres://app:******@db/app" in kept and token not in kept
    # Shown by an operator who does not have the secret: the file itself holds no value.
    shown = fleet_on_v1.fab("history", "--output", inventory=inventory)
    assert shown.returncode == 0, shown.stderr
    assert "| postgres://app:******@db/app" in shown.stdout and token not in shown.stdout


def test_health_check_settings_pass_an_app_that_checks_the_host_header(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    # The app answers 400 to any Host but these (the load sends the server's address), as
    # Django's ALLOWED_HOSTS does, and serves /health on a port of its own too.
    env = {"plain": {"ALLOWED_HOSTS": ",".join(["www.fleet.test", *box.addresses]),
                     "HEALTH_PORT": "3001"}}
    host = {"path": "/health", "host": "www.fleet.test", "status": [200, 204],
            "interval": 0.3, "rise": 2, "fall": 3}
    inventories = {}
    for name, changes in {"no host": {"healthcheck": {"path": "/health"}},
                          "host": {"healthcheck": host},
                          "host and port": {"healthcheck": {**host, "port": 3001}}}.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        inventories[name] = box.inventory_copy(folder, env=env, timeouts={"healthy": 5},
                                               **changes)
    try:
        # Checks without the Host header the app wants: the new version never passes them.
        assert box.fab("up", inventory=inventories["no host"]).returncode == 0
        serving = box.live_versions()
        tag = "v2" if set(serving.values()) == {"v1"} else "v1"
        with box.load() as load:
            refused = box.fab("deploy", "--tag", tag, inventory=inventories["no host"])
        report = load.stop()
        assert refused.returncode == 1
        assert report.failed == 0, report.failures
        assert "L7STS 400" in refused.stderr
        assert box.live_versions() == serving

        # With healthcheck.host the same version passes, under load.
        assert box.fab("up", inventory=inventories["host"]).returncode == 0
        config = box.ssh(box.addresses[0], "cat /etc/slotswap/webapp/haproxy/haproxy.cfg")
        assert "http-check send meth GET uri /health ver HTTP/1.1 hdr Host www.fleet.test" \
            in config
        assert "http-check expect rstatus ^(200|204)$" in config and "inter 300ms" in config
        with box.load() as load:
            result = box.fab("deploy", "--tag", tag, inventory=inventories["host"])
        report = load.stop()
        assert result.returncode == 0, result.stderr
        assert report.failed == 0, report.failures
        assert set(box.live_versions().values()) == {tag}
        assert get_path(box.addresses[0], "/", host="other.test")[0] == 400

        # healthcheck.port: HAProxy checks the slot's port + 100, where Docker publishes
        # the app's port 3001.
        back = "v1" if tag == "v2" else "v2"
        assert box.fab("up", inventory=inventories["host and port"]).returncode == 0
        config = box.ssh(box.addresses[0], "cat /etc/slotswap/webapp/haproxy/haproxy.cfg")
        assert "server web1 127.0.0.1:18081 port 18181" in config
        with box.load() as load:
            result = box.fab("deploy", "--tag", back, inventory=inventories["host and port"])
        report = load.stop()
        assert result.returncode == 0, result.stderr
        assert report.failed == 0, report.failures
        assert set(box.live_versions().values()) == {back}
        published = box.ssh(box.addresses[0], "for slot in webapp-web1 webapp-web2; do "
                            "docker port $slot 3001 2>/dev/null; done; true")
        assert {"127.0.0.1:18181", "127.0.0.1:18182"} & set(published.split()), published
    finally:
        # The slots check the Host header: the sandbox's own settings again, from scratch.
        assert box.fab("down").returncode == 0
        assert box.fab("up").returncode == 0
        assert box.fab("deploy", "--tag", "v1").returncode == 0


def image_field(box: Sandbox, image: str, template: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "--format", template, image],
                          env=box.env, text=True, capture_output=True, timeout=60,
                          check=True).stdout.strip()


def test_build_for_a_platform_with_build_args(fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    inventory = box.inventory_copy(tmp_path, build={"platform": "linux/amd64",
                                                    "args": {"BUILD_NOTE": "from the inventory"}})
    result = box.fab("build", "--tag", "p1", "--no-push", inventory=inventory)
    assert result.returncode == 0, result.stderr
    assert "for linux/amd64 (build.platform)" in result.stdout + result.stderr
    image = f"{sandbox.APP_IMAGE}:p1"
    assert image_field(box, image, "{{.Os}}/{{.Architecture}}") == "linux/amd64"
    # The build arg reached the image (the example's Dockerfile makes it a label).
    assert image_field(box, image, '{{index .Config.Labels "example.build-note"}}') == \
        "from the inventory"


def test_a_build_the_local_docker_cannot_do_for_the_platform_says_so(
        fleet_on_v1: Sandbox, tmp_path: Path) -> None:
    box = fleet_on_v1
    # A base image that exists for amd64 only, and a step that runs one of its programs.
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {sandbox.APP_IMAGE}:v1\n"
                                        'RUN ["/webapp", "version"]\n')
    inventory = box.inventory_copy(tmp_path, build={
        "context": str(context), "dockerfile": str(context / "Dockerfile"),
        "platform": "linux/s390x"})
    result = box.fab("build", "--tag", "s1", "--no-push", inventory=inventory)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    # The sandbox's builder (Docker 20.10's classic builder) takes the amd64 base image it
    # has and runs the step natively: the image's platform is what tells.
    assert last.startswith("error: this machine's Docker built an image for linux/amd64, not "
                           "linux/s390x") or last.startswith(
        f"error: this machine's Docker cannot build {sandbox.APP_IMAGE}:s1 for linux/s390x ("), \
        result.stderr
    assert "Traceback" not in result.stderr


def test_exec_interactive_gets_a_terminal_of_its_own(fleet_on_v1: Sandbox) -> None:
    box = fleet_on_v1
    # `script` gives the command a terminal, as an operator's shell has.
    command = shlex.join([FAB, "exec", "--interactive", "--command", "version",
                          "--inventory", str(box.inventory)])
    result = subprocess.run(["script", "--quiet", "--return", "--command", command,
                             "/dev/null"], cwd=ROOT, env=box.env, text=True,
                            capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    versions = set(box.live_versions().values())
    assert any(line.strip() in versions for line in result.stdout.splitlines()), result.stdout
    assert "not a terminal" not in result.stdout + result.stderr
    # The container had a terminal: the example app's `tty` checks its stdin.
    command = shlex.join([FAB, "exec", "--interactive", "--command", "tty",
                          "--inventory", str(box.inventory)])
    result = subprocess.run(["script", "--quiet", "--return", "--command", command,
                             "/dev/null"], cwd=ROOT, env=box.env, text=True,
                            capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stdin is a terminal" in result.stdout
    # Without --interactive it has none.
    plain = box.fab("exec", "--command", "tty")
    assert plain.returncode == 1 and "stdin is not a terminal" in plain.stdout
