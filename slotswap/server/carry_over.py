"""Carrying a server over to this login's folders, when HAProxy runs from another's.

HAProxy's container names the folders it runs from (its bind mounts). When they are not
this login's (root set the server up and a docker-group login runs `up` now, or remote_dir
changed), `up` carries the server over, then replaces HAProxy with a hand-over (no gap, as
for a new image). The login may not open the old folders (root's, 0700) nor the old admin
socket (root's, 0600), but it is in the docker group, so Docker does it:

- A carrier container (HAProxy's image, as root, no network, removed at the end) mounts the
  old folders, relays the old HAProxy's admin socket to one of this login's (0600, in its
  0700 admin folder), and holds the old files for `docker cp`.
- The old state: a lock of a live run there refuses the carry-over (exit 4); the history is
  merged into this login's (both, in time order), so the next deploy knows the fleet's past.
- The old config's files that outlive a config: the maintenance map (maintenance stays on
  or off), the certificate, the slots' env files (a rollback restarts the kept container);
  never HAProxy's config or admin socket, which `up` makes anew.
- Once HAProxy runs from the new folders, the old state folder gets a lock that never
  expires, naming the new folder: a run that still uses the old folders (the other login,
  or an older slotswap) is refused (exit 4) instead of acting beside this login's runs;
  `unlock` with that login removes it on purpose. Nothing else of the old folders changes.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.layout import (
    ADMIN_FOLDER,
    CARRIED_SUFFIX,
    CARRIER_CONFIG,
    CONFIG_NAME,
    HAPROXY_ADMIN_DIR_INSIDE,
    HAPROXY_ADMIN_SOCKET_NAME,
    HAPROXY_CONFIG_DIR_INSIDE,
    HAPROXY_FOLDER,
    HISTORY_NAME,
    LOCK_LEASE_NAME,
    LOCK_NAME,
    LOCK_OWNER_NAME,
    PREVIOUS_ADMIN_DIR_INSIDE,
    PREVIOUS_CONFIG_DIR_INSIDE,
    PREVIOUS_STATE_DIR_INSIDE,
    RELAY_SOCKET,
    STATE_NAME,
    carrier_name,
    history_path,
    lock_dir_in,
    require_own_haproxy,
    state_dir_beside,
)
from slotswap.remote.protocol import ServerLike
from slotswap.remote.server import RemoteCommandError
from slotswap.server.locking import (
    CARRIED_TASK,
    LockedError,
    LockOwner,
    operator,
    parse_read_answer,
    read_lock_at_command,
)

Progress = Callable[[str], None]
RELAY_WAIT_SECONDS = 20.0
# The lease of the lock left in the folders a server was carried over from (its task is
# CARRIED_TASK): one that never ends (ten years).
CARRIED_LEASE = 10 * 365 * 86400
# Fixed scripts; folders and the carrier's name come as arguments. `docker cp` streams the
# old files as a tar archive, unpacked here as this login (modes kept: 0600 stays 0600).
COPY_STATE_SCRIPT = ('rm -rf -- "$1" && mkdir -p -m 700 -- "$1" && '
                     'docker cp "$2:$3" - | tar -x --no-same-owner -C "$1" -f -')
# HAProxy's config, its admin folder and the files of a run are made anew, never carried.
NOT_CARRIED = tuple(f"{HAPROXY_FOLDER}/{name}" for name in (
    ADMIN_FOLDER, f"{CONFIG_NAME}*", STATE_NAME, CARRIER_CONFIG))
# The lock left in the old state folder, written as this login where it may (its own
# folder: its `unlock` can then remove it), else through Docker (root's, as the folder).
MARK_SCRIPT = ('mkdir -p -- "$1" && printf "%s\\n" "$2" > "$1/lease" && '
               'cat > "$1/owner.json"')
COPY_CONFIG_SCRIPT = ('mkdir -p -m 700 -- "$1" && docker cp "$2:$3/." - | '
                      'tar -x --no-same-owner --no-overwrite-dir -C "$1" -f - '
                      + " ".join(f"--exclude='{pattern}'" for pattern in NOT_CARRIED))


@dataclass(frozen=True)
class PreviousFolders:
    """The folders a server's HAProxy runs from, when they are not this login's."""

    config: str  # the app's config folder (HAProxy's is <config>/haproxy)
    admin: str  # the admin socket's folder
    state: str | None  # the app's state folder (lock, history); None: not known


def previous_folders(container: docker.ContainerInfo, inventory: Inventory,
                     haproxy_dir: str) -> PreviousFolders | None:
    """Pure: the folders HAProxy's container runs from when they are not `haproxy_dir` (this
    login's); None when they are, or when it mounts no config folder."""
    mounted = container.binds.get(HAPROXY_CONFIG_DIR_INSIDE)
    if mounted is None or mounted.rstrip("/") == haproxy_dir:
        return None
    config = mounted.rstrip("/").removesuffix(f"/{HAPROXY_FOLDER}")
    admin = container.binds.get(HAPROXY_ADMIN_DIR_INSIDE, f"{mounted}/{ADMIN_FOLDER}")
    return PreviousFolders(config, admin, state_dir_beside(config, inventory.app))


