"""A FakeServer whose shared HAProxy runs two apps (several apps on one server), for the tests
of `status` and `up`/`down --dry-run` with haproxy.shared (test_apps_status.py,
test_apps_dry_run.py): their registrations, stored fragments and settings read back as
proxy_files.read_registry reads them, the generation they make as `current` and `.running`,
the containers, and one runtime-API answer for status's line."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from slotswap.commands.role_containers import INSPECT_ROLES_SCRIPT
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    PROXY_CONTAINER,
    current_link,
    proxy_running_path,
)
from slotswap.fleet import dry_run_proxy
from slotswap.remote.server import CommandResult
from slotswap.server.haproxy_config import login_ids
from slotswap.server.locking import READ_SCRIPT
from slotswap.server.proxy_assembly import assemble, render_fragment
from slotswap.server.proxy_files import (
    READ_REGISTRY_SCRIPT,
    kit_defaults,
    registration_for,
)
from slotswap.server.proxy_registry import (
    SharedSettings,
    registration_json,
    settings_json,
)
from tests.unit.fake_server import FakeServer, make_inventory

AT = "2026-12-04T09:00:00+00:00"


def shared(app: str, names: list[str], ports: list[int], **haproxy: object) -> Inventory:
    return make_inventory(Path(f"/srv/{app}"), app=app, names=names,
                          haproxy={"shared": True, "slot_ports": ports, **haproxy})


SHOP = shared("shop", ["shop.test"], [18181, 18182])
BLOG = shared("blog", ["*.example.com"], [18183, 18184])


def stat_csv(lives: dict[str, str]) -> str:
    """An unscoped `show stat`: the frontend, then each app's slot lines and backend row."""
    rows = ["http,FRONTEND,0,OPEN"]
    for app, live in lives.items():
        rows += [f"{app},{slot},0,{'UP' if slot == live else 'MAINT'}"
                 for slot in ("web1", "web2", "web1-fallback", "web2-fallback")]
        rows.append(f"{app},BACKEND,0,UP")
    return "# pxname,svname,scur,status\n" + "\n".join(rows) + "\n\n"


def inspect_answer(containers: dict[str, dict[str, object]]
                   ) -> Callable[[list[str]], CommandResult]:
    """`docker container inspect NAMES`: those of `containers` that exist (exit 1 if not all)."""

    def answer(argv: list[str]) -> CommandResult:
        items = [containers[name] for name in argv[3:] if name in containers]
        return CommandResult(json.dumps(items), "", 0 if len(items) == len(argv) - 3 else 1)
    return answer


def proxy_container(image: str = "haproxy:2.8") -> dict[str, object]:
    return {"Name": f"/{PROXY_CONTAINER}", "State": {"Running": True, "Status": "running"},
            "Config": {"Image": image, "Labels": {"slotswap.role": "haproxy",
                                                  "slotswap.shared": "1"}}}


class Shared(FakeServer):
    """A server whose shared HAProxy runs the generation of `apps` (their inventories)."""

    def __init__(self, apps: list[Inventory], *, running: bool = True) -> None:
        super().__init__(inventory=apps[0])
        values = {**kit_defaults(), "haproxy.image": "haproxy:2.8"}
        self.settings = SharedSettings(values, None, "alice@laptop", AT)
        self.registrations = [registration_for(item, kit_version="0.6.0", by="alice@laptop",
                                               at=AT) for item in apps]
        self.fragments = {item.app: render_fragment(item, values) for item in apps}
        self.generation = assemble(self.registrations, self.fragments, values, login_ids(self))
        self.containers = {PROXY_CONTAINER: proxy_container()} if running else {}
        self.files[current_link(apps[0])] = self.generation.name
        self.files[proxy_running_path(apps[0])] = self.generation.sha12 + "\n"
        self.answers.update({
            ("sh", "-c", READ_REGISTRY_SCRIPT): self.registry_answer,
            ("readlink",): lambda argv: CommandResult(self.files.get(argv[1], "") + "\n", "",
                                                      0 if argv[1] in self.files else 1),
            ("docker", "container", "inspect"): lambda argv: inspect_answer(
                self.containers)(argv),
            ("sh", "-c", dry_run_proxy.CHECKSUMS_SCRIPT): lambda argv: CommandResult("".join(
                f"{hashlib.sha256(text.encode()).hexdigest()}  ./{path}\n"
                for path, text in self.generation.files.items()), "", 0),
            ("sh", "-c", READ_SCRIPT): CommandResult("free\n", "", 0),
            ("test", "-d"): lambda argv: CommandResult(
                "", "", 0 if argv[2].endswith(f"/{self.generation.name}") else 1),
            ("docker", "ps", "--all", "--filter", "label=slotswap.role"): CommandResult(
                "slotswap-proxy\thaproxy:2.8\trunning\thaproxy\t\t\t\n"
                "shop-web1\tacme/shop:v1\trunning\tapp\tshop\tweb1\tv1\n"
                "shop-web2\tacme/shop:v0\texited\tapp\tshop\tweb2\tv0\n"
                "blog-web2\tacme/blog:b7\trunning\tapp\tblog\tweb2\tb7\n", "", 0),
        })
        self.api_lines: list[str] = []
        self.api["show map"] = self.api_answer
        # The live slot of each app whose backend the running generation has.
        self.lives = {"shop": "web1", "blog": "web2"}

    def registry_answer(self, argv: list[str]) -> CommandResult:
        mark = argv[-1]
        parts = []
        for item in self.registrations:
            parts.append(f"{mark} registration {item.app}\n{registration_json(item)}\n")
            parts.append(f"{mark} fragment {item.app}\n{self.fragments[item.app]}\n")
        parts.append(f"{mark} settings\n{settings_json(self.settings)}\n")
        return CommandResult("".join(parts), "", 0)

    def api_answer(self, line: str) -> str:
        self.api_lines.append(line)
        return ("0x55d0c0 shop.test shop\n\nName: HAProxy\nVersion: 2.8.5\nPid: 7\n\n"
                "0x55d0c1 example.com blog\n\n" + stat_csv(self.lives))


READS = {("sh", "-c", READ_REGISTRY_SCRIPT), ("readlink",), ("docker", "container", "inspect"),
         ("sh", "-c", dry_run_proxy.CHECKSUMS_SCRIPT), ("sh", "-c", READ_SCRIPT), ("test",),
         ("docker", "image", "inspect"), ("docker", "network", "inspect"), ("docker", "ps"),
         ("sh", "-c", INSPECT_ROLES_SCRIPT)}


def only_read(server: Shared, files_before: dict[str, str]) -> None:
    for argv in server.commands:
        assert any(tuple(argv[:len(prefix)]) == prefix for prefix in READS), argv
    assert server.files == files_before and server.sent == []
