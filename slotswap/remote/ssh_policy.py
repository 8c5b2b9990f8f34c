"""How an SSH connection to a server is made: host-key policy, what is read from ssh_config,
jump hosts, timeouts and liveness. `slotswap.remote.server` opens the connections built here.

How a connection is made (see also hosts.yaml, section ssh):

- Host keys come from ssh.known_hosts only. A key that differs from the one recorded, or a
  host recorded with keys of other types only, is always refused. A host that is not
  recorded is refused too, unless accept_unknown_hosts is on: then it is accepted for this
  run with a warning naming the host and the key's fingerprint (nothing is written).
- Fabric's Connection reads /etc/ssh/ssh_config and ~/.ssh/config by default; ssh.config
  keeps that (true) or turns it off (false). Read from there: HostName, User and Port (when
  the inventory sets none), IdentityFile (in addition to ssh.identity), ProxyJump (of one
  host: Fabric would take several in reverse order) and ProxyCommand (when no jump host is
  set in the inventory), ForwardAgent. Never from there: host-key settings
  (StrictHostKeyChecking, UserKnownHostsFile) and ConnectTimeout. The host-key rules above
  apply to every jump host, from the inventory or from ~/.ssh/config.
- ssh-agent and the default ~/.ssh/id_* keys are always tried (allow_agent and
  look_for_keys are left on); ssh.identity is tried first when it is set.

Nothing waits forever (see liveness_socket_options):

- Every connection sends a keepalive message after ssh.keepalive seconds without sending
  anything, and its TCP socket is told (TCP_USER_TIMEOUT, TCP keepalives) to give up when
  what it sent stays unacknowledged for ssh.dead_after seconds: a network that silently
  drops packets ends the connection within dead_after + keepalive seconds, and every call
  on it fails with ConnectionLostError. Through a jump host that covers the TCP link to the
  jump host; beyond it, each command's deadline applies.
- Every command has a deadline: its own, else timeouts.command. Opening a channel waits at
  most ssh.connect_timeout. A server that could not be reached (again) is not retried for
  the rest of the run: each later call fails at once with the same error.
"""

from __future__ import annotations

import math
import shlex
import socket
from collections.abc import Callable
from pathlib import Path

import paramiko
from fabric import Config, Connection

from slotswap.config.hosts import Host
from slotswap.config.inventory import Inventory
from slotswap.config.ssh import DEFAULT_SSH_PORT, DEFAULT_SSH_USER, JumpHost
from slotswap.core.output import warn
from slotswap.core.validation import InputError


def liveness_socket_options(keepalive: float, dead_after: float) -> list[tuple[int, int, int]]:
    """(level, option, value) for a TCP socket: the kernel aborts the connection when data it
    sent stays unacknowledged for dead_after seconds (TCP_USER_TIMEOUT), and probes an idle
    one every `keepalive` seconds (the SSH keepalive messages keep it from being idle while
    a command runs). Linux only; other systems get the options they have."""
    idle = max(1, math.ceil(keepalive))
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", idle),
                        ("TCP_KEEPCNT", max(1, math.ceil(dead_after / idle))),
                        ("TCP_USER_TIMEOUT", max(1, math.ceil(dead_after * 1000)))):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options


class UnknownHostKeyError(paramiko.SSHException):
    """The server's host key is not in known_hosts (and unknown hosts are not accepted)."""

    def __init__(self, hostname: str):
        # The words paramiko's RejectPolicy uses, for anyone matching on them.
        super().__init__(f"Server {hostname!r} not found in known_hosts")


def _refuse_if_recorded_otherwise(client: paramiko.SSHClient, hostname: str,
                                  key: paramiko.PKey) -> None:
    """paramiko asks the policy about any key whose *type* is not recorded for the host,
    even when keys of other types are: for us that is a changed key, never an unknown one."""
    recorded = client.get_host_keys().lookup(hostname)
    if recorded:
        raise paramiko.BadHostKeyException(hostname, key, next(iter(recorded.values())))


