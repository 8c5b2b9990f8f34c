"""The running HAProxy changed while it serves: a reload with a new config (the master's
workers hand over), a hand-over to a new container (a new image, admin socket, network or
config folder) with no connection refused, and the way back when either does not finish.
The slots' runtime state (which slot is live) goes over through the server-state file,
which is kept current (slotswap.server.haproxy_state).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    CONFIG_NAME,
    NEW_CONFIG_NAME,
    PREVIOUS_NAME,
    RUNNING_NAME,
    ProxyError,
    admin_dir,
    haproxy_dir,
    own_next_container,
)
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import CommandResult, RemoteCommandError
from slotswap.server.haproxy_config import config_hash
from slotswap.server.haproxy_state import save_slot_state

RELOAD_TIMEOUT = 20.0
LABEL_SPEC = "slotswap.haproxy-spec"
Progress = Callable[[str], None]

# Part of the container spec: the way the runtime API is reached and the network HAProxy
# runs on. Containers made when the API was a TCP port, or on the app's bridge network, get a
# new spec, so `fab up` replaces them.
ADMIN_TRANSPORT = "unix-socket"
NETWORK_LAYOUT = "host-network"


def container_spec(inventory: Inventory) -> str:
    """What the HAProxy container was created with; a change needs a new container. The
    config folder it mounts counts too when it is not root's (remote_dir, a login's home;
    left out for root's, so that containers made before remote_dir existed are kept)."""
    # The ports are the config's (`bind` lines, applied by a reload), not the container's.
    spec = f"{inventory.haproxy.image}|{NETWORK_LAYOUT}|{ADMIN_TRANSPORT}"
    if inventory.kit_dir is not None:
        spec += f"|{haproxy_dir(inventory)}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def haproxy_run_command(inventory: Inventory, name: str | None = None,
                        instance: str | None = None, *, create_only: bool = False) -> list[str]:
    """`docker run` of HAProxy's container (under `name`, with `instance` in its environment),
    or with create_only its `docker create`."""
    build = docker.create_haproxy if create_only else docker.run_haproxy
    return build(
        container=name or inventory.haproxy_container, image_ref=inventory.haproxy.image,
        app=inventory.app, config_dir=haproxy_dir(inventory), admin_dir=admin_dir(inventory),
        labels={LABEL_SPEC: container_spec(inventory)}, instance=instance,
    )



def on_host_network(container: docker.ContainerInfo) -> bool:
    """Pure: the container shares the server's network (`docker run --network host`)."""
    return set(container.addresses) == {"host"}


def hand_over_to_new_haproxy(server: ServerLike, inventory: Inventory, progress: Progress,
                             old: docker.ContainerInfo, *, restore: bool) -> None:
    """Replace a running HAProxy on the server's network by one of the new image with no
    connection refused: the new one listens on the same ports (SO_REUSEPORT) before the old
    one stops listening; the old one then finishes its open connections (soft stop); the
    slots' runtime state goes over through the server-state file.

    Until the old HAProxy is told to stop, any failure (or an interrupt) removes the new
    container and leaves the old one serving, with its config file put back (`restore`) and
    its admin socket made anew by a reload. After that, the hand-over is finished."""
    inventory = server.with_folders(inventory)
    name, temporary = inventory.haproxy_container, own_next_container(inventory)
    progress(f"HAProxy's container changes ({old.image} -> {inventory.haproxy.image}): "
             f"starting {temporary} beside {name}")
    warn_without_request_migration(server, progress)
    instance = secrets.token_hex(8)
    # The new HAProxy starts from it (the file is kept: see slotswap.server.haproxy_state).
    save_slot_state(server, inventory)
    try:
        server.run(docker.remove(temporary), check=False, timeout=60)
        server.run(haproxy_run_command(inventory, temporary, instance), timeout=60)
        # The new master makes the login's admin socket anew: the open session (or the
        # relayed socket, in a carry-over) is the old one's.
        server.use_admin_socket(None)
        wait_for_new_haproxy(server, temporary, instance)
    except BaseException as error:
        server.close_runtime_api()
        try:
            back_to_old_haproxy(server, inventory, temporary, restore=restore)
        except Exception as cleanup:
            progress(f"could not undo the hand-over: {cleanup}")
        if isinstance(error, ProxyError | haproxy.RuntimeApiError | RemoteCommandError):
            raise ProxyError(f"{server.name}: the new HAProxy ({inventory.haproxy.image}) "
                             f"did not take over ({one_line(error)}); {name} keeps serving "
                             f"with its image {old.image}; see `docker logs {temporary}` "
                             "on the server") from error
        raise
    progress(f"{temporary} accepts connections; soft stop of {name} (it finishes its open "
             f"connections, up to {soft_stop_seconds(inventory)}s)")
    finish_hand_over(server, inventory, progress)


