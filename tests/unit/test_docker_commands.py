"""slotswap.commands.docker: whole argv lists, and `docker inspect` answers recorded in the
sandbox."""

from __future__ import annotations

import json

import pytest

from slotswap.commands import docker, docker_engine
from slotswap.commands.docker import ContainerInfo
from slotswap.config.container import ContainerSettings, LogSettings
from tests.unit.fake_server import FIXTURES

IMAGE = "10.77.0.1:5000/demo/webapp"
V1_IMAGE_ID = "sha256:3dbaf425a5a1df2cfc1162418461929be9ea913e85d98c186ecbbb723ba0887e"
V1_IMAGE_ID_REBUILT = "sha256:dcc33d18e485a6023f21e2ce0c8c09a67b47e815209ea210bc8ab1853278ec02"
V2_IMAGE_ID = "sha256:4f082f694eb86c36ebd9278a8595acfb51957649d89d4fc1ceff3b0b1cc9267d"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def slot_labels(slot: str, version: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.version": version,
        "slotswap.app": "webapp",
        "slotswap.role": "app",
        "slotswap.slot": slot,
        "slotswap.version": version,
    }


# -- builders -------------------------------------------------------------------------------

ARGV_CASES = {
    "build": (
        docker.build(f"{IMAGE}:v42", "v42", "example/Dockerfile", "example"),
        ["docker", "build", "--build-arg", "VERSION=v42", "-t", f"{IMAGE}:v42",
         "-f", "example/Dockerfile", "example"],
    ),
    "push": (docker.push(f"{IMAGE}:v42"), ["docker", "push", f"{IMAGE}:v42"]),
    "pull": (docker.pull("haproxy:2.8"), ["docker", "pull", "--quiet", "haproxy:2.8"]),
    "image_id": (
        docker.image_id("haproxy:2.8"),
        ["docker", "image", "inspect", "--format", "{{.Id}}", "haproxy:2.8"],
    ),
    "inspect_one": (
        docker.inspect_containers("webapp-web1"),
        ["docker", "container", "inspect", "webapp-web1"],
    ),
    "inspect_two": (
        docker.inspect_containers("webapp-web1", "webapp-web2"),
        ["docker", "container", "inspect", "webapp-web1", "webapp-web2"],
    ),
    "network_inspect": (
        docker.network_inspect("webapp"),
        ["docker", "network", "inspect", "--format", "{{.Driver}}", "webapp"],
    ),
    "network_create": (
        docker.network_create("webapp", "webapp"),
        ["docker", "network", "create", "--driver", "bridge",
         "--label", "slotswap.app=webapp", "webapp"],
    ),
    "network_remove": (docker.network_remove("webapp"), ["docker", "network", "rm", "webapp"]),
    "run_app_slot": (
        docker.run_app_slot(container="webapp-web2", image_ref=f"{IMAGE}:v2", network="webapp",
                            app="webapp", slot="web2", version="v2", app_port=3000,
                            stop_timeout=10),
        ["docker", "run", "--detach",
         "--name", "webapp-web2",
         "--network", "webapp",
         "--network-alias", "webapp-web2",
         "--restart", "unless-stopped",
         "--stop-timeout", "10",
         "--label", "slotswap.app=webapp",
         "--label", "slotswap.slot=web2",
         "--label", "slotswap.version=v2",
         "--label", "slotswap.role=app",
         "--label", "slotswap.settings=981e737c01598c75",
         "--env", "PORT=3000",
         f"{IMAGE}:v2"],
    ),
    "run_app_slot_options": (
        docker.run_app_slot(
            container="webapp-web2", image_ref=f"{IMAGE}:v2", network="webapp", app="webapp",
            slot="web2", version="v2", app_port=3000, stop_timeout=10,
            options=ContainerSettings(
                command=("/webapp", "--workers=2"), volumes=("data:/data", "/srv/u:/u:ro"),
                stop_signal="SIGQUIT", memory="512m", cpus=1.5,
                log=LogSettings("json-file", (("max-size", "10m"),)),
                labels=(("team", "web"),))),
        ["docker", "run", "--detach",
         "--name", "webapp-web2",
         "--network", "webapp",
         "--network-alias", "webapp-web2",
         "--restart", "unless-stopped",
         "--stop-timeout", "10",
         "--volume", "data:/data", "--volume", "/srv/u:/u:ro",
         "--stop-signal", "SIGQUIT", "--memory", "512m", "--cpus", "1.5",
         "--log-driver", "json-file", "--log-opt", "max-size=10m",
         "--label", "team=web",
         "--label", "slotswap.app=webapp",
         "--label", "slotswap.slot=web2",
         "--label", "slotswap.version=v2",
         "--label", "slotswap.role=app",
         "--label", "slotswap.settings=" + docker.settings_digest(
             network="webapp", app_port=3000, stop_timeout=10, options=ContainerSettings(
                 command=("/webapp", "--workers=2"), volumes=("data:/data", "/srv/u:/u:ro"),
                 stop_signal="SIGQUIT", memory="512m", cpus=1.5,
                 log=LogSettings("json-file", (("max-size", "10m"),)),
                 labels=(("team", "web"),))),
         "--env", "PORT=3000",
         f"{IMAGE}:v2", "/webapp", "--workers=2"],
    ),
    "run_app_slot_env_file": (
        docker.run_app_slot(container="webapp-web1", image_ref=f"{IMAGE}:v3", network="webapp",
                            app="webapp", slot="web1", version="v3", app_port=8080,
                            stop_timeout=5, env_file="/etc/slotswap/webapp/web1.env"),
        ["docker", "run", "--detach",
         "--name", "webapp-web1",
         "--network", "webapp",
         "--network-alias", "webapp-web1",
         "--restart", "unless-stopped",
         "--stop-timeout", "5",
         "--label", "slotswap.app=webapp",
         "--label", "slotswap.slot=web1",
         "--label", "slotswap.version=v3",
         "--label", "slotswap.role=app",
         "--label", "slotswap.settings=f1f7167895eba8c1",
         "--env-file", "/etc/slotswap/webapp/web1.env",
         "--env", "PORT=8080",
         f"{IMAGE}:v3"],
    ),
    "run_haproxy": (
        docker.run_haproxy(container="webapp-haproxy", image_ref="haproxy:2.8",
                           app="webapp", config_dir="/etc/slotswap/webapp/haproxy",
                           admin_dir="/etc/slotswap/webapp/haproxy/admin"),
        ["docker", "run", "--detach",
         "--name", "webapp-haproxy",
         "--network", "host",
         "--restart", "unless-stopped",
         "--label", "slotswap.app=webapp",
         "--label", "slotswap.role=haproxy",
         "--user", "0:0",
         "--volume", "/etc/slotswap/webapp/haproxy:/usr/local/etc/haproxy:ro",
         "--volume", "/etc/slotswap/webapp/haproxy/admin:/run/slotswap-admin",
         "haproxy:2.8",
         "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
    ),
    "run_haproxy_next": (
        docker.run_haproxy(container="shop-haproxy-next", image_ref="10.1.2.3:5000/haproxy:2.6",
                           app="shop", config_dir="/etc/slotswap/shop/haproxy",
                           admin_dir="/srv/shop-admin", labels={"slotswap.haproxy-spec": "ab"}),
        ["docker", "run", "--detach",
         "--name", "shop-haproxy-next",
         "--network", "host",
         "--restart", "unless-stopped",
         "--label", "slotswap.app=shop",
         "--label", "slotswap.role=haproxy",
         "--label", "slotswap.haproxy-spec=ab",
         "--user", "0:0",
         "--volume", "/etc/slotswap/shop/haproxy:/usr/local/etc/haproxy:ro",
         "--volume", "/srv/shop-admin:/run/slotswap-admin",
         "10.1.2.3:5000/haproxy:2.6",
         "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
    ),
    "run_app_slot_published": (
        docker.run_app_slot(container="webapp-web1", image_ref=f"{IMAGE}:v3", network="webapp",
                            app="webapp", slot="web1", version="v3", app_port=3000,
                            stop_timeout=5, published=((18081, 3000), (18181, 9000))),
        ["docker", "run", "--detach",
         "--name", "webapp-web1",
         "--network", "webapp",
         "--network-alias", "webapp-web1",
         "--publish", "127.0.0.1:18081:3000",
         "--publish", "127.0.0.1:18181:9000",
         "--restart", "unless-stopped",
         "--stop-timeout", "5",
         "--label", "slotswap.app=webapp",
         "--label", "slotswap.slot=web1",
         "--label", "slotswap.version=v3",
         "--label", "slotswap.role=app",
         "--label", "slotswap.settings=" + docker.settings_digest(
             network="webapp", app_port=3000, stop_timeout=5, options=ContainerSettings(),
             published=((18081, 3000), (18181, 9000))),
         "--label", "slotswap.published=loopback",
         "--env", "PORT=3000",
         f"{IMAGE}:v3"],
    ),
    "create_haproxy": (
        docker.create_haproxy(container="shop-haproxy-next", image_ref="haproxy:2.8",
                              app="shop", config_dir="/etc/slotswap/shop/haproxy",
                              admin_dir="/srv/shop-admin", instance="0123abcd"),
        ["docker", "create",
         "--name", "shop-haproxy-next",
         "--network", "host",
         "--restart", "unless-stopped",
         "--label", "slotswap.app=shop",
         "--label", "slotswap.role=haproxy",
         "--user", "0:0",
         "--env", "SLOTSWAP_HAPROXY_INSTANCE=0123abcd",
         "--volume", "/etc/slotswap/shop/haproxy:/usr/local/etc/haproxy:ro",
         "--volume", "/srv/shop-admin:/run/slotswap-admin",
         "haproxy:2.8",
         "-f", "/usr/local/etc/haproxy/haproxy.cfg"],
    ),
    "rename": (docker.rename("webapp-haproxy-next", "webapp-haproxy"),
               ["docker", "rename", "webapp-haproxy-next", "webapp-haproxy"]),
    "no_restart": (docker.no_restart("webapp-haproxy"),
                   ["docker", "update", "--restart", "no", "webapp-haproxy"]),
    "wait_exit": (docker.wait_exit("webapp-haproxy", 30),
                  ["timeout", "30", "docker", "wait", "webapp-haproxy"]),
    "check_haproxy_config": (
        docker.check_haproxy_config(image_ref="haproxy:2.8",
                                    config_dir="/etc/slotswap/webapp/haproxy",
                                    filename="haproxy.cfg.new"),
        ["docker", "run", "--rm", "--network", "none", "--user", "0:0",
         "--volume", "/etc/slotswap/webapp/haproxy:/usr/local/etc/haproxy:ro",
         "haproxy:2.8", "-c", "-f", "/usr/local/etc/haproxy/haproxy.cfg.new"],
    ),
    "signal_container": (
        docker.signal_container("webapp-haproxy", "HUP"),
        ["docker", "kill", "--signal", "HUP", "webapp-haproxy"],
    ),
    "stop": (docker.stop("webapp-web1", 10), ["docker", "stop", "--time", "10", "webapp-web1"]),
    "remove_one": (docker.remove("webapp-web1"), ["docker", "rm", "--force", "webapp-web1"]),
    "remove_many": (
        docker.remove("0b1c", "93a9", "d2e4"),
        ["docker", "rm", "--force", "0b1c", "93a9", "d2e4"],
    ),
    "logs_tail_default": (
        docker.logs_tail("webapp-web2"),
        ["docker", "logs", "--tail", "20", "webapp-web2"],
    ),
    "logs_tail_50": (
        docker.logs_tail("webapp-web2", 50),
        ["docker", "logs", "--tail", "50", "webapp-web2"],
    ),
    "list_app_containers": (
        docker.list_app_containers("webapp"),
        ["docker", "ps", "--all", "--quiet", "--filter", "label=slotswap.app=webapp"],
    ),
}


@pytest.mark.parametrize(("argv", "expected"), ARGV_CASES.values(), ids=ARGV_CASES)
def test_argv(argv: list[str], expected: list[str]) -> None:
    assert argv == expected


@pytest.mark.parametrize(("argv", "expected"), ARGV_CASES.values(), ids=ARGV_CASES)
def test_argv_is_a_list_of_strings(argv: list[str], expected: list[str]) -> None:
    assert isinstance(argv, list)
    assert all(isinstance(arg, str) for arg in argv)


def test_app_slots_publish_on_the_loopback_only() -> None:
    argv = ARGV_CASES["run_app_slot_published"][0]
    published = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--publish"]
    assert published and all(port.startswith("127.0.0.1:") for port in published)
    assert not any(arg.startswith(("-p", "--publish=")) for arg in argv)


def test_app_slot_without_env_file_has_no_env_file_option() -> None:
    assert "--env-file" not in ARGV_CASES["run_app_slot"][0]


def test_app_slot_env_file_comes_before_port_so_the_kits_port_wins() -> None:
    # docker applies --env after --env-file: PORT from the kit can never be overridden.
    argv = ARGV_CASES["run_app_slot_env_file"][0]
    assert argv.index("--env-file") < argv.index("--env")
    assert argv.index("--env") < argv.index(f"{IMAGE}:v3")


def test_haproxy_runs_on_the_servers_network_and_publishes_nothing() -> None:
    """It binds its public ports itself; the runtime API is a unix socket in a folder only
    this container mounts: no port."""
    argv = ARGV_CASES["run_haproxy"][0]
    assert "--publish" not in argv
    assert argv[argv.index("--network") + 1] == "host"


def test_settings_digest_of_slots_made_before_publishing_is_unchanged() -> None:
    before = docker.settings_digest(network="webapp", app_port=3000, stop_timeout=10,
                                    options=ContainerSettings())
    assert before == "981e737c01598c75"
    assert docker.settings_digest(network="webapp", app_port=3000, stop_timeout=10,
                                  options=ContainerSettings(),
                                  published=((18082, 3000),)) != before


# -- parse_inspect --------------------------------------------------------------------------

WEB1_RUNNING = ContainerInfo(
    name="webapp-web1", running=True, status="running", image=f"{IMAGE}:v1",
    image_id=V1_IMAGE_ID, labels={"org.opencontainers.image.version": "v1"},
    addresses={"webapp": "10.111.1.3"}, exit_code=0,
    started_at="2026-11-26T07:17:13.150957681Z",
)
WEB1_STOPPED = ContainerInfo(
    name="webapp-web1", running=False, status="exited", image=f"{IMAGE}:v1",
    image_id=V1_IMAGE_ID, labels={"org.opencontainers.image.version": "v1"},
    addresses={"webapp": ""}, exit_code=0, started_at="2026-11-26T07:17:13.150957681Z",
)

INSPECT_CASES = {
    # HAProxy on the server's network: no address of its own, nothing published.
    "docker_inspect_haproxy_host_network.json": {"webapp-haproxy": ContainerInfo(
        name="webapp-haproxy", running=True, status="running",
        image="10.77.5.1:5000/sandbox/haproxy:2.6",
        image_id="sha256:555fb4687c53665ad993afea1340bcd84f6ff0a10068fdbb6bcccdf581d3ea59",
        labels={"slotswap.app": "webapp", "slotswap.haproxy-spec": "61ef5ae134fcf96b",
                "slotswap.role": "haproxy"},
        addresses={"host": ""}, exit_code=0, started_at="2026-11-27T22:52:30.907859703Z",
        # The folders it runs from (slotswap.server.carry_over reads them).
        binds={"/usr/local/etc/haproxy": "/etc/slotswap/webapp/haproxy",
               "/run/slotswap-admin": "/etc/slotswap/webapp/haproxy/admin"})},
    "docker_inspect_web1_running.json": {"webapp-web1": WEB1_RUNNING},
    "docker_inspect_web1_stopped.json": {"webapp-web1": WEB1_STOPPED},
    "docker_inspect_live_web2.json": {
        "webapp-web1": ContainerInfo(
            name="webapp-web1", running=False, status="exited", image=f"{IMAGE}:v1",
            image_id=V1_IMAGE_ID_REBUILT, labels=slot_labels("web1", "v1"),
            addresses={"webapp": ""}, exit_code=0,
            started_at="2026-11-26T07:23:27.363973943Z",
        ),
        "webapp-web2": ContainerInfo(
            name="webapp-web2", running=True, status="running", image=f"{IMAGE}:v2",
            image_id=V2_IMAGE_ID, labels=slot_labels("web2", "v2"),
            addresses={"webapp": "10.111.1.4"}, exit_code=0,
            started_at="2026-11-26T07:23:32.427366894Z",
        ),
    },
    "docker_inspect_live_web1.json": {
        "webapp-web1": ContainerInfo(
            name="webapp-web1", running=True, status="running", image=f"{IMAGE}:v1",
            image_id=V1_IMAGE_ID_REBUILT, labels=slot_labels("web1", "v1"),
            addresses={"webapp": "10.111.1.3"}, exit_code=0,
            started_at="2026-11-26T07:24:48.704575881Z",
        ),
        "webapp-web2": ContainerInfo(
            name="webapp-web2", running=False, status="exited", image=f"{IMAGE}:v2",
            image_id=V2_IMAGE_ID, labels=slot_labels("web2", "v2"),
            addresses={"webapp": ""}, exit_code=0,
            started_at="2026-11-26T07:23:32.427366894Z",
        ),
    },
}


@pytest.mark.parametrize(("name", "expected"), INSPECT_CASES.items(), ids=INSPECT_CASES)
def test_parse_inspect_recorded(name: str, expected: dict[str, ContainerInfo]) -> None:
    containers = docker.parse_inspect(fixture(name))
    assert containers == expected
    assert list(containers) == list(expected)  # in Docker's order


# The other recordings, as (name, running, status, version, address on the app network,
# started_at) per container, in Docker's order.
INSPECT_SUMMARIES: dict[str, list[tuple[str, bool, str, str, str, str]]] = {
    # `docker container inspect webapp-web1 webapp-web2` with web2 gone: one item (exit 1).
    "docker_inspect_live_web1_web2_removed.json": [
        ("webapp-web1", True, "running", "v2", "10.111.1.3", "2026-11-26T07:27:45.511556917Z"),
    ],
    "docker_inspect_web1_maint_stopped_web2_live.json": [
        ("webapp-web1", False, "exited", "v1", "", "2026-11-26T07:24:48.704575881Z"),
        ("webapp-web2", True, "running", "v1", "10.111.1.4", "2026-11-26T07:26:19.161945298Z"),
    ],
    "docker_inspect_web1_down_starting_web2_live.json": [
        ("webapp-web1", True, "running", "v2", "10.111.1.3", "2026-11-26T07:27:45.511556917Z"),
        ("webapp-web2", True, "running", "v1", "10.111.1.4", "2026-11-26T07:27:11.576750666Z"),
    ],
    "docker_inspect_web1_live_web2_drain.json": [
        ("webapp-web1", True, "running", "v2", "10.111.1.3", "2026-11-26T07:26:25.580398604Z"),
        ("webapp-web2", True, "running", "v1", "10.111.1.4", "2026-11-26T07:26:19.161945298Z"),
    ],
    "docker_inspect_both_up_web1_newer.json": [
        ("webapp-web1", True, "running", "v2", "10.111.1.3", "2026-11-26T07:26:41.579493904Z"),
        ("webapp-web2", True, "running", "v1", "10.111.1.4", "2026-11-26T07:26:33.319730102Z"),
    ],
    "docker_inspect_both_up_web2_newer.json": [
        ("webapp-web1", True, "running", "v2", "10.111.1.3", "2026-11-26T07:27:05.817252522Z"),
        ("webapp-web2", True, "running", "v1", "10.111.1.4", "2026-11-26T07:27:11.576750666Z"),
    ],
    # Docker drops trailing zeros of the nanoseconds: 7 digits here, not 9.
    "docker_inspect_web1_live_web2_up_stopped.json": [
        ("webapp-web1", True, "running", "v2", "10.111.1.3", "2026-11-26T07:26:55.3440026Z"),
        ("webapp-web2", False, "exited", "v1", "", "2026-11-26T07:26:49.175538235Z"),
    ],
    "docker_inspect_web1_up_stopped_web2_down.json": [
        ("webapp-web1", False, "exited", "v2", "", "2026-11-26T07:26:55.3440026Z"),
        ("webapp-web2", True, "running", "v1", "10.111.1.4", "2026-11-26T07:27:00.782737074Z"),
    ],
}


@pytest.mark.parametrize(("name", "expected"), INSPECT_SUMMARIES.items(), ids=INSPECT_SUMMARIES)
def test_parse_inspect_recorded_summaries(
    name: str, expected: list[tuple[str, bool, str, str, str, str]]
) -> None:
    containers = docker.parse_inspect(fixture(name))
    assert [
        (c.name, c.running, c.status, c.version, c.addresses["webapp"], c.started_at)
        for c in containers.values()
    ] == expected
    for container in containers.values():
        slot = container.name.removeprefix("webapp-")
        assert container.labels == slot_labels(slot, container.version or "")
        assert container.image == f"{IMAGE}:{container.version}"
        assert container.image_id.startswith("sha256:")
        assert container.exit_code == 0


def test_loopback_bindings() -> None:
    assert docker.loopback_bindings({
        "3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}],
        "9000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18181"}],
        "80/tcp": [{"HostIp": "", "HostPort": "80"}],  # all interfaces: not the loopback
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
        "4000/tcp": None,
    }) == ((18081, 3000), (18181, 9000))