class RefuseUnknownHosts(paramiko.RejectPolicy):
    """The default: only keys recorded in known_hosts are trusted."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        _refuse_if_recorded_otherwise(client, hostname, key)
        raise UnknownHostKeyError(hostname)


class AcceptUnknownHostsLoudly(paramiko.WarningPolicy):
    """ssh.accept_unknown_hosts: trust an unrecorded host for this run, and say so loudly.
    Changed keys are still refused (paramiko raises BadHostKeyException before asking)."""

    def __init__(self, label: str, known_hosts: Path, say: Callable[[str], None] = warn):
        self.label, self.known_hosts, self.say = label, known_hosts, say

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        _refuse_if_recorded_otherwise(client, hostname, key)
        self.say(unknown_host_warning(self.label, hostname, key, self.known_hosts))


def unknown_host_warning(label: str, hostname: str, key: paramiko.PKey,
                         known_hosts: Path) -> str:
    return (
        f"WARNING: {label}: ACCEPTING AN UNVERIFIED HOST KEY for {hostname}: "
        f"{key.get_name()} {key.fingerprint}. It is not in {known_hosts} and "
        "accept_unknown_hosts is true, so nothing proves this is your server. Compare the "
        "fingerprint with the server's own (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub, on "
        "its console), then add the key to known_hosts and turn accept_unknown_hosts off."
    )


def fabric_config(read_ssh_config: bool) -> Config:
    """Fabric's default Config loads /etc/ssh/ssh_config and ~/.ssh/config; an explicit,
    empty SSHConfig is Fabric's way of loading neither."""
    return Config() if read_ssh_config else Config(ssh_config=paramiko.SSHConfig())


def login_for(config: Config, address: str, user: str | None,
              port: int | None) -> tuple[str, int]:
    """User and port as `ssh` picks them: given (the inventory), else ~/.ssh/config's entry
    for the address (when loaded), else root and 22. (Fabric alone would fall back to the
    local user name, not root.) A bad ssh_config entry is bad input: nothing is contacted."""
    found = config.base_ssh_config.lookup(address)
    chosen_port = port or found.get("port", DEFAULT_SSH_PORT)
    try:
        chosen_port = int(chosen_port)
    except ValueError:
        raise InputError(
            f"{address}: ssh_config gives this host the Port {chosen_port!r}, not a number"
        ) from None
    return user or found.get("user") or DEFAULT_SSH_USER, chosen_port


def refuse_jump_chains(config: Config, address: str) -> None:
    """Fabric opens a `ProxyJump a,b` chain from b, the reverse of what ssh does: refuse it
    rather than connect through the wrong hosts."""
    hops = config.base_ssh_config.lookup(address).get("proxyjump", "")
    if "," in hops:
        raise InputError(
            f"{address}: ssh_config gives this host several jump hosts (ProxyJump {hops}); "
            "slotswap takes one: set ProxyJump to one host, or ssh.jump in the inventory"
        )


def jump_chain(connection: Connection) -> list[Connection]:
    """The connection's jump hosts, the one to open first first (ProxyJump a,b gives a, b)."""
    hops = []
    gateway = connection.gateway
    while isinstance(gateway, Connection):
        hops.append(gateway)
        gateway = gateway.gateway
    return hops[::-1]


def hostkey_name(host: str, port: int) -> str:
    """How known_hosts names a host: [host]:port when the port is not 22."""
    return host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"



def open_timeout(inventory: Inventory) -> int:
    """ssh.connect_timeout as Fabric takes it: it truncates to whole seconds, and 0 would mean
    no timeout at all."""
    return max(1, math.ceil(inventory.ssh.connect_timeout))


def build_connection(host: Host, inventory: Inventory, known_hosts: Path,
                     accept_unknown_hosts: bool) -> Connection:
    """The (unopened) connection to `host`, its jump hosts as its gateway (see jump_chain),
    each with this policy's key, timeouts and host-key rules."""
    ssh = inventory.ssh
    timeout = open_timeout(inventory)
    connect_kwargs: dict[str, object] = {}
    if ssh.identity is not None:
        connect_kwargs["key_filename"] = str(ssh.identity)
    config = fabric_config(ssh.config)
    jump = host.jump or ssh.jump
    # None lets Fabric take a ProxyJump/ProxyCommand from ssh_config instead.
    gateway = jump_connection(jump, config, ssh.user, timeout, connect_kwargs) if jump else None
    if jump is None:
        refuse_jump_chains(config, host.address)
    user, port = login_for(config, host.address, host.user or ssh.user, host.port or ssh.port)
    # channel_timeout: opening a session or SFTP channel would otherwise wait an hour.
    connection = Connection(host.address, user=user, port=port, connect_timeout=timeout,
                            connect_kwargs=dict(connect_kwargs, channel_timeout=timeout),
                            config=config, gateway=gateway)
    for hop in jump_chain(connection):
        prepare_jump(hop, timeout, connect_kwargs)
        trust_host_keys(hop, f"{host.name}: jump host {hop.host}", known_hosts,
                        accept_unknown_hosts)
    trust_host_keys(connection, host.name, known_hosts, accept_unknown_hosts)
    return connection