@dataclass(frozen=True)
class HandOverNames:
    """Which HAProxy container hands over to which (`name` keeps serving until `temporary`
    listens, then `temporary` takes its name), how long the old one may take to finish its
    connections (`seconds`), and the image the new one runs (as said)."""

    name: str
    temporary: str
    seconds: int
    image: str


def own_names(inventory: Inventory) -> HandOverNames:
    """The app's own HAProxy's hand-over (today's layout)."""
    return HandOverNames(inventory.haproxy_container, own_next_container(inventory),
                         soft_stop_seconds(inventory), inventory.haproxy.image)


def soft_stop_commands(name: str) -> list[list[str]]:
    """Pure: HAProxy's container `name` told to stop softly (SIGUSR1: it closes its listeners
    and finishes its open connections). Docker must not start it again when it exits; its
    restart policy `no` is also how the next `up` knows a hand-over went past its point of
    no return."""
    return [docker.no_restart(name), docker.signal_container(name, "USR1")]


def soft_stop(server: ServerLike, name: str) -> bool:
    """soft_stop_commands in one round trip; True once told. A container that had stopped by
    then (its last connection finished right as it was told again: the `up` that finishes a
    cut hand-over) is what was asked: False, no failure, when Docker says so (one `docker
    inspect`, on that path only: not running, or no such container). Any other answer, or
    none, re-raises the first error: the next `up` tries again."""
    try:
        server.run_chain(*soft_stop_commands(name))
        return True
    except RemoteCommandError:
        if has_stopped(server.run(docker.inspect_containers(name), check=False), name):
            return False
        raise


def has_stopped(inspected: CommandResult, name: str) -> bool:
    """Pure: `docker container inspect NAME`'s answer says NAME is not running, or is not
    there at all; False where it says nothing usable."""
    if inspected.ok:
        found = docker.parse_inspect(inspected.stdout).get(name)
        return found is not None and not found.running
    return "no such" in inspected.stderr.lower()


def finish_hand_over(server: ServerLike, inventory: Inventory, progress: Progress,
                     names: HandOverNames | None = None) -> None:
    """Past the point of no return (the new HAProxy listens): the old one is told to stop
    and finishes its open connections, then the new one takes its name. Done again from the
    start by the `up` after a run cut anywhere in here (finish_interrupted_handover): each
    step may have been done already. `names`: the shared HAProxy's (default: the app's
    own)."""
    names = names or own_names(inventory)
    name, temporary, seconds = names.name, names.temporary, names.seconds
    if soft_stop(server, name):
        waited = server.run(docker.wait_exit(name, seconds), check=False,
                            timeout=seconds + 30)
        if not waited.ok:
            progress(f"{name} still had connections after {seconds}s: removed anyway")
    server.run_chain(docker.remove(name), docker.rename(temporary, name), timeout=60)
    progress(f"{name} now runs {names.image}")


MIGRATE_REQ = "/proc/sys/net/ipv4/tcp_migrate_req"