def test_every_recorded_inspect_is_covered() -> None:
    recorded = sorted(p.name for p in FIXTURES.glob("docker_inspect_*.json"))
    assert recorded == sorted([*INSPECT_CASES, *INSPECT_SUMMARIES])


@pytest.mark.parametrize(
    ("name", "versions"),
    [
        # Recorded before the kit labelled its slots: no version.
        ("docker_inspect_web1_running.json", {"webapp-web1": None}),
        ("docker_inspect_live_web2.json", {"webapp-web1": "v1", "webapp-web2": "v2"}),
    ],
)
def test_version_comes_from_the_kits_label(name: str, versions: dict[str, str | None]) -> None:
    containers = docker.parse_inspect(fixture(name))
    assert {n: c.version for n, c in containers.items()} == versions


@pytest.mark.parametrize("text", ["", "\n", "  \n\t", "[]", "[]\n"])
def test_parse_inspect_of_nothing(text: str) -> None:
    # `docker container inspect` of names that do not exist prints [] (and exits 1).
    assert docker.parse_inspect(text) == {}


def test_parse_inspect_of_an_array_built_from_two_recordings() -> None:
    running = json.loads(fixture("docker_inspect_live_web2.json"))[1]
    stopped = json.loads(fixture("docker_inspect_web1_stopped.json"))[0]
    containers = docker.parse_inspect(json.dumps([running, stopped], indent=4))
    assert list(containers) == ["webapp-web2", "webapp-web1"]
    assert containers["webapp-web1"] == WEB1_STOPPED
    assert containers["webapp-web2"].running


