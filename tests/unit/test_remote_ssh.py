"""slotswap.remote (server, ssh_policy, shell) without a network: host-key policies, what a
Server's connections are built from (inventory, ~/.ssh/config, defaults), and how a private
file is written."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import Any

import paramiko
import pytest
from fabric import Connection

from slotswap.commands.file_write import write_file_command, write_private_file_command
from slotswap.config.inventory import Inventory
from slotswap.core.timings import Timings
from slotswap.core.validation import InputError
from slotswap.remote.server import CommandResult, RemoteDirError, Server
from slotswap.remote.shell import MarkerGate, after_marker, new_marker, with_marker
from slotswap.remote.ssh_policy import (
    AcceptUnknownHostsLoudly,
    RefuseUnknownHosts,
    UnknownHostKeyError,
    fabric_config,
    hostkey_name,
    jump_chain,
    login_for,
    unknown_host_warning,
)
from tests.unit.fake_server import make_inventory

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
    settings: dict[str, Any] = {"hosts": hosts or ["203.0.113.10"]}
    if ssh is not None:
        settings["ssh"] = ssh
    return make_inventory(tmp_path, **settings)


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



class CutChannel:
    """An admin session on a connection a second Ctrl-C shut down: closing it sends a
    message, and paramiko raises a bare EOFError (seen on the sandbox, 4 in 20 tries)."""

    def close(self) -> None:
        raise EOFError()


def test_resume_after_a_cut_opens_a_new_connection_even_when_closing_the_old_one_fails(
        tmp_path: Path) -> None:
    """Before, resume() raised the EOFError: the lock was not released (`could not release
    its lock ()`) and the next run found it held."""
    srv = server(tmp_path, ssh={"jump": "bastion"})
    closed: list[str] = []

    def cut(name: str) -> None:
        closed.append(name)
        raise OSError("Socket is closed")

    srv._admin = CutChannel()  # type: ignore[assignment]
    srv.connection.close = lambda: cut("server")  # type: ignore[method-assign]
    srv.jumps[0].close = lambda: cut("jump")  # type: ignore[method-assign]
    srv.abandon()
    srv.resume()  # raises nothing
    assert closed == ["server", "jump"]  # every part closed, whatever the one before raised
    assert not srv._abandoned  # the next call opens a new connection

# -- write_private_file and write_file -------------------------------------------------------


class RecordingServer:
    """Server.run replaced: records argv and stdin, runs nothing."""
    timings = Timings()  # steps and round trips, as slotswap.remote.server.Server keeps

    def __init__(self, tmp_path: Path, exit_code: int = 0, stderr: str = ""):
        self.server = server(tmp_path)
        self.calls: list[tuple[list[str], str | None]] = []

        def run(argv: Any, *, check: bool = True, timeout: float | None = None,
                stdin: str | None = None) -> CommandResult:
            self.calls.append((list(argv), stdin))
            return CommandResult("", stderr, exit_code)

        self.server.run = run  # type: ignore[method-assign]


def run_locally(argv: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    """What the server's shell would do with the command, here."""
    return subprocess.run(argv, input=stdin, text=True, capture_output=True, check=False)


def test_private_file_goes_over_stdin_never_into_the_command_line(tmp_path: Path) -> None:
    recorder = RecordingServer(tmp_path)
    recorder.server.write_private_file("/etc/slotswap/webapp/web1.env", "API_TOKEN=s3cr3t\n")
    ((argv, stdin),) = recorder.calls
    assert stdin == "API_TOKEN=s3cr3t\n"
    assert not any("s3cr3t" in word for word in argv)
    directory, temporary, path = argv[-3:]
    assert directory == "/etc/slotswap/webapp" and path == "/etc/slotswap/webapp/web1.env"
    assert temporary.startswith("/etc/slotswap/webapp/.web1.env.") and temporary.endswith(".tmp")


