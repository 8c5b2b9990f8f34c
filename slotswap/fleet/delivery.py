"""Getting IMAGE:TAG onto every server before the first swap (inventory `delivery`).

`registry`: the servers pull the image (slotswap.server.images.ensure_image), and the registry is
asked once per run: the first server pulls it, which tells the image ID the tag names now,
and a server whose copy has that ID pulls nothing. `ssh`: no registry at all; the image is
read from the operator's Docker (`docker image save`, the engine DOCKER_HOST names, as for
`fab build`) once into a temporary file, and streamed from there into each server's `docker
image load` over that server's own SSH connection. A server that already has the same image
ID is skipped; the others get it `delivery.concurrency` at a time (the caller runs them in
parallel), with progress lines in MB.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.layout import ProxyError
from slotswap.core import interrupts
from slotswap.fleet.image_archive import (
    ArchiveError,
    ImageArchive,
    layers_already_there,
    read_archive,
    write_without_layers,
)
from slotswap.https.files import CertificateBundle
from slotswap.remote.protocol import ServerLike
from slotswap.server import registry_login
from slotswap.server.haproxy import up_server, up_worker_only
from slotswap.server.images import ensure_image
from slotswap.server.locking import new_owner
from slotswap.server.proxy_move import up_moving
from slotswap.server.proxy_up import FetchImage, pull_image, up_worker_only_shared

Progress = Callable[[str], None]
ServerAction = Callable[[ServerLike, Inventory, Progress], str]
LOCAL_DOCKER_TIMEOUT = 900.0  # seconds for the local `docker image save` of one image
LOAD_TIMEOUT = 1800.0  # seconds for one server's transfer and `docker image load`
PROGRESS_INTERVAL = 1.0  # seconds between two progress lines of one transfer
MEGABYTE = 1_000_000


class DeliveryError(ProxyError):
    """The image could not be put on a server (like a failed pull): nothing was swapped."""


class Deliver(Protocol):
    def __call__(self, server: ServerLike, image_ref: str, progress: Progress, *,
                 refresh: bool) -> None: ...


class RegistryDelivery:
    """delivery: registry. With refresh (a deploy), the first server to need an image pulls
    it: that pull asks the registry what the tag is now, and gives its image ID. Meanwhile
    every other server says which image ID its copy of the tag has (one round trip); a copy
    with that ID is the registry's and is not pulled again, the others pull (one with no
    copy at once, without waiting for the first). A server that
    has a copy but cannot pull (the registry unreachable, the login refused) fails, unless
    `allow_stale` (see ensure_image)."""

    def __init__(self, login: registry_login.RegistryLogin | None, allow_stale: bool = False):
        self.login, self.allow_stale = login, allow_stale
        self._lock = threading.Lock()
        self._asked: dict[str, threading.Event] = {}
        self._current: dict[str, str | None] = {}  # image ref -> the ID the first pull gave

    def __call__(self, server: ServerLike, image_ref: str, progress: Progress, *,
                 refresh: bool) -> None:
        pull = functools.partial(ensure_image, server, image_ref, progress, refresh=refresh,
                                 login=self.login, allow_stale=self.allow_stale)
        if not refresh:
            pull()
            return
        with self._lock:
            first = image_ref not in self._asked
            answered = self._asked.setdefault(image_ref, threading.Event())
        if first:
            try:
                self._current[image_ref] = pull()
            finally:
                answered.set()
            return
        found = server.run(docker.image_id(image_ref), check=False)
        if not found.ok:  # no copy to compare: pull now, beside the first server
            pull()
            return
        while not answered.wait(0.2):
            interrupts.checkpoint()
        current = self._current.get(image_ref)
        if found.ok and current and found.stdout.strip() == current:
            progress(f"{image_ref} already there (image {short_id(current)}, the registry's "
                     "now), not pulled")
            return
        pull()


def megabytes(count: int) -> str:
    return f"{count / MEGABYTE:.1f} MB"


def transfer_line(sent: int, size: int, seconds: float) -> str:
    """`12.0/48.0 MB (25%), 6.0 MB/s`: one progress line of a transfer."""
    share = f" ({100 * sent // size}%)" if size else ""
    rate = f", {sent / MEGABYTE / seconds:.1f} MB/s" if seconds > 0 else ""
    return f"sent {sent / MEGABYTE:.1f}/{megabytes(size)}{share}{rate}"


def first_line_of_error(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error output"


class TransferMeter:
    """Turns `sent(bytes)` calls into a progress line at most every PROGRESS_INTERVAL, and
    lets Ctrl-C stop a long transfer between two chunks."""

    def __init__(self, size: int, progress: Progress, clock: Callable[[], float] = time.monotonic):
        self.size, self.progress, self.clock = size, progress, clock
        self.started = self.last = clock()

    def __call__(self, sent: int) -> None:
        interrupts.checkpoint()
        now = self.clock()
        if now - self.last >= PROGRESS_INTERVAL and sent < self.size:
            self.last = now
            self.progress(transfer_line(sent, self.size, now - self.started))

    @property
    def seconds(self) -> float:
        return self.clock() - self.started


def images_on(server: ServerLike) -> list[docker.ServerImage]:
    """What the server has (one round trip). Every image it could describe counts, even if
    the query failed on one (removed in the meantime, say); an image it does not name is
    sent, whole if no layer is known, and `docker image load` replaces what was there."""
    return docker.parse_server_images(server.run(docker.server_images(), check=False).stdout)


def run_local_docker(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A docker command on this machine, against the engine DOCKER_HOST names."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=LOCAL_DOCKER_TIMEOUT)
    except FileNotFoundError:
        raise DeliveryError("delivery ssh needs the `docker` command on this machine, "
                            "to read the image from") from None
    except subprocess.TimeoutExpired:
        raise DeliveryError(f"`{' '.join(argv)}` on this machine took more than "
                            f"{LOCAL_DOCKER_TIMEOUT:g}s") from None


def local_engine() -> str:
    return f"DOCKER_HOST={os.environ['DOCKER_HOST']}" if os.environ.get("DOCKER_HOST") else (
        "the default engine")


class SshDelivery:
    """delivery: ssh. Use as a context manager: the saved image files go at the end."""

    def __init__(self, *, allow_stale: bool = False) -> None:
        self.allow_stale = allow_stale
        self._lock = threading.Lock()
        self._saved: dict[str, tuple[str, ImageArchive] | DeliveryError] = {}
        self._smaller: dict[tuple[str, int], Path] = {}
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> SshDelivery:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._folder is not None:
            self._folder.cleanup()

    def local_image(self, image_ref: str) -> tuple[str, ImageArchive]:
        """The image ID in the operator's Docker and the archive it was saved to; saved once
        for all the servers."""
        with self._lock:
            if image_ref not in self._saved:
                try:
                    self._saved[image_ref] = self._save(image_ref)
                except DeliveryError as error:
                    self._saved[image_ref] = error
            saved = self._saved[image_ref]
        if isinstance(saved, DeliveryError):
            raise saved
        return saved

    def _new_path(self, name: str) -> Path:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="slotswap-image-")
        return Path(self._folder.name) / name

    def _save(self, image_ref: str) -> tuple[str, ImageArchive]:
        found = run_local_docker(docker.image_id(image_ref))
        if found.returncode != 0:
            raise DeliveryError(f"{image_ref} is not in this machine's Docker ({local_engine()}):"
                                f" {first_line_of_error(found.stderr)}; build (fab build) "
                                "or pull it there first")
        path = self._new_path(f"image-{len(self._saved)}.tar")
        saved = run_local_docker(docker.save(image_ref, str(path)))
        if saved.returncode != 0:
            raise DeliveryError(f"cannot save {image_ref} from this machine's Docker "
                                f"({local_engine()}): {first_line_of_error(saved.stderr)}")
        try:
            archive = read_archive(path)
        except ArchiveError as error:
            raise DeliveryError(f"`docker image save` of {image_ref}: {error}") from error
        if not archive.repo_tags:
            raise DeliveryError(f"`docker image save` of {image_ref} wrote no name for it")
        return found.stdout.strip(), archive

    def without_layers(self, image_ref: str, archive: ImageArchive, count: int) -> Path:
        """The archive without its `count` bottom layers; written once for all the servers
        that have the same layers."""
        with self._lock:
            key = (image_ref, count)
            if key not in self._smaller:
                path = self._new_path(f"smaller-{len(self._smaller)}.tar")
                self._smaller[key] = write_without_layers(archive, count, path)
            return self._smaller[key]

    def __call__(self, server: ServerLike, image_ref: str, progress: Progress, *,
                 refresh: bool) -> None:
        images = images_on(server)
        remote_id = docker.image_id_named(images, image_ref)
        if remote_id and not refresh:
            return
        try:
            local_id, archive = self.local_image(image_ref)
        except DeliveryError as error:
            if remote_id and self.allow_stale:
                progress(f"WARNING: {error}; deploying the copy on the server, which may be "
                         "another image of that tag (--allow-stale)")
                return
            if remote_id:
                raise DeliveryError(f"{server.name}: {error}; the server's copy of that tag may "
                                    "be another image, so it is not deployed (--allow-stale "
                                    "deploys it anyway)") from error
            raise DeliveryError(f"{server.name}: {error}") from error
        if remote_id == local_id:
            progress(f"{image_ref} already there (image {short_id(local_id)}), nothing sent")
            return
        self.send(server, image_ref, local_id, archive, images, progress)

    def send(self, server: ServerLike, image_ref: str, image_id: str, archive: ImageArchive,
             images: list[docker.ServerImage], progress: Progress) -> None:
        """Stream the archive into the server's `docker image load`, without the bottom
        layers the server has; if its Docker refuses that, the whole archive."""
        layers = len(archive.layers)
        shared = layers_already_there([layer.diff_id for layer in archive.layers],
                                      [list(image.layers) for image in images])
        what = f"{image_ref} (image {short_id(image_id)}"
        if shared:
            smaller = self.without_layers(image_ref, archive, shared)
            progress(f"sending {what}, {megabytes(smaller.stat().st_size)} of "
                     f"{megabytes(archive.size)}: {shared} of {layers} layers already there) "
                     "over SSH")
            refused = stream_archive(server, image_ref, smaller, archive.repo_tags, progress)
            if refused is None:
                return
            progress(f"its Docker wants every layer ({refused}); sending the whole image")
        else:
            progress(f"sending {what}, {megabytes(archive.size)}) over SSH")
        refused = stream_archive(server, image_ref, archive.path, archive.repo_tags,
                                 progress)
        if refused is not None:
            raise DeliveryError(f"{server.name}: {refused} ({image_ref})")


def short_id(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def stream_archive(server: ServerLike, image_ref: str, path: Path, names: tuple[str, ...],
                   progress: Progress) -> str | None:
    """Stream one archive into the server's `docker image load`; None when it loaded the
    image under the archive's names, else what went wrong."""
    size = path.stat().st_size
    meter = TransferMeter(size, progress)
    with path.open("rb") as source:
        result = server.run_streaming_stdin(docker.load(), source, sent=meter,
                                            timeout=LOAD_TIMEOUT)
    if not result.ok:
        return (f"`docker image load` exited {result.exit_code}: "
                f"{first_line_of_error(result.stderr)}")
    missing = set(names) - set(docker.parse_loaded_names(result.stdout))
    if missing:
        return (f"`docker image load` did not name {', '.join(sorted(missing))} (it said: "
                f"{first_line_of_error(result.stdout + result.stderr)})")
    progress(f"loaded {image_ref}: {transfer_line(size, size, meter.seconds)} in "
             f"{meter.seconds:.1f}s")
    return None


