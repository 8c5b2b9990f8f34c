"""`fab init`: the starter files of a project, and where the kit looks for templates.

Templates are looked up per file: first in a `templates/` folder next to the inventory (a
project's own, e.g. written by `fab init` and then edited), then in the kit's own
`templates/`. A project can so override haproxy.cfg.j2 alone and keep the kit's others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.inventory import Inventory

KIT_ROOT = Path(__file__).resolve().parent.parent
KIT_TEMPLATES = KIT_ROOT / "templates"
REFERENCE_INVENTORY = KIT_ROOT / "hosts.yaml"
TEMPLATES_FOLDER = "templates"
INVENTORY_NAME = "hosts.yaml"

# The reference hosts.yaml describes the kit's own example app; a project starts from its
# own folder, without a bastion, and with hooks it has yet to write.
STARTER_EDITS = (
    ("  context: example\n", "  context: .\n"),
    ("  # which is why it repeats `example/`.\n", "  # which is why it repeats the context.\n"),
    ("  dockerfile: example/Dockerfile\n", "  dockerfile: Dockerfile\n"),
    ("  jump: deploy@bastion.example.com:22\n", "  # jump: deploy@bastion.example.com:22\n"),
    ("hooks:\n  pre_deploy: example/hooks/check-release.sh\n"
     "  post_success: example/hooks/notify.sh\n  post_failure: example/hooks/notify.sh\n",
     "# hooks:\n#   pre_deploy: scripts/check-release.sh\n#   post_success: scripts/notify.sh\n"
     "#   post_failure: scripts/notify.sh\n"),
)


class ScaffoldError(RuntimeError):
    """Files are in the way and --force was not given: nothing was written."""


def template_folders(inventory: Inventory) -> list[Path]:
    """Where templates are looked up, first match wins, file by file."""
    local = inventory.path.parent / TEMPLATES_FOLDER
    folders = [local] if local.is_dir() and local.resolve() != KIT_TEMPLATES else []
    return [*folders, KIT_TEMPLATES]


def starter_inventory(reference: str) -> str:
    text = reference
    for old, new in STARTER_EDITS:
        if text.count(old) != 1:
            raise ValueError(f"the reference hosts.yaml no longer has {old!r} once")
        text = text.replace(old, new)
    return text


@dataclass(frozen=True)
class StarterFile:
    path: Path  # relative to the folder written into
    text: str


def starter_files() -> list[StarterFile]:
    files = [StarterFile(Path(INVENTORY_NAME),
                         starter_inventory(REFERENCE_INVENTORY.read_text(encoding="utf-8")))]
    for template in sorted(KIT_TEMPLATES.glob("*.j2")):
        files.append(StarterFile(Path(TEMPLATES_FOLDER) / template.name,
                                 template.read_text(encoding="utf-8")))
    return files


def write_starter(folder: Path, *, force: bool = False) -> list[Path]:
    """Write the starter files into `folder`; refuse (writing nothing) when one exists,
    unless `force`. Returns the paths written."""
    files = starter_files()
    existing = [folder / f.path for f in files if (folder / f.path).exists()]
    if existing and not force:
        raise ScaffoldError(
            "nothing was written: " + ", ".join(str(p) for p in existing)
            + (" exists" if len(existing) == 1 else " exist")
            + " already; fab init --force overwrites"
        )
    written = []
    for starter in files:
        target = folder / starter.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(starter.text, encoding="utf-8")
        written.append(target)
    return written
