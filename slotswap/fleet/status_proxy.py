"""`status` of a server's shared HAProxy (several apps on one server, docs/apps-design.md,
decision 5): its image and the HAProxy version answering, whose inventory its settings come
from, every app registered on it (present or leaving) with its live slot and version, and the
routes as HAProxy has them now.

Three round trips, all read-only: the registry (proxy_files.read_registry), one runtime-API
line (`show map` of both maps, `show info`, `show stat` of every present backend) and one
`docker ps` of the kit's containers (by the `slotswap.role` label: the apps' slots and the
shared HAProxy)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    HOSTS_MAP_NAME,
    PROXY_CONTAINER,
    WILDCARDS_MAP_NAME,
    current_file_in_haproxy,
)
from slotswap.remote.protocol import ServerLike
from slotswap.server.proxy_files import Registry, read_registry
from slotswap.server.proxy_registry import present

# One line per container of the kit's: name, image, state, then its role, app, slot and version
# labels (empty where it has none).
CONTAINER_FORMAT = "\t".join(["{{.Names}}", "{{.Image}}", "{{.State}}",
                              *(f'{{{{.Label "{label}"}}}}' for label in (
                                  docker.LABEL_ROLE, docker.LABEL_APP, docker.LABEL_SLOT,
                                  docker.LABEL_VERSION))])
MAP_LINE = re.compile(r"0x[0-9a-fA-F]+ (\S+) (\S+)")


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    state: str
    role: str
    app: str
    slot: str
    version: str


# An app registered whose backend the running generation lacks (its `up` was cut after the
# registration, before the reload).
NOT_IN_HAPROXY = "not in HAProxy"


@dataclass(frozen=True)
class AppOnProxy:
    """One app registered on the shared HAProxy."""

    app: str
    state: str  # present | leaving
    # the slot(s) taking new requests, "none", "?" (HAProxy not read) or NOT_IN_HAPROXY
    live: str
    version: str  # what the live slot's container runs ("-": nothing live, "?": unknown)

    def describe(self) -> str:
        if self.state != "present":
            return f"{self.app:<12} {self.state}"
        if self.live == NOT_IN_HAPROXY:
            return f"{self.app:<12} present, not in the running HAProxy (its next up puts it in)"
        return f"{self.app:<12} present, live {self.live}, serving {self.version}"

    def document(self) -> dict[str, object]:
        return {"app": self.app, "state": self.state, "live": self.live,
                "version": self.version}


@dataclass
class ProxyStatus:
    """The shared HAProxy on one server, as `status` shows it."""

    container: str = PROXY_CONTAINER
    image: str = "?"  # "?": no such container
    version: str = "?"  # the HAProxy version answering on the shared socket
    owner: str = ""  # the app whose inventory its settings come from ("": the kit's defaults)
    owner_by: str = ""
    owner_at: str = ""
    apps: list[AppOnProxy] = field(default_factory=list)
    routes: list[tuple[str, str]] = field(default_factory=list)  # (name, app) as HAProxy has
    other_names: str = "404"  # where a name no app claims goes: 404 or the default app
    error: str = ""  # what could not be read (the runtime API), in one line

    def settings_from(self) -> str:
        if not self.owner:
            return "settings: the kit's defaults"
        when = ", ".join(part for part in (self.owner_by, self.owner_at) if part)
        return f"settings from {self.owner}'s inventory" + (f" ({when})" if when else "")

    def lines(self) -> list[str]:
        """What `status` prints for it, under the server's own lines."""
        lines = [f"shared HAProxy {self.container}  {self.image} (HAProxy {self.version}), "
                 f"{self.settings_from()}"]
        lines += [f"    app {app.describe()}" for app in self.apps]
        lines += [f"    route {name} -> {app}" for name, app in self.routes]
        lines.append(f"    route other names -> {self.other_names}")
        if self.error:
            lines.append(f"    (not read: {self.error})")
        return lines

    def document(self) -> dict[str, object]:
        return {"container": self.container, "image": self.image, "version": self.version,
                "owner": self.owner or None, "owner_by": self.owner_by or None,
                "owner_at": self.owner_at or None,
                "apps": [app.document() for app in self.apps],
                "routes": [{"name": name, "app": app} for name, app in self.routes],
                "other_names": self.other_names, "error": self.error or None}


def list_containers() -> list[str]:
    return ["docker", "ps", "--all", "--filter", f"label={docker.LABEL_ROLE}",
            "--format", CONTAINER_FORMAT]


