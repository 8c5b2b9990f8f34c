"""The inventory (hosts.yaml) as the kit uses it: the `Inventory` model, one field per
top-level key (each section's class is in its own module: slotswap.config.ssh, ...), and the
names it derives (containers, slots' ports, the kit's folders on a server). Reading and
checking the file: slotswap.config.loader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from slotswap.config.build import BuildSettings
from slotswap.config.container import ContainerSettings, ReleaseSettings
from slotswap.config.delivery import DeliverySettings
from slotswap.config.env import EnvSettings
from slotswap.config.haproxy import CHECK_PORT_OFFSET, HaproxySettings
from slotswap.config.healthcheck import HealthcheckSettings
from slotswap.config.hooks import HookSettings
from slotswap.config.hosts import Host
from slotswap.config.https import HttpsSettings
from slotswap.config.registry import RegistrySettings
from slotswap.config.ssh import SshSettings
from slotswap.config.timeouts import Timeouts, WatchSettings
from slotswap.core.validation import InputError, validate_tag

__all__ = [
    "DEFAULT_KEEP_IMAGES",
    "FROM_SERVER",
    "MIN_KEEP_IMAGES",
    "SLOTS",
    "Inventory",
    "InventoryError",
]

class InventoryError(InputError):
    """The inventory file is missing, unreadable or invalid; `key` is the key path of the
    problem (e.g. ``hosts[0].port``) when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


SLOTS = ("web1", "web2")


# App images kept on each server after a deploy: the live one and the previous one (which a
# rollback starts without pulling) at least.
MIN_KEEP_IMAGES = 2


DEFAULT_KEEP_IMAGES = 3


# Where the kit keeps its files on a server when the inventory sets no remote_dir: state
# (locks, history) and config (HAProxy's config, the env files), each in a folder per app.
DEFAULT_STATE_ROOT = "/var/lib/slotswap"


DEFAULT_CONFIG_ROOT = "/etc/slotswap"


# A login that is not root, with no remote_dir, keeps them in this folder of its home (found
# on the server): <home>/.slotswap/<app>/state and .../config, as remote_dir would.
HOME_FOLDER = ".slotswap"


# Metadata of an Inventory field that the server, not the file, gives.
FROM_SERVER = "from_server"


@dataclass(frozen=True)
class Inventory:
    path: Path  # absolute path of the file it came from
    app: str
    image: str  # repository without tag
    build: BuildSettings
    app_port: int
    healthcheck: HealthcheckSettings
    ssh: SshSettings
    haproxy: HaproxySettings
    timeouts: Timeouts
    hosts: tuple[Host, ...]
    env: EnvSettings = field(default_factory=EnvSettings)
    keep_images: int = DEFAULT_KEEP_IMAGES  # app images kept on each server, in use included
    hooks: HookSettings = field(default_factory=HookSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    https: HttpsSettings | None = None  # None: plain HTTP only
    # A folder on the servers for all the kit's files; None: the system folders
    # DEFAULT_STATE_ROOT and DEFAULT_CONFIG_ROOT for root, HOME_FOLDER in the home of any
    # other login (login_home).
    remote_dir: str | None = None
    # Not a key of the file (FROM_SERVER): the home of the SSH login on one server when that
    # login is not root, as the server says (Server.with_folders sets it); None for root.
    login_home: str | None = field(default=None, metadata={FROM_SERVER: True})
    container: ContainerSettings = field(default_factory=ContainerSettings)
    release: ReleaseSettings = field(default_factory=ReleaseSettings)
    registry: RegistrySettings | None = None
    watch: WatchSettings = field(default_factory=WatchSettings)

    @property
    def kit_dir(self) -> str | None:
        """The folder of the kit's files on a server (remote_dir, else the non-root login's
        <home>/.slotswap); None: root's system folders."""
        if self.remote_dir is not None:
            return self.remote_dir
        return None if self.login_home is None else f"{self.login_home}/{HOME_FOLDER}"

    @property
    def state_dir(self) -> str:
        """The app's state on a server: its lock and history (kept by `fab down`)."""
        if self.kit_dir is None:
            return f"{DEFAULT_STATE_ROOT}/{self.app}"
        return f"{self.kit_dir}/{self.app}/state"

    @property
    def config_dir(self) -> str:
        """The app's config on a server: HAProxy's config and the slots' env files (removed
        by `fab down`); a folder only the login can open."""
        if self.kit_dir is None:
            return f"{DEFAULT_CONFIG_ROOT}/{self.app}"
        return f"{self.kit_dir}/{self.app}/config"

    def image_ref(self, tag: str) -> str:
        """The full image reference for ``tag``, e.g. ``registry:5000/acme/webapp:v1``."""
        return f"{self.image}:{validate_tag(tag)}"

    def container_name(self, slot: str) -> str:
        """The container name of ``slot``, which must be one of SLOTS."""
        if slot not in SLOTS:
            raise InputError(f"unknown slot {slot!r}: expected one of {', '.join(SLOTS)}")
        return f"{self.app}-{slot}"

    def slot_port(self, slot: str) -> int:
        """The port of the server's loopback on which HAProxy reaches ``slot``'s container."""
        self.container_name(slot)  # the slot's name checked
        return self.haproxy.slot_ports[SLOTS.index(slot)]

    def slot_check_port(self, slot: str) -> int | None:
        """With healthcheck.port, the loopback port on which HAProxy checks ``slot``."""
        if self.healthcheck.port is None:
            return None
        return self.slot_port(slot) + CHECK_PORT_OFFSET

    def slot_published_ports(self, slot: str) -> tuple[tuple[int, int], ...]:
        """(server port, container port) pairs of ``slot`` on the server's loopback: the
        app's port, and the health check's when it has one of its own."""
        pairs = [(self.slot_port(slot), self.app_port)]
        check_port = self.slot_check_port(slot)
        if check_port is not None and self.healthcheck.port is not None:
            pairs.append((check_port, self.healthcheck.port))
        return tuple(pairs)

    @property
    def secret_variables(self) -> tuple[str, ...]:
        """Every variable of the operator's environment that holds a secret: the app's
        (env.secret) and each one a `*_secret` setting names (the registry's password, a
        certificate's chain and key). What a hook must never inherit. Found by walking the
        settings, so that a `*_secret` setting added later is in it from the start."""
        return tuple(dict.fromkeys([*self.env.secret, *_named_secrets(self)]))

    @property
    def network(self) -> str:
        return self.app

    @property
    def haproxy_container(self) -> str:
        return f"{self.app}-haproxy"


def _named_secrets(settings: object) -> Iterator[str]:
    """The values of every `*_secret` field in a tree of settings (dataclasses, tuples)."""
    if isinstance(settings, tuple):
        for item in settings:
            yield from _named_secrets(item)
        return
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return
    for setting in dataclasses.fields(settings):
        value = getattr(settings, setting.name)
        if setting.name.endswith("_secret") and isinstance(value, str):
            yield value
        else:
            yield from _named_secrets(value)