def test_parse_inspect_exit_code_and_missing_sections() -> None:
    item = json.loads(fixture("docker_inspect_web1_stopped.json"))[0]
    item["State"]["ExitCode"] = 137
    item["Config"]["Labels"] = None
    item["NetworkSettings"]["Networks"] = None
    info = docker.parse_inspect(json.dumps([item]))["webapp-web1"]
    assert (info.exit_code, info.labels, info.addresses, info.version) == (137, {}, {}, None)


def test_parse_inspect_of_a_bare_item() -> None:
    info = docker.parse_inspect('[{"Name": "/webapp-web2"}]')["webapp-web2"]
    assert info == ContainerInfo(name="webapp-web2", running=False, status="", image="",
                                 image_id="", labels={}, addresses={}, exit_code=0,
                                 started_at="")


def test_parse_inspect_refuses_what_is_not_json_in_one_line() -> None:
    with pytest.raises(docker.UnexpectedOutputError,
                       match=r"^cannot read the output of `docker inspect` .*No such container"):
        docker.parse_inspect("Error: No such container: webapp-web1\nmore")


@pytest.mark.parametrize("text", ['{"Name": "x"}', '[1, 2]', '"text"'])
def test_parse_inspect_refuses_json_of_another_shape(text: str) -> None:
    with pytest.raises(docker.UnexpectedOutputError):
        docker.parse_inspect(text)


