"""The server's shared HAProxy's config (several apps on one server, issue 23; see
docs/apps-design.md, decisions 1, 3 and 4), pure: one app's backend (its *fragment*, from its
inventory), and a *generation*: the whole folder HAProxy loads, assembled from the present
apps' registrations and their stored fragments, named by the hash of its contents.

HAProxy runs `-f <inside>/current/haproxy.cfg -f <inside>/current/backends`, `current` being a
symlink to the generation's folder. Writing it, checking it and switching to it are the
caller's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import jinja2

from slotswap.commands import docker
from slotswap.config import values
from slotswap.config.https import DEFAULT_HTTPS_PORT, dns_name
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    CERTS_LIST_NAME,
    CONFIG_NAME,
    FRAGMENT_NAME,
    GENERATION_SHA_LENGTH,
    HOSTS_MAP_NAME,
    PROXY_APPS_FOLDER,
    WILDCARDS_MAP_NAME,
    ProxyError,
    admin_socket_in_haproxy,
    app_files_in_haproxy,
    current_file_in_haproxy,
    fallback_cert_in_haproxy,
    fragment_in_generation,
    generation_name,
    service_path_in_haproxy,
)
from slotswap.config.scaffold import KIT_TEMPLATES, SHARED_TEMPLATE, template_folders
from slotswap.core.validation import validate_app_name
from slotswap.server import maintenance
from slotswap.server.haproxy_config import (
    FORWARDING_HEADERS,
    Login,
    backend_values,
    config_environment,
    config_hash,
    https_values,
)
from slotswap.server.proxy_registry import Registration, checked_shared_values

BACKEND_TEMPLATE = "haproxy-backend.cfg.j2"
# The one-app layout's template: a project's copy of it has no place in the shared layout.
OWN_TEMPLATE = "haproxy.cfg.j2"

# Section keywords of HAProxy's config: a fragment holds one section, its app's backend.
_SECTIONS = ("global", "defaults", "frontend", "backend", "listen", "userlist", "peers",
             "resolvers", "mailers", "program", "http-errors", "ring", "cache")


class AssemblyError(ProxyError):
    """A registration, fragment or shared setting that the shared config cannot hold."""


@dataclass(frozen=True)
class SharedValues:
    """The shared settings a config line uses, checked (SHARED_KEYS but the image)."""

    http_port: int
    https_port: int
    trusted_proxies: tuple[str, ...]


def shared_values(shared: Mapping[str, object]) -> SharedValues:
    """The effective shared settings (keyed as SHARED_KEYS: the owner's, or those recorded on
    the server, or the kit's defaults for the first app), checked again before any of them
    goes into a config line, with the registry's checks of them (the inventory's)."""
    # Those checks read JSON (lists); a registration read back holds tuples.
    as_json = {name: list(value) if isinstance(value, tuple) else value
               for name, value in shared.items()}
    try:
        checked = checked_shared_values(as_json, "")
    except values.Invalid as problem:
        raise AssemblyError(f"shared setting {problem}") from None
    for key in ("haproxy.http_port", "https.port"):
        if key not in checked:
            raise AssemblyError(f"shared setting {key}: required, and missing")
    return SharedValues(cast(int, checked["haproxy.http_port"]), cast(int, checked["https.port"]),
                        cast(tuple[str, ...], checked.get("haproxy.trusted_proxies", ())))


def inventory_shared_values(inventory: Inventory) -> dict[str, object]:
    """The shared settings as one inventory has them (written or defaulted): what the first
    app on a server brings, and what tests use."""
    return {"haproxy.image": inventory.haproxy.image,
            "haproxy.http_port": inventory.haproxy.http_port,
            "https.port": inventory.https.port if inventory.https is not None
            else DEFAULT_HTTPS_PORT,
            "haproxy.trusted_proxies": list(inventory.haproxy.trusted_proxies)}


def _refuse_own_template(inventory: Inventory) -> None:
    for folder in template_folders(inventory):
        if folder != KIT_TEMPLATES and (folder / OWN_TEMPLATE).is_file():
            raise AssemblyError(
                f"{folder / OWN_TEMPLATE}: with haproxy.shared: true the server's HAProxy "
                f"is shared and its config is the kit's; a project changes its own backend "
                f"only, in {BACKEND_TEMPLATE} (copy the kit's and edit it)")


def _check_fragment(app: str, text: str, where: str) -> None:
    """A fragment is one section, `backend <app>`: nothing it holds can change how another
    app's requests are handled outside its own backend."""
    sections = [line.split() for line in text.splitlines()
                if line.strip() and not line[0].isspace() and not line.startswith("#")]
    if [words[:2] for words in sections] != [["backend", app]] or \
            any(words[0] in _SECTIONS and len(words) > 2 for words in sections):
        found = ", ".join(" ".join(words) for words in sections) or "none"
        raise AssemblyError(f"{where}: an app's fragment is one section, `backend {app}`; "
                            f"found: {found}")