def warn_without_request_migration(server: ServerLike, progress: Progress) -> None:
    """When the old HAProxy closes its listeners, connections still waiting in their accept
    queue are reset unless the kernel moves them to the new HAProxy's (Linux 5.14+,
    net.ipv4.tcp_migrate_req=1). The kit uses no sudo: it says so, the operator sets it."""
    setting = server.run(["cat", MIGRATE_REQ], check=False, timeout=30)
    if setting.ok and setting.stdout.strip() == "1":
        return
    why = ("the kernel is older than 5.14" if not setting.ok
           else "net.ipv4.tcp_migrate_req is 0")
    progress(f"WARNING: {why}: a connection that arrives in the instant the old HAProxy "
             "stops listening may be reset; set net.ipv4.tcp_migrate_req=1 on the server "
             "(see the README's server checklist)")


def soft_stop_seconds(inventory: Inventory) -> int:
    """How long the old HAProxy may take to finish its open connections after its soft stop:
    as long as an old slot may take to drain (timeouts.drain), whole seconds."""
    return max(1, math.ceil(inventory.timeouts.drain))


def one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def wait_for_new_haproxy(server: ServerLike, container: str, instance: str,
                         timeout: float = RELOAD_TIMEOUT) -> None:
    """Until the admin socket answers from the new container's HAProxy (its `instance` in
    its environment), with its frontends open (its listeners bound); ProxyError at the
    deadline or when the container exits."""
    deadline = time.monotonic() + timeout
    while True:
        server.close_runtime_api()
        try:
            answer = server.runtime_api(f"show env {docker.HAPROXY_INSTANCE_VARIABLE}")
            if (answer.strip() == f"{docker.HAPROXY_INSTANCE_VARIABLE}={instance}"
                    and frontend_open(server.runtime_api("show stat"))):
                return
        except haproxy.RuntimeApiError:
            pass
        found = docker.parse_inspect(
            server.run(docker.inspect_containers(container), check=False).stdout).get(container)
        if found is None or not found.running:
            raise ProxyError(f"{container} stopped while starting")
        if time.monotonic() > deadline:
            raise ProxyError(f"{container} did not answer on the admin socket with its "
                             f"listeners open within {timeout:g}s")
        time.sleep(0.2)


def frontend_open(show_stat: str) -> bool:
    """Pure: every frontend in `show stat` is OPEN (its listeners accept connections)."""
    statuses = [row.get("status", "") for row in haproxy.parse_stat_rows(show_stat)
                if row.get("svname") == "FRONTEND"]
    return bool(statuses) and all(status == "OPEN" for status in statuses)


def back_to_old_haproxy(server: ServerLike, inventory: Inventory, temporary: str, *,
                        restore: bool, name: str | None = None) -> None:
    """Undo a hand-over that did not finish: the new container goes; the old HAProxy (`name`,
    default the app's own), which served all along, gets its config file back and a reload,
    which makes its admin socket again (the new master had replaced it). The new one may
    listen already (beside the old one, on the same ports): it gets a soft stop first, so
    that no connection it accepted is reset."""
    inventory = server.with_folders(inventory)
    seconds = soft_stop_seconds(inventory)
    with contextlib.suppress(RemoteCommandError):  # not started, or gone: nothing to drain
        server.run_chain(*soft_stop_commands(temporary))
        server.run(docker.wait_exit(temporary, seconds), check=False, timeout=seconds + 30)
    server.run(docker.remove(temporary), check=False, timeout=60)
    if restore:
        restore_previous(server, inventory)
    server.run(docker.signal_container(name or inventory.haproxy_container, "USR2"),
               check=False)
    server.close_runtime_api()


@dataclass(frozen=True)
class CutHandOver:
    """A hand-over cut short, as found: what ends it (`how`), and whether the new HAProxy
    under its temporary name still runs."""

    how: Literal["finish", "undo", "rename"]
    temporary_running: bool


