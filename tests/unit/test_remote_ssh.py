"""tasks.remote without a network: host-key policies, what a Server's connections are built
from (inventory, ~/.ssh/config, defaults), and how a private file is written."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import paramiko
import pytest
from fabric import Connection

from tasks.inventory import Inventory, parse_inventory
from tasks.remote import (
    AcceptUnknownHostsLoudly,
    CommandDeadlineError,
    CommandResult,
    ConnectError,
    ConnectionLostError,
    RefuseUnknownHosts,
    RemoteCommandError,
    Server,
    UnknownHostKeyError,
    fabric_config,
    hostkey_name,
    jump_chain,
    liveness_socket_options,
    login_for,
    unknown_host_warning,
)
from tasks.validation import InputError

KEY_256 = paramiko.ECDSAKey.generate(bits=256)
KEY_256_OTHER = paramiko.ECDSAKey.generate(bits=256)
KEY_384 = paramiko.ECDSAKey.generate(bits=384)  # another key type: ecdsa-sha2-nistp384


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own: the operator's ~/.ssh/config must not leak in."""
    folder = tmp_path / "home"
    (folder / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(folder))
    return folder


def ssh_config(home: Path, text: str) -> None:
    (home / ".ssh" / "config").write_text(text, encoding="utf-8")


def inventory(tmp_path: Path, ssh: dict[str, Any] | None = None,
              hosts: list[Any] | None = None) -> Inventory:
    data: dict[str, Any] = {"app": "webapp", "image": "acme/webapp",
                            "hosts": hosts or ["203.0.113.10"]}
    if ssh is not None:
        data["ssh"] = ssh
    return parse_inventory(data, tmp_path / "hosts.yaml")


def server(tmp_path: Path, ssh: dict[str, Any] | None = None,
           hosts: list[Any] | None = None, index: int = 0) -> Server:
    inv = inventory(tmp_path, ssh, hosts)
    return Server(inv.hosts[index], inv)


def client_knowing(hostname: str, key: paramiko.PKey) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.get_host_keys().add(hostname, key.get_name(), key)
    return client


# -- host-key policies ----------------------------------------------------------------------


def test_unknown_host_is_refused_by_default() -> None:
    with pytest.raises(UnknownHostKeyError, match="not found in known_hosts"):
        RefuseUnknownHosts().missing_host_key(paramiko.SSHClient(), "10.0.0.1", KEY_256)


def test_unknown_host_is_accepted_loudly_when_asked(tmp_path: Path) -> None:
    said: list[str] = []
    policy = AcceptUnknownHostsLoudly("s1", tmp_path / "known_hosts", said.append)

    policy.missing_host_key(paramiko.SSHClient(), "[10.0.0.1]:2222", KEY_256)

    assert len(said) == 1
    assert said[0].startswith("WARNING: s1: ACCEPTING AN UNVERIFIED HOST KEY for [10.0.0.1]:2222")
    assert f"ecdsa-sha2-nistp256 {KEY_256.fingerprint}" in said[0]
    assert KEY_256.fingerprint.startswith("SHA256:")
    assert str(tmp_path / "known_hosts") in said[0]


@pytest.mark.parametrize("policy", [
    RefuseUnknownHosts(),
    AcceptUnknownHostsLoudly("s1", Path("known_hosts"), lambda _: None),
], ids=["strict", "accept_unknown_hosts"])
def test_a_host_known_by_another_key_type_is_a_changed_key(policy: Any) -> None:
    # paramiko asks the policy when no key of the *offered* type is recorded.
    client = client_knowing("10.0.0.1", KEY_384)
    with pytest.raises(paramiko.BadHostKeyException):
        policy.missing_host_key(client, "10.0.0.1", KEY_256)


def test_accept_unknown_hosts_warning_text() -> None:
    text = unknown_host_warning("s2: jump host b", "b", KEY_256, Path("/k"))
    assert "s2: jump host b" in text
    assert KEY_256.fingerprint in text
    assert "accept_unknown_hosts" in text


def test_changed_key_of_the_same_type_never_reaches_the_policy() -> None:
    # The guarantee the accepting policy relies on: paramiko compares a recorded key of the
    # offered type itself and raises before any policy is asked.
    client = client_knowing("10.0.0.1", KEY_256)
    recorded = client.get_host_keys().lookup("10.0.0.1")
    assert recorded is not None
    assert recorded[KEY_256.get_name()] != KEY_256_OTHER