@contextlib.contextmanager
def image_deliverer(inventory: Inventory, *, allow_stale: bool = False) -> Iterator[Deliver]:
    """What puts IMAGE:TAG on one server, for the inventory's delivery mode. `allow_stale`:
    a server that cannot refresh the tag deploys the copy it has (see ensure_image)."""
    if inventory.delivery.mode == "ssh":
        with SshDelivery(allow_stale=allow_stale) as deliver:
            yield deliver
    else:
        yield RegistryDelivery(registry_login.resolve(inventory, os.environ), allow_stale)


@contextlib.contextmanager
def up_action(inventory: Inventory,
              certificate: CertificateBundle | None = None) -> Iterator[ServerAction]:
    """What `fab up` does on one server (with HTTPS, `certificate` is the one to put in
    place). With delivery: ssh, a server that lacks HAProxy's image gets it from the
    operator's Docker too, so that no server needs a registry. A worker-only host (`web:
    false`) gets the app's network alone: no HAProxy, its image, config or certificate."""
    if inventory.haproxy.shared:
        # The server's shared HAProxy (several apps on one server): its image is the one its
        # owner's inventory sets (docs/apps-design.md, decision 2), known once the server's
        # shared settings are read; pulled by the server, or sent as the app's own HAProxy's.
        with contextlib.ExitStack() as stack:
            fetch: FetchImage = pull_image
            if inventory.delivery.mode == "ssh":
                fetch = functools.partial(send_image, stack.enter_context(SshDelivery()))

            def up_on_shared(server: ServerLike, inventory: Inventory,
                             progress: Progress) -> str:
                if not server.host.web:
                    return up_worker_only_shared(server, inventory, progress)
                # up_shared, or the move from the app's own HAProxy (decision 6).
                return up_moving(server, inventory, progress, new_owner("up"), certificate,
                                 fetch)

            yield up_on_shared
        return
    if inventory.delivery.mode != "ssh":
        yield web_or_worker(functools.partial(up_server, certificate=certificate))
        return

    with SshDelivery() as deliver:
        def up_without_registry(server: ServerLike, inventory: Inventory,
                                progress: Progress) -> str:
            deliver(server, inventory.haproxy.image, progress, refresh=False)
            return up_server(server, inventory, progress, certificate)

        yield web_or_worker(up_without_registry)


def send_image(deliver: SshDelivery, server: ServerLike, image_ref: str,
               progress: Progress) -> None:
    """delivery: ssh of an HAProxy image: sent when the server lacks it (never refreshed)."""
    deliver(server, image_ref, progress, refresh=False)


def web_or_worker(up_web: ServerAction) -> ServerAction:
    """`up_web` on a server with web slots, up_worker_only on a worker-only host."""

    def up_one(server: ServerLike, inventory: Inventory, progress: Progress) -> str:
        if not server.host.web:
            return up_worker_only(server, inventory, progress)
        return up_web(server, inventory, progress)

    return up_one