def cut_hand_over(found: dict[str, docker.ContainerInfo], name: str,
                  temporary: str) -> CutHandOver | None:
    """Pure: from HAProxy's and the temporary container's inspect, a hand-over cut short
    (None: none). Beside an old one that was told to stop (its restart policy `no`, set
    right before its soft stop: it may be closing its listeners already), the hand-over is
    past its point of no return and is finished: the new one, which listens, must stay.
    Beside an old one that was not, the new one goes and the old one gets its admin socket
    back (a reload, `undo`). Alone, it is the HAProxy (`rename`)."""
    if temporary not in found:
        return None
    old = found.get(name)
    how: Literal["finish", "undo", "rename"] = "rename"
    if old is not None and old.running:
        how = "finish" if old.restart_policy == "no" else "undo"
    return CutHandOver(how, found[temporary].running)


def inspect_hand_over(server: ServerLike, inventory: Inventory,
                      names: HandOverNames | None = None) -> CutHandOver | None:
    """cut_hand_over of what the server has now (one `docker inspect`); `names`: the shared
    HAProxy's (default: the app's own)."""
    names = names or own_names(inventory)
    name, temporary = names.name, names.temporary
    return cut_hand_over(docker.parse_inspect(
        server.run(docker.inspect_containers(name, temporary), check=False).stdout),
        name, temporary)


def finish_interrupted_handover(server: ServerLike, inventory: Inventory,
                                progress: Progress, names: HandOverNames | None = None,
                                before_undo: Callable[[], object] | None = None) -> bool:
    """A hand-over cut short (a lost connection, an interrupt) may leave the new container
    under its temporary name: ended as cut_hand_over says. False when there was none.
    `names`: the shared HAProxy's (default: the app's own); `before_undo`: what goes back
    before the old HAProxy reloads, when the new one goes."""
    inventory = server.with_folders(inventory)
    names = names or own_names(inventory)
    name, temporary = names.name, names.temporary
    cut = inspect_hand_over(server, inventory, names)
    if cut is None:
        return False
    if cut.how == "finish":
        progress(f"finishing an interrupted hand-over: {name} was told to stop, "
                 f"{temporary} takes its place")
        if not cut.temporary_running:
            server.run(docker.start(temporary), timeout=60)
        server.use_admin_socket(None)  # the new master's socket, not a relayed one
        finish_hand_over(server, inventory, progress, names)
    elif cut.how == "undo":
        progress(f"removing {temporary}, left by an interrupted hand-over; {name} serves")
        if before_undo is not None:
            before_undo()
        back_to_old_haproxy(server, inventory, temporary, restore=False, name=name)
    else:
        progress(f"{temporary}, left by an interrupted hand-over, becomes {name}")
        server.run_chain(docker.remove(name), docker.rename(temporary, name), timeout=60)
    return True


def migrate_to_host_network(server: ServerLike, inventory: Inventory, progress: Progress,
                            old: docker.ContainerInfo) -> None:
    """From an HAProxy made by an older slotswap (the app's network, ports published by
    Docker): Docker's proxy holds the public port without SO_REUSEPORT, so the new HAProxy
    can only listen once the old container is gone. One command on the server removes it
    and starts the new one; the slots' state goes over through the server-state file."""
    inventory = server.with_folders(inventory)
    if on_host_network(old):  # stopped: nothing to hand over
        progress(f"HAProxy's container changed: recreating {old.name}, which was {old.status}")
    else:
        progress(f"moving HAProxy to the server's network: recreating {old.name} "
                 "(a short interruption, this once)")
    if old.running:
        with contextlib.suppress(haproxy.RuntimeApiError):
            save_slot_state(server, inventory)
    server.use_admin_socket(None)  # the new HAProxy's is the login's own
    # Created beforehand, so that the interruption is only the old one's removal and the
    # new one's start, in one round trip. Left under its temporary name if that fails: the
    # next `up` makes it the HAProxy.
    temporary = own_next_container(inventory)
    server.run(docker.remove(temporary), check=False, timeout=60)
    server.run(haproxy_run_command(inventory, temporary, create_only=True), timeout=60)
    server.run_chain(docker.remove(old.name), docker.start(temporary),
                     docker.rename(temporary, inventory.haproxy_container), timeout=120)


