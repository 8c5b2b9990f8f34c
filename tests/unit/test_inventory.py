import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from slotswap.config.build import BuildSettings
from slotswap.config.delivery import DeliverySettings
from slotswap.config.env import EnvSettings
from slotswap.config.haproxy import HaproxySettings
from slotswap.config.healthcheck import HealthcheckSettings
from slotswap.config.hooks import HookSettings
from slotswap.config.hosts import Host
from slotswap.config.https import AcmeSettings, HttpsSettings
from slotswap.config.inventory import (
    FROM_FILE_SHAPE,
    FROM_SERVER,
    SLOTS,
    Inventory,
    InventoryError,
)
from slotswap.config.loader import load_inventory, parse_inventory
from slotswap.config.ssh import JumpHost, SshSettings
from slotswap.config.timeouts import Timeouts
from slotswap.core.validation import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
app: webapp
image: registry.example.com:5000/acme/webapp
hosts:
  - 203.0.113.10
"""

FULL = """\
app: shop
image: registry.example.com:5000/acme/shop
build: {context: src, dockerfile: docker/Dockerfile.prod}
app_port: 8080
healthcheck: {path: "/healthz?full=1"}
env:
  plain: {LOG_LEVEL: info, FEATURE_X: "on", WORKERS: 4, RATIO: 0.5, DEBUG: false, EMPTY: ""}
  secret: [DATABASE_URL, API_TOKEN]
ssh:
  user: deploy
  port: 2200
  identity: keys/deploy_ed25519
  known_hosts: /etc/slotswap/known_hosts
  connect_timeout: 2.5
  accept_unknown_hosts: true
  jump: jumper@bastion.example.com:2022
  config: false
haproxy: {image: "10.1.2.3:5000/haproxy:2.6", http_port: 8000, stats_port: 8001}
timeouts: {healthy: 90, drain: 0.5, stop: 3}
hosts:
  - 203.0.113.10
  - {address: 203.0.113.11, name: web-b, user: ops, port: 2222, jump: "[2001:db8::1]"}
  - address: shop-3.example.com
    accept_unknown_hosts: false
