"""Logging the servers in to the image registry: `registry.user` and the password from the
operator's environment (`registry.password_secret` names the variable), given to each
server's `docker login --password-stdin`, never on a command line. The server keeps the
login (its ~/.docker/config.json), as `docker login` by hand would."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from slotswap.config.inventory import Inventory
from slotswap.core.validation import InputError
from slotswap.remote.protocol import ServerLike

Progress = Callable[[str], None]
# What Docker (and the registries it talks to) say when a pull lacks credentials.
_NOT_LOGGED_IN = re.compile(r"unauthorized|authentication required|no basic auth credentials"
                            r"|denied: requested access|access to the resource is denied",
                            re.IGNORECASE)


class LoginError(RuntimeError):
    """`docker login` on a server failed."""


@dataclass(frozen=True)
class RegistryLogin:
    registry: str
    user: str
    password: str = field(repr=False)

    def covers(self, image_ref: str) -> bool:
        return image_ref.startswith(f"{self.registry}/")


def registry_of(image: str) -> str | None:
    """The registry an image reference names (`registry.example.com:5000/acme/app` ->
    `registry.example.com:5000`); None for Docker Hub."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def resolve(inventory: Inventory, environ: Mapping[str, str]) -> RegistryLogin | None:
    """The login, its password read from the operator's environment; a missing variable is
    bad input (checked before any server is contacted)."""
    settings = inventory.registry
    if settings is None:
        return None
    password = environ.get(settings.password_secret)
    if not password:
        raise InputError(f"{inventory.path}: registry.password_secret: "
                         f"{settings.password_secret} is not set in the environment of this "
                         "run; export it first (it is never read from the inventory)")
    return RegistryLogin(registry=login_registry(inventory), user=settings.user,
                         password=password)


def login_registry(inventory: Inventory) -> str:
    """The registry the servers log in to: `registry.server`, else the one `image` names."""
    settings = inventory.registry
    return (settings and settings.server) or registry_of(inventory.image) or "docker.io"


def login_command(login: RegistryLogin) -> list[str]:
    return ["docker", "login", "--username", login.user, "--password-stdin", login.registry]


def log_in(server: ServerLike, login: RegistryLogin, progress: Progress) -> None:
    result = server.run(login_command(login), check=False, stdin=login.password, timeout=60)
    if not result.ok:
        reason = (result.stderr.strip().splitlines() or ["no error output"])[-1]
        raise LoginError(f"{server.name}: docker login to {login.registry} as {login.user} "
                         f"failed: {reason}")
    progress(f"logged in to {login.registry} as {login.user}")


def pull_hint(stderr: str, image_ref: str) -> str:
    """What to add to a failed pull's message when the registry wanted a login."""
    if not _NOT_LOGGED_IN.search(stderr):
        return ""
    registry = registry_of(image_ref) or "Docker Hub"
    return (f"; the server is not logged in to {registry}: set registry.user and "
            "registry.password_secret in the inventory (or run `docker login` on the server)")
