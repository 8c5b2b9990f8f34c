"""The simulated server's shared HAProxy (several apps on one server, docs/apps-design.md):
how it loads a generation and how it routes a request, read from the generated config's
text alone (never from proxy_assembly's private names).

- Loading, as HAProxy 2.6 does with the shared container's arguments
  (`layout.proxy_config_args_in_haproxy`: `-f <current>/haproxy.cfg -f <current>/backends`):
  the `current` link resolved at each start and reload; a folder's files in lexical order,
  `.cfg` only, not those whose name starts with a dot; each backend's
  `server-state-file-name` loaded (`load-server-state-from-file local`), a missing one only
  a warning; every map the config names from its file, by the path the config names it
  with; each certificate of the crt-list by its path.
- Routing, as the shared frontend does: the Host lower-cased, its port cut off; an exact
  name in the hosts map, then the name minus its first label in the wildcards map, then the
  default app, else 404. A backend's maintenance page answers while its own map has one."""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slotswap.config.layout import HAPROXY_CONFIG_DIR_INSIDE, proxy_config_args_in_haproxy
from tests.unit.simulated_files import SimFiles
from tests.unit.simulated_haproxy import SimHaproxy, config_parts

if TYPE_CHECKING:
    from tests.unit.simulated_docker import Container

HOSTS_LOOKUP = re.compile(r"var\(txn\.slotswap_host\),map_str\(([^)\s]+)\)")
WILDCARD_LOOKUP = re.compile(r"var\(txn\.slotswap_host\),field\(2,\.,0\),map_str\(([^)\s]+)\)")
DEFAULT_APP = re.compile(r"set-var\(txn\.slotswap_app\) str\(([^)\s]+)\)")
CRT_LIST = re.compile(r"\bcrt-list\s+(\S+)")
PAGE_MAP = re.compile(r"str\(page\),map\(([^)\s]+)\)")


class Mount:
    """The server's folder mounted at HAProxy's config folder (read-only, as the shared
    container runs): a path as HAProxy names it, read on the server."""

    def __init__(self, files: SimFiles, folder: str) -> None:
        self.files, self.folder = files, folder.rstrip("/")

    def on_server(self, path: str) -> str:
        if path == HAPROXY_CONFIG_DIR_INSIDE or path.startswith(HAPROXY_CONFIG_DIR_INSIDE + "/"):
            return self.folder + path[len(HAPROXY_CONFIG_DIR_INSIDE):]
        return path

    def read(self, path: str) -> str | None:
        return self.files.read(self.on_server(path))

    def is_dir(self, path: str) -> bool:
        return self.files.is_dir(self.files.resolve(self.on_server(path)))

    def config_files(self, arguments: tuple[str, ...]) -> list[str]:
        """What `-f` arguments load, in order: a file, or a folder's `.cfg` files."""
        loaded = []
        for path in arguments[1::2]:
            if self.is_dir(path):
                loaded += [posixpath.join(path, name)
                           for name in self.files.listdir(self.on_server(path))
                           if name.endswith(".cfg") and not name.startswith(".")
                           and self.files.is_file(self.files.resolve(
                               self.on_server(posixpath.join(path, name))))]
            else:
                loaded.append(path)
        return loaded


def load_generation(mount: Mount) -> str:
    """The config text the shared container's arguments load now (`current` resolved)."""
    texts = []
    for path in mount.config_files(proxy_config_args_in_haproxy()):
        text = mount.read(path)
        assert text is not None, f"haproxy: cannot open configuration file {path}"
        texts.append(text if text.endswith("\n") else text + "\n")
    return "".join(texts)


def start_shared(proxy: SimHaproxy, files: SimFiles, folder: str) -> None:
    """A start (or a reload's new workers) of the shared HAProxy whose config folder on the
    server is `folder` (layout.proxy_haproxy_dir): the generation `current` names now, each
    backend's own state file, the maps and certificates the generation names."""
    mount = Mount(files, folder)
    proxy.config = load_generation(mount)
    maps = {path: mount.read(path) or "" for path in config_parts(proxy.config)[1]}
    certs = {}
    for listed in CRT_LIST.findall(proxy.config):
        for line in (mount.read(listed) or "").splitlines():
            path = line.split()[0] if line.strip() and not line.startswith("#") else None
            pem = mount.read(path) if path else None
            if path and pem is not None:
                certs[path] = pem
    proxy.start(None, maps, read=mount.read, certs=certs)


def route(proxy: SimHaproxy, host: str | None) -> str | None:
    """The backend the shared frontend sends a request with this Host to; None: a 404."""
    name = (host or "").split(":", 1)[0].lower()
    hosts, wildcards, default = routing_of(proxy.config)
    app = proxy.maps.get(hosts, {}).get(name) if name else None
    if app is None and "." in name:
        app = proxy.maps.get(wildcards, {}).get(name.split(".", 1)[1])
    return app if app is not None else default


@functools.lru_cache(maxsize=64)
def routes_by_host(config: str) -> bool:
    """Pure: the config is the shared HAProxy's (its frontend routes by Host)."""
    return HOSTS_LOOKUP.search(config) is not None


@functools.lru_cache(maxsize=64)
def routing_of(config: str) -> tuple[str, str, str | None]:
    """Pure: the shared frontend's host map, its wildcard map and its default app (None: a
    404), read once per config."""
    hosts, wildcards = HOSTS_LOOKUP.search(config), WILDCARD_LOOKUP.search(config)
    assert hosts and wildcards, "the config has no shared frontend"
    default = DEFAULT_APP.search(config)
    return hosts.group(1), wildcards.group(1), default.group(1) if default else None


def in_maintenance(proxy: SimHaproxy, backend: str) -> bool:
    """The backend's maintenance page answers (its own map holds a page)."""
    section = "\n".join(proxy.backends[backend].section)
    found = PAGE_MAP.search(section)
    return bool(found) and "page" in proxy.maps.get(found.group(1), {})


@dataclass(frozen=True)
class Answer:
    """What one request gets from the shared HAProxy."""

    backend: str | None  # None: no app has that name (404)
    container: Container | None  # the slot's container that answered, if one did
    maintenance: bool = False  # the app's maintenance page (503)

    @property
    def status(self) -> int:
        if self.backend is None:
            return 404
        return 200 if self.container is not None and not self.maintenance else 503


def serve_host(proxy: SimHaproxy, host: str | None,
               container_at: Callable[[int], Container | None],
               healthy: Callable[[Container], bool]) -> Answer:
    """One request with this Host: routed to its app's backend, served there as one app's
    HAProxy serves it (SimBackend.serve), or its maintenance page."""
    backend = route(proxy, host)
    if backend is None or backend not in proxy.backends:  # `use_backend` of no backend: 503
        return Answer(backend, None)
    if in_maintenance(proxy, backend):
        return Answer(backend, None, maintenance=True)
    return Answer(backend, proxy.backends[backend].serve(container_at, healthy))
