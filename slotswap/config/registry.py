"""The `registry` section: the login the servers pull the app's image with."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slotswap.config import values
from slotswap.config.env import name_problem


@dataclass(frozen=True)
class RegistrySettings:
    """A login the servers use to pull the app's image: the password is read from the
    operator's environment variable `password_secret` (see slotswap.server.registry_login)."""

    user: str
    password_secret: str
    server: str | None = None  # None: the registry the `image` names


REGISTRY_KEYS = ("server", "user", "password_secret")


def parse_registry(value: object) -> RegistrySettings | None:
    if value is None:
        return None
    section = values.mapping(value, "registry", REGISTRY_KEYS, required=("user", "password_secret"))
    user = values.string(section["user"], "registry.user", "a registry user name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}", user):
        raise values.Invalid("registry.user", f"expected a user name, got {values.describe(user)}")
    secret = section["password_secret"]
    problem = name_problem(secret)
    if problem is not None:
        raise values.Invalid("registry.password_secret", problem)
    server = None
    if section.get("server") is not None:
        server = values.string(section["server"], "registry.server", "a registry host[:port]")
        if not values.HEADER_HOST.fullmatch(server):
            raise values.Invalid("registry.server", "expected a registry host[:port] such as "
                           f"registry.example.com:5000, got {values.describe(server)}")
    return RegistrySettings(user=user, password_secret=str(secret), server=server)
