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
from typing import ClassVar

from slotswap.config import kinds
from slotswap.config.build import BuildSettings, parse_build
from slotswap.config.container import (
    ContainerSettings,
    ReleaseSettings,
    parse_container,
    parse_release,
)
from slotswap.config.delivery import DELIVERY, DeliverySettings
from slotswap.config.env import EnvSettings, parse_env
from slotswap.config.fields import setting
from slotswap.config.haproxy import CHECK_PORT_OFFSET, HaproxySettings, parse_haproxy
from slotswap.config.healthcheck import HealthcheckSettings, parse_healthcheck
from slotswap.config.hooks import HookSettings, parse_hooks
from slotswap.config.hosts import HOSTS, Host
from slotswap.config.https import HTTPS, NAMES, HttpsSettings
from slotswap.config.registry import RegistrySettings, parse_registry
from slotswap.config.roles import ROLES, RoleSettings, role_secret_names
from slotswap.config.ssh import SshSettings, parse_ssh
from slotswap.config.timeouts import Timeouts, WatchSettings, parse_timeouts, parse_watch
from slotswap.core.validation import (
    InputError,
    validate_app_name,
    validate_image_repository,
    validate_remote_dir,
    validate_tag,
)

__all__ = [
    "DEFAULT_KEEP_IMAGES",
    "FROM_SERVER",
    "MIN_KEEP_IMAGES",
    "SHARED_KEYS",
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
# The keys of a server's shared HAProxy (several apps on one server, docs/apps-design.md),
# as `section.key`: the server's, not an app's. One app's inventory on a server sets them;
# the others use what the server records (slotswap.server.proxy_registry).
SHARED_KEYS = ("haproxy.image", "haproxy.http_port", "https.port", "haproxy.trusted_proxies")
# Metadata of an Inventory field that the server, not the file, gives.
FROM_SERVER = "from_server"
# Metadata of an Inventory field that tells how the file is written, not a key of it.
FROM_FILE_SHAPE = "from_file_shape"


@dataclass(frozen=True)
class Inventory:
    # The file's keys in the order the reference hosts.yaml lists them.
    KEYS: ClassVar[tuple[str, ...]] = (
        "app", "image", "build", "app_port", "healthcheck", "env", "ssh", "haproxy", "timeouts",
        "keep_images", "hooks", "hosts", "delivery", "https", "names", "remote_dir", "container",
        "release", "registry", "watch", "roles")

    path: Path  # absolute path of the file it came from
    app: str = setting(kinds.checked(validate_app_name, "an app name"), required=True,
                       description="Names the Docker network, the containers (<app>-web1, "
                       "<app>-web2, <app>-haproxy) and HAProxy's backend.")
    image: str = setting(  # repository without tag
        kinds.checked(validate_image_repository, "an image repository without tag"),
        required=True, description="Image repository without tag; tasks add :TAG.")
    build: BuildSettings = kinds.section_setting(BuildSettings, parse_build,
                                    "For `build`: relative to the inventory's folder.")
    app_port: int = setting(kinds.PORT, file_default=3000, description="Port the app listens "
                            "on inside its container (given to it as PORT).")
    healthcheck: HealthcheckSettings = kinds.section_setting(HealthcheckSettings, parse_healthcheck)
    ssh: SshSettings = kinds.section_setting(SshSettings, parse_ssh)
    haproxy: HaproxySettings = kinds.section_setting(HaproxySettings, parse_haproxy)
    timeouts: Timeouts = kinds.section_setting(Timeouts, parse_timeouts)
    hosts: tuple[Host, ...] = setting(HOSTS, required=True)
    env: EnvSettings = kinds.section_setting(EnvSettings, parse_env, default=True)
    keep_images: int = setting(  # app images kept on each server, in use included
        kinds.integer(MIN_KEEP_IMAGES, 1000), DEFAULT_KEEP_IMAGES)
    hooks: HookSettings = kinds.section_setting(HookSettings, parse_hooks, default=True)
    delivery: DeliverySettings = setting(DELIVERY, factory=DeliverySettings, blank="null")
    https: HttpsSettings | None = setting(  # None: plain HTTP only
        HTTPS, None, blank="null", description="HTTPS on every server: HAProxy terminates TLS "
        "with one certificate for all the names, from files or from an ACME CA; replaced with "
        "no reload.")
    names: tuple[str, ...] = setting(
        NAMES, (), blank="null", file_default=None,
        description="With haproxy.shared and no https section: the host names routed to "
        "this app (exact, or *.example.com for one label). An HTTPS app's are https.names.")
    # A folder on the servers for all the kit's files; None: the system folders
    # DEFAULT_STATE_ROOT and DEFAULT_CONFIG_ROOT for root, HOME_FOLDER in the home of any
    # other login (login_home).
    remote_dir: str | None = setting(
        kinds.checked(validate_remote_dir, "an absolute folder path on the servers",
                      {"type": ["string", "null"], "pattern": "^/"}),
        None, blank="null", description="A folder on the servers for the kit's files "
        "(<app>/state and <app>/config), instead of the login's own. Default: "
        f"{DEFAULT_STATE_ROOT}/<app> and {DEFAULT_CONFIG_ROOT}/<app> for root, "
        f"~/{HOME_FOLDER}/<app> in the home of any other login (a user in the docker group). "
        "Changing it (or the login) makes the next `up` carry each server over.")
    # Not a key of the file (FROM_SERVER): the home of the SSH login on one server when that
    # login is not root, as the server says (Server.with_folders sets it); None for root.
    login_home: str | None = field(default=None, metadata={FROM_SERVER: True})
    # Not a key of the file (FROM_FILE_SHAPE): which of the server's shared settings
    # (SHARED_KEYS: haproxy.image, ...) the file writes itself,
    # as `section.key`. On a server's shared HAProxy, one app's inventory sets them.
    shared_keys_written: tuple[str, ...] = field(default=(), metadata={FROM_FILE_SHAPE: True})
    container: ContainerSettings = kinds.section_setting(
        ContainerSettings, parse_container,
        "Options of the app's containers (both slots, the release command, exec).",
        default=True)
    release: ReleaseSettings = kinds.section_setting(
        ReleaseSettings, parse_release, "A command run once per deploy in a one-off container "
        "of the new image, on the first server, before any traffic moves (database "
        "migrations).", default=True)
    registry: RegistrySettings | None = setting(
        kinds.section(RegistrySettings, parse_registry, optional=True), None, blank="null",
        description="A login the servers use to pull the app's image (docker login "
        "--password-stdin on each server).")
    watch: WatchSettings = kinds.section_setting(
        WatchSettings, parse_watch,
        "How new slots are watched after their switch, for timeouts.watch seconds.",
        default=True)
    roles: tuple[RoleSettings, ...] = setting(
        ROLES, (), blank="null", file_default=None,
        description="The app's other processes (queue workers, schedulers): each a command "
        "of the app's image in containers of its own, deployed, watched and rolled back with "
        "the web slots. Default: none.")

    @property
    def route_names(self) -> tuple[str, ...]:
        """The host names the shared HAProxy routes to this app: https.names, or names."""
        return self.https.names if self.https is not None else self.names

    @property
    def route_names_key(self) -> str:
        """The key that holds them, as an error names it."""
        return "https.names" if self.https is not None else "names"

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
        """Every variable of the operator's environment that holds a secret: the app's and
        the roles' (env_secrets) and each one a `*_secret` setting names (the registry's
        password, a certificate's chain and key). What a hook must never inherit. Found by
        walking the settings, so that a `*_secret` setting added later is in it from the
        start."""
        return tuple(dict.fromkeys([*self.env_secrets, *_named_secrets(self)]))

    @property
    def env_secrets(self) -> tuple[str, ...]:
        """The variables read as secrets into the containers' environment: env.secret and
        each role's env.secret."""
        return tuple(dict.fromkeys([*self.env.secret, *role_secret_names(self.roles)]))

    @property
    def web_hosts(self) -> tuple[Host, ...]:
        """The hosts that run the web slots and HAProxy (all but those with web: false)."""
        return tuple(host for host in self.hosts if host.web)

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
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if item.name.endswith("_secret") and isinstance(value, str):
            yield value
        else:
            yield from _named_secrets(value)