def test_build_for_a_platform_with_more_build_args() -> None:
    assert docker.build("r/app:v1", "v1", "Dockerfile", ".", platform="linux/arm64",
                        args=(("GO_VERSION", "1.22"),)) == [
        "docker", "build", "--platform", "linux/arm64", "--build-arg", "VERSION=v1",
        "--build-arg", "GO_VERSION=1.22", "-t", "r/app:v1", "-f", "Dockerfile", "."]


@pytest.mark.parametrize(("answer", "platform"), [
    ("linux/x86_64\n", "linux/amd64"), ("linux/aarch64\n", "linux/arm64"),
    ("linux/armv7l\n", "linux/arm/v7"), ("\n", None), ("Welcome\n", None)])
def test_the_servers_platform_in_image_terms(answer: str, platform: str | None) -> None:
    assert docker_engine.parse_platform(answer) == platform


def test_the_servers_engine_in_one_docker_info() -> None:
    assert docker_engine.server_engine() == [
        "docker", "info", "--format", "{{.OSType}}/{{.Architecture}} {{.ServerVersion}}"]
    # Debian 12's docker.io, as the sandbox's servers answer
    assert docker_engine.parse_engine("linux/x86_64 20.10.24+dfsg1\n") == (
        "linux/amd64", "20.10.24+dfsg1")
    assert docker_engine.parse_engine("linux/aarch64 29.1.2\n") == ("linux/arm64", "29.1.2")
    assert docker_engine.parse_engine("\n") == (None, None)


