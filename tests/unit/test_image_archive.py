"""slotswap.fleet.image_archive on a real `docker image save` archive (fixtures/README.md) and on
archives in the OCI layout Docker 25 and later writes."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from slotswap.fleet.image_archive import (
    ArchiveError,
    layers_already_there,
    read_archive,
    write_without_layers,
)
from tests.unit.fake_server import FIXTURES

TWO_LAYERS = FIXTURES / "docker_save_two_layers.tar"
BASE = "sha256:7621f14b9acb5cc46d2ee1ca665d1596f26bd756ebb61a024dd4fccd3dfdfb9a"
APP = "sha256:0fc7870c0df5875c775815e0190d950c2c1b76bc0281a652f318428ab9f97d0f"


def names_in(path: Path) -> list[str]:
    with tarfile.open(path) as archive:
        return archive.getnames()


def test_a_saved_archive_lists_its_layers_bottom_first_with_their_files() -> None:
    archive = read_archive(TWO_LAYERS)
    assert [layer.diff_id for layer in archive.layers] == [BASE, APP]
    assert [layer.path for layer in archive.layers] == [
        "5c953ad69e38297a57b182997ddf137ba0054428dd863bf41d7666a5ff3babff/layer.tar",
        "63336a5893d5b3ea2ae5fb946327d18b8f5e1b28e3b93a2ec919f0b8c7f0d48d/layer.tar"]
    assert [layer.size for layer in archive.layers] == [2048, 2048]
    assert archive.repo_tags == ("fixture/app:v1",)
    assert archive.size == TWO_LAYERS.stat().st_size


@pytest.mark.parametrize(("server_images", "expected"), [
    ([], 0),
    ([[APP]], 0),  # the same layer on another base is another layer chain
    ([[BASE]], 1),
    ([["sha256:other"], [BASE, "sha256:other"]], 1),
    ([[BASE, APP]], 2),
    ([[BASE, APP, "sha256:more"]], 2),  # an image built on top of this one
    ([[BASE], [BASE, APP]], 2),
])
def test_the_layers_already_there_are_the_longest_shared_start(
        server_images: list[list[str]], expected: int) -> None:
    assert layers_already_there([BASE, APP], server_images) == expected


def test_the_smaller_archive_leaves_out_the_bottom_layers_files_only(tmp_path: Path) -> None:
    archive = read_archive(TWO_LAYERS)
    smaller = write_without_layers(archive, 1, tmp_path / "smaller.tar")
    left_out = archive.layers[0].path
    assert names_in(smaller) == [name for name in names_in(TWO_LAYERS) if name != left_out]
    with tarfile.open(smaller) as copy, tarfile.open(TWO_LAYERS) as source:
        for name in copy.getnames():
            original, copied = source.extractfile(name), copy.extractfile(name)
            if original is not None and copied is not None:
                assert copied.read() == original.read(), name
    # What is left is still an archive of the same image, with the same layer list.
    assert read_archive_manifest(smaller) == read_archive_manifest(TWO_LAYERS)


def read_archive_manifest(path: Path) -> object:
    with tarfile.open(path) as archive:
        manifest = archive.extractfile("manifest.json")
        assert manifest is not None
        return json.loads(manifest.read())


def oci_archive(path: Path, layer_contents: list[bytes]) -> Path:
    """An archive laid out as Docker 25+ writes it: layers under blobs/sha256/<digest>."""
    import hashlib

    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    diff_ids = [f"sha256:{digest(data)}" for data in layer_contents]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    files = {f"blobs/sha256/{digest(data)}": data for data in layer_contents}
    files[f"blobs/sha256/{digest(config)}"] = config
    files["manifest.json"] = json.dumps([{
        "Config": f"blobs/sha256/{digest(config)}", "RepoTags": ["r/app:v2"],
        "Layers": [f"blobs/sha256/{digest(data)}" for data in layer_contents]}]).encode()
    files["index.json"] = b"{}"
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def test_an_oci_layout_archive_is_read_the_same_way(tmp_path: Path) -> None:
    archive = read_archive(oci_archive(tmp_path / "oci.tar", [b"base" * 100, b"app" * 10]))
    assert [layer.size for layer in archive.layers] == [400, 30]
    assert all(layer.path.startswith("blobs/sha256/") for layer in archive.layers)
    assert archive.repo_tags == ("r/app:v2",)
    smaller = write_without_layers(archive, 1, tmp_path / "smaller.tar")
    assert archive.layers[0].path not in names_in(smaller)
    assert archive.layers[1].path in names_in(smaller)


def test_a_file_an_upper_layer_also_names_is_kept(tmp_path: Path) -> None:
    # Two layers with the same content share one blob in the OCI layout.
    archive = read_archive(oci_archive(tmp_path / "oci.tar", [b"same", b"app", b"same"]))
    assert archive.layers[0].path == archive.layers[2].path
    assert archive.skipped_paths(2) == {archive.layers[1].path}
    assert archive.layers[0].path in names_in(write_without_layers(archive, 2,
                                                                   tmp_path / "smaller.tar"))


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is not an image archive"),
    (b"not a tar file" * 100, "is not an image archive"),
])
def test_what_is_not_an_archive_is_said_so(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "image.tar"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match=message):
        read_archive(path)


def test_an_archive_missing_a_layer_file_is_refused(tmp_path: Path) -> None:
    archive = read_archive(TWO_LAYERS)
    smaller = write_without_layers(archive, 1, tmp_path / "smaller.tar")
    with pytest.raises(ArchiveError, match=f"layer file {archive.layers[0].path} is missing"):
        read_archive(smaller)
