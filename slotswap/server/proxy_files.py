"""The shared HAProxy's files on one server (several apps on one server, docs/apps-design.md,
decision 1): every app's registration and stored fragment and the shared settings read in one
round trip; an app's registration from its inventory; a generation written whole before any
name points at it, and `current` switched in one rename.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from slotswap.config.https import DEFAULT_HTTPS_PORT
from slotswap.config.inventory import SHARED_KEYS, Inventory
from slotswap.config.layout import (
    CURRENT_LINK,
    GENERATION_PREFIX,
    PREVIOUS_LINK,
    current_link,
    proxy_haproxy_dir,
    proxy_settings_path,
    registrations_dir,
)
from slotswap.remote.protocol import ServerLike
from slotswap.remote.shell import new_marker
from slotswap.server.proxy_assembly import Generation, inventory_shared_values
from slotswap.server.proxy_registry import (
    Registration,
    RegistryFileError,
    SharedSettings,
    parse_registration,
    parse_settings,
)

# Every registration (apps/<app>.json) with the app's stored fragment (apps/<app>/backend.cfg
# in the shared HAProxy's folder), then the shared settings: each part after a line
# `MARK registration|fragment APP` or `MARK settings`. Paths and mark are arguments.
READ_REGISTRY_SCRIPT = (
    'registrations=$1 apps=$2 settings=$3 mark=$4; '
    'for file in "$registrations"/*.json; do [ -f "$file" ] || continue; '
    'app=${file##*/}; app=${app%.json}; '
    'printf "%s registration %s\\n" "$mark" "$app"; cat -- "$file"; echo; '
    'printf "%s fragment %s\\n" "$mark" "$app"; cat -- "$apps/$app/backend.cfg" 2>/dev/null; '
    'echo; done; '
    'if [ -f "$settings" ]; then printf "%s settings\\n" "$mark"; cat -- "$settings"; echo; fi'
)


@dataclass(frozen=True)
class Registry:
    """What a server's shared HAProxy keeps for its apps: their registrations, each app's
    stored fragment (None: none), and the shared settings record (None: none yet)."""

    registrations: tuple[Registration, ...]
    fragments: dict[str, str | None]
    settings: SharedSettings | None

    def of(self, app: str) -> Registration | None:
        return next((item for item in self.registrations if item.app == app), None)

    def others(self, app: str) -> tuple[Registration, ...]:
        return tuple(item for item in self.registrations if item.app != app)


def read_registry_command(inventory: Inventory, mark: str) -> list[str]:
    apps = f"{proxy_haproxy_dir(inventory)}/apps"
    return ["sh", "-c", READ_REGISTRY_SCRIPT, "sh", registrations_dir(inventory), apps,
            proxy_settings_path(inventory), mark]


def parse_registry(stdout: str, mark: str, where: str) -> Registry:
    """Pure: READ_REGISTRY_SCRIPT's answer; a file that is not what the kit writes raises
    RegistryFileError naming it (`where`: the server and the folder)."""
    parts: list[tuple[list[str], list[str]]] = []
    for line in stdout.splitlines():
        if line.startswith(f"{mark} "):
            parts.append((line.split()[1:], []))
        elif parts:
            parts[-1][1].append(line)
    registrations: list[Registration] = []
    fragments: dict[str, str | None] = {}
    settings = None
    for words, lines in parts:
        text = "\n".join(lines).strip("\n")
        if words[:1] == ["registration"] and len(words) == 2:
            registrations.append(parse_registration(text, f"{where}/{words[1]}.json",
                                                    app=words[1]))
        elif words[:1] == ["fragment"] and len(words) == 2:
            fragments[words[1]] = text + "\n" if text else None
        elif words == ["settings"]:
            settings = parse_settings(text, f"{where} settings")
        else:
            raise RegistryFileError(f"{where}: unexpected answer when reading the registry: "
                                    f"{' '.join(words)[:80]!r}")
    return Registry(tuple(registrations), fragments, settings)


def read_registry(server: ServerLike, inventory: Inventory) -> Registry:
    """One round trip."""
    mark = new_marker()
    answer = server.run(read_registry_command(inventory, mark))
    return parse_registry(answer.stdout, mark, f"{server.name}: {registrations_dir(inventory)}")


# -- an app's registration ------------------------------------------------------------------

def kit_defaults() -> dict[str, object]:
    """The kit's own values of the shared keys: what the first app on a server gets for a key
    its inventory leaves out."""
    from slotswap.config.haproxy import HaproxySettings

    settings = HaproxySettings()
    return {"haproxy.image": settings.image, "haproxy.http_port": settings.http_port,
            "https.port": DEFAULT_HTTPS_PORT,
            "haproxy.trusted_proxies": list(settings.trusted_proxies)}


def written_shared(inventory: Inventory) -> dict[str, object]:
    """The shared keys the inventory writes itself, with their values."""
    values = inventory_shared_values(inventory)
    return {key: values[key] for key in SHARED_KEYS if key in inventory.shared_keys_written}


def registration_for(inventory: Inventory, *, kit_version: str, by: str,
                     at: str) -> Registration:
    """What the app's `up` registers on a server, from its inventory."""
    check = inventory.healthcheck.port is not None
    first, second = inventory.haproxy.slot_ports
    return Registration(
        app=inventory.app, names=inventory.route_names, default=inventory.haproxy.default,
        https=inventory.https is not None, slot_ports=(first, second),
        check_ports=(inventory.slot_check_port("web1"), inventory.slot_check_port("web2"))
        if check else None,  # type: ignore[arg-type]
        shared_settings=written_shared(inventory), drain=float(inventory.timeouts.drain),
        kit_version=kit_version, by=by, at=at)


