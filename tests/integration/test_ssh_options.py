"""SSH options against the sandbox's real sshd: unknown and changed host keys, the
accept_unknown_hosts opt-out, jump hosts, ~/.ssh/config, and the private env file as
`docker --env-file` reads it. Connections are made in-process with slotswap.remote.server.Server;
nothing here deploys, so the servers' slots are left as they are."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import pytest

from slotswap.config.app_env import render_env_file
from slotswap.config.hosts import Host
from slotswap.config.inventory import Inventory
from slotswap.config.loader import load_inventory
from slotswap.config.ssh import JumpHost
from slotswap.remote.server import ConnectError, Server
from testbed import sandbox

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

pytestmark = pytest.mark.sandbox
NET = sandbox.SUBNET_PREFIX


@pytest.fixture
def inventory(sandbox_env: Sandbox) -> Inventory:
    return load_inventory(sandbox_env.inventory)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, so that only the ~/.ssh/config a test writes applies."""
    folder = tmp_path / "home"
    (folder / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(folder))
    return folder


def recorded_keys(inventory: Inventory) -> dict[str, str]:
    """known_hosts of the sandbox: address -> 'type base64'."""
    assert inventory.ssh.known_hosts is not None
    lines = inventory.ssh.known_hosts.read_text().splitlines()
    return {line.split()[0]: line.split(None, 1)[1] for line in lines if line.strip()}