def reload_with_new_config(server: ServerLike, inventory: Inventory, progress: Progress,
                           wanted: str) -> None:
    """Swap the config file in and reload HAProxy's master: workers hand over, no connection
    is dropped, and the slots keep their runtime state through the server-state file. A
    config that passes `haproxy -c` can still fail to start (a port it cannot bind): then
    the old workers keep running, and the previous file goes back in place, so that the file
    on disk is always the one that runs."""
    inventory = server.with_folders(inventory)
    directory = haproxy_dir(inventory)
    config_path = f"{directory}/{CONFIG_NAME}"
    warn_without_request_migration(server, progress)
    before = haproxy.parse_info(server.runtime_api("show info")).get("Pid")
    try:
        save_slot_state(server, inventory)  # the new workers start from it
        server.run_chain(keep_config_that_ran_command(server, directory),
                         ["mv", "-f", f"{directory}/{NEW_CONFIG_NAME}", config_path])
        server.run(docker.signal_container(inventory.haproxy_container, "HUP"))
        if not wait_for_new_worker(server, before):
            restored = restore_previous(server, inventory)
            raise ProxyError(
                f"{server.name}: HAProxy accepted the new config but did not start with it "
                f"within {RELOAD_TIMEOUT:g}s (a port or address it cannot bind?); the old "
                "workers keep running"
                + (" and the previous config is back in place" if restored else "")
                + f"; see `docker logs {inventory.haproxy_container}` on the server")
        server.write_file(f"{directory}/{RUNNING_NAME}", config_hash(wanted) + "\n")
    finally:
        server.run(["rm", "-f", f"{directory}/{NEW_CONFIG_NAME}"], check=False)
    progress("HAProxy reloaded with the new config")


def wait_for_new_worker(server: ServerLike, pid_before: str | None) -> bool:
    """True once a new worker answers; False at the deadline. While the master tries the new
    config the old worker pauses its listeners, the runtime API's too: no answer then is no
    failure yet. An open admin session keeps talking to the old worker (and keeps it
    alive), so each try asks over a new one."""
    deadline = time.monotonic() + RELOAD_TIMEOUT
    while True:
        server.close_runtime_api()
        try:
            pid = haproxy.parse_info(server.runtime_api("show info")).get("Pid")
        except haproxy.RuntimeApiError:
            pid = pid_before
        if pid != pid_before:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def keep_config_that_ran(directory: str, on_disk: str | None, previous: str | None,
                         running_hash: str | None) -> list[str]:
    """Pure: the command that leaves as PREVIOUS_NAME, before a new config goes in, only a
    config HAProxy ran (the one restore_previous puts back when the new one does not start):
    the file on disk when it is the one the record of what runs names; else the one kept
    already when it is (a run cut between writing a config and applying it left a file
    that never ran); else none. With no record at all (a server set up by a slotswap from
    before it), the file on disk is what the last `up` applied."""
    config_path, previous_path = f"{directory}/{CONFIG_NAME}", f"{directory}/{PREVIOUS_NAME}"
    ran = (running_hash or "").strip()
    if on_disk is not None and (not ran or config_hash(on_disk) == ran):
        return ["cp", "-f", config_path, previous_path]
    if previous is not None and ran and config_hash(previous) == ran:
        return ["true"]
    return ["rm", "-f", previous_path]


def keep_config_that_ran_command(server: ServerLike, directory: str) -> list[str]:
    """keep_config_that_ran for the files on the server now."""
    return keep_config_that_ran(directory, server.read_file(f"{directory}/{CONFIG_NAME}"),
                                server.read_file(f"{directory}/{PREVIOUS_NAME}"),
                                server.read_file(f"{directory}/{RUNNING_NAME}"))


def restore_previous(server: ServerLike, inventory: Inventory) -> bool:
    """The kept config back in place; False when that failed too (the error says so)."""
    inventory = server.with_folders(inventory)
    directory = haproxy_dir(inventory)
    result = server.run(["mv", "-f", f"{directory}/{PREVIOUS_NAME}",
                         f"{directory}/{CONFIG_NAME}"], check=False)
    return result.ok
