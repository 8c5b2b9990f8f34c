"""SshDelivery against a scripted server: only the layers a server lacks are sent, and the
whole image when its Docker wants every layer. The operator's Docker is a `docker` script on
PATH that saves the recorded two-layer archive (fixtures/README.md)."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from slotswap.commands import docker
from slotswap.fleet.delivery import DeliveryError, SshDelivery
from slotswap.remote.server import CommandResult
from tests.unit.fake_server import FIXTURES, FakeServer

TWO_LAYERS = FIXTURES / "docker_save_two_layers.tar"
MISSING_LAYER = (FIXTURES / "docker_load_missing_layer.txt").read_text()
REF = "fixture/app:v1"
LOCAL_ID = "sha256:e7e47b261b7c4d56a891f8582b5dcf5c2e7cffb12dba52865ee2b1eb3b75fc05"
BASE = "sha256:7621f14b9acb5cc46d2ee1ca665d1596f26bd756ebb61a024dd4fccd3dfdfb9a"
APP = "sha256:0fc7870c0df5875c775815e0190d950c2c1b76bc0281a652f318428ab9f97d0f"
LOADED = CommandResult(f"Loaded image: {REF}\n", "", 0)


class ScriptedServer(FakeServer):
    """Answers the image query with `images`, and each `docker image load` with the next of
    `loads`; keeps the names of the files in each archive it was sent."""

    def __init__(self, images: str, loads: list[CommandResult]) -> None:
        super().__init__(answers={tuple(docker.server_images()): CommandResult(images, "", 0)},
                         strict=True)
        self.loads = loads
        self.received: list[list[str]] = []

    def run_streaming_stdin(self, argv: Sequence[str], source: BinaryIO,
                            **_: Any) -> CommandResult:
        assert argv == docker.load()
        with tarfile.open(fileobj=source) as archive:
            self.received.append(archive.getnames())
        return self.loads.pop(0)


def image_line(image_id: str, names: list[str], layers: list[str]) -> str:
    return f"{image_id} {json.dumps(names)} {json.dumps(layers)}\n"


@pytest.fixture
def delivery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshDelivery]:
    folder = tmp_path / "bin"
    folder.mkdir()
    script = folder / "docker"
    script.write_text(f"""#!/bin/sh
case "$2" in
  inspect) echo {LOCAL_ID} ;;
  save) cp {TWO_LAYERS} "$4" ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    with SshDelivery() as opened:
        yield opened


def layer_files() -> list[str]:
    with tarfile.open(TWO_LAYERS) as archive:
        return [name for name in archive.getnames() if name.endswith("/layer.tar")]


def test_a_server_with_the_bottom_layer_gets_the_archive_without_it(
        delivery: SshDelivery) -> None:
    server = ScriptedServer(image_line("sha256:old", ["fixture/app:v0"], [BASE]), [LOADED])
    lines: list[str] = []
    delivery(server, REF, lines.append, refresh=True)
    base_file, app_file = layer_files()
    assert len(server.received) == 1
    assert base_file not in server.received[0] and app_file in server.received[0]
    assert lines[0].startswith(f"sending {REF} (image e7e47b261b7c, ")
    assert lines[0].endswith(": 1 of 2 layers already there) over SSH")
    assert lines[-1].startswith(f"loaded {REF}: sent ")


def test_a_server_with_no_shared_layer_gets_the_whole_archive(delivery: SshDelivery) -> None:
    server = ScriptedServer(image_line("sha256:old", ["other:1"], [APP]), [LOADED])
    lines: list[str] = []
    delivery(server, REF, lines.append, refresh=True)
    assert set(layer_files()) <= set(server.received[0])
    assert lines[0] == f"sending {REF} (image e7e47b261b7c, 0.0 MB) over SSH"


def test_a_docker_that_wants_every_layer_gets_the_whole_archive_next(
        delivery: SshDelivery) -> None:
    refused = CommandResult("", MISSING_LAYER, 1)
    server = ScriptedServer(image_line("sha256:old", ["fixture/app:v0"], [BASE, APP]),
                            [refused, LOADED])
    lines: list[str] = []
    delivery(server, REF, lines.append, refresh=True)
    assert [set(layer_files()) & set(names) for names in server.received] == [
        set(), set(layer_files())]
    assert "2 of 2 layers already there" in lines[0]
    assert lines[1] == ("its Docker wants every layer (`docker image load` exited 1: "
                        f"{MISSING_LAYER.strip()}); sending the whole image")
    assert lines[-1].startswith(f"loaded {REF}: ")