@pytest.mark.parametrize(("version", "cause"), [
    ("20.10.24+dfsg1", "moby/moby#45610"), ("20.10.24", "moby/moby#45610"),
    ("27.5.1", "moby/moby#45610"), ("v27.5.1", "moby/moby#45610"),
    ("28.0.0", "CVE-2025-54388"), ("28.3.2", "CVE-2025-54388"),
    ("28.3.3", None), ("28.4.0", None), ("29.0.0", None), ("29.1.2", None),
    ("29", None), ("", None), ("unknown", None)])
def test_which_docker_engines_let_the_local_network_past_haproxy(version: str,
                                                                 cause: str | None) -> None:
    risk = docker_engine.direct_access_risk(version)
    if cause is None:
        assert risk is None
    else:
        assert risk is not None and cause in risk and "bypassing HAProxy" in risk


def test_the_redeploy_facts_come_in_one_command_and_are_split_by_its_mark() -> None:
    argv = docker.redeploy_facts("m1", "r/app:v2", "app", ("/e/web1.env", "/e/web2.env"),
                                 ["app-web1", "app-web2"])
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "sh", "m1", "r/app:v2", "app", "/e/web1.env", "/e/web2.env", "app-web1", "app-web2"]
    # As the script prints it: the image ID, web1's env file (ending in a newline), no env
    # file for web2, one running role container, then the containers' JSON.
    stdout = ("sha256:abc\n\nm1 0\nA=1\nB=2\n\nm1 0\n\nm1 1\nc0ffee\n\nm1 0\n"
              "[{\"Name\": \"/app-web1\"}]\n")
    parts, containers = docker.split_redeploy_facts(stdout, "m1")
    assert parts == ["sha256:abc", "A=1\nB=2\n", None, "c0ffee\n"]
    assert containers == "[{\"Name\": \"/app-web1\"}]\n"
    assert docker.split_redeploy_facts("\nm1 1\n\nm1 1\n\nm1 1\n\nm1 1\n[]", "m1") == (
        [None, None, None, None], "[]")
    with pytest.raises(docker.UnexpectedOutputError):
        docker.split_redeploy_facts("[]", "m1")
