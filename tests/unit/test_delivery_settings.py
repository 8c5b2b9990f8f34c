"""The inventory's `delivery` setting and slotswap.fleet.delivery's pure parts (command lines,
progress lines, what the operator's Docker is asked)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from slotswap.commands import docker
from slotswap.config.delivery import DeliverySettings
from slotswap.config.inventory import Inventory, InventoryError
from slotswap.config.layout import ProxyError
from slotswap.core import interrupts
from slotswap.fleet.delivery import (
    PROGRESS_INTERVAL,
    DeliveryError,
    RegistryDelivery,
    SshDelivery,
    TransferMeter,
    image_deliverer,
    short_id,
    transfer_line,
)
from slotswap.remote.server import CommandResult
from tests.unit.fake_server import FIXTURES, FakeServer, make_inventory

TWO_LAYERS = FIXTURES / "docker_save_two_layers.tar"


def inventory_with(**changes: object) -> Inventory:
    return make_inventory(Path("/srv/deploy"), image="registry.example.com/acme/webapp",
                          **changes)


def test_delivery_defaults_to_the_registry_8_servers_at_a_time() -> None:
    assert inventory_with().delivery == DeliverySettings(mode="registry", concurrency=8)


@pytest.mark.parametrize(("value", "expected"), [
    ("ssh", DeliverySettings("ssh", 8)),
    ("registry", DeliverySettings("registry", 8)),
    ({"mode": "ssh", "concurrency": 3}, DeliverySettings("ssh", 3)),
    ({"concurrency": 64}, DeliverySettings("registry", 64)),
    ({}, DeliverySettings()),
    (None, DeliverySettings()),
])
def test_delivery_as_a_word_or_a_mapping(value: object, expected: DeliverySettings) -> None:
    assert inventory_with(delivery=value).delivery == expected


@pytest.mark.parametrize(("value", "message"), [
    ("scp", "delivery: expected one of registry, ssh, got 'scp'"),
    ({"mode": "SSH"}, "delivery.mode: expected one of registry, ssh, got 'SSH'"),
    ({"concurrency": 0}, "delivery.concurrency: expected a number of servers at a time from 1 "
                         "to 64, got 0"),
    ({"concurrency": 65}, "to 64, got 65"),
    ({"concurrency": True}, "got a boolean (true)"),
    ({"concurrency": "4"}, "got '4'"),
    ({"mode": "ssh", "parallel": 2}, "delivery.parallel: unknown key"),
    (5, "delivery: expected registry or ssh, or a mapping with keys mode, concurrency, got 5"),
])
def test_bad_delivery_settings_name_the_key(value: object, message: str) -> None:
    with pytest.raises(InventoryError, match=r"^/srv/deploy/hosts\.yaml: ") as raised:
        inventory_with(delivery=value)
    assert message in str(raised.value)


def test_save_and_load_command_lines() -> None:
    assert docker.save("r:5000/a/b:v1", "/tmp/x/image.tar") == [
        "docker", "image", "save", "--output", "/tmp/x/image.tar", "r:5000/a/b:v1"]
    assert docker.load() == ["docker", "image", "load", "--quiet"]


def test_transfer_line() -> None:
    assert transfer_line(12_000_000, 48_000_000, 2.0) == "sent 12.0/48.0 MB (25%), 6.0 MB/s"
    assert transfer_line(0, 0, 0.0) == "sent 0.0/0.0 MB"


def test_short_id() -> None:
    assert short_id("sha256:0123456789abcdef0123") == "0123456789ab"


def test_transfer_meter_prints_at_most_once_per_interval_and_never_at_the_end() -> None:
    now = [100.0]
    lines: list[str] = []
    meter = TransferMeter(10_000_000, lines.append, clock=lambda: now[0])
    meter(1_000_000)  # too soon
    now[0] += PROGRESS_INTERVAL
    meter(5_000_000)
    now[0] += PROGRESS_INTERVAL / 2
    meter(6_000_000)  # too soon again
    now[0] += PROGRESS_INTERVAL
    meter(10_000_000)  # the end: the caller says "loaded" instead
    assert lines == ["sent 5.0/10.0 MB (50%), 5.0 MB/s"]
    assert meter.seconds == pytest.approx(2.5 * PROGRESS_INTERVAL)


def test_transfer_meter_lets_an_interrupt_stop_the_transfer() -> None:
    meter = TransferMeter(10, lambda _line: None)
    interrupts._requested.set()
    try:
        with pytest.raises(KeyboardInterrupt):
            meter(5)
    finally:
        interrupts._requested.clear()


def test_a_delivery_failure_stops_the_run_like_a_failed_pull() -> None:
    # slotswap.fleet.rollout.prepare collects ProxyErrors per server and stops before any swap.
    assert issubclass(DeliveryError, ProxyError)


def test_the_registry_mode_pulls_and_the_ssh_mode_streams() -> None:
    with image_deliverer(inventory_with()) as deliver:
        assert isinstance(deliver, RegistryDelivery)
        assert (deliver.login, deliver.allow_stale) == (None, False)
    with image_deliverer(inventory_with(), allow_stale=True) as deliver:
        assert isinstance(deliver, RegistryDelivery) and deliver.allow_stale
    with image_deliverer(inventory_with(delivery="ssh")) as deliver:
        assert isinstance(deliver, SshDelivery)


def fake_docker(folder: Path, script: str) -> None:
    """A `docker` on PATH that plays the operator's engine, for the local half only."""
    folder.mkdir()
    path = folder / "docker"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_the_image_is_saved_once_for_every_server_and_removed_at_the_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    fake_docker(tmp_path / "bin", f"""echo "$@" >> {calls}
case "$2" in
  inspect) echo sha256:abc ;;
  save) cp {TWO_LAYERS} "$4" ;;
esac
""")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with SshDelivery() as delivery:
        first = delivery.local_image("r/app:v1")
        assert delivery.local_image("r/app:v1") == first
        image_id, archive = first
        assert image_id == "sha256:abc" and archive.path.read_bytes() == TWO_LAYERS.read_bytes()
        _, other = delivery.local_image("r/app:v0")  # a rollback to several tags, say
        smaller = delivery.without_layers("r/app:v1", archive, 1)
        assert delivery.without_layers("r/app:v1", archive, 1) == smaller  # written once
        assert delivery.without_layers("r/app:v0", other, 1) != smaller  # a file of its own
    assert not archive.path.exists() and not smaller.exists()
    assert calls.read_text().splitlines() == [
        "image inspect --format {{.Id}} r/app:v1",
        f"image save --output {archive.path} r/app:v1",
        "image inspect --format {{.Id}} r/app:v0",
        f"image save --output {other.path} r/app:v0",
    ]