"""


def write_inventory(folder: Path, text: str, name: str = "hosts.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# -- good files ----------------------------------------------------------------------------


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    inventory = load_inventory(write_inventory(tmp_path, MINIMAL))

    assert inventory == Inventory(
        path=tmp_path / "hosts.yaml",
        app="webapp",
        image="registry.example.com:5000/acme/webapp",
        build=BuildSettings(context=tmp_path, dockerfile=tmp_path / "Dockerfile"),
        app_port=3000,
        healthcheck=HealthcheckSettings(path="/health"),
        ssh=SshSettings(
            user=None,
            port=None,
            identity=None,
            known_hosts=None,
            connect_timeout=10.0,
            accept_unknown_hosts=False,
            jump=None,
            config=True,
        ),
        haproxy=HaproxySettings(image="haproxy:2.8", http_port=80),
        timeouts=Timeouts(healthy=60.0, drain=30.0, stop=10),
        hosts=(
            Host(
                address="203.0.113.10",
                name="203.0.113.10",
                user=None,
                port=None,
                jump=None,
                accept_unknown_hosts=None,
            ),
        ),
        env=EnvSettings(plain=(), secret=()),
    )
    assert inventory.env.empty


def test_full_file_sets_every_key(tmp_path: Path) -> None:
    inventory = load_inventory(write_inventory(tmp_path, FULL))

    assert inventory.app == "shop"
    assert inventory.image == "registry.example.com:5000/acme/shop"
    assert inventory.build == BuildSettings(
        context=tmp_path / "src", dockerfile=tmp_path / "docker" / "Dockerfile.prod"
    )
    assert inventory.app_port == 8080
    assert inventory.healthcheck == HealthcheckSettings(path="/healthz?full=1")
    assert inventory.env == EnvSettings(
        plain=(
            ("LOG_LEVEL", "info"),
            ("FEATURE_X", "on"),
            ("WORKERS", "4"),
            ("RATIO", "0.5"),
            ("DEBUG", "false"),
            ("EMPTY", ""),
        ),
        secret=("DATABASE_URL", "API_TOKEN"),
    )
    assert inventory.ssh == SshSettings(
        user="deploy",
        port=2200,
        identity=tmp_path / "keys" / "deploy_ed25519",
        known_hosts=Path("/etc/slotswap/known_hosts"),
        connect_timeout=2.5,
        accept_unknown_hosts=True,
        jump=JumpHost(address="bastion.example.com", user="jumper", port=2022),
        config=False,
    )
    assert inventory.haproxy == HaproxySettings(
        image="10.1.2.3:5000/haproxy:2.6", http_port=8000
    )
    assert inventory.timeouts == Timeouts(healthy=90.0, drain=0.5, stop=3)
    assert inventory.hosts == (
        Host(address="203.0.113.10", name="203.0.113.10"),
        Host(
            address="203.0.113.11",
            name="web-b",
            user="ops",
            port=2222,
            jump=JumpHost(address="2001:db8::1"),
        ),
        Host(
            address="shop-3.example.com",
            name="shop-3.example.com",
            accept_unknown_hosts=False,
        ),
    )


def test_a_watch_of_zero_turns_the_watch_off_and_keep_images_is_read(tmp_path: Path) -> None:
    text = MINIMAL + "timeouts: {watch: 0}\nkeep_images: 5\n"
    inventory = load_inventory(write_inventory(tmp_path, text))
    assert inventory.timeouts.watch == 0.0 and isinstance(inventory.timeouts.watch, float)
    assert inventory.keep_images == 5
    assert load_inventory(write_inventory(tmp_path, MINIMAL)).keep_images == 3


def test_timeouts_and_connect_timeout_are_floats_even_when_written_as_integers(
    tmp_path: Path,
) -> None:
    inventory = load_inventory(write_inventory(tmp_path, FULL))
    assert isinstance(inventory.timeouts.healthy, float)
    assert isinstance(inventory.ssh.connect_timeout, float)
    assert isinstance(inventory.timeouts.stop, int)


def test_host_as_string_and_as_mapping_with_only_address_are_the_same(tmp_path: Path) -> None:
    as_string = load_inventory(write_inventory(tmp_path / "a", MINIMAL))
    as_mapping = load_inventory(
        write_inventory(
            tmp_path / "b", MINIMAL.replace("- 203.0.113.10", "- {address: 203.0.113.10}")
        )
    )
    assert as_string.hosts == as_mapping.hosts


def test_ipv6_and_dns_name_hosts_are_accepted(tmp_path: Path) -> None:
    text = MINIMAL.replace("- 203.0.113.10", '- "2001:db8::10"\n  - web-1.example.com')
    inventory = load_inventory(write_inventory(tmp_path, text))
    assert [host.address for host in inventory.hosts] == ["2001:db8::10", "web-1.example.com"]


def test_same_address_on_different_ssh_ports_is_two_hosts(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "- 203.0.113.10",
        "- {address: 203.0.113.10, port: 2201, name: vm1}\n"
        "  - {address: 203.0.113.10, port: 2202, name: vm2}",
    )
    inventory = load_inventory(write_inventory(tmp_path, text))
    assert [host.port for host in inventory.hosts] == [2201, 2202]


def test_empty_sections_mean_all_defaults(tmp_path: Path) -> None:
    text = MINIMAL + "ssh:\nhaproxy: {}\ntimeouts:\nbuild:\nhealthcheck:\nenv:\n"
    inventory = load_inventory(write_inventory(tmp_path, text))
    assert inventory.env == EnvSettings()
    assert inventory.ssh == SshSettings()
    assert inventory.haproxy == HaproxySettings()
    assert inventory.timeouts == Timeouts()
    assert inventory.healthcheck == HealthcheckSettings()
    assert inventory.build == BuildSettings(context=tmp_path, dockerfile=tmp_path / "Dockerfile")


def test_relative_paths_are_taken_from_the_inventory_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = MINIMAL + (
        "build: {context: app, dockerfile: docker/Dockerfile}\n"
        "ssh: {identity: keys/id_ed25519, known_hosts: ../known_hosts}\n"
    )
    write_inventory(tmp_path / "deploy", text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    inventory = load_inventory("../deploy/hosts.yaml")

    folder = tmp_path / "deploy"
    assert inventory.path.is_absolute()
    assert inventory.path.resolve() == folder / "hosts.yaml"
    assert inventory.build.context.resolve() == folder / "app"
    # The Dockerfile is relative to the inventory folder, not to the build context.
    assert inventory.build.dockerfile.resolve() == folder / "docker" / "Dockerfile"
    assert inventory.ssh.identity is not None
    assert inventory.ssh.identity.resolve() == folder / "keys" / "id_ed25519"
    assert inventory.ssh.known_hosts is not None
    assert inventory.ssh.known_hosts.resolve() == tmp_path / "known_hosts"


def test_empty_env_lists_mean_no_variables(tmp_path: Path) -> None:
    text = MINIMAL + "env: {plain: {}, secret: []}\n"
    assert load_inventory(write_inventory(tmp_path, text)).env == EnvSettings()
    text = MINIMAL + "env: {plain:, secret:}\n"
    assert load_inventory(write_inventory(tmp_path / "b", text)).env == EnvSettings()


def test_env_values_are_written_as_yaml_read_them(tmp_path: Path) -> None:
    # Unquoted on/yes are booleans and 0755 an octal number in YAML: the reference
    # hosts.yaml says to quote such values; unquoted, this is what the app gets.
    text = MINIMAL + (
        "env:\n  plain:\n"
        "    A: on\n    B: 'on'\n    C: 0755\n    D: '0755'\n    E: 1.50\n    F: -3\n"
        "    G: \"a \\\"quoted\\\" # value\"\n"
    )
    plain = dict(load_inventory(write_inventory(tmp_path, text)).env.plain)
    assert plain == {"A": "true", "B": "on", "C": "493", "D": "0755", "E": "1.5", "F": "-3",
                     "G": 'a "quoted" # value'}


JUMPS = {
    "bastion.example.com": JumpHost("bastion.example.com"),
    "jump@bastion.example.com": JumpHost("bastion.example.com", user="jump"),
    "bastion.example.com:2222": JumpHost("bastion.example.com", port=2222),
    "ops@10.0.0.1:22": JumpHost("10.0.0.1", user="ops", port=22),
    "[2001:db8::1]": JumpHost("2001:db8::1"),
    "ops@[2001:db8::1]:2200": JumpHost("2001:db8::1", user="ops", port=2200),
}


@pytest.mark.parametrize(("text", "expected"), JUMPS.items(), ids=JUMPS)
def test_jump_hosts_are_user_host_port_like_ssh_j(tmp_path: Path, text: str,
                                                  expected: JumpHost) -> None:
    inventory = load_inventory(write_inventory(tmp_path, MINIMAL + f"ssh: {{jump: '{text}'}}\n"))
    assert inventory.ssh.jump == expected
    assert str(expected) == text


def test_same_address_behind_different_jump_hosts_is_two_hosts(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "- 203.0.113.10",
        "- {address: 10.0.0.5, name: dc1, jump: bastion1.example.com}\n"
        "  - {address: 10.0.0.5, name: dc2, jump: bastion2.example.com}",
    )
    inventory = load_inventory(write_inventory(tmp_path, text))
    assert [str(host.jump) for host in inventory.hosts] == [
        "bastion1.example.com",
        "bastion2.example.com",
    ]


def test_omitted_dockerfile_is_the_one_at_the_root_of_the_context(tmp_path: Path) -> None:
    inventory = load_inventory(write_inventory(tmp_path, MINIMAL + "build: {context: app}\n"))
    assert inventory.build.dockerfile == tmp_path / "app" / "Dockerfile"


def test_tilde_is_expanded_in_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    text = MINIMAL + (
        "build: {context: ~/src/app, dockerfile: ~/src/app/Dockerfile}\n"
        "ssh: {identity: ~/.ssh/id_ed25519, known_hosts: ~/.ssh/known_hosts}\n"
    )
    inventory = load_inventory(write_inventory(tmp_path / "deploy", text))
    assert inventory.build.context == home / "src" / "app"
    assert inventory.build.dockerfile == home / "src" / "app" / "Dockerfile"
    assert inventory.ssh.identity == home / ".ssh" / "id_ed25519"
    assert inventory.ssh.known_hosts == home / ".ssh" / "known_hosts"


def test_tilde_is_expanded_in_the_inventory_path_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_inventory(tmp_path / "deploy", MINIMAL)
    inventory = load_inventory("~/deploy/hosts.yaml")
    assert inventory.path == tmp_path / "deploy" / "hosts.yaml"


def test_default_inventory_is_hosts_yaml_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inventory(tmp_path, MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert load_inventory().path == tmp_path / "hosts.yaml"


def test_parse_inventory_takes_already_parsed_data(tmp_path: Path) -> None:
    data = {"app": "webapp", "image": "acme/webapp", "hosts": ["web1.example.com"]}
    inventory = parse_inventory(data, tmp_path / "inv.yaml")
    assert inventory.path == tmp_path / "inv.yaml"
    assert inventory.hosts == (Host(address="web1.example.com", name="web1.example.com"),)


def test_the_example_hosts_yaml_at_the_top_of_the_repo_loads() -> None:
    inventory = load_inventory(REPO_ROOT / "hosts.yaml")

    assert inventory.app == "webapp"
    assert inventory.image == "registry.example.com:5000/acme/webapp"
    assert inventory.build == BuildSettings(
        context=REPO_ROOT / "example", dockerfile=REPO_ROOT / "example" / "Dockerfile",
        platform="linux/amd64", args=(("GO_VERSION", "1.19"),)
    )
    assert inventory.ssh.identity == Path("~/.ssh/id_ed25519").expanduser()
    assert inventory.ssh.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert [host.address for host in inventory.hosts] == [
        "203.0.113.10",
        "203.0.113.11",
        "203.0.113.12",
        "10.0.8.20",
        "203.0.113.30",
    ]
    assert inventory.ssh.jump == JumpHost("bastion.example.com", user="deploy", port=22)
    assert inventory.hosts[3].jump == JumpHost("bastion-2.example.com", user="ops", port=2200)
    assert inventory.env.secret == ("DATABASE_URL", "API_TOKEN")


SECTIONS = {
    "build": BuildSettings,
    "healthcheck": HealthcheckSettings,
    "env": EnvSettings,
    "ssh": SshSettings,
    "haproxy": HaproxySettings,
    "timeouts": Timeouts,
    "hooks": HookSettings,
    "delivery": DeliverySettings,
}


def test_the_example_hosts_yaml_sets_every_key_so_it_documents_them() -> None:
    text = (REPO_ROOT / "hosts.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)

    top_level = {field.name for field in dataclasses.fields(Inventory)
                 if not field.metadata.get(FROM_SERVER)
                 and not field.metadata.get(FROM_FILE_SHAPE)} - {"path"}
    assert set(data) == top_level
    for section, settings in SECTIONS.items():
        assert set(data[section]) == {field.name for field in dataclasses.fields(settings)}
    # https sets files; acme, its alternative, is documented commented out.
    https_keys = {field.name for field in dataclasses.fields(HttpsSettings)}
    assert set(data["https"]) == https_keys - {"acme"}
    for field in dataclasses.fields(AcmeSettings):
        assert f"#   {field.name}:" in text
    # Per-host keys are documented in the comment above the host list.
    for field in dataclasses.fields(Host):
        assert f"#   {field.name}:" in text


# -- Inventory helpers ---------------------------------------------------------------------


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    return load_inventory(write_inventory(tmp_path, MINIMAL))


def test_image_ref_appends_a_validated_tag(inventory: Inventory) -> None:
    assert inventory.image_ref("v1.2") == "registry.example.com:5000/acme/webapp:v1.2"
    with pytest.raises(InputError, match="invalid tag"):
        inventory.image_ref("-v1")


def test_names_derived_from_the_app(inventory: Inventory) -> None:
    assert SLOTS == ("web1", "web2")
    assert [inventory.container_name(slot) for slot in SLOTS] == ["webapp-web1", "webapp-web2"]
    assert inventory.network == "webapp"
    assert inventory.haproxy_container == "webapp-haproxy"


def test_container_name_refuses_unknown_slots(inventory: Inventory) -> None:
    with pytest.raises(InputError, match="unknown slot 'web3': expected one of web1, web2"):
        inventory.container_name("web3")


def test_settings_are_frozen(inventory: Inventory) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        inventory.app = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        inventory.hosts[0].port = 2222  # type: ignore[misc]


# -- bad values ----------------------------------------------------------------------------

BASE: dict[str, Any] = yaml.safe_load(MINIMAL)
DELETE = object()


def bad(key_path: str, fragment: str, **changes: Any) -> Any:
    """One row of the bad-input table: top-level changes, the key path and message part."""
    return pytest.param(changes, key_path, fragment, id=f"{key_path}: {fragment}")


BAD_INPUTS = [
    # required keys
    bad("app", "required key is missing", app=DELETE),
    bad("image", "required key is missing", image=DELETE),
    bad("hosts", "required key is missing", hosts=DELETE),
    bad("hosts[0].address", "required key is missing", hosts=[{"name": "web-a"}]),
    # unknown keys, with the allowed ones listed
    bad("host", "unknown key (did you mean 'hosts'?); allowed keys: app, image, build", host=[]),
    bad("ssh.usr", "did you mean 'user'?); allowed keys: user, port, identity", ssh={"usr": "x"}),
    bad("build.docker_file", "allowed keys: context, dockerfile", build={"docker_file": "D"}),
    bad("healthcheck.url", "allowed keys: path", healthcheck={"url": "/"}),
    bad("haproxy.port",
        "allowed keys: image, http_port, slot_ports, trusted_proxies, shared, default, stats_port",
        haproxy={"port": 80}),
    bad("haproxy.trusted_proxies", "expected a list of networks such as 10.0.0.0/8",
        haproxy={"trusted_proxies": "10.0.0.0/8"}),
    bad("haproxy.trusted_proxies[1]", "expected a network in CIDR form such as 10.0.0.0/8",
        haproxy={"trusted_proxies": ["10.0.0.0/8", "10.0.0.0/33"]}),
    bad("haproxy.trusted_proxies[0]", "expected a network in CIDR form",
        haproxy={"trusted_proxies": ["fe80::1%eth0"]}),
    bad("haproxy.trusted_proxies[0]", "expected a network in CIDR form",
        haproxy={"trusted_proxies": ["10.0.0.0/8 src 0.0.0.0/0"]}),
    bad("haproxy.trusted_proxies[0]", "10.1.2.3/8 has bits set after its first 8: write "
        "10.0.0.0/8 for that network, or 10.1.2.3/32 for that address alone",
        haproxy={"trusted_proxies": ["10.1.2.3/8"]}),
    bad("haproxy.trusted_proxies[0]", "expected a network such as 10.0.0.0/8, got 8",
        haproxy={"trusted_proxies": [8]}),
    bad("haproxy.slot_ports", "must be a list of two ports", haproxy={"slot_ports": [1]}),
    bad("haproxy.slot_ports", "differ from each other and from haproxy.http_port",
        haproxy={"slot_ports": [80, 8081]}),
    bad("haproxy.slot_ports[1]", "65435", haproxy={"slot_ports": [8080, 65500]}),
    bad("timeouts.health", "allowed keys: healthy, drain, stop, watch", timeouts={"health": 5}),
    bad(
        "hosts[0].adress",
        "did you mean 'address'?); allowed keys: address, name, user, port",
        hosts=[{"adress": "203.0.113.10"}],
    ),
    # sections of the wrong type
    bad("ssh", "expected a mapping with keys user, port", ssh=["root"]),
    bad("build", "expected a mapping with keys context, dockerfile, platform, args, got '.'",
        build="."),
    bad("timeouts", "got 60", timeouts=60),
    # app and image
    bad("app", "invalid app name 'Web_App'", app="Web_App"),
    bad("app", "expected an app name, got 5 (put it in quotes)", app=5),
    bad("app", "expected an app name, got ''", app=""),
    bad("image", "invalid image repository", image="acme/webapp:v1"),
    bad("image", "a tag is not allowed", image="acme/webapp:v1"),
    bad("image", "a digest", image="acme/webapp@sha256:" + "a" * 64),
    bad("image", "lowercase", image="acme/WebApp"),
    bad("image", "invalid image repository", image="acme/webapp;reboot"),
    bad("image", "expected an image repository without tag, got a list", image=["acme/webapp"]),
    # build paths
    bad("build.context", "expected a file or folder path, got 5", build={"context": 5}),
    bad("build.dockerfile", "expected a file or folder path, got ''", build={"dockerfile": ""}),
    # app_port: integers only, in range, and never a bool or a string
    bad("app_port", "expected an integer from 1 to 65535, got 0", app_port=0),
    bad("app_port", "expected an integer from 1 to 65535, got 65536", app_port=65536),
    bad("app_port", "expected an integer from 1 to 65535, got '3000'", app_port="3000"),
    bad("app_port", "expected an integer from 1 to 65535, got a boolean (true)", app_port=True),
    bad("app_port", "expected an integer from 1 to 65535, got 3000.0", app_port=3000.0),
    # healthcheck
    bad("healthcheck.path", "invalid URL path 'health'", healthcheck={"path": "health"}),
    bad("healthcheck.path", "invalid URL path '/a b'", healthcheck={"path": "/a b"}),
    bad("healthcheck.path", "invalid URL path '/a#b'", healthcheck={"path": "/a#b"}),
    bad("healthcheck.path", "got nothing (null)", healthcheck={"path": None}),
    # ssh
    bad("ssh.port", "expected an integer from 1 to 65535, got 'abc'", ssh={"port": "abc"}),
    bad("ssh.port", "got a boolean (false)", ssh={"port": False}),
    bad("ssh.port", "got -22", ssh={"port": -22}),
    bad("ssh.user", "expected an SSH user name of 1-32", ssh={"user": "Root"}),
    bad("ssh.user", "got '-x'", ssh={"user": "-x"}),
    bad("ssh.user", "got 'aaaa", ssh={"user": "a" * 33}),
    bad("ssh.user", "got 'root; reboot'", ssh={"user": "root; reboot"}),
    bad("ssh.user", "expected an SSH user name, got 0 (put it in quotes)", ssh={"user": 0}),
    bad("ssh.connect_timeout", "greater than 0, got 0", ssh={"connect_timeout": 0}),
    bad("ssh.connect_timeout", "greater than 0, got '10'", ssh={"connect_timeout": "10"}),
    bad("ssh.connect_timeout", "greater than 0, got inf", ssh={"connect_timeout": float("inf")}),
    bad("ssh.connect_timeout", "greater than 0, got nan", ssh={"connect_timeout": float("nan")}),
    bad("ssh.identity", "expected a file or folder path, got 5", ssh={"identity": 5}),
    bad("ssh.known_hosts", "got nothing (null)", ssh={"known_hosts": None}),
    bad(
        "ssh.identity",
        "cannot expand '~'",
        ssh={"identity": "~no-such-user-x9q/.ssh/id_ed25519"},
    ),
    # haproxy
    bad("haproxy.image", "invalid image reference 'HAProxy:2.8'", haproxy={"image": "HAProxy:2.8"}),
    bad("haproxy.image", "invalid image reference 'haproxy:'", haproxy={"image": "haproxy:"}),
    bad("haproxy.image", "invalid image reference", haproxy={"image": "haproxy:2.8 -d"}),
    bad("haproxy.http_port", "got 70000", haproxy={"http_port": 70000}),
    # timeouts
    bad(
        "timeouts.healthy",
        "expected a number of seconds greater than 0, got 0",
        timeouts={"healthy": 0},
    ),
    bad("timeouts.drain", "greater than 0, got -5", timeouts={"drain": -5}),
    bad("timeouts.drain", "got a boolean (true)", timeouts={"drain": True}),
    bad(
        "timeouts.stop",
        "expected a whole number of seconds greater than 0, got 1.5",
        timeouts={"stop": 1.5},
    ),
    bad("timeouts.stop", "got 0", timeouts={"stop": 0}),
    bad("timeouts.stop", "got '10'", timeouts={"stop": "10"}),
    bad("timeouts.watch", "expected a number of seconds, 0 or more, got -1",
        timeouts={"watch": -1}),
    bad("timeouts.watch", "got a boolean (false)", timeouts={"watch": False}),
    bad("timeouts.watch", "got '5'", timeouts={"watch": "5"}),
    # keep_images
    bad("keep_images", "expected an integer from 2 to 1000, got 1", keep_images=1),
    bad("keep_images", "got 2.5", keep_images=2.5),
    bad("keep_images", "got a boolean (true)", keep_images=True),
    # env
    bad("env", "expected a mapping with keys plain, secret", env=["A"]),
    bad("env.secrets", "did you mean 'secret'?); allowed keys: plain, secret", env={"secrets": []}),
    bad("env.plain", "expected a mapping of NAME: value, got a list", env={"plain": ["A=1"]}),
    bad("env.plain.A-B", "expected a variable name of letters, digits and '_'",
        env={"plain": {"A-B": "1"}}),
    bad("env.plain.1A", "not starting with a digit, got '1A'", env={"plain": {"1A": "1"}}),
    bad("env.plain.1", "got 1", env={"plain": {1: "1"}}),
    bad("env.plain.PORT", "PORT is set by slotswap itself (from app_port)",
        env={"plain": {"PORT": 8080}}),
    bad("env.plain.A", "expected a string, number or boolean, got a list",
        env={"plain": {"A": [1]}}),
    bad("env.plain.A", 'got nothing (null) (write "" for an empty value)',
        env={"plain": {"A": None}}),
    bad("env.plain.A", "got a mapping", env={"plain": {"A": {"b": 1}}}),
    bad("env.plain.A", "got inf", env={"plain": {"A": float("inf")}}),
    bad("env.plain.A", "the value contains a line break", env={"plain": {"A": "1\nB=2"}}),
    bad("env.plain.A", "the value contains a line break", env={"plain": {"A": "1\r"}}),
    bad("env.plain.A", "NUL", env={"plain": {"A": "1\0"}}),
    bad("env.plain.A", "reads at most 65535", env={"plain": {"A": "x" * 70000}}),
    bad("env.secret", "expected a list of variable names, got 'API_TOKEN'",
        env={"secret": "API_TOKEN"}),
    bad("env.secret[1]", "expected a variable name", env={"secret": ["A", "B C"]}),
    bad("env.secret[0]", "got 5", env={"secret": [5]}),
    bad("env.secret[0]", "PORT is set by slotswap itself", env={"secret": ["PORT"]}),
    bad("env.secret[2]", "A is already env.secret[0]", env={"secret": ["A", "B", "A"]}),
    bad("env.secret[0]", "TOKEN is also in env.plain; a variable is plain or secret",
        env={"plain": {"TOKEN": "x"}, "secret": ["TOKEN"]}),
    # ssh options
    bad("ssh.accept_unknown_hosts", "expected true or false, got 'yes'",
        ssh={"accept_unknown_hosts": "yes"}),
    bad("ssh.accept_unknown_hosts", "got 1", ssh={"accept_unknown_hosts": 1}),
    bad("ssh.config", "expected true or false, got nothing (null)", ssh={"config": None}),
    bad("ssh.jump", "expected a jump host as [user@]host[:port]", ssh={"jump": "a@b@c"}),
    bad("ssh.jump", "got 'bastion:22:22'", ssh={"jump": "bastion:22:22"}),
    bad("ssh.jump", "an IPv6 address in brackets", ssh={"jump": "2001:db8::1"}),
    bad("ssh.jump", "got 'bastion:ssh'", ssh={"jump": "bastion:ssh"}),
    bad("ssh.jump", "expected an integer from 1 to 65535, got 0", ssh={"jump": "bastion:0"}),
    bad("ssh.jump", "got 70000", ssh={"jump": "bastion:70000"}),
    bad("ssh.jump", "expected an SSH user name of 1-32", ssh={"jump": "Root@bastion"}),
    bad("ssh.jump", "expected an SSH user name, got ''", ssh={"jump": "@bastion"}),
    bad("ssh.jump", "expected a host name or IP address, got ''", ssh={"jump": "root@:22"}),
    bad("ssh.jump", "invalid host address 'bad_host'", ssh={"jump": "bad_host"}),
    bad(
        "ssh.jump",
        "invalid host address 'bastion -oProxyCommand=x'",
        ssh={"jump": "bastion -oProxyCommand=x"},
    ),
    bad("ssh.jump", "expected a jump host as [user@]host[:port], e.g.", ssh={"jump": 22}),
    bad("ssh.jump", "got a list", ssh={"jump": ["bastion"]}),
    # host list
    bad("hosts", "expected a non-empty list of host addresses", hosts=[]),
    bad("hosts", "got an empty list", hosts=[]),
    bad("hosts", "got '203.0.113.10'", hosts="203.0.113.10"),
    bad("hosts", "got a mapping", hosts={"address": "203.0.113.10"}),
    bad("hosts", "got nothing (null)", hosts=None),
    bad("hosts[0]", "expected a host address or a mapping with keys address", hosts=[5]),
    bad("hosts[1]", "got a list", hosts=["203.0.113.10", ["203.0.113.11"]]),
    # host entries
    bad(
        "hosts[1]",
        "invalid host address '203.0.113.300'",
        hosts=["203.0.113.10", "203.0.113.300"],
    ),
    bad("hosts[0].address", "invalid host address 'bad host'", hosts=[{"address": "bad host"}]),
    bad("hosts[0].address", "got ''", hosts=[{"address": ""}]),
    bad("hosts[0].address", "got 5 (put it in quotes)", hosts=[{"address": 5}]),
    bad("hosts[0].name", "expected a name of 1-63 letters", hosts=[{"address": "h", "name": "-a"}]),
    bad("hosts[0].name", "got 'web b'", hosts=[{"address": "h", "name": "web b"}]),
    bad("hosts[0].name", "got 'aaaa", hosts=[{"address": "h", "name": "a" * 64}]),
    bad("hosts[0].user", "expected an SSH user name of", hosts=[{"address": "h", "user": "Ops"}]),
    bad("hosts[0].port", "got '2222'", hosts=[{"address": "h", "port": "2222"}]),
    bad("hosts[0].port", "got 0", hosts=[{"address": "h", "port": 0}]),
    bad("hosts[0].port", "got a boolean (true)", hosts=[{"address": "h", "port": True}]),
    bad("hosts[0].jump", "invalid host address 'a b'", hosts=[{"address": "h", "jump": "a b"}]),
    bad("hosts[0].jump", "got nothing (null)", hosts=[{"address": "h", "jump": None}]),
    bad(
        "hosts[0].accept_unknown_hosts",
        "expected true or false, got 'no'",
        hosts=[{"address": "h", "accept_unknown_hosts": "no"}],
    ),
    bad(
        "hosts[0].jumphost",
        "did you mean 'jump'?",
        hosts=[{"address": "h", "jumphost": "b"}],
    ),
    # duplicates
    bad(
        "hosts[1]",
        "duplicate of hosts[0] (same address 203.0.113.10 and SSH port 22)",
        hosts=["203.0.113.10", {"address": "203.0.113.10", "name": "again"}],
    ),
    bad(
        "hosts[1]",
        "duplicate of hosts[0]",
        hosts=["203.0.113.10", {"address": "203.0.113.10", "port": 22, "name": "again"}],
    ),
    bad(
        "hosts[2]",
        "duplicate of hosts[1] (same address 203.0.113.11 and SSH port 2222)",
        ssh={"port": 2222},
        hosts=["203.0.113.10", "203.0.113.11", {"address": "203.0.113.11", "name": "x"}],
    ),
    bad(
        "hosts[1]",
        "duplicate of hosts[0]",
        hosts=["Web1.Example.com", {"address": "web1.example.com", "name": "b"}],
    ),
    bad(
        "hosts[1]",
        "duplicate of hosts[0]",
        hosts=["2001:db8::10", {"address": "2001:0db8:0:0::10", "name": "b"}],
    ),
    bad(
        "hosts[1]",
        "duplicate of hosts[0] (same address 10.0.0.5 and SSH port 22 through jump host b1)",
        ssh={"jump": "b1"},
        hosts=["10.0.0.5", {"address": "10.0.0.5", "name": "again"}],
    ),
    bad(
        "hosts[1]",
        "through jump host b1",
        ssh={"jump": "b2"},
        hosts=[{"address": "10.0.0.5", "jump": "b1"}, {"address": "10.0.0.5", "jump": "b1",
                                                      "name": "again"}],
    ),
    bad(
        "hosts[1].name",
        "'web-a' is already the name of hosts[0]",
        hosts=[{"address": "203.0.113.10", "name": "web-a"}, {"address": "h2", "name": "web-a"}],
    ),
    bad(
        "hosts[1].name",
        "'203.0.113.10' is already the name of hosts[0]",
        hosts=["203.0.113.10", {"address": "203.0.113.11", "name": "203.0.113.10"}],
    ),
]


@pytest.mark.parametrize(("changes", "key_path", "fragment"), BAD_INPUTS)
def test_bad_values_name_the_file_the_key_and_what_was_expected(
    tmp_path: Path, changes: dict[str, Any], key_path: str, fragment: str
) -> None:
    data = {**BASE, **changes}
    data = {key: value for key, value in data.items() if value is not DELETE}
    path = write_inventory(tmp_path, yaml.safe_dump(data, sort_keys=False))

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    message = str(caught.value)
    assert message.startswith(f"{path}: {key_path}: ")
    assert fragment in message
    assert "\n" not in message


def test_errors_name_the_file_as_the_user_gave_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_inventory(tmp_path, MINIMAL + "ssh: {port: abc}\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InventoryError) as caught:
        load_inventory("hosts.yaml")
    assert str(caught.value) == (
        "hosts.yaml: ssh.port: expected an integer from 1 to 65535, got 'abc'"
    )


def test_inventory_error_is_an_input_error() -> None:
    assert issubclass(InventoryError, InputError)


# -- bad files -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(InventoryError, match=r"nope\.yaml: inventory file not found$"):
        load_inventory(path)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="is a directory, expected an inventory YAML file"):
        load_inventory(tmp_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_inventory(tmp_path, MINIMAL)

    # chmod cannot make a file unreadable when the tests run as root, so fail the read.
    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value) == f"{path}: cannot read: Permission denied"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_bytes(b"app: caf\xe9\n")
    with pytest.raises(
        InventoryError, match=r"hosts\.yaml: not UTF-8 text \(bad byte at offset 8\)"
    ):
        load_inventory(path)


def test_yaml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write_inventory(tmp_path, "app: webapp\nimage: acme/webapp\nhosts: [203.0.113.10\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: YAML syntax error at line 4, column 1: ")
    assert "\n" not in message


def test_yaml_indentation_error_gives_the_line(tmp_path: Path) -> None:
    path = write_inventory(tmp_path, "app: webapp\nssh:\n  user: root\n port: 22\n")
    with pytest.raises(InventoryError, match=r"YAML syntax error at line 4, column 2: "):
        load_inventory(path)


def test_yaml_with_a_control_character_gives_the_line(tmp_path: Path) -> None:
    path = write_inventory(tmp_path, "app: webapp\nimage: acme/web\x07app\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value) == (
        f"{path}: YAML syntax error at line 2: "
        "special characters are not allowed (character #x0007)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty; expected at least app, image and hosts"),
        ("# only comments\n", "the file is empty; expected at least app, image and hosts"),
        ("- 203.0.113.10\n", "expected a mapping of settings at the top level, got a list"),
        ("webapp\n", "expected a mapping of settings at the top level, got 'webapp'"),
    ],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, expected: str) -> None:
    path = write_inventory(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_yaml_tags_that_build_python_objects_are_refused(tmp_path: Path) -> None:
    path = write_inventory(tmp_path, "app: !!python/object/apply:os.getpid []\n")
    with pytest.raises(InventoryError, match="YAML syntax error at line 1"):
        load_inventory(path)


# -- remote_dir ------------------------------------------------------------------------------


def remote_dir_inventory(tmp_path: Path, value: object) -> Inventory:
    return load_inventory(write_inventory(tmp_path, MINIMAL + f"remote_dir: {value}\n"))


def test_without_remote_dir_the_kit_uses_the_system_folders(tmp_path: Path) -> None:
    inventory = load_inventory(write_inventory(tmp_path, MINIMAL))
    assert inventory.remote_dir is None
    assert inventory.state_dir == "/var/lib/slotswap/webapp"
    assert inventory.config_dir == "/etc/slotswap/webapp"


@pytest.mark.parametrize("value", ["/home/deploy/slotswap", "/home/deploy/slotswap/",
                                   "/srv/slot-swap_1.0/x@y+z"])
def test_remote_dir_holds_state_and_config_per_app(tmp_path: Path, value: str) -> None:
    inventory = remote_dir_inventory(tmp_path, value)
    base = value.rstrip("/")
    assert inventory.remote_dir == base
    assert inventory.state_dir == f"{base}/webapp/state"
    assert inventory.config_dir == f"{base}/webapp/config"


@pytest.mark.parametrize(("value", "fragment"), [
    ("slotswap", "absolute folder path"),
    ("'~/slotswap'", "'~' would be the home"),
    ("'~deploy/slotswap'", "'~' would be the home"),
    ("/", "absolute folder path"),
    ("'/srv/slot swap'", "absolute folder path"),
    ("'/srv/a:b'", "absolute folder path"),
    ("'/srv/$(id)'", "absolute folder path"),
    ("/srv/../etc", "'..'"),
    ("/srv/./x", "'.'"),
    ("'/srv//x'", "absolute folder path"),
    ("42", "expected an absolute folder path on the servers"),
])
def test_a_bad_remote_dir_is_refused_naming_the_key(tmp_path: Path, value: str,
                                                    fragment: str) -> None:
    with pytest.raises(InventoryError, match=r"hosts\.yaml: remote_dir: ") as caught:
        remote_dir_inventory(tmp_path, value)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)
def test_liveness_deadline_and_lease_settings(tmp_path: Path) -> None:
    text = MINIMAL + ("ssh: {keepalive: 1, dead_after: 2.5}\n"
                      "timeouts: {command: 30, lease: 20}\n")
    inventory = load_inventory(write_inventory(tmp_path, text))
    assert (inventory.ssh.keepalive, inventory.ssh.dead_after) == (1.0, 2.5)
    assert (inventory.timeouts.command, inventory.timeouts.lease) == (30.0, 20)
    defaults = load_inventory(write_inventory(tmp_path / "d", MINIMAL))
    assert (defaults.ssh.keepalive, defaults.ssh.dead_after) == (5.0, 15.0)
    assert (defaults.timeouts.command, defaults.timeouts.lease) == (60.0, 60)


@pytest.mark.parametrize(("text", "message"), [
    ("ssh: {keepalive: 0}", r"ssh\.keepalive: expected a number of seconds greater than 0"),
    ("ssh: {dead_after: -1}", r"ssh\.dead_after: expected a number of seconds greater than 0"),
    ("timeouts: {command: .inf}", r"timeouts\.command: expected a number of seconds"),
    ("timeouts: {lease: 2}", r"timeouts\.lease: expected an integer from 3 to 3600, got 2"),
    ("timeouts: {lease: 1.5}", r"timeouts\.lease: expected an integer from 3 to 3600"),
    ("timeouts: {lease: true}", r"timeouts\.lease: expected an integer"),
])
def test_bad_liveness_deadline_and_lease_settings_are_refused(tmp_path: Path, text: str,
                                                              message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        load_inventory(write_inventory(tmp_path, MINIMAL + text + "\n"))
