"""The no-op check of a redeploy (redeploy.already_serving), against recorded answers: Docker's
side in one command (containers, the tag's image ID, both env files), HAProxy's in one line;
a server is `unchanged` only with the same image and the same environment."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from slotswap.commands import docker
from slotswap.config.app_env import resolve_app_env
from slotswap.config.inventory import Inventory
from slotswap.config.layout import env_file_path
from slotswap.remote.server import CommandResult
from slotswap.server.redeploy import already_serving, expected_settings
from tests.unit.fake_server import FIXTURES, FakeServer, make_inventory

LIVE_IMAGE = json.loads((FIXTURES / "docker_inspect_live_web2.json").read_text())[1]["Image"]


class RecordedServer(FakeServer):
    """web2 serves v2 (recorded answers); the facts command runs for real in `sh`, with a
    `docker` that answers from the fixtures and env files in a folder of the test."""

    def __init__(self, inventory: Inventory, folder: Path, image_id: str) -> None:
        super().__init__()
        recorded = json.loads((FIXTURES / "docker_inspect_live_web2.json").read_text())
        for container in recorded:  # made with today's settings
            slot = container["Config"]["Labels"]["slotswap.slot"]
            container["Config"]["Labels"][docker.LABEL_SETTINGS] = expected_settings(
                inventory, slot)
        bin_folder = folder / "bin"
        bin_folder.mkdir()
        (folder / "containers.json").write_text(json.dumps(recorded))
        fake = bin_folder / "docker"
        fake.write_text(f"""#!/bin/sh
case "$1 $2" in
  "image inspect") echo {image_id} ;;
  "container inspect") cat {folder / "containers.json"} ;;
  "ps --quiet") [ ! -f {folder / "running_roles"} ] || cat {folder / "running_roles"} ;;
  *) exit 9 ;;
esac
""")
        fake.chmod(0o755)
        self.path = f"{bin_folder}:/usr/bin:/bin"
        self.round_trips = 0

    def runtime_api(self, command: str) -> str:
        self.round_trips += 1
        assert command == "show stat webapp 4 -1; show servers state webapp"
        return (FIXTURES / "show_stat_and_servers_state_live_web2.txt").read_text()

    def run(self, argv: Sequence[str], **_: Any) -> CommandResult:
        self.round_trips += 1
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              env={"PATH": self.path}, timeout=10)
        return CommandResult(done.stdout, done.stderr, done.returncode)


def inventory(folder: Path) -> Inventory:
    return make_inventory(folder, remote_dir=str(folder / "remote"),
                          env={"plain": {"MODE": "production"}})


@pytest.mark.parametrize(("image_id", "env_text", "unchanged"), [
    (LIVE_IMAGE, "today", True),
    (LIVE_IMAGE, "MODE=staging\n", False),  # another environment
    (LIVE_IMAGE, None, False),  # no env file
    ("sha256:" + "9" * 64, "today", False),  # the tag names another image now
])
def test_a_server_is_unchanged_only_with_the_same_image_and_environment(
        tmp_path: Path, image_id: str, env_text: str | None, unchanged: bool) -> None:
    inv = inventory(tmp_path)
    app_env = resolve_app_env(inv, {})
    if env_text is not None:
        path = Path(env_file_path(inv, "web2"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(app_env.text if env_text == "today" else env_text)
    server = RecordedServer(inv, tmp_path, image_id)
    serving = already_serving(server, inv, "v2", app_env)
    assert (serving == "v2 in web2") is unchanged
    assert server.round_trips == 2  # one command, one runtime-API line



def test_role_containers_running_with_no_role_in_the_inventory_are_not_unchanged(
        tmp_path: Path) -> None:
    """The whole `roles` section removed: its workers would run the old version on and on;
    the deploy is a swap, which stops them. Still one command and one runtime-API line."""
    inv = inventory(tmp_path)
    app_env = resolve_app_env(inv, {})
    path = Path(env_file_path(inv, "web2"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(app_env.text)
    server = RecordedServer(inv, tmp_path, LIVE_IMAGE)
    assert already_serving(server, inv, "v2", app_env) == "v2 in web2"
    (tmp_path / "running_roles").write_text("4f08c0ffee\n")
    assert already_serving(server, inv, "v2", app_env) is None
    assert server.round_trips == 4


def test_the_env_file_is_read_from_the_logins_own_folder(tmp_path: Path) -> None:
    """A login that is not root keeps its files in its home (Server.with_folders): the no-op
    check must compare the env file there, or every redeploy of such a login is a swap."""
    inv = inventory(tmp_path)
    app_env = resolve_app_env(inv, {})
    home = dataclasses.replace(inv, remote_dir=str(tmp_path / "home" / ".slotswap"))
    path = Path(env_file_path(home, "web2"))
    path.parent.mkdir(parents=True)
    path.write_text(app_env.text)
    server = RecordedServer(inv, tmp_path, LIVE_IMAGE)
    server.folders = home
    assert already_serving(server, inv, "v2", app_env) == "v2 in web2"
