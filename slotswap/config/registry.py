"""The `registry` section: the login the servers pull the app's image with."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting

_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}")


def _user(value: object, key: str, _: Context) -> str:
    return values.matching(value, key, _USER, "a registry user name", "a user name")


def _server(value: object, key: str, _: Context) -> str:
    return values.matching(value, key, values.HEADER_HOST, "a registry host[:port]",
                           "a registry host[:port] such as registry.example.com:5000")


@dataclass(frozen=True)
class RegistrySettings:
    """A login the servers use to pull the app's image: the password is read from the
    operator's environment variable `password_secret` (see slotswap.server.registry_login)."""

    KEYS: ClassVar[tuple[str, ...]] = ("server", "user", "password_secret")

    user: str = setting(Kind(_user, {"type": "string"}), required=True)
    password_secret: str = setting(
        kinds.ENV_NAME, required=True, description="The environment variable of the deploying "
        "operator that holds the password.")
    server: str | None = setting(  # None: the registry the `image` names
        Kind(_server, {"type": "string"}), None, blank="null",
        description="Default: the registry the image names.")


def parse_registry(section: dict[str, object], key: str, context: Context) -> RegistrySettings:
    return RegistrySettings(**parse_fields(RegistrySettings, section, key, context))
