"""What the sandbox tests of several apps on one server share: an app's inventory on the
servers' shared HAProxy, and the apps up and serving their first versions for a module."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox


def shared_inventory(box: Sandbox, folder: Path, app: str, *, names: list[str],
                     slot_ports: list[int], port: int, owner: bool) -> Path:
    """folder/<app>/hosts.yaml: the sandbox's inventory as `app` on the shared HAProxy; the
    owner's sets the shared settings (the sandbox's image, `port`), another's leaves them out."""
    (folder / app).mkdir(exist_ok=True)
    data = yaml.safe_load(box.inventory_copy(folder / app).read_text())
    image = data["haproxy"]["image"]
    data.update(app=app, names=names)
    data["haproxy"] = {"shared": True, "slot_ports": slot_ports,
                       **({"image": image, "http_port": port} if owner else {})}
    path = folder / app / "hosts.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def apps_inventories(box: Sandbox, folder: Path, slot_ports: dict[str, list[int]], *,
                     port: int, owner: str) -> dict[str, Path]:
    """Each app of `slot_ports` on the shared HAProxy under the name `<app>.test`, `owner`'s
    inventory setting the shared settings."""
    return {app: shared_inventory(box, folder, app, names=[f"{app}.test"], slot_ports=ports,
                                  port=port, owner=app == owner)
            for app, ports in slot_ports.items()}


@contextlib.contextmanager
def apps_serving(fab: Callable[..., subprocess.CompletedProcess[str]],
                 first: dict[str, str]) -> Iterator[None]:
    """Each app of `first` up and serving its version (`fab(app, *args)`), in that order;
    each `down` at the end."""
    try:
        for app, tag in first.items():
            assert fab(app, "up").returncode == 0
            assert fab(app, "deploy", "--tag", tag).returncode == 0
        yield
    finally:
        for app in first:
            fab(app, "down")