def parse_containers(stdout: str) -> list[Container]:
    found = []
    for line in stdout.splitlines():
        words = line.split("\t")
        if len(words) == 7:
            found.append(Container(*words))
    return found


def status_line() -> str:
    """The one runtime-API line: `show info` between the two maps tells their entries apart
    (a map's lines are `0x<ref> <key> <value>`, show info's `Key: value`), then `show stat`
    of every proxy (a registered app whose backend the running generation lacks, its `up`
    cut before the reload, is then missing from it, and the others' lines still read)."""
    return haproxy.join_commands(
        f"show map {current_file_in_haproxy(HOSTS_MAP_NAME)}", "show info",
        f"show map {current_file_in_haproxy(WILDCARDS_MAP_NAME)}", "show stat")


@dataclass
class LineAnswer:
    exact: list[tuple[str, str]] = field(default_factory=list)
    wildcards: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    stats: dict[str, dict[str, haproxy.ServerStat]] = field(default_factory=dict)


def split_answer(text: str) -> LineAnswer:
    """Pure: the answer to status_line, part by part."""
    answer = LineAnswer()
    seen_info = False
    stat: list[str] = []
    for line in text.splitlines():
        if line.startswith("# ") or stat:
            if line.strip():
                stat.append(line)
        elif match := MAP_LINE.fullmatch(line.strip()):
            (answer.wildcards if seen_info else answer.exact).append(match.groups())
        elif ":" in line:
            seen_info = True
            key, _, value = line.partition(":")
            answer.info[key.strip()] = value.strip()
    if stat:
        answer.stats = haproxy.parse_show_stat_by_backend("\n".join(stat))
    return answer


def read_proxy_status(server: ServerLike, inventory: Inventory) -> ProxyStatus:
    """The shared HAProxy of one server; what HAProxy cannot tell (not running, no socket)
    is "?" and said in `error`."""
    inventory = server.with_folders(inventory)
    registry = read_registry(server, inventory)
    containers = parse_containers(server.run(list_containers(), check=False).stdout)
    try:
        answer: LineAnswer | None = split_answer(server.runtime_api(status_line()))
        error = ""
    except haproxy.RuntimeApiError as failed:
        answer, error = None, str(failed)
    return proxy_status(registry, containers, answer, error)


def proxy_status(registry: Registry, containers: list[Container], answer: LineAnswer | None,
                 error: str = "") -> ProxyStatus:
    """Pure: the facts put together."""
    status = ProxyStatus(error=error)
    proxy = next((c for c in containers if c.name == PROXY_CONTAINER), None)
    if proxy is not None:
        status.image = proxy.image + ("" if proxy.state == "running" else f" ({proxy.state})")
    if registry.settings is not None and registry.settings.owner:
        status.owner = registry.settings.owner
        status.owner_by, status.owner_at = registry.settings.by, registry.settings.at
    default = next((item.app for item in present(registry.registrations) if item.default), None)
    status.other_names = default or "404"
    for item in registry.registrations:
        live, version = "?", "?"
        if item.state != "present":
            live, version = "-", "-"
        elif answer is not None and item.app not in answer.stats:
            live, version = NOT_IN_HAPROXY, "-"  # registered, its `up` cut before the reload
        elif answer is not None:
            live, version = serving_on_proxy(answer.stats.get(item.app, {}), [
                c for c in containers if c.role == "app" and c.app == item.app])
        status.apps.append(AppOnProxy(item.app, item.state, live, version))
    if answer is not None:
        status.version = answer.info.get("Version", "?")
        status.routes = [*answer.exact, *((f"*.{domain}", app)
                                          for domain, app in answer.wildcards)]
    return status


def serving_on_proxy(stats: Mapping[str, haproxy.ServerStat],
                     containers: Sequence[Container]) -> tuple[str, str]:
    """Pure: an app's live slots and their versions, as slots.serving_views tells them: a
    slot whose line takes new traffic and whose container runs; with none, one that takes
    them through its fallback line alone (a run cut in its window)."""
    running = {c.slot: c for c in containers if c.state == "running"}

    def takes(name: str) -> bool:
        return name in stats and stats[name].takes_new_traffic

    serving = [slot for slot in SLOTS if slot in running and takes(slot)]
    through = ""
    if not serving:
        serving = [slot for slot in SLOTS if slot in running
                   and takes(haproxy.fallback_name(slot))]
        through = " (through its fallback line)" if serving else ""
    if not serving:
        return "none", "-"
    return (",".join(serving) + through,
            ",".join(running[slot].version or "?" for slot in serving))