def test_an_image_missing_from_the_operators_docker_names_the_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_docker(tmp_path / "bin", "echo 'Error: No such image: r/app:v9' >&2; exit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/builder.sock")
    with SshDelivery() as delivery, pytest.raises(DeliveryError) as raised:
        delivery.local_image("r/app:v9")
    assert str(raised.value) == (
        "r/app:v9 is not in this machine's Docker (DOCKER_HOST=unix:///run/builder.sock): "
        "Error: No such image: r/app:v9; build (fab build) or pull it there first")


def copy_server() -> FakeServer:
    """Has a copy of r/app:v9 (`docker image ls` style line of server_images)."""
    return FakeServer(answers={tuple(docker.server_images()): CommandResult(
        'sha256:aaa ["r/app:v9"] []\n', "", 0)}, strict=True)


def test_a_copy_on_the_server_the_operators_docker_cannot_confirm_is_refused_unless_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a warning, and the server's copy (maybe another image of that tag) was deployed.
    fake_docker(tmp_path / "bin", "echo 'Error: No such image: r/app:v9' >&2; exit 1\n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    with SshDelivery() as delivery, pytest.raises(DeliveryError) as raised:
        delivery(copy_server(), "r/app:v9", print, refresh=True)
    assert str(raised.value).startswith("s1: r/app:v9 is not in this machine's Docker")
    assert str(raised.value).endswith("the server's copy of that tag may be another image, so "
                                      "it is not deployed (--allow-stale deploys it anyway)")
    said: list[str] = []
    with SshDelivery(allow_stale=True) as delivery:
        delivery(copy_server(), "r/app:v9", said.append, refresh=True)
    assert said[-1].endswith("deploying the copy on the server, which may be another image "
                             "of that tag (--allow-stale)")
