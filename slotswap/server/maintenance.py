"""Maintenance mode: every server answers 503 with a page (and Retry-After) instead of
passing requests to the app, switched on and off through HAProxy's runtime API: no reload,
no connection dropped, the app keeps running and being checked.

The page lives in a HAProxy map (`maintenance.map` in the config folder): key `page`, the
HTML in base64 (a map value cannot hold spaces), key `retry`, the Retry-After seconds. The
config answers 503 while the map has a page. The same map file is written on the server, so
a reload or a restarted HAProxy keeps the mode.

A small Lua service (`maintenance.lua`, which `up` writes beside the config) sends the page
byte for byte. HAProxy's own `http-request return lf-string` cannot: it escapes every control
byte of a value it reads at run time (a newline comes out as `%0A`), and its `file` body is
read once, when the config is loaded, so a new message would need a reload.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import jinja2

from slotswap.commands.runtime_api import join_commands
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    maintenance_map_in,
    maintenance_map_in_haproxy,
    map_path_in_haproxy,
)
from slotswap.config.scaffold import template_folders
from slotswap.remote.protocol import ServerLike

PAGE_TEMPLATE = "maintenance.html.j2"
DEFAULT_MESSAGE = "We are working on the site and will be back shortly."
DEFAULT_RETRY_AFTER = 120
# The map of the app's own HAProxy (today's layout), as the runtime API names it.
OWN_MAP = map_path_in_haproxy()
Progress = Callable[[str], None]


# Loaded by `lua-load` (the config's global section); `use-service lua.slotswap_maintenance`
# calls it while the map has a page. Map.new reads the map the runtime API changes, so a
# new page is served at once. Without a page (turned off in the instant between the
# config's test and this call) it answers an empty 503.
_SERVICE = """\
-- Written by slotswap (`fab up`): the maintenance page, byte for byte. Do not edit.
local maintenance = Map.new({map_path}, Map._str)

core.register_service("slotswap_maintenance", "http", function(applet)
    local page = maintenance:lookup("page")
{answer}end)
"""
# The server's shared HAProxy (docs/apps-design.md, decision 3): one service for every app;
# the app's backend sets the transaction variables from its own map (apps/<app>/
# maintenance.map) and calls it only when the page is set. So one app's map never reaches
# another app's requests, and the service names no map.
_SHARED_SERVICE = """\
-- Written by slotswap: the maintenance page of the app whose backend calls it, byte for
-- byte, from the variables that backend set from its own map. Do not edit.
core.register_service("slotswap_maintenance", "http", function(applet)
    local page = applet:get_var("txn.slotswap_page")
{answer}end)
"""
_ANSWER = """\
    page = page and applet.c:b64dec(page) or ""
    applet:set_status(503)
    applet:add_header("content-type", "text/html; charset=utf-8")
    applet:add_header("content-length", string.format("%d", #page))
    applet:add_header("retry-after", {retry} or "{default_retry}")
    applet:start_response()
    applet:send(page)
"""


def service_script() -> str:
    """The Lua service's source of the app's own HAProxy (today's layout, which only its
    `up` writes): the map's path is the kit's own (no quote, no backslash)."""
    answer = _ANSWER.format(retry='maintenance:lookup("retry")',
                            default_retry=DEFAULT_RETRY_AFTER)
    return _SERVICE.format(map_path=json.dumps(map_path_in_haproxy()), answer=answer)


def shared_service_script() -> str:
    """The shared HAProxy's Lua service: the page and Retry-After from the transaction
    variables txn.slotswap_page and txn.slotswap_retry (the fragment's interface,
    proxy_registry.FRAGMENT_VERSION)."""
    answer = _ANSWER.format(retry='applet:get_var("txn.slotswap_retry")',
                            default_retry=DEFAULT_RETRY_AFTER)
    return _SHARED_SERVICE.format(answer=answer)


def render_page(inventory: Inventory, message: str) -> str:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(template_folders(inventory)),
                                     undefined=jinja2.StrictUndefined, autoescape=True)
    return environment.get_template(PAGE_TEMPLATE).render(message=message)


def map_entries(page: str, retry_after: int) -> list[tuple[str, str]]:
    """The map's content while maintenance is on; `page` last, since it turns it on."""
    return [("retry", str(retry_after)),
            ("page", base64.b64encode(page.encode()).decode())]


def map_file(entries: list[tuple[str, str]]) -> str:
    return "".join(f"{key} {value}\n" for key, value in entries)


def on_commands(entries: list[tuple[str, str]], path: str = OWN_MAP) -> str:
    """One runtime-API line: the map cleared, then filled, page last. `path`: the runtime
    API's name for the app's map (layout.maintenance_map_in_haproxy; the default is today's
    layout's)."""
    return join_commands(f"clear map {path}",
                         *(f"add map {path} {key} {value}" for key, value in entries))


def off_command(path: str = OWN_MAP) -> str:
    return f"clear map {path}"


def parse_show_map(text: str) -> dict[str, str]:
    """`show map FILE`: `0xID key value` lines."""
    entries = {}
    for line in text.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0].startswith("0x"):
            entries[parts[1]] = parts[2]
    return entries


def is_on(server: ServerLike) -> bool:
    path = maintenance_map_in_haproxy(server.inventory)
    return "page" in parse_show_map(server.runtime_api(f"show map {path}"))


def switch_on(server: ServerLike, config_dir: str, entries: list[tuple[str, str]],
              progress: Progress) -> str:
    """`config_dir`: the folder of the HAProxy that serves the app (layout.haproxy_dir), in
    which the app's map is (with haproxy.shared, apps/<app>/maintenance.map); every line
    names that map alone."""
    # The file first: were the run cut off between the two, a restart would still agree
    # with what the operator asked for.
    server.write_file(maintenance_map_in(config_dir, server.inventory), map_file(entries))
    server.runtime_api(on_commands(entries, maintenance_map_in_haproxy(server.inventory)))
    progress("maintenance on: every request answers 503 with the page; the app keeps running")
    return "maintenance on"


def switch_off(server: ServerLike, config_dir: str, progress: Progress) -> str:
    server.write_file(maintenance_map_in(config_dir, server.inventory), "")
    server.runtime_api(off_command(maintenance_map_in_haproxy(server.inventory)))
    progress("maintenance off: requests reach the app again")
    return "maintenance off"
