"""Images on a server: the one a deploy or `up` needs made sure of (pulled, or refreshed
when a tag may have been pushed again), and the registry login that pulls it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.layout import ProxyError
from slotswap.remote.protocol import ServerLike
from slotswap.server import registry_login
from slotswap.server.registry_login import LoginError, RegistryLogin, log_in, pull_hint

Progress = Callable[[str], None]


def ensure_image(server: ServerLike, image_ref: str, progress: Progress, *,
                 refresh: bool = False, login: RegistryLogin | None = None,
                 allow_stale: bool = False) -> str | None:
    """Make sure image_ref is on the server; return its image ID when it was pulled (what
    the registry names image_ref now), else None. With refresh, pull even when a copy is
    there (a tag pushed again must not leave servers on its old content). A copy already
    there that cannot be refreshed (the registry unreachable, the login refused) may be an
    older push of the tag: that is this server's failure, unless `allow_stale` (then a
    warning). With `login`, the server logs in to that registry before it pulls from it."""
    if not refresh and server.run(docker.image_id(image_ref), check=False).ok:
        return None

    def has_copy() -> bool:  # asked only when the pull failed: the question is then stale
        return refresh and server.run(docker.image_id(image_ref), check=False).ok

    try:
        if login is not None and login.covers(image_ref):
            log_in(server, login, progress)
    except LoginError as error:
        return refuse_stale(server, str(error), has_copy(), allow_stale, progress)
    progress(f"pulling {image_ref}")
    result = server.run(docker.pull_and_id(image_ref), check=False, timeout=900)
    if result.ok:
        return result.stdout.strip() or None
    reason = (result.stderr.strip().splitlines() or ["no error output"])[-1]
    return refuse_stale(server, f"cannot pull {image_ref}: {reason}"
                        f"{pull_hint(result.stderr, image_ref)}", has_copy(), allow_stale,
                        progress)


def refuse_stale(server: ServerLike, why: str, present: bool, allow_stale: bool,
                 progress: Progress) -> None:
    """The server has a copy of image_ref that could not be refreshed (`why`): deployed only
    with --allow-stale; else the server's failure, before anything moves anywhere."""
    why = why.removeprefix(f"{server.name}: ")
    if not present:
        raise ProxyError(f"{server.name}: {why}")
    if allow_stale:
        progress(f"WARNING: {why}; deploying the copy on the server, which may be an older "
                 "push of that tag (--allow-stale)")
        return None
    raise StaleImageError(f"{server.name}: {why}; its copy of that tag may be an older push, "
                          "so it is not deployed (--allow-stale deploys it anyway)")


class StaleImageError(ProxyError):
    """The server has the tag, but could not make sure it is the registry's (the registry could
    not be reached, or refused the login), and --allow-stale was not given."""


def log_in_to_registry(server: ServerLike, inventory: Inventory, progress: Progress) -> None:
    """With `registry` in the inventory, `up` logs the server in whatever it pulls itself, so
    that the first deploy's pull of the app's image finds the login there."""
    login = registry_login.resolve(inventory, os.environ)
    if login is None:
        return
    try:
        log_in(server, login, progress)
    except LoginError as error:
        raise ProxyError(str(error)) from error