def test_hostkey_name_is_the_known_hosts_form() -> None:
    assert hostkey_name("10.0.0.1", 22) == "10.0.0.1"
    assert hostkey_name("10.0.0.1", 2222) == "[10.0.0.1]:2222"


# -- ~/.ssh/config and login ----------------------------------------------------------------


def test_ssh_config_is_read_when_on_and_ignored_when_off(home: Path) -> None:
    ssh_config(home, "Host web1\n  HostName 10.0.0.7\n  User alice\n  Port 2201\n")
    assert fabric_config(True).base_ssh_config.lookup("web1")["user"] == "alice"
    assert "user" not in fabric_config(False).base_ssh_config.lookup("web1")


def test_login_inventory_first_then_ssh_config_then_root_and_22(home: Path) -> None:
    ssh_config(home, "Host web1\n  User alice\n  Port 2201\n")
    config = fabric_config(True)
    assert login_for(config, "web1", None, None) == ("alice", 2201)
    assert login_for(config, "web1", "deploy", 2222) == ("deploy", 2222)
    assert login_for(config, "other", None, None) == ("root", 22)
    assert login_for(fabric_config(False), "web1", None, None) == ("root", 22)


def test_a_non_numeric_port_in_ssh_config_is_bad_input(home: Path) -> None:
    ssh_config(home, "Host web1\n  Port ssh\n")
    with pytest.raises(InputError, match="Port 'ssh'"):
        login_for(fabric_config(True), "web1", None, None)


def test_default_server_connection(tmp_path: Path) -> None:
    srv = server(tmp_path)
    conn = srv.connection
    assert (conn.host, conn.user, conn.port) == ("203.0.113.10", "root", 22)
    assert conn.gateway is None
    assert srv.jumps == []
    assert conn.connect_timeout == 10
    assert isinstance(conn.client._policy, RefuseUnknownHosts)
    # ssh-agent and ~/.ssh/id_* stay usable: nothing turns them off.
    assert "allow_agent" not in conn.connect_kwargs
    assert "look_for_keys" not in conn.connect_kwargs
    assert srv.known_hosts == Path("~/.ssh/known_hosts").expanduser()


