"""An image archive from `docker image save`, and the smaller copy of it a server needs.

A release usually changes the top layers of an image and keeps the ones below (the OS, the
runtime, the dependencies). `docker image load` skips a layer the server's Docker already
has: it looks the layer up by its chain (the layer and every layer below it) before it
reads the layer's file from the archive. So the layers at the bottom of the image that the
server already has, in the same order, need not be sent at all. That is how the classic
image store loads (seen with Docker 20.10 in the sandbox). A Docker that wants every file
anyway (the containerd image store may) refuses the smaller archive; the caller then sends
the whole one.

Both archive formats name their layers in `manifest.json`: `<id>/layer.tar` (Docker before
25) and `blobs/sha256/<digest>` (Docker 25 and later, OCI layout).
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"


class ArchiveError(ValueError):
    """The archive is not what `docker image save` writes."""


@dataclass(frozen=True)
class ArchiveLayer:
    diff_id: str  # sha256 of the layer's uncompressed tar, as in the image config's rootfs
    path: str  # the layer's file in the archive
    size: int  # bytes of that file


@dataclass(frozen=True)
class ImageArchive:
    path: Path
    size: int
    layers: tuple[ArchiveLayer, ...]  # bottom layer first
    repo_tags: tuple[str, ...]  # the names `docker image load` gives the image

    def skipped_paths(self, count: int) -> set[str]:
        """The files left out with the `count` bottom layers (a file an upper layer also
        names stays)."""
        kept = {layer.path for layer in self.layers[count:]}
        return {layer.path for layer in self.layers[:count]} - kept


def read_archive(path: Path) -> ImageArchive:
    """The layers of the one image in an archive `docker image save` wrote."""
    try:
        with tarfile.open(path, "r:") as archive:
            members = {member.name: member for member in archive.getmembers()}
            manifest = json.loads(_read(archive, members, MANIFEST))
            if not isinstance(manifest, list) or len(manifest) != 1:
                raise ArchiveError(f"{MANIFEST} should list one image")
            entry = manifest[0]
            config = json.loads(_read(archive, members, entry["Config"]))
            diff_ids = config["rootfs"]["diff_ids"]
            paths = entry["Layers"]
            repo_tags = tuple(entry.get("RepoTags") or ())
    except (OSError, tarfile.TarError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ArchiveError(f"{path} is not an image archive: {error}") from error
    if len(diff_ids) != len(paths):
        raise ArchiveError(f"{path}: {len(paths)} layer files for {len(diff_ids)} layers")
    layers = []
    for diff_id, layer_path in zip(diff_ids, paths, strict=True):
        member = members.get(layer_path)
        if member is None or not member.isfile():
            raise ArchiveError(f"{path}: layer file {layer_path} is missing")
        layers.append(ArchiveLayer(diff_id, layer_path, member.size))
    return ImageArchive(path, path.stat().st_size, tuple(layers), repo_tags)


def _read(archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(name)
    extracted = archive.extractfile(member) if member is not None else None
    if extracted is None:
        raise ArchiveError(f"no file {name}")
    return extracted.read()


def layers_already_there(diff_ids: list[str], server_images: list[list[str]]) -> int:
    """How many bottom layers of an image the server has, in the same order: the longest
    start that the image shares with one of the server's images."""
    best = 0
    for layers in server_images:
        shared = 0
        for ours, theirs in zip(diff_ids, layers, strict=False):
            if ours != theirs:
                break
            shared += 1
        best = max(best, shared)
    return best


def write_without_layers(archive: ImageArchive, count: int, target: Path) -> Path:
    """A copy of the archive without the files of its `count` bottom layers."""
    skipped = archive.skipped_paths(count)
    with tarfile.open(archive.path) as source, tarfile.open(target, "w") as copy:
        for member in source:
            if member.name in skipped:
                continue
            copy.addfile(member, source.extractfile(member) if member.isfile() else None)
    return target
