"""`fab init`: the starter files of a project, and where the kit looks for templates.

Templates are looked up per file: first in a `templates/` folder next to the inventory (a
project's own, e.g. written by `fab init` and then edited), then in the kit's own
`templates/`. A project can so override haproxy.cfg.j2 alone and keep the kit's others.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from slotswap.config.inventory import Inventory

# Package data: found where the package is, installed from a wheel or in a checkout.
KIT_TEMPLATES = Path(str(resources.files("slotswap") / "templates"))
# One screen: app, image, ssh, hosts, and every other key's default commented out.
STARTER_INVENTORY = Path(str(resources.files("slotswap") / "starter" / "hosts.yaml"))
# The JSON Schema of hosts.yaml, for editors (`check --schema` prints where it is).
SCHEMA = Path(str(resources.files("slotswap.config") / "hosts.schema.json"))
TEMPLATES_FOLDER = "templates"
INVENTORY_NAME = "hosts.yaml"
# The server's shared HAProxy's own part (several apps on one server): the kit's alone, never
# looked up in a project (an app's part is haproxy-backend.cfg.j2), so `init` copies it not.
SHARED_TEMPLATE = "haproxy-shared.cfg.j2"

class ScaffoldError(RuntimeError):
    """Files are in the way and --force was not given: nothing was written."""


def template_folders(inventory: Inventory) -> list[Path]:
    """Where templates are looked up, first match wins, file by file."""
    local = inventory.path.parent / TEMPLATES_FOLDER
    folders = [local] if local.is_dir() and local.resolve() != KIT_TEMPLATES else []
    return [*folders, KIT_TEMPLATES]


@dataclass(frozen=True)
class StarterFile:
    path: Path  # relative to the folder written into
    text: str


# With `init --shared`: the app on the server's shared HAProxy, routed by its names.
SHARED_STARTER = """
haproxy:
  shared: true            # one HAProxy per server, shared with the server's other apps
names: [webapp.example.com]   # the host names this app answers for (or https.names)
# With several apps on the same servers, one app's file sets the shared HAProxy's
# settings (haproxy.image, http_port, trusted_proxies, https.port); the others leave them
# out and take other slot ports, e.g. haproxy: {shared: true, slot_ports: [18083, 18084]}
"""
HOSTS_END = "\n# Defaults of everything else"


def starter_inventory(*, shared: bool = False) -> str:
    """The starter hosts.yaml; with `shared`, the app on the server's shared HAProxy."""
    text = STARTER_INVENTORY.read_text(encoding="utf-8")
    if not shared:
        return text
    head, separator, tail = text.partition(HOSTS_END)
    if not separator:
        raise RuntimeError(f"{STARTER_INVENTORY}: no {HOSTS_END.strip()!r} line")
    return head + SHARED_STARTER + separator + tail


def starter_files(*, templates: bool = False, shared: bool = False) -> list[StarterFile]:
    """The starter inventory; with `templates`, the kit's templates too, to edit (a copy
    overrides the kit's own, file by file, and no longer follows the kit's changes)."""
    files = [StarterFile(Path(INVENTORY_NAME), starter_inventory(shared=shared))]
    if not templates:
        return files
    for template in sorted(KIT_TEMPLATES.glob("*.j2")):
        if template.name == SHARED_TEMPLATE:
            continue
        files.append(StarterFile(Path(TEMPLATES_FOLDER) / template.name,
                                 template.read_text(encoding="utf-8")))
    return files


def write_starter(folder: Path, *, force: bool = False, templates: bool = False,
                  shared: bool = False) -> list[Path]:
    """Write the starter files into `folder`; refuse (writing nothing) when one exists,
    unless `force`. Returns the paths written."""
    files = starter_files(templates=templates, shared=shared)
    existing = [folder / f.path for f in files if (folder / f.path).exists()]
    if existing and not force:
        raise ScaffoldError(
            "nothing was written: " + ", ".join(str(p) for p in existing)
            + (" exists" if len(existing) == 1 else " exist")
            + " already; init --force overwrites"
        )
    written = []
    for starter in files:
        target = folder / starter.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(starter.text, encoding="utf-8")
        written.append(target)
    return written
