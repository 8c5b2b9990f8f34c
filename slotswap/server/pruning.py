"""Old app images on a server: the newest `keep_images` stay (those the slots' containers use
always among them), older ones are removed so that disks do not fill up deploy after deploy.

Containers need no pruning: each slot holds one container, which the next deploy into that
slot replaces, so a server never has more than the live one and the previous one (stopped,
kept for a rollback that starts without pulling)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from slotswap.commands import docker
from slotswap.commands.docker import ImageInfo
from slotswap.config.inventory import Inventory
from slotswap.remote.protocol import ServerLike


def images_to_prune(images: Iterable[ImageInfo], in_use: set[str], keep: int) -> list[ImageInfo]:
    """Pure: the images beyond the `keep` newest, never one whose ID a container uses. Tags of
    one image ID count as one image and go together."""
    by_id: dict[str, list[ImageInfo]] = {}
    for image in images:
        by_id.setdefault(image.image_id, []).append(image)
    newest_first = sorted(by_id, key=lambda i: by_id[i][0].created, reverse=True)
    kept = [image_id for image_id in newest_first if image_id in in_use]
    for image_id in newest_first:
        if len(kept) >= keep:
            break
        if image_id not in kept:
            kept.append(image_id)
    return [image for image_id in newest_first if image_id not in kept
            for image in by_id[image_id]]


def prune_images(server: ServerLike, inventory: Inventory, progress: Callable[[str], None],
                 in_use: set[str]) -> None:
    """`in_use`: the image IDs of the slots' containers, as the swap's last check read them
    (Docker refuses to remove an image a container uses anyway)."""
    listed = docker.parse_image_list(server.run(docker.list_images(inventory.image)).stdout)
    doomed = images_to_prune(listed, in_use, inventory.keep_images)
    if not doomed:
        return
    server.run(docker.remove_images(*(image.ref for image in doomed)))
    progress(f"removed {len(doomed)} old images (keep_images: {inventory.keep_images}): "
             + ", ".join(image.tag for image in doomed))