def jump_connection(jump: JumpHost, config: Config, default_user: str | None, timeout: int,
                    connect_kwargs: dict[str, object]) -> Connection:
    refuse_jump_chains(config, jump.address)
    user, port = login_for(config, jump.address, jump.user or default_user, jump.port)
    return Connection(jump.address, user=user, port=port, connect_timeout=timeout,
                      connect_kwargs=dict(connect_kwargs), config=config)


def prepare_jump(hop: Connection, timeout: int, connect_kwargs: dict[str, object]) -> None:
    # Jump hosts that Fabric builds from a ProxyJump line get none of our settings: they
    # get the same key, timeout and host-key rules as the ones from the inventory.
    if hop.connect_timeout is None:
        hop.connect_timeout = timeout
    kwargs = dict(hop.connect_kwargs)
    if "key_filename" in connect_kwargs:
        keys = kwargs.get("key_filename") or []
        keys = [keys] if isinstance(keys, str) else list(keys)
        if connect_kwargs["key_filename"] not in keys:
            kwargs["key_filename"] = [connect_kwargs["key_filename"], *keys]
    # Opening the channel to the next hop would otherwise wait up to an hour.
    kwargs["channel_timeout"] = timeout
    hop.connect_kwargs = kwargs


def trust_host_keys(connection: Connection, label: str, known_hosts: Path,
                    accept_unknown_hosts: bool) -> None:
    # Fabric accepts any host key by default; a deploy tool must not.
    client = connection.client
    if known_hosts.exists():
        client.load_host_keys(str(known_hosts))
    policy: paramiko.MissingHostKeyPolicy = RefuseUnknownHosts()
    if accept_unknown_hosts:
        policy = AcceptUnknownHostsLoudly(label, known_hosts)
    client.set_missing_host_key_policy(policy)


def keep_alive(transport: paramiko.Transport, keepalive: float, dead_after: float) -> None:
    """An opened connection's keepalive messages and TCP options (see
    liveness_socket_options)."""
    transport.set_keepalive(max(1, math.ceil(keepalive)))
    # A jump host's connection has the TCP socket; a server behind it a channel on it.
    sock = transport.sock
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        # Small request/answer exchanges (runtime API polls, short commands) otherwise
        # wait ~40 ms each on Nagle's algorithm meeting delayed ACKs; OpenSSH sets this too.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for level, option, value in liveness_socket_options(keepalive, dead_after):
            sock.setsockopt(level, option, value)


def why_not_connected(connection: Connection, role: str, known_hosts: Path,
                      error: paramiko.SSHException | OSError) -> str:
    """What a failed connection.open() means, in one line for the person at the keyboard
    (`role`: "jump host " or "")."""
    host, port, known = connection.host, connection.port, known_hosts
    where = f"{role}{connection.user}@{host}:{port}"
    gateway = connection.gateway
    via = f" through jump host {gateway.host}" if isinstance(gateway, Connection) else ""
    if isinstance(error, paramiko.BadHostKeyException):
        return (f"the host key of {where} has CHANGED since it was recorded in "
                f"{known}; if the server was really rebuilt, remove the old line "
                f"(ssh-keygen -R {shlex.quote(hostkey_name(host, port))} -f {known}) and "
                f"trust the new key")
    if isinstance(error, UnknownHostKeyError):
        return (f"{where} is not in {known}; check its key and add it "
                f"({add_key_hint(connection, known)}), or set ssh.known_hosts in the inventory")
    if isinstance(error, paramiko.AuthenticationException):
        return f"{where} refused the login: {error}"
    if isinstance(error, paramiko.ChannelException):
        # The jump host could not open a channel to this host.
        return f"cannot connect to {where}{via}: {error}"
    if isinstance(error, paramiko.SSHException):
        return f"SSH to {where}{via} failed: {error}"
    return f"cannot connect to {where}{via}: {error}"


def add_key_hint(connection: Connection, known_hosts: Path) -> str:
    host, port, known = connection.host, connection.port, known_hosts
    gateway = connection.gateway
    if isinstance(gateway, Connection):
        # ssh-keyscan cannot go through a jump host; one ssh login through it can.
        return (f"ssh -J {gateway.user}@{gateway.host}:{gateway.port} -p {port} "
                f"-o UserKnownHostsFile={known} {connection.user}@{host} true")
    return f"ssh-keyscan -p {port} {host} >> {known}"