def render_fragment(inventory: Inventory, shared: Mapping[str, object], *,
                    thumbprint: str | None = None) -> str:
    """The app's backend in the shared HAProxy, from its inventory and the server's
    effective shared settings (the redirect's port is the server's https.port). A project's
    templates/haproxy-backend.cfg.j2 overrides the kit's; its haproxy.cfg.j2 is refused.
    `thumbprint`: the ACME account's (None: the inventory's account key's, with https.acme)."""
    validate_app_name(inventory.app)
    _refuse_own_template(inventory)
    settings = shared_values(shared)
    https = https_values(inventory)
    if inventory.https is not None:
        https["https_port"] = settings.https_port
    if thumbprint is not None:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", thumbprint):  # base64url, as RFC 7638's
            raise AssemblyError(f"an ACME thumbprint is base64url, got {thumbprint!r}")
        https["acme_thumbprint"] = thumbprint
    environment = config_environment(template_folders(inventory))
    try:
        text = environment.get_template(BACKEND_TEMPLATE).render(
            inventory_name=inventory.path.name,
            app=inventory.app,
            maintenance_map=app_files_in_haproxy(inventory.app).maintenance_map,
            state_file=app_files_in_haproxy(inventory.app).server_state,
            **backend_values(inventory),
            **https,
        )
    except jinja2.TemplateError as error:  # a project's template that does not render
        raise AssemblyError(f"{BACKEND_TEMPLATE}: {error}") from error
    _check_fragment(inventory.app, text, BACKEND_TEMPLATE)
    return text


@dataclass(frozen=True)
class Generation:
    """One shared config, whole: its files by path relative to its folder."""

    files: dict[str, str]
    sha12: str

    @property
    def name(self) -> str:
        """The generation's folder, beside `current`."""
        return generation_name(self.sha12)


def generation_hash(files: Mapping[str, str]) -> str:
    """The first 12 hex digits of SHA-256 over the (path, content) pairs in path order, each
    part length-prefixed (no two different sets of files hash alike by moving a boundary)."""
    digest = hashlib.sha256()
    for path in sorted(files):
        for part in (path.encode(), files[path].encode()):
            digest.update(f"{len(part)}:".encode())
            digest.update(part)
    return digest.hexdigest()[:GENERATION_SHA_LENGTH]


def _check_registration(registration: Registration) -> None:
    try:
        validate_app_name(registration.app)
    except ValueError as error:
        raise AssemblyError(f"registration: {error}") from error
    for index, name in enumerate(registration.names):
        try:  # the inventory's rule (config.https), which the registry checks too
            dns_name(name, f"names[{index}]", wildcard=True)
        except values.Invalid:
            raise AssemblyError(f"{registration.app}'s registration: {name!r} is not a "
                                "lowercase DNS name (a wildcard covers one label: *.a.b)"
                                ) from None
    if not registration.names and not registration.default:
        raise AssemblyError(f"{registration.app}'s registration: no names, and not the "
                            "default app: nothing would route to it")


