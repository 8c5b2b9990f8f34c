"""Real servers' logins: a user in the docker group (not root) with the kit's files in its home
(no setting) or in remote_dir, a fleet set up by root carried over to that login, shell
start-up files that print (a motd-style `echo` in ~/.bashrc, on stdout and stderr) and
speak German, and no Python traceback when the login may not write where the kit keeps its
files."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from testbed import sandbox
from tests.integration.conftest import LOGIN_BASHRC, chatty_logins

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox

APP = "webapp"
STATE = f"{sandbox.DEPLOY_REMOTE_DIR}/{APP}/state"
CONFIG = f"{sandbox.DEPLOY_REMOTE_DIR}/{APP}/config"
ADMIN_DIR = f"{CONFIG}/haproxy/admin"
# Without remote_dir, deploy's folder is in its home (each server's own, see the sandbox).
HOME_STATE = f"{sandbox.LOGIN_KIT_DIR}/{APP}/state"
HOME_CONFIG = f"{sandbox.LOGIN_KIT_DIR}/{APP}/config"
ROOT_STATE = f"/var/lib/slotswap/{APP}"
LOCK_OWNER = {"who": "alice@laptop", "since": "2026-11-26T09:00:00+00:00", "task": "deploy",
              "tag": "v9", "token": "f" * 32}


def on_server(index: int, *argv: str) -> str:
    """A command in a server's namespaces as root, without SSH (and its start-up files)."""
    node = sandbox.server_nodes(index + 1)[index]
    return subprocess.run([*node.nsenter(), *argv], text=True, capture_output=True, check=True,
                          timeout=30, env={**os.environ, "DOCKER_HOST": node.docker_host}).stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The exit code, no traceback, and the `error:` line."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output and "JSONDecodeError" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors, output
    return errors[-1]


def no_banner(output: str) -> None:
    for noise in ("Welcome to", "[ {not json", "no newline at the end"):
        assert noise not in output


@pytest.fixture
def clean_fleet(sandbox_env: Sandbox) -> Iterator[Sandbox]:
    """Nothing of the app on the servers, and no history of deploy's, before and after each
    test (the same engines, names and ports serve the root login's tests)."""
    box = sandbox_env

    def clean() -> None:
        LOGIN_BASHRC.unlink(missing_ok=True)
        for index in range(len(box.addresses)):
            # A carry-over's lock would refuse `down`; root's history would go on in the
            # next test's.
            on_server(index, "rm", "-rf", ROOT_STATE)
        assert box.fab("down").returncode == 0
        for index in range(len(box.addresses)):
            on_server(index, "sh", "-c", "docker rm -f $(docker ps -aq) 2>/dev/null; true")
            on_server(index, "rm", "-rf", sandbox.DEPLOY_REMOTE_DIR,
                      f"{sandbox.LOGIN_KIT_DIR}/{APP}")

    clean()
    yield box
    clean()