def test_identity_and_known_hosts_from_the_inventory(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(f"203.0.113.10 {KEY_256.get_name()} {KEY_256.get_base64()}\n")
    srv = server(tmp_path, ssh={"identity": "id_ed25519", "known_hosts": "known_hosts"})
    assert srv.connection.connect_kwargs["key_filename"] == [str(tmp_path / "id_ed25519")]
    recorded = srv.connection.client.get_host_keys().lookup("203.0.113.10")
    assert recorded is not None and recorded[KEY_256.get_name()] == KEY_256


def test_a_fraction_of_a_second_is_not_turned_into_no_timeout(tmp_path: Path) -> None:
    assert server(tmp_path, ssh={"connect_timeout": 0.5}).connection.connect_timeout == 1
    assert server(tmp_path, ssh={"connect_timeout": 2.5}).connection.connect_timeout == 3


def test_accept_unknown_hosts_from_ssh_and_per_host(tmp_path: Path) -> None:
    hosts = ["203.0.113.10", {"address": "203.0.113.11", "accept_unknown_hosts": False}]
    fleet = inventory(tmp_path, ssh={"accept_unknown_hosts": True}, hosts=hosts)
    first, second = (Server(host, fleet) for host in fleet.hosts)
    assert isinstance(first.connection.client._policy, AcceptUnknownHostsLoudly)
    assert isinstance(second.connection.client._policy, RefuseUnknownHosts)
    only_one = inventory(tmp_path, hosts=[{"address": "203.0.113.12",
                                           "accept_unknown_hosts": True}])
    srv = Server(only_one.hosts[0], only_one)
    assert isinstance(srv.connection.client._policy, AcceptUnknownHostsLoudly)


def test_ssh_config_gives_hostname_user_and_port_the_inventory_leaves_out(
    tmp_path: Path, home: Path
) -> None:
    ssh_config(home, "Host web1\n  HostName 10.0.0.7\n  User alice\n  Port 2201\n")
    conn = server(tmp_path, hosts=["web1"]).connection
    assert (conn.host, conn.user, conn.port) == ("10.0.0.7", "alice", 2201)
    conn = server(tmp_path, ssh={"user": "deploy", "port": 22}, hosts=["web1"]).connection
    assert (conn.host, conn.user, conn.port) == ("10.0.0.7", "deploy", 22)
    conn = server(tmp_path, ssh={"config": False}, hosts=["web1"]).connection
    assert (conn.host, conn.user, conn.port) == ("web1", "root", 22)


def test_jump_host_from_the_inventory_gets_the_same_key_and_rules(tmp_path: Path) -> None:
    srv = server(tmp_path, ssh={"jump": "hop@bastion.example.com:2022", "identity": "k",
                                "accept_unknown_hosts": True, "connect_timeout": 4})
    gateway = srv.connection.gateway
    assert isinstance(gateway, Connection)
    assert (gateway.host, gateway.user, gateway.port) == ("bastion.example.com", "hop", 2022)
    assert srv.jumps == [gateway]
    assert gateway.connect_kwargs["key_filename"] == [str(tmp_path / "k")]
    assert gateway.connect_kwargs["channel_timeout"] == 4
    assert gateway.connect_timeout == 4
    assert isinstance(gateway.client._policy, AcceptUnknownHostsLoudly)
    assert gateway.client._policy.label == "203.0.113.10: jump host bastion.example.com"


def test_jump_host_user_defaults_to_ssh_user_and_port_to_22(tmp_path: Path) -> None:
    gateway = server(tmp_path, ssh={"jump": "bastion", "user": "deploy"}).connection.gateway
    assert (gateway.user, gateway.port) == ("deploy", 22)
    gateway = server(tmp_path, ssh={"jump": "bastion"}).connection.gateway
    assert (gateway.user, gateway.port) == ("root", 22)


def test_per_host_jump_wins_over_the_ssh_section(tmp_path: Path) -> None:
    srv = server(tmp_path, ssh={"jump": "b1"},
                 hosts=[{"address": "10.0.0.5", "jump": "ops@b2:2200"}])
    assert (srv.connection.gateway.host, srv.connection.gateway.user) == ("b2", "ops")


def test_proxyjump_from_ssh_config_gets_our_key_and_host_key_rules(tmp_path: Path,
                                                                    home: Path) -> None:
    ssh_config(home, "Host 10.0.0.*\n  ProxyJump hop@bastion.example.com:2022\n")
    srv = server(tmp_path, ssh={"identity": "k"}, hosts=["10.0.0.5"])
    assert [(hop.host, hop.user, hop.port) for hop in srv.jumps] == [
        ("bastion.example.com", "hop", 2022)
    ]
    assert jump_chain(srv.connection) == srv.jumps
    hop = srv.jumps[0]
    # Fabric builds it with AutoAddPolicy (any key would do) and none of our settings.
    assert isinstance(hop.client._policy, RefuseUnknownHosts)
    assert str(tmp_path / "k") in hop.connect_kwargs["key_filename"]
    assert hop.connect_kwargs["channel_timeout"] == 10
    assert hop.connect_timeout == 10


def test_jump_chain_lists_the_first_hop_first(tmp_path: Path) -> None:
    first = Connection("first.example.com")
    second = Connection("second.example.com", gateway=first)
    target = Connection("10.0.0.5", gateway=second)
    assert jump_chain(target) == [first, second]
    assert jump_chain(first) == []


def test_several_proxyjump_hops_are_refused(tmp_path: Path, home: Path) -> None:
    # Fabric would open second.example.com first: the reverse of ssh's order.
    ssh_config(home, "Host 10.0.0.*\n  ProxyJump first.example.com,second.example.com\n"
                     "Host bastion\n  ProxyJump a,b\n")
    with pytest.raises(InputError, match=r"10\.0\.0\.5: ssh_config gives this host several "
                                         r"jump hosts \(ProxyJump first"):
        server(tmp_path, hosts=["10.0.0.5"])
    with pytest.raises(InputError, match="bastion: ssh_config gives this host several"):
        server(tmp_path, ssh={"jump": "bastion"}, hosts=["203.0.113.10"])
    # An inventory jump host replaces the target's ProxyJump, so that one is not in the way.
    assert [hop.host for hop in server(tmp_path, ssh={"jump": "other"},
                                       hosts=["10.0.0.5"]).jumps] == ["other"]


def test_inventory_jump_wins_over_proxyjump_and_config_off_ignores_it(
    tmp_path: Path, home: Path
) -> None:
    ssh_config(home, "Host 10.0.0.5\n  ProxyJump from-config.example.com\n")
    srv = server(tmp_path, ssh={"jump": "from-inventory"}, hosts=["10.0.0.5"])
    assert [hop.host for hop in srv.jumps] == ["from-inventory"]
    srv = server(tmp_path, ssh={"config": False}, hosts=["10.0.0.5"])
    assert srv.jumps == []
    assert srv.connection.gateway is None


def test_close_closes_jump_hosts_too(tmp_path: Path) -> None:
    srv = server(tmp_path, ssh={"jump": "bastion"})
    closed: list[str] = []
    srv.connection.close = lambda: closed.append("server")  # type: ignore[method-assign]
    srv.jumps[0].close = lambda: closed.append("jump")  # type: ignore[method-assign]
    srv.close()
    assert closed == ["server", "jump"]


# -- write_private_file ---------------------------------------------------------------------


class FakeFile(io.BytesIO):
    def __init__(self, log: list[tuple[str, ...]], path: str):
        super().__init__()
        self.log, self.path = log, path

    def chmod(self, mode: int) -> None:
        self.log.append(("chmod", self.path, oct(mode)))

    def write(self, data: Any) -> int:
        self.log.append(("write", self.path, bytes(data).decode()))
        return len(data)


class FakeSFTP:
    def __init__(self, fail_on_write: bool = False):
        self.log: list[tuple[str, ...]] = []
        self.fail_on_write = fail_on_write

    def open(self, path: str, mode: str) -> FakeFile:
        self.log.append(("open", path, mode))
        handle = FakeFile(self.log, path)
        if self.fail_on_write:
            def broken(data: Any) -> int:
                raise OSError("disk full")
            handle.write = broken  # type: ignore[method-assign]
        return handle

    def posix_rename(self, old: str, new: str) -> None:
        self.log.append(("rename", old, new))

    def remove(self, path: str) -> None:
        self.log.append(("remove", path))

    def get_channel(self) -> FakeSFTP:
        return self

    def settimeout(self, seconds: float) -> None:
        self.timeout = seconds  # every SFTP operation's deadline


def fake_server(tmp_path: Path, sftp: FakeSFTP) -> tuple[Server, list[list[str]]]:
    srv = server(tmp_path)
    commands: list[list[str]] = []

    def run_chain(*argvs: Any, timeout: float | None = None) -> CommandResult:
        commands.extend(list(argv) for argv in argvs)
        return CommandResult("", "", 0)

    srv.run_chain = run_chain  # type: ignore[method-assign]
    srv.connection.sftp = lambda: sftp  # type: ignore[method-assign]
    srv.connect = lambda: None  # type: ignore[method-assign]
    return srv, commands


def test_private_file_is_0600_before_its_first_byte_in_a_0700_folder(tmp_path: Path) -> None:
    sftp = FakeSFTP()
    srv, commands = fake_server(tmp_path, sftp)

    srv.write_private_file("/etc/slotswap/webapp/web1.env", "API_TOKEN=s3cr3t\n")

    assert commands == [["mkdir", "-p", "-m", "700", "/etc/slotswap/webapp"],
                        ["chmod", "700", "/etc/slotswap/webapp"]]
    (op_open, temporary, mode), chmod, write, rename = sftp.log
    assert op_open == "open" and mode == "wx"  # O_EXCL: never through a file left there
    assert temporary.startswith("/etc/slotswap/webapp/.web1.env.")
    assert temporary.endswith(".tmp")
    assert chmod == ("chmod", temporary, "0o600")
    assert write == ("write", temporary, "API_TOKEN=s3cr3t\n")
    assert rename == ("rename", temporary, "/etc/slotswap/webapp/web1.env")
    assert sftp.timeout == 60.0  # timeouts.command: no SFTP call waits forever
    # The content goes over SFTP only, never into a command line.
    assert not any("s3cr3t" in word for argv in commands for word in argv)


def test_private_file_temporary_names_differ(tmp_path: Path) -> None:
    sftp = FakeSFTP()
    srv, _ = fake_server(tmp_path, sftp)
    srv.write_private_file("/etc/slotswap/webapp/web1.env", "A=1\n")
    srv.write_private_file("/etc/slotswap/webapp/web1.env", "A=1\n")
    opened = [entry[1] for entry in sftp.log if entry[0] == "open"]
    assert len(set(opened)) == 2


def test_a_failed_private_write_removes_its_temporary_file(tmp_path: Path) -> None:
    sftp = FakeSFTP(fail_on_write=True)
    srv, _ = fake_server(tmp_path, sftp)
    with pytest.raises(OSError, match="disk full"):
        srv.write_private_file("/etc/slotswap/webapp/web1.env", "A=1\n")
    temporary = sftp.log[0][1]
    assert sftp.log[-1] == ("remove", temporary)
    assert not any(entry[0] == "rename" for entry in sftp.log)


@pytest.mark.parametrize("path", ["web1.env", "relative/web1.env", "/etc/slotswap/", "/x"])
def test_private_file_needs_an_absolute_path_in_a_folder(tmp_path: Path, path: str) -> None:
    srv, commands = fake_server(tmp_path, FakeSFTP())
    with pytest.raises(ValueError, match="absolute file path"):
        srv.write_private_file(path, "A=1\n")
    assert commands == []


# -- liveness: keepalives, dead peers, deadlines -------------------------------------------


def test_the_kernel_is_told_to_give_up_on_a_silent_connection() -> None:
    options = {(level, option): value
               for level, option, value in liveness_socket_options(5, 15)}
    assert options[(socket.SOL_SOCKET, socket.SO_KEEPALIVE)] == 1
    assert options[(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)] == 15000
    assert options[(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)] == 5
    assert options[(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)] == 5
    assert options[(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)] == 3
    # Fractions round up; nothing becomes 0 (which would mean "never").
    tiny = {option: value for _, option, value in liveness_socket_options(0.2, 0.5)}
    assert tiny[socket.TCP_KEEPIDLE] == 1 and tiny[socket.TCP_USER_TIMEOUT] == 500


def test_the_options_are_accepted_by_a_real_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        for level, option, value in liveness_socket_options(1, 4):
            sock.setsockopt(level, option, value)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4000


def test_commands_and_channels_get_deadlines_from_the_inventory(tmp_path: Path) -> None:
    srv = server(tmp_path, {"connect_timeout": 3})
    assert srv.command_timeout == 60.0
    assert srv.connection.connect_kwargs["channel_timeout"] == 3


def test_a_server_that_could_not_be_reached_fails_at_once_afterwards(tmp_path: Path) -> None:
    srv = server(tmp_path)
    attempts: list[str] = []

    def refuse(connection: Any, role: str) -> None:
        attempts.append(role)
        raise ConnectError("s1: cannot connect to root@203.0.113.10:22: timed out")

    srv._open = refuse  # type: ignore[method-assign]
    for _ in range(3):
        with pytest.raises(ConnectError, match="timed out"):
            srv.connect()
    assert attempts == [""]  # tried once; later calls fail without waiting again


def test_an_abandoned_server_opens_no_new_connection_until_resumed(tmp_path: Path) -> None:
    srv = server(tmp_path)
    srv.abandon()  # not connected: nothing to cut, but the run must not reconnect
    with pytest.raises(ConnectionLostError, match="cut"):
        srv.connect()
    srv.resume()
    opened: list[str] = []
    srv._open = lambda connection, role: opened.append(role)  # type: ignore[method-assign]
    srv.connect()
    assert opened == [""]


def test_a_command_past_its_deadline_names_the_server_and_the_command() -> None:
    error = CommandDeadlineError("s1", "docker inspect webapp-web1", 5)
    assert str(error) == ("s1: `docker inspect webapp-web1` gave no answer within 5s and was "
                          "abandoned (a stuck Docker engine? an overloaded server?)")
    assert isinstance(error, RemoteCommandError) and error.exit_code == -1