def present(registrations: Sequence[Registration]) -> list[Registration]:
    """The registrations a generation holds (`leaving` ones never), by app name; checked."""
    apps = sorted((r for r in registrations if r.state == "present"), key=lambda r: r.app)
    for registration in apps:
        _check_registration(registration)
    seen: dict[str, str] = {}
    for registration in apps:
        for name in registration.names:
            if name in seen:
                raise AssemblyError(f"{name} is registered by {seen[name]} and by "
                                    f"{registration.app}; a name routes to one app")
            seen[name] = registration.app
    defaults = [r.app for r in apps if r.default]
    if len(defaults) > 1:
        raise AssemblyError(f"{' and '.join(defaults)} are each registered as the default "
                            "app; a server has one")
    return apps


def route_maps(apps: Sequence[Registration]) -> tuple[str, str]:
    """hosts.map (`<name> <app>`, exact names) and wildcards.map (`<domain> <app>`, the
    domain a wildcard covers one label of)."""
    exact, wildcards = [], []
    for registration in apps:
        for name in registration.names:
            if name.startswith("*."):
                wildcards.append(f"{name[2:]} {registration.app}\n")
            else:
                exact.append(f"{name} {registration.app}\n")
    return "".join(exact), "".join(wildcards)


def certs_list(apps: Sequence[Registration]) -> str:
    """The HTTPS bind's crt-list: first the default for no SNI or an unknown one (the
    default app's certificate when it has HTTPS, else the stand-in), with `!*` so that it
    wins only when nothing else does; then each HTTPS app's, chosen by its SANs."""
    default = next((r.app for r in apps if r.default and r.https), None)
    first = app_files_in_haproxy(default).cert if default else fallback_cert_in_haproxy()
    lines = [f"{first} !*\n"]
    lines += [f"{app_files_in_haproxy(r.app).cert}\n" for r in apps if r.https]
    return "".join(lines)


def render_shared(apps: Sequence[Registration], shared: SharedValues, login: Login) -> str:
    """The shared part: global, defaults and the one frontend (the kit's template only)."""
    https = any(r.https for r in apps)
    default = next((r.app for r in apps if r.default), None)
    environment = config_environment([KIT_TEMPLATES])
    return environment.get_template(SHARED_TEMPLATE).render(
        admin_socket=admin_socket_in_haproxy(),
        admin_uid=login.uid,
        admin_gid=login.gid,
        worker_uid=docker.HAPROXY_WORKER_UID,
        worker_gid=docker.HAPROXY_WORKER_GID,
        maintenance_service=service_path_in_haproxy(),
        maintenance_service_version=config_hash(maintenance.shared_service_script())[:16],
        https=https,
        http_port=shared.http_port,
        https_port=shared.https_port,
        certs_list=current_file_in_haproxy(CERTS_LIST_NAME),
        forwarding_headers=FORWARDING_HEADERS,
        trusted_proxies=shared.trusted_proxies,
        hosts_map=current_file_in_haproxy(HOSTS_MAP_NAME),
        wildcards_map=current_file_in_haproxy(WILDCARDS_MAP_NAME),
        default_app=default,
    )


def assemble(registrations: Sequence[Registration], fragments: Mapping[str, str],
             shared: Mapping[str, object], login: Login) -> Generation:
    """The generation for the present registrations: the shared part, each present app's
    stored fragment as it is, the maps and (while any app has HTTPS) the crt-list."""
    apps = present(registrations)
    if not apps:
        raise AssemblyError("no app is present: a shared HAProxy with no backend routes "
                            "nothing (the last app's `down` removes it)")
    files = {CONFIG_NAME: render_shared(apps, shared_values(shared), login)}
    for registration in apps:
        fragment = fragments.get(registration.app)
        if fragment is None:
            raise AssemblyError(f"{registration.app} is registered but has no fragment "
                                f"({PROXY_APPS_FOLDER}/{registration.app}/{FRAGMENT_NAME})")
        _check_fragment(registration.app, fragment, f"{registration.app}'s fragment")
        files[fragment_in_generation(registration.app)] = fragment
    files[HOSTS_MAP_NAME], files[WILDCARDS_MAP_NAME] = route_maps(apps)
    if any(r.https for r in apps):
        files[CERTS_LIST_NAME] = certs_list(apps)
    return Generation(files, generation_hash(files))
