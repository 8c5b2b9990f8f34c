"""Every path and name the kit uses on a server, in one place: pure, from the inventory.

The app's two folders follow from remote_dir and the login's home, and are the inventory's
(`Inventory.state_dir`: the lock and the history, kept by `fab down`; `Inventory.config_dir`:
HAProxy's folder and the slots' env files), as are the names of the slots' and HAProxy's
containers and of the app's network. What the kit keeps in those folders, where HAProxy's
container sees them, and the names of the containers it runs for a while, are named here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from slotswap.config.inventory import DEFAULT_CONFIG_ROOT, DEFAULT_STATE_ROOT, Inventory
from slotswap.core.validation import InputError, validate_app_name

# -- inside HAProxy's container -------------------------------------------------------------
HAPROXY_CONFIG_DIR_INSIDE = "/usr/local/etc/haproxy"
# The folder of the admin socket, from the server's config folder; only HAProxy's container
# mounts it.
HAPROXY_ADMIN_DIR_INSIDE = "/run/slotswap-admin"
HAPROXY_ADMIN_SOCKET_NAME = "admin.sock"
# Where the carrier (see slotswap.server.carry_over) mounts the folders a server is carried over
# from: the admin socket's, the config's (read-only) and the state's.
PREVIOUS_ADMIN_DIR_INSIDE = "/run/slotswap-previous-admin"
PREVIOUS_CONFIG_DIR_INSIDE = "/etc/slotswap-previous"
PREVIOUS_STATE_DIR_INSIDE = "/var/lib/slotswap-previous"

# -- the state folder -----------------------------------------------------------------------
LOCK_NAME = "lock"
# In the lock directory, as the lock scripts of slotswap.server.locking write them: who holds
# it (with the token that tells runs apart), and the lease its holder keeps it for.
LOCK_OWNER_NAME = "owner.json"
LOCK_LEASE_NAME = "lease"
HISTORY_NAME = "history.jsonl"
# Beside the state folder while the state of the folders a server is carried over from is
# read (slotswap.server.carry_over).
CARRIED_SUFFIX = ".carried"

# -- the config folder ----------------------------------------------------------------------
# Beside the slots' env files (env_file_path): the release command's, release.env.
RELEASE_ENV_NAME = "release"
HAPROXY_FOLDER = "haproxy"

# -- HAProxy's folder in the config folder --------------------------------------------------
ADMIN_FOLDER = "admin"
CONFIG_NAME = "haproxy.cfg"
# The new config, written beside the running one and checked by HAProxy before it goes in.
NEW_CONFIG_NAME = f"{CONFIG_NAME}.new"
# The config kept while a new one is tried: put back when HAProxy does not start with it.
# Only ever a config HAProxy ran (see RUNNING_NAME): a file written and never applied is not.
PREVIOUS_NAME = f"{CONFIG_NAME}.prev"
# SHA-256 of the config HAProxy runs, written only once HAProxy was seen running with it:
# "unchanged" means the same as this, not merely the same as the file.
RUNNING_NAME = f"{CONFIG_NAME}.running-sha256"
# HAProxy's servers' state (which slot is in rotation), which it loads when it starts:
# written ahead of each line that moves traffic, after the kit's other changes
# (slotswap.server.haproxy_state), never removed.
STATE_NAME = "server-state"
MAP_NAME = "maintenance.map"
SERVICE_NAME = "maintenance.lua"
CERT_FOLDER = "certs"
CERT_NAME = "site.pem"
SOURCE_NAME = "site.source"
# The carrier's config, and the old admin socket it relays in this login's admin folder.
CARRIER_CONFIG = "carrier.cfg"
RELAY_SOCKET = "previous-admin.sock"

# -- containers the kit runs for a while ----------------------------------------------------
# The new HAProxy's name while both run, during a hand-over.
NEXT_SUFFIX = "-next"
CARRIER_SUFFIX = "-carrier"

# A unix socket's path must fit in sockaddr_un's sun_path (108 bytes with its NUL on Linux).
MAX_SOCKET_PATH_BYTES = 107


class ProxyError(RuntimeError):
    """HAProxy cannot be set up or reached on a server as the inventory asks. Defined here,
    the lowest place that raises it (an admin socket's path too long for a unix socket);
    the server layer's HAProxy set-up raises it for everything else."""


def lock_dir_in(state_dir: str) -> str:
    return f"{state_dir}/{LOCK_NAME}"


def lock_dir(inventory: Inventory) -> str:
    return lock_dir_in(inventory.state_dir)


def history_path_in(state_dir: str) -> str:
    return f"{state_dir}/{HISTORY_NAME}"


def history_path(inventory: Inventory) -> str:
    return history_path_in(inventory.state_dir)


def state_dir_beside(config: str, app: str) -> str | None:
    """The state folder the kit keeps beside an app's config folder: root's system folders,
    or <dir>/<app>/state beside <dir>/<app>/config (remote_dir, a login's home)."""
    if config == f"{DEFAULT_CONFIG_ROOT}/{app}":
        return f"{DEFAULT_STATE_ROOT}/{app}"
    if config.endswith(f"/{app}/config"):
        return f"{config.removesuffix('/config')}/state"
    return None


def env_file_path(inventory: Inventory, slot: str) -> str:
    """Where the env file of one slot lives on a server (a folder only its owner can open)."""
    return f"{inventory.config_dir}/{slot}.env"


def role_env_file_path(inventory: Inventory, role: str, generation: str) -> str:
    """The env file of one role's containers of one generation (a slot's name: web1, web2),
    beside the slots' (`<role>-<generation>.env` is never a slot's `<slot>.env`: a slot's
    name has no '-'). One per generation, as a slot has: writing the new one leaves the file
    of the containers still running untouched."""
    return f"{inventory.config_dir}/{role}-{generation}.env"


def haproxy_dir(inventory: Inventory) -> str:
    """The folder of the HAProxy that serves the app (its config, the maintenance map and
    service, the certificate), mounted read-only at HAPROXY_CONFIG_DIR_INSIDE: the app's own
    (own_haproxy_dir), or with haproxy.shared the shared one's (proxy_haproxy_dir)."""
    if inventory.haproxy.shared:
        return proxy_haproxy_dir(inventory)
    return own_haproxy_dir(inventory)


def own_haproxy_dir(inventory: Inventory) -> str:
    """The app's own HAProxy's folder (today's layout), whatever haproxy.shared says: what
    only that layout's `up`, `down` and carry-over create or remove."""
    return f"{inventory.config_dir}/{HAPROXY_FOLDER}"


def admin_dir(inventory: Inventory) -> str:
    """The admin socket's folder of the HAProxy that serves the app: the deploy login's,
    mode 0700 (with haproxy.shared, proxy_admin_dir)."""
    return f"{haproxy_dir(inventory)}/{ADMIN_FOLDER}"


def admin_socket_path(inventory: Inventory) -> str:
    return socket_in(admin_dir(inventory))


def socket_in(folder: str) -> str:
    """The admin socket's path in its folder, refused when too long for a unix socket."""
    path = f"{folder}/{HAPROXY_ADMIN_SOCKET_NAME}"
    if len(path.encode()) > MAX_SOCKET_PATH_BYTES:
        raise ProxyError(f"the admin socket's path {path} is longer than the "
                         f"{MAX_SOCKET_PATH_BYTES} bytes a unix socket's path may have")
    return path


def admin_socket_in_haproxy() -> str:
    return f"{HAPROXY_ADMIN_DIR_INSIDE}/{HAPROXY_ADMIN_SOCKET_NAME}"


def state_file_in_haproxy() -> str:
    """The server-state file HAProxy loads at start (the slots' state over a reload)."""
    return f"{HAPROXY_CONFIG_DIR_INSIDE}/{STATE_NAME}"


def map_path_in_haproxy() -> str:
    """The map of the app's own HAProxy (today's layout); the seam: maintenance_map_in_haproxy."""
    return f"{HAPROXY_CONFIG_DIR_INSIDE}/{MAP_NAME}"


def map_path_on_server(haproxy_folder: str) -> str:
    """The map in an app's own HAProxy's folder (today's layout), or in an app's folder of
    the shared one (AppFiles); the seam: maintenance_map_on_server."""
    return f"{haproxy_folder}/{MAP_NAME}"


def service_path_in_haproxy() -> str:
    return f"{HAPROXY_CONFIG_DIR_INSIDE}/{SERVICE_NAME}"


def service_path_on_server(haproxy_folder: str) -> str:
    return f"{haproxy_folder}/{SERVICE_NAME}"


def cert_path_on_server(haproxy_folder: str) -> str:
    return f"{haproxy_folder}/{CERT_FOLDER}/{CERT_NAME}"


def source_path_on_server(haproxy_folder: str) -> str:
    """Beside the certificate: where it came from (certificates.FILES_SOURCE, ...)."""
    return f"{haproxy_folder}/{CERT_FOLDER}/{SOURCE_NAME}"


def cert_path_in_haproxy() -> str:
    """The path HAProxy's config names (`crt`), and so the runtime API's name for it."""
    return f"{HAPROXY_CONFIG_DIR_INSIDE}/{CERT_FOLDER}/{CERT_NAME}"


def next_container(inventory: Inventory) -> str:
    """The new HAProxy's name while both run in a hand-over of the HAProxy that serves the
    app (`slotswap-proxy-next` with haproxy.shared)."""
    return f"{serving_haproxy(inventory)}{NEXT_SUFFIX}"


def own_next_container(inventory: Inventory) -> str:
    """The app's own HAProxy's new container in today's hand-over, whatever haproxy.shared
    says (as own_haproxy_dir)."""
    return f"{inventory.haproxy_container}{NEXT_SUFFIX}"


def carrier_name(inventory: Inventory) -> str:
    return f"{inventory.haproxy_container}{CARRIER_SUFFIX}"


# -- the shared HAProxy (several apps on one server, docs/apps-design.md, decision 1) ---------
# `_proxy` beside the apps' folders: '_' is refused in app names (validate_app_name), so no
# app's folders can be these.
PROXY_FOLDER = "_proxy"
PROXY_CONTAINER = "slotswap-proxy"
# Its container's labels: an app's HAProxy's role, marked shared, and no `slotswap.app`, so
# that no app's `down` (which removes its containers by that label) removes it. The keys are
# commands.docker's LABEL_ROLE and this one (layout is below commands).
LABEL_SHARED = "slotswap.shared"
PROXY_LABELS = (("slotswap.role", "haproxy"), (LABEL_SHARED, "1"))
# In the shared state folder: the proxy lock (LOCK_NAME), each app's registration, the
# shared settings running and their owner.
REGISTRATIONS_FOLDER = "apps"
REGISTRATION_SUFFIX = ".json"
SETTINGS_NAME = "settings.json"
# In the shared HAProxy's folder: each app's files, written only under that app's lock.
PROXY_APPS_FOLDER = "apps"
FRAGMENT_NAME = "backend.cfg"
FALLBACK_CERT_NAME = "fallback.pem"
# A generation: the shared part and a copy of every present app's fragment, its maps and
# crt-list, named by the first 12 hex digits of the hash of its contents; `current` and
# `previous` link to one; `.running` is the sha HAProxy was seen running with.
GENERATION_PREFIX = "gen-"
GENERATION_SHA_LENGTH = 12
CURRENT_LINK = "current"
PREVIOUS_LINK = "previous"
PROXY_RUNNING_NAME = ".running"
BACKENDS_FOLDER = "backends"
HOSTS_MAP_NAME = "hosts.map"
WILDCARDS_MAP_NAME = "wildcards.map"
CERTS_LIST_NAME = "certs.list"
_GENERATION_SHA = re.compile(rf"[0-9a-f]{{{GENERATION_SHA_LENGTH}}}")


def proxy_state_dir_for(kit_dir: str | None) -> str:
    """The shared HAProxy's state folder for a kit dir (None: root's system folders)."""
    if kit_dir is None:
        return f"{DEFAULT_STATE_ROOT}/{PROXY_FOLDER}"
    return f"{kit_dir}/{PROXY_FOLDER}/state"


def proxy_config_dir_for(kit_dir: str | None) -> str:
    """The shared HAProxy's config folder for a kit dir (None: root's system folders)."""
    if kit_dir is None:
        return f"{DEFAULT_CONFIG_ROOT}/{PROXY_FOLDER}"
    return f"{kit_dir}/{PROXY_FOLDER}/config"


def proxy_state_dir(inventory: Inventory) -> str:
    """The proxy lock, the registrations and the shared settings (kept by the last `down`)."""
    return proxy_state_dir_for(inventory.kit_dir)


def proxy_config_dir(inventory: Inventory) -> str:
    return proxy_config_dir_for(inventory.kit_dir)


def proxy_lock_dir(inventory: Inventory) -> str:
    return lock_dir_in(proxy_state_dir(inventory))


def registrations_dir(inventory: Inventory) -> str:
    return f"{proxy_state_dir(inventory)}/{REGISTRATIONS_FOLDER}"


def registration_path(inventory: Inventory, app: str) -> str:
    """`apps/<app>.json`: one app's registration (this inventory's app or another's)."""
    return f"{registrations_dir(inventory)}/{validate_app_name(app)}{REGISTRATION_SUFFIX}"


def proxy_settings_path(inventory: Inventory) -> str:
    return f"{proxy_state_dir(inventory)}/{SETTINGS_NAME}"


def proxy_haproxy_dir(inventory: Inventory) -> str:
    """The shared HAProxy's folder, mounted read-only at HAPROXY_CONFIG_DIR_INSIDE."""
    return f"{proxy_config_dir(inventory)}/{HAPROXY_FOLDER}"


def proxy_admin_dir(inventory: Inventory) -> str:
    """The one admin socket's folder: the login's, mode 0700."""
    return f"{proxy_haproxy_dir(inventory)}/{ADMIN_FOLDER}"


def proxy_admin_socket_path(inventory: Inventory) -> str:
    return socket_in(proxy_admin_dir(inventory))


def proxy_service_path(inventory: Inventory) -> str:
    """The one Lua maintenance service (it reads the transaction variables)."""
    return service_path_on_server(proxy_haproxy_dir(inventory))


def fallback_cert_path(inventory: Inventory) -> str:
    """The self-signed stand-in, the TLS default when no default app has HTTPS."""
    return f"{proxy_haproxy_dir(inventory)}/{FALLBACK_CERT_NAME}"


@dataclass(frozen=True)
class AppFiles:
    """One app's files in the shared HAProxy's folder (`apps/<app>/`), on the server or as
    HAProxy's container sees them; only a run holding that app's lock writes them."""

    folder: str

    @property
    def fragment(self) -> str:
        """The app's backend as its own `up` rendered it."""
        return f"{self.folder}/{FRAGMENT_NAME}"

    @property
    def server_state(self) -> str:
        """That backend's slot state (`show servers state <app>`), loaded by it alone (its
        `server-state-file-name`: an absolute path, used as is)."""
        return f"{self.folder}/{STATE_NAME}"

    @property
    def maintenance_map(self) -> str:
        """Inside HAProxy: the runtime API's name for it (`clear map`, `add map`)."""
        return map_path_on_server(self.folder)

    @property
    def cert(self) -> str:
        """Inside HAProxy: its crt-list line and the runtime API's name (`set ssl cert`)."""
        return f"{self.folder}/{CERT_NAME}"

    @property
    def source(self) -> str:
        return f"{self.folder}/{SOURCE_NAME}"


def app_files_in(haproxy_folder: str, app: str) -> AppFiles:
    return AppFiles(f"{haproxy_folder}/{PROXY_APPS_FOLDER}/{validate_app_name(app)}")


def app_files(inventory: Inventory, app: str) -> AppFiles:
    """An app's files on the server (this inventory's app or another's)."""
    return app_files_in(proxy_haproxy_dir(inventory), app)


def app_files_in_haproxy(app: str) -> AppFiles:
    return app_files_in(HAPROXY_CONFIG_DIR_INSIDE, app)


def generation_name(sha: str) -> str:
    """`gen-<sha12>`: the folder of the generation whose contents hash to ``sha``."""
    if not _GENERATION_SHA.fullmatch(sha):
        raise ValueError(f"a generation is named by {GENERATION_SHA_LENGTH} lowercase hex "
                         f"digits, got {sha!r}")
    return f"{GENERATION_PREFIX}{sha}"


def fragment_in_generation(app: str) -> str:
    """`backends/<app>.cfg`: a copy of an app's fragment, relative to a generation's folder."""
    return f"{BACKENDS_FOLDER}/{validate_app_name(app)}.cfg"


def generation_dir(inventory: Inventory, sha: str) -> str:
    return f"{proxy_haproxy_dir(inventory)}/{generation_name(sha)}"


def current_link(inventory: Inventory) -> str:
    return f"{proxy_haproxy_dir(inventory)}/{CURRENT_LINK}"


def previous_link(inventory: Inventory) -> str:
    return f"{proxy_haproxy_dir(inventory)}/{PREVIOUS_LINK}"


def proxy_running_path(inventory: Inventory) -> str:
    return f"{proxy_haproxy_dir(inventory)}/{PROXY_RUNNING_NAME}"


# -- the shared HAProxy's folder as its container sees it -----------------------------------
def current_in_haproxy() -> str:
    """Where the config refers to maps and the crt-list: through the `current` link, so that
    a generation checked in a throwaway container (mounted at `current`) is the one run."""
    return f"{HAPROXY_CONFIG_DIR_INSIDE}/{CURRENT_LINK}"


def current_file_in_haproxy(name: str) -> str:
    """A file of the running generation (its path relative to the generation's folder) as
    HAProxy's container sees it: through `current`."""
    return f"{current_in_haproxy()}/{name}"


def proxy_config_args_in_haproxy() -> tuple[str, ...]:
    """HAProxy's `-f` arguments: the shared part, then every fragment (lexical order)."""
    return ("-f", current_file_in_haproxy(CONFIG_NAME),
            "-f", current_file_in_haproxy(BACKENDS_FOLDER))


def fallback_cert_in_haproxy() -> str:
    return f"{HAPROXY_CONFIG_DIR_INSIDE}/{FALLBACK_CERT_NAME}"


# -- the seam: where the app's HAProxy things are, in either layout ------------------------
# Every per-app task (deploy, rollback, status, maintenance, certs, exec, logs, lock) asks
# these, never haproxy_container or the folder-based helpers above: with haproxy.shared
# they answer with the shared HAProxy's container and this app's files in it (apps/<app>/,
# docs/apps-design.md, decisions 1 and 5); otherwise exactly today's.
def serving_haproxy(inventory: Inventory) -> str:
    """The name of the HAProxy container that serves the app."""
    return PROXY_CONTAINER if inventory.haproxy.shared else inventory.haproxy_container


def state_file_path(inventory: Inventory) -> str:
    """The server-state file of the app's backend, which the swap writes and HAProxy loads
    when it starts: with haproxy.shared the backend's own (apps/<app>/server-state)."""
    if inventory.haproxy.shared:
        return app_files(inventory, inventory.app).server_state
    return f"{own_haproxy_dir(inventory)}/{STATE_NAME}"


def maintenance_map_in(haproxy_folder: str, inventory: Inventory) -> str:
    """The app's maintenance map in the folder of the HAProxy that serves it, as the server
    (haproxy_dir) or HAProxy's container (HAPROXY_CONFIG_DIR_INSIDE) sees that folder."""
    return _app_file_in(haproxy_folder, inventory, lambda files: files.maintenance_map,
                        map_path_on_server)


def maintenance_map_on_server(inventory: Inventory) -> str:
    return maintenance_map_in(haproxy_dir(inventory), inventory)


def maintenance_map_in_haproxy(inventory: Inventory) -> str:
    """The runtime API's name for the app's map (`show map`, `clear map`, `add map`)."""
    return maintenance_map_in(HAPROXY_CONFIG_DIR_INSIDE, inventory)


def cert_in(haproxy_folder: str, inventory: Inventory) -> str:
    """The app's certificate in the folder of the HAProxy that serves it (as
    maintenance_map_in)."""
    return _app_file_in(haproxy_folder, inventory, lambda files: files.cert, cert_path_on_server)


def cert_source_in(haproxy_folder: str, inventory: Inventory) -> str:
    """Beside the app's certificate: where it came from."""
    return _app_file_in(haproxy_folder, inventory, lambda files: files.source,
                        source_path_on_server)


def _app_file_in(haproxy_folder: str, inventory: Inventory, shared: Callable[[AppFiles], str],
                 own: Callable[[str], str]) -> str:
    """One of the app's files in the serving HAProxy's folder: with haproxy.shared in the
    app's own folder of it (apps/<app>/, AppFiles), else where today's layout has it."""
    if inventory.haproxy.shared:
        return shared(app_files_in(haproxy_folder, inventory.app))
    return own(haproxy_folder)


def cert_on_server(inventory: Inventory) -> str:
    return cert_in(haproxy_dir(inventory), inventory)


def cert_in_haproxy(inventory: Inventory) -> str:
    """The runtime API's name for the app's certificate (`show`/`set`/`commit ssl cert`)."""
    return cert_in(HAPROXY_CONFIG_DIR_INSIDE, inventory)


def refuse_shared(inventory: Inventory, what: str) -> None:
    """What the shared HAProxy cannot do yet: one line (exit 2), before any server is
    contacted."""
    if inventory.haproxy.shared:
        raise InputError(f"{what} is not available with haproxy.shared yet (several apps on "
                         "one server, docs/apps-design.md); nothing was changed")


def require_own_haproxy(inventory: Inventory, what: str) -> None:
    """Today's layout's `up`, `down`, hand-over, carry-over and web removal act on the app's
    own HAProxy (its container, own_haproxy_dir): for haproxy.shared they are the shared
    up's and down's job, and reaching them is a bug, which fails here loudly rather than
    on the shared HAProxy's files."""
    if inventory.haproxy.shared:
        raise ProxyError(f"{what} is today's layout's (the app's own HAProxy), never run "
                         "with haproxy.shared: the shared up and down do it")