def test_private_file_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    folder = tmp_path / "config" / "webapp"
    argv = write_private_file_command(str(folder), f"{folder}/.web1.env.x.tmp",
                                      f"{folder}/web1.env")
    assert run_locally(argv, "A=1\n").returncode == 0
    assert (folder / "web1.env").read_text() == "A=1\n"
    assert stat.S_IMODE((folder / "web1.env").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == ["web1.env"]


def test_private_file_never_writes_through_a_file_left_at_its_temporary_name(
        tmp_path: Path) -> None:
    folder = tmp_path / "webapp"
    folder.mkdir()
    planted = folder / ".web1.env.x.tmp"
    planted.symlink_to(tmp_path / "elsewhere")
    argv = write_private_file_command(str(folder), str(planted), f"{folder}/web1.env")
    assert run_locally(argv, "A=1\n").returncode != 0
    assert not (tmp_path / "elsewhere").exists()
    assert not (folder / "web1.env").exists()


def test_private_file_temporary_names_differ(tmp_path: Path) -> None:
    recorder = RecordingServer(tmp_path)
    recorder.server.write_private_file("/etc/slotswap/webapp/web1.env", "A=1\n")
    recorder.server.write_private_file("/etc/slotswap/webapp/web1.env", "A=1\n")
    assert recorder.calls[0][0][-2] != recorder.calls[1][0][-2]


def test_a_file_that_cannot_be_written_names_the_login_and_remote_dir(tmp_path: Path) -> None:
    recorder = RecordingServer(tmp_path, exit_code=1, stderr=(
        "mkdir: cannot create directory '/etc/slotswap': Permission denied\n"))
    with pytest.raises(RemoteDirError) as caught:
        recorder.server.write_private_file("/etc/slotswap/webapp/web1.env", "A=1\n")
    message = str(caught.value)
    assert "\n" not in message
    assert "the SSH login root cannot write /etc/slotswap/webapp" in message
    assert "Permission denied" in message and "remote_dir" in message


def test_write_file_writes_through_a_temporary_file_with_its_mode(tmp_path: Path) -> None:
    folder = tmp_path / "haproxy"
    argv = write_file_command(str(folder), f"{folder}/haproxy.cfg.tmp",
                              f"{folder}/haproxy.cfg", 0o640)
    assert run_locally(argv, "global\n").returncode == 0
    assert (folder / "haproxy.cfg").read_text() == "global\n"
    assert stat.S_IMODE((folder / "haproxy.cfg").stat().st_mode) == 0o640
    assert sorted(p.name for p in folder.iterdir()) == ["haproxy.cfg"]


@pytest.mark.parametrize("path", ["web1.env", "relative/web1.env", "/etc/slotswap/", "/x"])
def test_private_file_needs_an_absolute_path_in_a_folder(tmp_path: Path, path: str) -> None:
    recorder = RecordingServer(tmp_path)
    with pytest.raises(ValueError, match="absolute file path"):
        recorder.server.write_private_file(path, "A=1\n")
    assert recorder.calls == []


# -- start-up noise of the login shell ------------------------------------------------------

BANNER = "Welcome to host s1!\nLast backup: never\n"


def login_shell(line: str, rc_text: str) -> subprocess.CompletedProcess[str]:
    """`sh -c line` after a start-up file that prints, as sshd's bash does with ~/.bashrc."""
    return subprocess.run(["sh", "-c", f"{rc_text}\n{line}"], text=True, capture_output=True,
                          check=False,
                          env={"PATH": "/usr/bin:/bin", "LANGUAGE": "de", "LANG": "C.UTF-8"})


@pytest.mark.parametrize("rc_text", [
    "",
    "echo 'Welcome to host s1!'; echo 'stderr banner' >&2",
    "printf 'no newline at the end'; printf 'nor here' >&2",
])
def test_only_what_follows_the_marker_is_output(rc_text: str) -> None:
    marker = new_marker()
    done = login_shell(with_marker("echo '[{\"Name\": 1}]'; echo oops >&2; exit 3", marker),
                       rc_text)
    assert done.returncode == 3
    assert after_marker(done.stdout, marker, missing="") == '[{"Name": 1}]\n'
    assert after_marker(done.stderr, marker) == "oops\n"


def test_commands_run_with_the_c_locale() -> None:
    marker = new_marker()
    done = login_shell(with_marker("echo $LC_ALL", marker), "")
    assert after_marker(done.stdout, marker) == "C\n"


def test_without_a_marker_stdout_is_empty_and_stderr_kept() -> None:
    assert after_marker("banner\n", "m1", missing="") == ""
    assert after_marker("bash: broken shell\n", "m1") == "bash: broken shell\n"
    # Only the first marker line counts: the command may print the text itself.
    assert after_marker("x\nm1\nm1\ny\n", "m1") == "m1\ny\n"


def test_streamed_lines_start_after_the_marker() -> None:
    seen: list[str] = []
    gate = MarkerGate("m1", seen.append)
    for line in ["Welcome!", "no newline herem1", "first", "m1", "second"]:
        gate(line)
    assert seen == ["first", "m1", "second"]


# -- the admin socket: why a refused channel was refused -----------------------------------

RUNNING_HAPROXY = ('[{"Name": "/webapp-haproxy", "State": {"Status": "running", "Running": true,'
                   ' "ExitCode": 0, "StartedAt": "2026-11-27T19:00:00Z"}, "Image": "sha256:1",'
                   ' "Config": {"Image": "haproxy:2.8", "Labels": {}},'
                   ' "NetworkSettings": {"Networks": {}}}]')


def refusing_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    answers: dict[str, CommandResult]) -> tuple[Server, list[str]]:
    """A Server whose sshd refuses the unix-socket channel; commands get `answers`."""
    import slotswap.remote.server as remote

    def refuse(*_: Any) -> paramiko.Channel:
        raise paramiko.ChannelException(2, "Connect failed")

    monkeypatch.setattr(remote, "open_streamlocal_channel", refuse)
    srv = server(tmp_path)
    asked: list[str] = []

    def run_line(line: str, **_: Any) -> CommandResult:
        asked.append(line)
        return next((result for prefix, result in answers.items() if line.startswith(prefix)),
                    CommandResult("", "", 1))

    monkeypatch.setattr(srv, "_run_line", run_line)
    monkeypatch.setattr(srv, "_open_admin_command", lambda path: f"socat channel to {path}")
    srv.connection.transport = object()  # type: ignore[assignment]
    return srv, asked


