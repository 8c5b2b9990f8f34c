"""`build`: the app image built on this machine's Docker, for the servers' platform, and pushed
to its registry (never with `delivery: ssh`: deploys stream it)."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

from invoke import Context
from invoke.exceptions import Exit

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.core.output import say
from slotswap.core.validation import validate_tag
from slotswap.server import platforms


def default_tag(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M")


def build_image(c: Context, inv: Inventory, tag: str | None, *, push: bool) -> None:
    """docker build --build-arg VERSION=TAG (TAG: default_tag() when None), checked for the
    platform asked, then pushed."""
    if push and inv.delivery.mode == "ssh":
        say("delivery: ssh in the inventory: not pushing (deploys send the image over SSH)")
        push = False
    tag = validate_tag(tag) if tag is not None else default_tag()
    image_ref = inv.image_ref(tag)
    platform, why = platforms.for_build(inv)
    say(f"building {image_ref} (tag {tag}) from {inv.build.context} for "
        f"{platform or 'this machine'} ({why})")
    argv = docker.build(image_ref, tag, str(inv.build.dockerfile), str(inv.build.context),
                        platform=platform, args=inv.build.args)
    built = c.run(shlex.join(argv), warn=True, pty=False)  # shown as it runs, and kept
    if not built.ok:
        raise Exit("error: " + platforms.build_failure(built.stdout + built.stderr, platform,
                                                       image_ref), code=1)
    if platform:
        made = c.run(shlex.join(docker.image_platform(image_ref)), warn=True, hide=True,
                     pty=False)
        wrong = platforms.built_for_another(made.stdout if made.ok else "", platform)
        if wrong:
            raise Exit(f"error: {wrong}", code=1)
    if push:
        say(f"pushing {image_ref}")
        if not c.run(shlex.join(docker.push(image_ref)), warn=True, pty=False).ok:
            raise Exit(f"error: docker push of {image_ref} failed", code=1)
    say(f"built{' and pushed' if push else ''} {image_ref}")
    say(f"tag: {tag}")
