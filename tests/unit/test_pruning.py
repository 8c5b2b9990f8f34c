"""Which old images a deploy removes (slotswap.server.pruning), from `docker image ls` answers."""

from __future__ import annotations

import json

from slotswap.commands.docker import ImageInfo, parse_image_list
from slotswap.server.pruning import images_to_prune

REPO = "10.77.0.1:5000/demo/webapp"


def image(tag: str, image_id: str, created: str) -> ImageInfo:
    return ImageInfo(REPO, tag, f"sha256:{image_id}", f"2026-11-26 {created} +0000 UTC")


V1 = image("v1", "aaa", "10:00:00")
V2 = image("v2", "bbb", "10:05:00")
V3 = image("v3", "ccc", "10:10:00")
V4 = image("v4", "ddd", "10:15:00")


def tags(images: list[ImageInfo]) -> list[str]:
    return [i.tag for i in images]


def test_the_newest_are_kept_and_the_older_ones_go() -> None:
    assert tags(images_to_prune([V1, V2, V3, V4], set(), keep=2)) == ["v2", "v1"]


def test_images_in_use_are_kept_first_however_old() -> None:
    # v1 is live again after a rollback, v4 is kept stopped: both stay, and only one more.
    doomed = images_to_prune([V1, V2, V3, V4], {V1.image_id, V4.image_id}, keep=3)
    assert tags(doomed) == ["v2"]


def test_more_images_in_use_than_keep_removes_none_of_them() -> None:
    in_use = {V1.image_id, V2.image_id, V3.image_id}
    assert tags(images_to_prune([V1, V2, V3, V4], in_use, keep=2)) == ["v4"]


def test_tags_of_one_image_count_once_and_go_together() -> None:
    latest = image("latest", "aaa", "10:00:00")
    assert tags(images_to_prune([V1, latest, V2, V3], set(), keep=2)) == ["v1", "latest"]


def test_nothing_to_prune() -> None:
    assert images_to_prune([V1, V2], {V2.image_id}, keep=3) == []
    assert images_to_prune([], set(), keep=2) == []


def test_parse_image_list_reads_docker_json_lines_and_leaves_out_untagged_images() -> None:
    lines = [
        {"Containers": "N/A", "CreatedAt": "2026-11-26 10:17:09 +0000 UTC",
         "CreatedSince": "2 minutes ago", "Digest": "<none>",
         "ID": "sha256:5b1c", "Repository": REPO, "SharedSize": "N/A", "Size": "4.5MB",
         "Tag": "v2", "UniqueSize": "N/A", "VirtualSize": "4.502MB"},
        {"Containers": "N/A", "CreatedAt": "2026-11-26 10:16:58 +0000 UTC",
         "CreatedSince": "2 minutes ago", "Digest": "<none>",
         "ID": "sha256:77aa", "Repository": REPO, "SharedSize": "N/A", "Size": "4.5MB",
         "Tag": "<none>", "UniqueSize": "N/A", "VirtualSize": "4.502MB"},
    ]
    parsed = parse_image_list("\n".join(json.dumps(line) for line in lines) + "\n")
    assert parsed == [ImageInfo(REPO, "v2", "sha256:5b1c", "2026-11-26 10:17:09 +0000 UTC")]
    assert parsed[0].ref == f"{REPO}:v2"
    assert parsed[0].created.isoformat() == "2026-11-26T10:17:09+00:00"