def fingerprint(key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a 'type base64' key."""
    digest = hashlib.sha256(base64.b64decode(key_line.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def with_ssh(inventory: Inventory, **changes: object) -> Inventory:
    return dataclasses.replace(inventory, ssh=dataclasses.replace(inventory.ssh, **changes))


def known_hosts_file(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / f"known_hosts-{secrets.token_hex(4)}"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def ssh_client_address(inventory: Inventory, host: Host) -> str:
    """Where the server sees the SSH connection come from (the jump host, if any)."""
    server = Server(host, inventory)
    try:
        return server.run(["sh", "-c", 'echo "$SSH_CLIENT"']).stdout.split()[0]
    finally:
        server.close()


def connect_error(inventory: Inventory, host: Host) -> str:
    server = Server(host, inventory)
    try:
        with pytest.raises(ConnectError) as caught:
            server.connect()
    finally:
        server.close()
    return str(caught.value)


# -- host keys ------------------------------------------------------------------------------


def test_a_host_missing_from_known_hosts_is_refused(inventory: Inventory,
                                                   tmp_path: Path) -> None:
    empty = known_hosts_file(tmp_path, [])
    message = connect_error(with_ssh(inventory, known_hosts=empty), inventory.hosts[0])
    assert message == (
        f"s1: root@{NET}.11:22 is not in {empty}; check its key and add it "
        f"(ssh-keyscan -p 22 {NET}.11 >> {empty}), or set ssh.known_hosts in the inventory"
    )


def test_accept_unknown_hosts_connects_and_names_host_and_fingerprint(
    inventory: Inventory, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    empty = known_hosts_file(tmp_path, [])
    opted_out = with_ssh(inventory, known_hosts=empty, accept_unknown_hosts=True)

    assert ssh_client_address(opted_out, inventory.hosts[0]) == f"{NET}.1"

    warning = capfd.readouterr().err
    expected = fingerprint(recorded_keys(inventory)[f"{NET}.11"])
    assert f"WARNING: s1: ACCEPTING AN UNVERIFIED HOST KEY for {NET}.11" in warning
    assert expected in warning
    assert empty.read_text() == ""  # nothing was recorded


def test_accept_unknown_hosts_per_host(inventory: Inventory, tmp_path: Path) -> None:
    empty = with_ssh(inventory, known_hosts=known_hosts_file(tmp_path, []))
    host = dataclasses.replace(inventory.hosts[0], accept_unknown_hosts=True)
    assert ssh_client_address(empty, host) == f"{NET}.1"
    opted_in = with_ssh(empty, accept_unknown_hosts=True)
    host = dataclasses.replace(inventory.hosts[0], accept_unknown_hosts=False)
    assert "is not in" in connect_error(opted_in, host)


@pytest.mark.parametrize("accept_unknown_hosts", [False, True])
def test_a_changed_host_key_is_always_refused(inventory: Inventory, tmp_path: Path,
                                              accept_unknown_hosts: bool) -> None:
    # s2's key recorded for s1's address: what a man in the middle looks like.
    wrong = known_hosts_file(tmp_path, [f"{NET}.11 {recorded_keys(inventory)[f'{NET}.12']}"])
    changed = with_ssh(inventory, known_hosts=wrong, accept_unknown_hosts=accept_unknown_hosts)
    message = connect_error(changed, inventory.hosts[0])
    assert message.startswith(f"s1: the host key of root@{NET}.11:22 has CHANGED since it "
                              f"was recorded in {wrong}")


def test_a_host_recorded_with_another_key_type_only_is_a_changed_key(
    inventory: Inventory, tmp_path: Path
) -> None:
    # The sandbox's sshd offers its ed25519 key only.
    ecdsa = paramiko.ECDSAKey.generate()
    other = known_hosts_file(tmp_path, [f"{NET}.11 {ecdsa.get_name()} {ecdsa.get_base64()}"])
    changed = with_ssh(inventory, known_hosts=other, accept_unknown_hosts=True)
    assert "has CHANGED" in connect_error(changed, inventory.hosts[0])


# -- jump hosts -----------------------------------------------------------------------------


def test_jump_host_from_the_inventory(inventory: Inventory) -> None:
    s1, s2 = inventory.hosts[0], inventory.hosts[1]
    assert ssh_client_address(inventory, s2) == f"{NET}.1"
    via_s1 = with_ssh(inventory, jump=JumpHost(s1.address, user="root", port=22))
    assert ssh_client_address(via_s1, s2) == s1.address
    per_host = dataclasses.replace(s2, jump=JumpHost(s1.address))
    assert ssh_client_address(inventory, per_host) == s1.address


def test_jump_host_missing_from_known_hosts_is_refused(inventory: Inventory,
                                                       tmp_path: Path) -> None:
    keys = recorded_keys(inventory)
    only_s2 = known_hosts_file(tmp_path, [f"{NET}.12 {keys[f'{NET}.12']}"])
    jumped = with_ssh(inventory, known_hosts=only_s2, jump=JumpHost(f"{NET}.11"))
    message = connect_error(jumped, inventory.hosts[1])
    assert message.startswith(f"s2: jump host root@{NET}.11:22 is not in {only_s2}")


def test_server_behind_a_jump_host_missing_from_known_hosts_is_refused(
    inventory: Inventory, tmp_path: Path
) -> None:
    keys = recorded_keys(inventory)
    only_s1 = known_hosts_file(tmp_path, [f"{NET}.11 {keys[f'{NET}.11']}"])
    jumped = with_ssh(inventory, known_hosts=only_s1, jump=JumpHost(f"{NET}.11"))
    message = connect_error(jumped, inventory.hosts[1])
    assert message.startswith(f"s2: root@{NET}.12:22 is not in {only_s1}; check its key "
                              f"and add it (ssh -J root@{NET}.11:22")


def test_a_target_the_jump_host_cannot_reach(inventory: Inventory) -> None:
    jumped = with_ssh(inventory, jump=JumpHost(f"{NET}.11"), connect_timeout=2)
    message = connect_error(jumped, Host(address=f"{NET}.250", name="nowhere"))
    assert "nowhere: " in message
    assert f"through jump host {NET}.11" in message


# -- ~/.ssh/config --------------------------------------------------------------------------


def test_ssh_config_alias_and_proxyjump(inventory: Inventory, home: Path) -> None:
    (home / ".ssh" / "config").write_text(
        f"Host sandbox-two\n  HostName {NET}.12\n"
        f"Host {NET}.13\n  ProxyJump root@{NET}.11\n"
    )
    assert ssh_client_address(inventory, Host(address="sandbox-two", name="two")) == f"{NET}.1"
    # The jump host comes from ~/.ssh/config, with the inventory's key and known_hosts.
    assert ssh_client_address(inventory, inventory.hosts[2]) == f"{NET}.11"


def test_ssh_config_off_ignores_it(inventory: Inventory, home: Path) -> None:
    (home / ".ssh" / "config").write_text(f"Host {NET}.12\n  Port 2\n")
    unset_port = with_ssh(inventory, port=None)
    assert f"cannot connect to root@{NET}.12:2" in connect_error(unset_port,
                                                                 inventory.hosts[1])
    config_off = with_ssh(unset_port, config=False)
    assert ssh_client_address(config_off, inventory.hosts[1]) == f"{NET}.1"


# -- the private env file -------------------------------------------------------------------


def test_private_file_modes_and_content(inventory: Inventory) -> None:
    server = Server(inventory.hosts[0], inventory)
    folder = f"/tmp/slotswap-private-{secrets.token_hex(6)}/app"
    try:
        server.write_private_file(f"{folder}/web1.env", "A=1\n")
        server.write_private_file(f"{folder}/web1.env", "A=2\n")  # replaces it
        listing = server.run(["stat", "-c", "%a %n", folder, f"{folder}/web1.env"]).stdout
        assert listing.split("\n")[:2] == [f"700 {folder}", f"600 {folder}/web1.env"]
        assert server.read_file(f"{folder}/web1.env") == "A=2\n"
        assert server.run(["ls", "-A", folder]).stdout.split() == ["web1.env"]
    finally:
        server.run(["rm", "-rf", folder.rsplit("/", 1)[0]], check=False)
        server.close()


def test_docker_reads_the_env_file_verbatim(inventory: Inventory) -> None:
    variables = {"PLAIN": "info", "SPACES": "  a b  ", "QUOTES": "\"q\" 'q'",
                 "HASH": "#x # y", "EQUALS": "k=v=w", "EMPTY": "", "UNICODE": "ünï",
                 "SHELL": "$(touch /tmp/slotswap-pwned) `id` $HOME"}
    server = Server(inventory.hosts[0], inventory)
    folder = f"/tmp/slotswap-envfile-{secrets.token_hex(6)}"
    name = f"slotswap-envfile-check-{secrets.token_hex(4)}"
    try:
        server.write_private_file(f"{folder}/web1.env", render_env_file(variables))
        server.run(["docker", "create", "--name", name, "--env-file", f"{folder}/web1.env",
                    inventory.image_ref("v1")], timeout=120)
        answer = server.run(["docker", "inspect", "--format", "{{json .Config.Env}}", name])
        env = dict(item.split("=", 1) for item in json.loads(answer.stdout))
        assert {key: env[key] for key in variables} == variables
    finally:
        server.run(["docker", "rm", "--force", name], check=False)
        server.run(["rm", "-rf", folder], check=False)
        server.close()