def carrier_config(uid: int, gid: int) -> str:
    """Pure: the carrier's HAProxy config: the old admin socket relayed, byte for byte, to
    a socket of this login's (uid/gid, mode 0600)."""
    return "\n".join([
        "# Written by slotswap while it carries this server over; removed at the end.",
        "global",
        "    log stdout format raw local0 notice",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 10m",
        "    timeout server 10m",
        "listen previous-admin",
        f"    bind {HAPROXY_ADMIN_DIR_INSIDE}/{RELAY_SOCKET} mode 600 uid {uid} gid {gid}",
        f"    server previous {PREVIOUS_ADMIN_DIR_INSIDE}/{HAPROXY_ADMIN_SOCKET_NAME}",
        "",
    ])


def _entry_time(line: str) -> str:
    try:
        return str(json.loads(line).get("time", ""))
    except (ValueError, AttributeError):
        return ""


def merge_histories(old: str, new: str) -> str:
    """Pure: the entries of both history files, each once, in time order (a line that is not
    an entry keeps its place among its file's lines)."""
    lines = list(dict.fromkeys(line for line in (old + "\n" + new).splitlines() if line))
    lines.sort(key=_entry_time)
    return "".join(f"{line}\n" for line in lines)


def carried_lock_archive(owner: LockOwner, lease: int, now: float) -> bytes:
    """Pure: a tar archive of a lock directory (`lock/`, its owner file and lease), as the
    lock scripts of slotswap.server.locking write it, for `docker cp -`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        folder = tarfile.TarInfo(LOCK_NAME)
        folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, int(now)
        archive.addfile(folder)
        for name, text in ((LOCK_OWNER_NAME, json.dumps(asdict(owner)) + "\n"),
                           (LOCK_LEASE_NAME, f"{lease}\n")):
            data = text.encode()
            member = tarfile.TarInfo(f"{LOCK_NAME}/{name}")
            member.size, member.mode, member.mtime = len(data), 0o644, int(now)
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def carried_owner(inventory: Inventory, user: str, now: datetime | None = None) -> LockOwner:
    moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    return LockOwner(operator(), moment, CARRIED_TASK,
                     f"to {inventory.state_dir} (the login {user})", uuid.uuid4().hex)


def wait_for_relay(server: ServerLike, carrier: str, path: str) -> None:
    deadline = time.monotonic() + RELAY_WAIT_SECONDS
    while not server.run(["test", "-S", path], check=False, timeout=30).ok:
        found = docker.parse_inspect(
            server.run(docker.inspect_containers(carrier), check=False).stdout).get(carrier)
        if found is None or not found.running or time.monotonic() > deadline:
            logs = server.run(docker.logs_tail(carrier, 5), check=False)
            detail = " ".join((logs.stdout + logs.stderr).split())[-300:]
            raise RuntimeError(f"{server.name}: the container {carrier} that carries the server "
                               f"over did not relay the old admin socket ({detail or 'no log'})")
        time.sleep(0.1)


def bring_state(server: ServerLike, inventory: Inventory, carrier: str,
                previous: PreviousFolders, progress: Progress) -> None:
    """The old state folder's lock judged, its history merged into this login's."""
    temporary = f"{inventory.state_dir}{CARRIED_SUFFIX}"
    copied = f"{temporary}/{PurePosixPath(PREVIOUS_STATE_DIR_INSIDE).name}"
    try:
        server.run(["sh", "-c", COPY_STATE_SCRIPT, "sh", temporary, carrier,
                    PREVIOUS_STATE_DIR_INSIDE], timeout=60)
        lock = parse_read_answer(server.run(read_lock_at_command(
            lock_dir_in(copied), inventory.timeouts.lease)).stdout)
        if lock is not None and not lock.stale:
            raise LockedError(
                f"{server.name} is locked in the folder it is carried over from "
                f"({previous.state}) by {lock.owner.describe()}, renewed {lock.age}s ago; "
                f"nothing was changed: wait for that run, or run `unlock` with the settings "
                f"it uses")
        old = server.read_file(f"{copied}/{HISTORY_NAME}") or ""
        path = history_path(inventory)
        new = server.read_file(path) or ""
        merged = merge_histories(old, new)
        if merged.strip() != new.strip():
            server.run(["mkdir", "-p", inventory.state_dir])
            server.write_file(path, merged, mode=0o600)
            progress(f"history carried over from {previous.state}: "
                     f"{len(merged.splitlines())} entries")
    finally:
        server.run(["rm", "-rf", temporary], check=False)


def leave_carried_lock(server: ServerLike, inventory: Inventory, carrier: str,
                       folder: str) -> None:
    owner = carried_owner(inventory, server.connection.user)
    text = json.dumps(asdict(owner)) + "\n"
    if server.run(["sh", "-c", MARK_SCRIPT, "sh", lock_dir_in(folder), str(CARRIED_LEASE)],
                  check=False, stdin=text).ok:
        return
    archive = carried_lock_archive(owner, CARRIED_LEASE, time.time())
    command = ["docker", "cp", "-", f"{carrier}:{PREVIOUS_STATE_DIR_INSIDE}"]
    written = server.run_streaming_stdin(command, io.BytesIO(archive))
    if not written.ok:
        raise RemoteCommandError(server.name, shlex.join(command), written.exit_code,
                                 written.stderr)


@contextlib.contextmanager
def carried_over(server: ServerLike, inventory: Inventory,
                 container: docker.ContainerInfo | None, progress: Progress, *,
                 haproxy_dir: str, admin_dir: str) -> Iterator[PreviousFolders | None]:
    """While `up` replaces an HAProxy that runs from another login's folders: the old
    admin socket answers this login (Server.use_admin_socket), the old state and config
    files are in this login's folders. Yields the old folders (None: nothing to carry). On
    success the old state folder is locked for good; always, the carrier goes. Today's
    layout's: a shared server is never carried over (docs/apps-design.md, out of scope)."""
    require_own_haproxy(inventory, "carrying a server over")
    previous = (previous_folders(container, inventory, haproxy_dir)
                if container is not None else None)
    if previous is None:
        yield None
        return
    progress(f"HAProxy runs from {previous.config} (another login's folder, or another "
             f"remote_dir): carrying the server over to {inventory.config_dir}")
    facts = server.login_facts()
    name = carrier_name(inventory)
    relay = f"{admin_dir}/{RELAY_SOCKET}"
    server.run(docker.remove(name), check=False, timeout=60)
    server.run_chain(["mkdir", "-p", "-m", "700", inventory.config_dir],
                     ["mkdir", "-p", "-m", "700", admin_dir], ["chmod", "700", admin_dir],
                     ["rm", "-f", relay])
    server.write_file(f"{haproxy_dir}/{CARRIER_CONFIG}", carrier_config(facts.uid, facts.gid))
    try:
        server.run(docker.run_carrier(
            container=name, image_ref=inventory.haproxy.image, app=inventory.app,
            config_dir=haproxy_dir, config=CARRIER_CONFIG, admin_dir=admin_dir,
            previous_admin_dir=previous.admin, previous_config_dir=previous.config,
            previous_state_dir=previous.state), timeout=60)
        wait_for_relay(server, name, relay)
        if previous.state is not None:
            bring_state(server, inventory, name, previous, progress)
        server.run(["sh", "-c", COPY_CONFIG_SCRIPT, "sh", inventory.config_dir, name,
                    PREVIOUS_CONFIG_DIR_INSIDE], timeout=60)
        if container is not None and container.running:
            server.use_admin_socket(relay)
        yield previous
        if previous.state is not None:
            try:
                leave_carried_lock(server, inventory, name, previous.state)
            except RemoteCommandError as error:  # carried over all the same
                progress(f"WARNING: {previous.state} could not be locked for good, so runs "
                         f"that still use it are not refused: {error}")
                return
            progress(f"carried over from {previous.config}; {previous.state} is locked for "
                     f"good (runs that still use it are refused)")
    finally:
        server.use_admin_socket(None)
        server.run(docker.remove(name), check=False, timeout=60)
        server.run(["rm", "-f", relay, f"{haproxy_dir}/{CARRIER_CONFIG}"], check=False)