def test_a_refused_whole_archive_is_a_delivery_error_naming_the_server(
        delivery: SshDelivery) -> None:
    full = CommandResult("", "Error response from daemon: no space left on device\n", 1)
    server = ScriptedServer("", [full])
    with pytest.raises(DeliveryError) as raised:
        delivery(server, REF, lambda _line: None, refresh=True)
    assert str(raised.value) == ("s1: `docker image load` exited 1: Error response from "
                                 f"daemon: no space left on device ({REF})")


def test_a_load_that_does_not_name_the_image_is_an_error(delivery: SshDelivery) -> None:
    server = ScriptedServer("", [CommandResult("Loaded image ID: sha256:e7e4\n", "", 0)])
    with pytest.raises(DeliveryError, match=f"did not name {REF} \\(it said: Loaded image ID"):
        delivery(server, REF, lambda _line: None, refresh=True)


def test_the_same_image_id_on_the_server_sends_nothing(delivery: SshDelivery) -> None:
    server = ScriptedServer(image_line(LOCAL_ID, [REF], [BASE, APP]), [])
    lines: list[str] = []
    delivery(server, REF, lines.append, refresh=True)
    assert server.received == []
    assert lines == [f"{REF} already there (image e7e47b261b7c), nothing sent"]


def test_without_refresh_any_copy_on_the_server_will_do(delivery: SshDelivery) -> None:
    server = ScriptedServer(image_line("sha256:other", [REF], [BASE]), [])
    delivery(server, REF, lambda _line: None, refresh=False)
    assert server.received == []


# -- the server's images ------------------------------------------------------------------


def test_server_images_reads_the_recorded_answer() -> None:
    text = (FIXTURES / "server_images_haproxy_and_app.txt").read_text()
    images = docker.parse_server_images(text + "WARNING: something\n")
    assert images == [
        docker.ServerImage(
            "sha256:8c10d03854f953eed62e1dcf06dc84f6bb01be342bc1d5798d4011fddd0bda25",
            ("10.77.0.1:5000/demo/webapp:v1", "10.77.0.1:5000/demo/webapp:x1", "keep:1"),
            ("sha256:25353e4dea4e2b1af8ab0143650f9f9517ebd86a8c6bd266a92ec21c27665ad9",)),
        docker.ServerImage(
            "sha256:a71c5a4aa6fb3583d20c187d0f9c69460615c57faebb35ac88983fca43730c89",
            ("10.77.0.1:5000/sandbox/haproxy:2.6",),
            ("sha256:ab7a09e690bc707be52755de6009cda426bbb9ed43240781740b587c46318d38",)),
    ]
    assert docker.image_id_named(images, "10.77.0.1:5000/demo/webapp:x1") == images[0].image_id
    assert docker.image_id_named(images, "10.77.0.1:5000/demo/webapp:v9") is None


def test_an_untagged_image_has_no_names() -> None:
    assert docker.parse_server_images("sha256:ab null []\n") == [
        docker.ServerImage("sha256:ab", (), ())]


def test_the_image_query_is_a_fixed_script() -> None:
    assert docker.server_images() == ["sh", "-c", docker.SERVER_IMAGES_SCRIPT]


@pytest.mark.parametrize(("ref", "shown"), [
    ("docker.io/library/nginx:1.25", "nginx:1.25"),
    ("index.docker.io/library/nginx:1.25", "nginx:1.25"),
    ("library/nginx:1.25", "nginx:1.25"),
    ("nginx:1.25", "nginx:1.25"),
    ("docker.io/acme/app:v1", "acme/app:v1"),
    ("acme/app:v1", "acme/app:v1"),
    ("docker.io/library/a/b:1", "library/a/b:1"),
    ("10.77.0.1:5000/demo/webapp:v1", "10.77.0.1:5000/demo/webapp:v1"),
    ("registry.example.com/library/app:v1", "registry.example.com/library/app:v1"),
    ("localhost/app:v1", "localhost/app:v1"),
])
def test_familiar_name_is_how_docker_shows_a_reference(ref: str, shown: str) -> None:
    assert docker.familiar_name(ref) == shown