@pytest.fixture
def banner(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Every login's ~/.bashrc prints (param True) or is absent (False)."""
    with chatty_logins(request.param):
        yield request.param


def post_failure_hook(folder: Path) -> tuple[Path, Path]:
    """A hook that records the outcome it was told; returns (hook, record)."""
    record = folder / "post_failure.txt"
    hook = folder / "post-failure.sh"
    hook.write_text(f'#!/bin/sh\necho "$SLOTSWAP_OUTCOME $SLOTSWAP_EXIT_CODE" > {record}\n')
    hook.chmod(0o755)
    return hook, record


@pytest.mark.parametrize("banner", [False, True], indirect=True, ids=["quiet", "banner"])
def test_a_login_that_cannot_write_its_folder_is_told_in_one_line(
        clean_fleet: Sandbox, banner: bool, tmp_path: Path) -> None:
    """deploy with a remote_dir in root's /var/lib: it may not create it."""
    box = clean_fleet
    hook, record = post_failure_hook(tmp_path)
    inventory = box.inventory_copy(tmp_path, ssh={"user": sandbox.DEPLOY_USER},
                                   remote_dir="/var/lib/not-deploys",
                                   hooks={"post_failure": str(hook)})

    error = assert_one_line_error(box.fab("up", inventory=inventory), 1)
    assert "the SSH login deploy cannot write /" in error and "remote_dir" in error, error

    deployed = box.fab("deploy", "--tag", "v1", "--json", inventory=inventory)
    error = assert_one_line_error(deployed, 1)
    assert "nothing was changed" in error and "cannot write /var/lib/not-deploys" in error
    assert "remote_dir" in error
    document = json.loads(deployed.stdout)
    assert document["exit_code"] == 1 and "cannot write" in document["message"]
    assert record.read_text() == "failure 1\n"
    # Nothing was started on any server.
    for index in range(len(box.addresses)):
        assert on_server(index, "sh", "-c", "docker ps -aq").strip() == ""


# With a banner only: the quiet login is the same flow without the noise (the refusal above
# and the carry-over below run quiet).
@pytest.mark.parametrize("banner", [True], indirect=True, ids=["banner"])
def test_the_whole_flow_as_a_docker_group_login_with_its_own_folder(
        clean_fleet: Sandbox, banner: bool, tmp_path: Path) -> None:
    # The sandbox's inventory for deploy, then the same with the app's variables: the env
    # files are written as deploy too.
    assert clean_fleet.fab("up", inventory=clean_fleet.inventory.parent /
                           sandbox.DEPLOY_INVENTORY).returncode == 0
    box = dataclasses.replace(clean_fleet, env={**clean_fleet.env, "API_TOKEN": "s3cr3t"})
    inventory = box.inventory_copy(tmp_path, ssh={"user": sandbox.DEPLOY_USER},
                                   remote_dir=sandbox.DEPLOY_REMOTE_DIR,
                                   env={"plain": {"LOG_LEVEL": "info"}, "secret": ["API_TOKEN"]})
    first = box.fab("deploy", "--tag", "v1", inventory=inventory)
    assert first.returncode == 0
    no_banner(first.stdout + first.stderr)

    with box.load() as load:
        result = box.fab("deploy", "--tag", "v2", "--json", inventory=inventory)
    report = load.stop()
    assert result.returncode == 0, result.stderr
    assert report.failed == 0, report.failures
    assert report.sent > 0
    document = json.loads(result.stdout)  # the banner reached no parser, nor the document
    assert [s["outcome"] for s in document["servers"]] == ["deployed"] * len(box.addresses)

    status = box.fab("status", inventory=inventory)
    assert status.returncode == 0
    no_banner(status.stdout + status.stderr)
    assert len(re.findall(r"live web[12], serving v2$", status.stdout, re.MULTILINE)) == len(
        box.addresses)

    logs = box.fab("logs", "--lines=3", inventory=inventory)
    assert logs.returncode == 0, logs.stderr
    no_banner(logs.stdout)
    assert all(re.match(r"^s\d+ +\| ", line) for line in logs.stdout.splitlines()), logs.stdout

    every_other_task_as_the_login(box, inventory)

    # The kit's files are in the login's folder, its own (the state and the env files closed
    # to others); nothing went to the system ones.
    for index in range(len(box.addresses)):
        owners = on_server(index, "stat", "-c", "%U %a", STATE, f"{STATE}/history.jsonl",
                           CONFIG, f"{CONFIG}/web2.env", f"{CONFIG}/haproxy/haproxy.cfg")
        assert owners.splitlines() == ["deploy 700", "deploy 600", "deploy 700", "deploy 600",
                                       "deploy 644"], owners
        assert on_server(index, "find", "/etc/slotswap", "/var/lib/slotswap", "-user",
                         "deploy") == ""

    # Another run's lock: refused with exit 4, whatever language mkdir speaks there.
    on_server(1, "sh", "-c", f"mkdir -p {STATE}/lock && echo '{json.dumps(LOCK_OWNER)}' > "
                             f"{STATE}/lock/owner.json && chown -R deploy {STATE}/lock")
    locked = box.fab("deploy", "--tag", "v1", inventory=inventory)
    error = assert_one_line_error(locked, 4)
    assert "s2 is locked by alice@laptop since 2026-11-26T09:00:00+00:00 (deploy v9)" in error
    lock = box.fab("lock", inventory=inventory)
    assert lock.returncode == 0 and "s2: locked by alice@laptop" in lock.stdout
    assert box.fab("unlock", "--all", inventory=inventory).returncode == 0

    history = box.fab("history", inventory=inventory)
    assert history.returncode == 0
    no_banner(history.stdout)
    assert len(re.findall(r" deploy +v1 +v2 +deployed ", history.stdout)) == len(box.addresses)

    # A version that fails its checks once it took traffic (flaky1, 3 s after its start),
    # with --on-failure=rollback: every server goes back to v2, 0 failed requests.
    (tmp_path / "watched").mkdir()
    watched = box.inventory_copy(tmp_path / "watched", ssh={"user": sandbox.DEPLOY_USER},
                                 remote_dir=sandbox.DEPLOY_REMOTE_DIR, timeouts={"watch": 10},
                                 env={"plain": {"LOG_LEVEL": "info"}, "secret": ["API_TOKEN"]})
    with box.load() as load:
        failed = box.fab("deploy", "--tag", "flaky1", "--on-failure=rollback", inventory=watched)
    report = load.stop()
    assert_one_line_error(failed, 1)
    assert report.failed == 0, report.failures
    no_banner(failed.stdout + failed.stderr)
    assert live_versions(box, inventory) == ["v2"] * len(box.addresses)

    # A plain rollback undoes that failed deploy, which went back by itself: nothing moves.
    nothing = box.fab("rollback", inventory=inventory)
    assert nothing.returncode == 0, nothing.stderr
    assert "rollback undoes it" in nothing.stdout + nothing.stderr
    with box.load() as load:
        back = box.fab("rollback", "--to", "v1", inventory=inventory)
    assert back.returncode == 0, back.stderr
    assert load.stop().failed == 0
    assert set(box.served_versions(box.addresses[0])) == {"v1"}

    down = box.fab("down", inventory=inventory)
    assert down.returncode == 0, down.stderr
    for index in range(len(box.addresses)):
        assert on_server(index, "sh", "-c", "docker ps -aq").strip() == ""
        assert on_server(index, "sh", "-c", f"ls {sandbox.DEPLOY_REMOTE_DIR}/{APP}") == "state\n"


def live_versions(box: Sandbox, inventory: Path) -> list[str]:
    """Per server, in the inventory's order, the version `status --json` says it serves."""
    status = box.fab("status", "--json", inventory=inventory)
    assert status.returncode == 0, status.stderr
    no_banner(status.stdout + status.stderr)
    return [server["version"] for server in json.loads(status.stdout)["servers"]]


def every_other_task_as_the_login(box: Sandbox, inventory: Path) -> None:
    """check, exec, maintenance on and off, status --json and lock as the docker-group
    login, on a fleet serving v2; the admin socket is that login's alone."""
    checked = box.fab("check", inventory=inventory)
    assert checked.returncode == 0, checked.stderr
    assert "ssh.user: deploy" in checked.stdout

    ran = box.fab("exec", "--command=version", inventory=inventory)
    assert ran.returncode == 0, ran.stderr
    no_banner(ran.stdout)
    assert ran.stdout.strip().splitlines()[-1] == "v2"
    assert box.fab("exec", "--command=exit 3", inventory=inventory).returncode == 3

    assert box.fab("maintenance.on", inventory=inventory).returncode == 0
    status = json.loads(box.fab("status", "--json", inventory=inventory).stdout)
    assert [server["maintenance"] for server in status["servers"]] == [True] * len(
        box.addresses)
    assert box.fab("maintenance.off", inventory=inventory).returncode == 0
    assert live_versions(box, inventory) == ["v2"] * len(box.addresses)
    status = json.loads(box.fab("status", "--json", inventory=inventory).stdout)
    assert not any(server["maintenance"] for server in status["servers"])

    lock = box.fab("lock", inventory=inventory)
    assert lock.returncode == 0, lock.stderr
    no_banner(lock.stdout)
    assert lock.stdout.count(": free") == len(box.addresses), lock.stdout

    # HAProxy's admin socket, in the login's folder: its folder and the socket are the
    # login's alone.
    for index in range(len(box.addresses)):
        modes = on_server(index, "stat", "-c", "%U %a %F", ADMIN_DIR, f"{ADMIN_DIR}/admin.sock")
        assert modes.splitlines() == ["deploy 700 directory", "deploy 600 socket"], modes


@pytest.mark.parametrize("banner", [True], indirect=True, ids=["banner"])
def test_root_with_a_banner_and_german_messages(clean_fleet: Sandbox, banner: bool,
                                                tmp_path: Path) -> None:
    """The default login and folders, a chatty ~/.bashrc: status, deploy and a held lock."""
    box = clean_fleet
    assert box.fab("up").returncode == 0
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    with box.load() as load:
        deployed = box.fab("deploy", "--tag", "v2")
    assert deployed.returncode == 0, deployed.stderr
    no_banner(deployed.stdout + deployed.stderr)
    assert load.stop().failed == 0
    assert box.live_versions() == {f"s{i}": "v2" for i in range(1, len(box.addresses) + 1)}
    lock = f"/var/lib/slotswap/{APP}/lock"
    on_server(0, "sh", "-c", f"mkdir -p {lock} && echo '{json.dumps(LOCK_OWNER)}' > "
                             f"{lock}/owner.json")
    try:
        error = assert_one_line_error(box.fab("deploy", "--tag", "v1"), 4)
        assert "s1 is locked by alice@laptop" in error
    finally:
        on_server(0, "rm", "-rf", lock)


def deploy_inventory(box: Sandbox, folder: Path, remote_dir: str | None) -> Path:
    """The sandbox's inventory as the login deploy, with remote_dir when given."""
    folder.mkdir(parents=True, exist_ok=True)
    changes: dict[str, object] = {"ssh": {"user": sandbox.DEPLOY_USER}}
    if remote_dir is not None:
        changes["remote_dir"] = remote_dir
    return box.inventory_copy(folder, **changes)


def history_rows(box: Sandbox, inventory: Path | None = None) -> list[tuple[str, str, str]]:
    """(from, to, outcome) of each entry of s1's history."""
    shown = box.fab("history", "--json", inventory=inventory)
    assert shown.returncode == 0, shown.stderr
    entries = json.loads(shown.stdout)["servers"][0]["entries"]
    return [(e["from_tag"] or "-", e["to_tag"], e["outcome"]) for e in entries]


def test_a_docker_group_login_without_remote_dir_deploys_from_its_home(
        clean_fleet: Sandbox, tmp_path: Path) -> None:
    """No setting for the login `deploy` but its name: the kit's folder is in its home, as
    the server names it; deploys under load lose nothing."""
    box = clean_fleet
    inventory = deploy_inventory(box, tmp_path, None)
    up = box.fab("up", inventory=inventory)
    assert up.returncode == 0, up.stderr
    assert box.fab("deploy", "--tag", "v1", inventory=inventory).returncode == 0
    with box.load() as load:
        result = box.fab("deploy", "--tag", "v2", inventory=inventory)
    report = load.stop()
    assert result.returncode == 0, result.stderr
    assert report.failed == 0 and report.sent > 0, report.failures
    assert live_versions(box, inventory) == ["v2"] * len(box.addresses)
    assert history_rows(box, inventory) == [("-", "v1", "deployed"), ("v1", "v2", "deployed")]
    for index in range(len(box.addresses)):
        admin = f"{HOME_CONFIG}/haproxy/admin"
        owners = on_server(index, "stat", "-c", "%U %a %F", f"{HOME_STATE}/history.jsonl",
                           admin, f"{admin}/admin.sock")
        assert owners.splitlines() == ["deploy 600 regular file", "deploy 700 directory",
                                       "deploy 600 socket"], owners
        assert on_server(index, "find", "/etc/slotswap", "/var/lib/slotswap", "-user",
                         "deploy") == ""
    checked = box.fab("check", inventory=inventory)
    assert "remote_dir: (not set: root keeps" in checked.stdout, checked.stdout


def haproxy_folder(index: int) -> str:
    """The server folder HAProxy's container runs its config from."""
    return on_server(index, "docker", "inspect", "--format",
                     '{{range .Mounts}}{{if eq .Destination "/usr/local/etc/haproxy"}}'
                     "{{.Source}}{{end}}{{end}}", f"{APP}-haproxy").strip()


@pytest.mark.parametrize("remote_dir", [None, sandbox.DEPLOY_REMOTE_DIR],
                         ids=["home", "remote_dir"])
def test_a_fleet_root_set_up_is_carried_over_to_the_docker_group_login(
        clean_fleet: Sandbox, remote_dir: str | None, tmp_path: Path) -> None:
    """Root sets the fleet up and deploys; the login deploy then runs `up` and deploys, under
    load: nothing fails, the history goes on, maintenance stays on where it was, and root's
    folder is locked for good."""
    box = clean_fleet
    assert box.fab("up").returncode == 0
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    assert box.fab("deploy", "--tag", "v2").returncode == 0
    assert box.fab("maintenance.on", "--hosts=s3").returncode == 0
    inventory = deploy_inventory(box, tmp_path, remote_dir)
    config = f"{remote_dir}/{APP}/config" if remote_dir else HOME_CONFIG

    with box.load(box.addresses[:2]) as load:  # s3 answers 503: it is in maintenance
        up = box.fab("up", inventory=inventory)
        deployed = box.fab("deploy", "--tag", "v1", inventory=inventory)
    report = load.stop()
    assert up.returncode == 0, up.stdout + up.stderr
    assert "carrying the server over" in up.stdout + up.stderr
    assert deployed.returncode == 0, deployed.stderr
    assert report.failed == 0 and report.sent > 0, report.failures
    assert live_versions(box, inventory) == ["v1"] * len(box.addresses)
    status = json.loads(box.fab("status", "--json", inventory=inventory).stdout)
    # (null: an empty map, which HAProxy shows as nothing: off)
    assert [bool(server["maintenance"]) for server in status["servers"]] == [False, False,
                                                                              True]
    assert box.fab("maintenance.off", "--hosts=s3", inventory=inventory).returncode == 0
    assert box.served_versions(box.addresses[2]) == {"v1"}
    assert history_rows(box, inventory) == [("-", "v1", "deployed"), ("v1", "v2", "deployed"),
                                            ("v2", "v1", "deployed")]
    for index in range(len(box.addresses)):
        assert haproxy_folder(index) == f"{config}/haproxy"
        modes = on_server(index, "stat", "-c", "%U %a %F", f"{config}/haproxy/admin/admin.sock")
        assert modes.strip() == "deploy 600 socket"
        assert on_server(index, "sh", "-c", f"docker ps -aq --filter name={APP}-haproxy-carrier"
                         ) == ""
    # A second `up` finds nothing to carry.
    again = box.fab("up", inventory=inventory)
    assert again.returncode == 0 and "carrying" not in again.stdout + again.stderr
    # Root's runs are refused, saying where the server went (exit 4), nothing changed.
    error = assert_one_line_error(box.fab("deploy", "--tag", "v2"), 4)
    assert "s1 was carried over to" in error and "the login deploy" in error, error
    assert live_versions(box, inventory) == ["v1"] * len(box.addresses)


def test_a_server_root_set_up_is_named_to_a_login_that_did_not_carry_it_over(
        clean_fleet: Sandbox, tmp_path: Path) -> None:
    """Before its `up`, the login deploy is told in one line what is in the way."""
    box = clean_fleet
    assert box.fab("up").returncode == 0
    assert box.fab("deploy", "--tag", "v1").returncode == 0
    inventory = deploy_inventory(box, tmp_path, None)
    error = assert_one_line_error(box.fab("deploy", "--tag", "v2", inventory=inventory), 1)
    assert "HAProxy runs from the folders of another login" in error, error
    assert "`fab up` with these settings once to carry the server over" in error, error
    assert live_versions(box, box.inventory) == ["v1"] * len(box.addresses)
