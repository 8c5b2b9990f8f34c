"""Pure: why HAProxy's runtime API cannot be reached on a server, named from what the server
answered (`docker container inspect` of HAProxy's container, `test -S` on its admin socket)
and from sshd's refusal of the channel. `slotswap.remote.server` asks, on that error path
only; each function gives the one-line reason, or None when its answer shows no fault."""

from __future__ import annotations

from slotswap.commands.docker import ContainerInfo
from slotswap.config.layout import HAPROXY_ADMIN_DIR_INSIDE


def haproxy_not_running(server: str, container: str, found: ContainerInfo | None) -> str | None:
    if found is not None and found.running:
        return None
    return (f"{server}: cannot reach HAProxy's runtime API: its container {container} "
            f"is {'missing' if found is None else found.status}; is HAProxy running? "
            f"(`fab up` starts it)")


def admin_socket_fault(server: str, path: str, found: ContainerInfo, *, socket_exists: bool,
                       relayed: bool) -> str | None:
    """`relayed`: the path is another HAProxy's socket on purpose (see carry_over)."""
    mounted = found.binds.get(HAPROXY_ADMIN_DIR_INSIDE)
    if mounted is not None and not relayed and not path.startswith(f"{mounted.rstrip('/')}/"):
        return (f"{server}: HAProxy runs from the folders of another login or remote_dir "
                f"(its admin socket is in {mounted}), not from this login's ({path}); run "
                f"`fab up` with these settings once to carry the server over (no request is "
                f"lost), or use the login and remote_dir that set it up")
    if not socket_exists:
        return (f"{server}: cannot reach HAProxy's runtime API: no admin socket {path} on "
                f"the server; is HAProxy running? (`fab up` starts it, and moves a server set "
                f"up by an older slotswap to the admin socket)")
    return None


def channel_refused(server: str, path: str, refusal: str) -> str:
    """sshd refused the channel to a socket that exists, and socat is not there either."""
    return (f"{server}: the SSH server refuses a channel to HAProxy's admin socket {path} "
            f"({refusal}): its sshd_config has `AllowTcpForwarding no` (OpenSSH applies it to "
            f"unix sockets too), `AllowStreamLocalForwarding no` or `DisableForwarding yes`, "
            f"or the login's authorized_keys line `restrict` or `no-port-forwarding`; allow "
            f"local forwarding for this login (e.g. `AllowTcpForwarding local`), or install "
            f"socat on the server")
