"""The simulated server's answers to the shared `up`'s and `down`'s commands
(simulated_shared_server.py), held to the real `sh` and coreutils running the kit's own
scripts on the same files: several locks in one round trip, the registry read, a generation
named, its files' checksums (the dry run's), `current` switched, the generations pruned, a
move's copy from the app's own HAProxy; and `haproxy -c` of a generation as check_generation
runs it (Docker refuses a mount whose source is missing)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from slotswap.commands.proxy_commands import check_generation
from slotswap.config.layout import (
    current_link,
    proxy_haproxy_dir,
    proxy_lock_dir,
    proxy_settings_path,
    proxy_state_dir,
    registrations_dir,
)
from slotswap.fleet.dry_run_proxy import generation_checksums_command
from slotswap.server.lock_sets import LockPlace, take_locks_command
from slotswap.server.locking import new_owner
from slotswap.server.proxy_files import (
    name_generation_command,
    partial_name,
    prune_generations_command,
    read_registry_command,
    switch_command,
)
from slotswap.server.proxy_move import COPY_SCRIPT
from tests.unit.simulated_apps import AppsServer
from tests.unit.simulated_apps_fleet import app_inventory, stand_in
from tests.unit.simulated_haproxy import SimClock
from tests.unit.simulated_shared_server import SharedSimServer

AGE = re.compile(r"^(held|stale) \d+", re.MULTILINE)


def server_at(root: Path) -> SharedSimServer:
    inventory = app_inventory(root, "a", 0, 1)
    return SharedSimServer(inventory.hosts[0].name, inventory, SimClock(), root,
                           config=stand_in(inventory))


def test_the_shared_scripts_answer_in_python_as_the_real_sh_does(tmp_path: Path) -> None:
    inventory = app_inventory(tmp_path, "a", 0, 1)
    ours, theirs = new_owner("up", "a"), new_owner("deploy", "b")
    folder = proxy_haproxy_dir(inventory)
    places = [LockPlace(proxy_state_dir(inventory), proxy_lock_dir(inventory)),
              LockPlace("/var/lib/slotswap/b", "/var/lib/slotswap/b/lock")]
    gen, other = "gen-0123456789ab", "gen-ba9876543210"
    own = "/etc/slotswap/a/haproxy"

    class Named:
        name = gen

    def steps(server: SharedSimServer) -> tuple[list[tuple[str, int]], dict[str, str],
                                               dict[str, str]]:
        files = server.files
        files.write(f"{registrations_dir(inventory)}/b.json", '{"app": "b"}\n')
        files.write(f"{registrations_dir(inventory)}/a.json", '{"app": "a"}')
        files.write(f"{folder}/apps/a/backend.cfg", "backend a\n")
        files.write(f"{folder}/{partial_name(Named)}/haproxy.cfg", "global\n")  # type: ignore[arg-type]
        files.write(f"{folder}/{other}/haproxy.cfg", "global\n")
        files.write(f"{folder}/.{other}.partial/haproxy.cfg", "global\n")
        commands: list[tuple[list[str], str | None]] = [
            (take_locks_command(places[1:], theirs, 60), json.dumps(theirs.__dict__)),
            # The first taken, the second held: the first released again, exit 4.
            (take_locks_command(places, ours, 180), json.dumps(ours.__dict__)),
            (["test", "-d", proxy_lock_dir(inventory)], None),
            (["sh", "-c", 'if grep -qsF -- "$1" "$2/owner.json"; then rm -rf -- "$2"; fi',
              "sh", theirs.token, places[1].lock_dir], None),
            (take_locks_command(places, ours, 180), json.dumps(ours.__dict__)),
            (read_registry_command(inventory, "MARK"), None),
            (["test", "-d", f"{folder}/{gen}"], None),
            (name_generation_command(inventory, Named), None),  # type: ignore[arg-type]
            (["test", "-d", f"{folder}/{gen}"], None),
            (generation_checksums_command(inventory, gen), None),  # the dry run's
            (generation_checksums_command(inventory, "gen-none"), None),
            (["readlink", current_link(inventory)], None),
            (switch_command(inventory, other, None), None),
            (switch_command(inventory, gen, other), None),
            (["readlink", current_link(inventory)], None),
            (["readlink", f"{folder}/previous"], None),
            (["test", "-f", f"{current_link(inventory)}/haproxy.cfg"], None),
            (["mv", "-T", f"{folder}/nothing", f"{folder}/else"], None),
            (prune_generations_command(inventory, {gen: None}), None),
            # A move's copy from the app's own HAProxy: each file where it is there.
            (["sh", "-c", COPY_SCRIPT, "sh", f"{own}/maintenance.map",
              f"{folder}/apps/a/maintenance.map", f"{own}/certs/site.pem",
              f"{folder}/apps/a/site.pem"], None),
        ]
        files.write(f"{own}/maintenance.map", "a.test page\n")
        files.write(proxy_settings_path(inventory), '{"values": {}}\n')
        answers = []
        for argv, stdin in commands:
            result = server.execute(list(argv), stdin)
            answers.append((AGE.sub(r"\1 age", result.stdout), result.exit_code))
        return answers, dict(server.files.files), dict(server.files.links)

    python, real = server_at(tmp_path / "python"), server_at(tmp_path / "real")
    real.real_shell = True
    ours_found, real_found = steps(python), steps(real)
    assert ours_found[0] == real_found[0]
    assert ours_found[1:] == real_found[1:]
    answers, files, links = ours_found
    assert [code for _, code in answers[:5]] == [0, 4, 1, 0, 0]
    assert files[f"{folder}/apps/a/maintenance.map"] == "a.test page\n"
    assert f"{folder}/apps/a/site.pem" not in files
    assert links[current_link(inventory)] == gen and links[f"{folder}/previous"] == other
    assert not any(path.startswith(f"{folder}/{other}") or ".partial" in path
                   for path in files)  # only what `keep` names stays (the kit names previous too)


def test_haproxy_checks_a_generation_seen_at_current_with_every_mount_there(
        tmp_path: Path) -> None:
    apps = AppsServer(tmp_path)
    server = SharedSimServer(apps.server.name, apps.server.inventory, apps.clock, tmp_path,
                             config=apps.server.haproxy.config)
    server.files = apps.server.files
    server.images["haproxy:2.8"] = "sha256:" + "ab" * 32
    argv = check_generation(image_ref="haproxy:2.8", haproxy_dir=apps.folder,
                            generation=apps.generation.name)
    assert server.execute(argv, None).stdout == "Configuration file is valid\n"
    assert server.checked == {apps.server.haproxy.config}
    server.files.unlink(f"{apps.folder}/apps/a/site.pem")
    refused = server.execute(argv, None)
    assert refused.exit_code == 1 and "[ALERT]" in refused.stderr
    server.files.remove_tree(f"{apps.folder}/apps")
    missing = server.execute(argv, None)
    assert missing.exit_code == 125 and "bind source path does not exist" in missing.stderr