def test_a_stopped_haproxy_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slotswap.commands.runtime_api import RuntimeApiError

    srv, _ = refusing_server(tmp_path, monkeypatch, {
        "docker container inspect": CommandResult(RUNNING_HAPROXY.replace(
            '"running", "Running": true', '"exited", "Running": false'), "", 0)})
    with pytest.raises(RuntimeApiError, match=r"webapp-haproxy is exited; is HAProxy running\? "
                                              r"\(`fab up` starts it\)"):
        srv._open_admin_channel()


def test_a_server_without_the_socket_needs_fab_up(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from slotswap.commands.runtime_api import RuntimeApiError

    srv, asked = refusing_server(tmp_path, monkeypatch, {
        "docker container inspect": CommandResult(RUNNING_HAPROXY, "", 0)})
    with pytest.raises(RuntimeApiError, match=r"no admin socket /etc/slotswap/webapp/haproxy/"
                                              r"admin/admin\.sock on the server"):
        srv._open_admin_channel()
    assert asked[-1] == "test -S /etc/slotswap/webapp/haproxy/admin/admin.sock"


def test_forwarding_refused_goes_through_socat_from_then_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv, asked = refusing_server(tmp_path, monkeypatch, {
        "docker container inspect": CommandResult(RUNNING_HAPROXY, "", 0),
        "test -S": CommandResult("", "", 0), "socat -V": CommandResult("socat 1.7", "", 0)})
    path = "/etc/slotswap/webapp/haproxy/admin/admin.sock"
    assert srv._open_admin_channel() == f"socat channel to {path}"
    asked.clear()
    assert srv._open_admin_channel() == f"socat channel to {path}"
    assert asked == []  # no channel request, no probe: straight to socat


def test_forwarding_refused_without_socat_names_the_settings(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slotswap.commands.runtime_api import RuntimeApiError

    srv, _ = refusing_server(tmp_path, monkeypatch, {
        "docker container inspect": CommandResult(RUNNING_HAPROXY, "", 0),
        "test -S": CommandResult("", "", 0)})
    with pytest.raises(RuntimeApiError) as raised:
        srv._open_admin_channel()
    message = str(raised.value)
    assert "\n" not in message
    for setting in ("AllowTcpForwarding no", "AllowStreamLocalForwarding no",
                    "DisableForwarding yes", "no-port-forwarding", "install socat"):
        assert setting in message


def test_a_command_cut_at_its_deadline_is_a_deadline_error_even_when_invoke_misses_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Invoke's timer closes the channel; if its thread is still running when the command
    returns, Invoke hands back exit -1 instead of raising CommandTimedOut."""
    import time as clock
    from types import SimpleNamespace

    from slotswap.remote.server import CommandDeadlineError, cut_at_deadline

    srv = server(tmp_path)

    def late_timer(line: str, **options: Any) -> Any:
        clock.sleep(options["timeout"])
        return SimpleNamespace(stdout="", stderr="", exited=-1)

    monkeypatch.setattr(srv, "connect", lambda: None)
    monkeypatch.setattr(srv.connection, "run", late_timer)
    monkeypatch.setattr(type(srv.connection), "is_connected", property(lambda _: True))
    with pytest.raises(CommandDeadlineError, match=r"`docker stop web1` gave no answer within "
                                                   r"0\.05s and was abandoned"):
        srv.run(["docker", "stop", "web1"], timeout=0.05)
    assert cut_at_deadline(-1, 5.0, 5)
    assert not cut_at_deadline(-1, 0.2, 5)  # a connection that died early: not a deadline
    assert not cut_at_deadline(0, 9.0, 5)


def test_every_command_line_goes_through_the_call_guard_and_its_answer_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a run holds the lock, the line sent is the guard's, and the guard reads the
    answer; the runtime API asks the guard first. Errors still name the command alone."""
    from types import SimpleNamespace

    class Guard:
        def __init__(self) -> None:
            self.asked: list[str] = []
            self.lost = False

        def before_call(self) -> None:
            if self.lost:
                raise RuntimeError("lost")

        def guard_line(self, line: str) -> str:
            self.asked.append("line")
            return f"guarded || exit 75; {line}"

        def check_answer(self, exit_code: int, stderr: str) -> None:
            if exit_code == 75:
                raise RuntimeError("refused on the server")

    srv = server(tmp_path)
    srv.call_guard = guard = Guard()
    sent: list[str] = []

    def run(line: str, **options: Any) -> Any:
        sent.append(line)
        return SimpleNamespace(stdout="", stderr="", exited=75 if "stop" in line else 3)

    monkeypatch.setattr(srv, "connect", lambda: None)
    monkeypatch.setattr(srv.connection, "run", run)
    monkeypatch.setattr(type(srv.connection), "is_connected", property(lambda _: True))
    from slotswap.remote.server import RemoteCommandError

    with pytest.raises(RemoteCommandError, match=r"`docker ps` exited 3"):
        srv.run(["docker", "ps"])
    assert sent[0].endswith("; guarded || exit 75; docker ps")
    with pytest.raises(RuntimeError, match="refused on the server"):
        srv.run(["docker", "stop", "web1"])
    guard.lost = True
    with pytest.raises(RuntimeError, match="lost"):
        srv.runtime_api("set server webapp/web1 state ready")
    assert guard.asked == ["line", "line"]