def leaving(registration: Registration) -> Registration:
    return dataclasses.replace(registration, state="leaving")


# -- a generation and `current` -------------------------------------------------------------

def partial_name(generation: Generation) -> str:
    """Where a generation is written and checked before it takes its name."""
    return f".{generation.name}.partial"


def write_partial_generation(server: ServerLike, inventory: Inventory,
                             generation: Generation) -> bool:
    """The generation's files under its partial name (anything left there before removed),
    for HAProxy to check before it is renamed: a folder named by its hash is always complete
    and checked. False when that folder is there already (nothing written)."""
    directory = proxy_haproxy_dir(inventory)
    if server.run(["test", "-d", f"{directory}/{generation.name}"], check=False).ok:
        return False
    partial = f"{directory}/{partial_name(generation)}"
    server.run(["rm", "-rf", partial])
    for path, text in sorted(generation.files.items()):
        target = f"{partial}/{path}"
        server.run(["mkdir", "-p", target.rsplit("/", 1)[0]])
        server.write_file(target, text)
    return True


def name_generation_command(inventory: Inventory, generation: Generation) -> list[str]:
    """The checked partial folder given the generation's name."""
    directory = proxy_haproxy_dir(inventory)
    return ["mv", "-T", f"{directory}/{partial_name(generation)}",
            f"{directory}/{generation.name}"]


def switch_command(inventory: Inventory, name: str, previous: str | None) -> list[str]:
    """`current` pointed at the generation `name` in one rename (a restarted HAProxy loads
    one whole generation or the other), `previous` at the one that ran before it."""
    directory = proxy_haproxy_dir(inventory)
    steps = [f"cd {shlex.quote(directory)}"]
    if previous is not None and previous != name:
        steps.append(f"ln -sfn {shlex.quote(previous)} {PREVIOUS_LINK}")
    steps.append(f"ln -sfn {shlex.quote(name)} .{CURRENT_LINK}.tmp && "
                 f"mv -T .{CURRENT_LINK}.tmp {CURRENT_LINK}")
    return ["sh", "-c", " && ".join(steps)]


def read_current(server: ServerLike, inventory: Inventory) -> str | None:
    """The generation `current` names (None: none yet)."""
    return read_link(server, current_link(inventory))


def read_link(server: ServerLike, link: str) -> str | None:
    """The generation a link of the shared HAProxy's folder names (None: none)."""
    answer = server.run(["readlink", link], check=False)
    name = answer.stdout.strip()
    return name if answer.ok and name.startswith(GENERATION_PREFIX) else None


def prune_generations_command(inventory: Inventory, keep: Mapping[str, None]) -> list[str]:
    """Every generation folder but those in `keep` (current, previous) removed, and any
    partial one a cut run left (only a run holding the shared HAProxy's lock writes one)."""
    kept = " ".join(f'[ "$name" = {shlex.quote(name)} ] && continue;' for name in keep)
    return ["sh", "-c", f'cd "$1" || exit 0; for name in {GENERATION_PREFIX}* '
            f'.{GENERATION_PREFIX}*.partial; do [ -d "$name" ] || continue; {kept} '
            'rm -rf -- "$name"; done', "sh", proxy_haproxy_dir(inventory)]

