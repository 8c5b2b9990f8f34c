"""The simulated server's files (simulated_server.py), in memory: a sweep clones a fleet and
runs the lock's and the history's scripts thousands of times, and a copy of a dict costs
nothing where a folder on disk costs system calls. Folders have a modification time (the
lock's age is read from it), set when one is made, when an entry is added to it, and by
`touch`; `to_disk` and `from_disk` carry them to a real folder and back, for the real `sh`
(SimulatedServer.real_shell)."""

from __future__ import annotations

import os
import posixpath
import time as real_time
from pathlib import Path

from slotswap.remote.server import CommandResult


def normal(path: str) -> str:
    return posixpath.normpath("/" + path.lstrip("/"))


class SimFiles:
    """Files (path -> text) and folders (path -> modification time) of one server."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.dirs: dict[str, float] = {"/": real_time.time()}
        self.links: dict[str, str] = {}  # symbolic links: path -> target (as `ln -s` wrote it)

    def copy(self) -> SimFiles:
        twin = SimFiles()
        twin.files, twin.dirs, twin.links = dict(self.files), dict(self.dirs), dict(self.links)
        return twin

    def read(self, path: str) -> str | None:
        return self.files.get(self.resolve(path) if self.links else normal(path))

    # -- symbolic links (the shared HAProxy's `current` and `previous`) -----------------
    def symlink(self, target: str, path: str) -> None:
        """`ln -sfn target path` (a relative target is relative to the link's folder)."""
        path = normal(path)
        self.mkdir(posixpath.dirname(path), parents=True, exist_ok=True)
        self.links[path] = target

    def resolve(self, path: str) -> str:
        """The path with every link in it followed (at most 40, as Linux)."""
        parts, done = normal(path).strip("/").split("/"), "/"
        for _ in range(40):
            for index, part in enumerate(parts):
                here = posixpath.join(done, part)
                if here in self.links:
                    target = self.links[here]
                    base = target if target.startswith("/") else posixpath.join(done, target)
                    parts = [*normal(base).strip("/").split("/"), *parts[index + 1:]]
                    done = "/"
                    break
                done = here
            else:
                return normal(done)
        raise OSError(f"{path}: too many levels of symbolic links")

    def listdir(self, path: str) -> list[str]:
        """The names in a folder (files, folders, links), in lexical order (LC_COLLATE=C)."""
        inside = self.resolve(path).rstrip("/") + "/"
        return sorted({p[len(inside):] for p in [*self.files, *self.dirs, *self.links]
                       if p.startswith(inside) and "/" not in p[len(inside):]} - {""})

    def is_dir(self, path: str) -> bool:
        return normal(path) in self.dirs

    def is_file(self, path: str) -> bool:
        return normal(path) in self.files

    def mkdir(self, path: str, *, parents: bool = False, exist_ok: bool = False) -> None:
        path = normal(path)
        if path in self.dirs:
            if exist_ok:
                return
            raise FileExistsError(path)
        parent = posixpath.dirname(path)
        if parent not in self.dirs:
            if not parents:
                raise FileNotFoundError(parent)
            self.mkdir(parent, parents=True, exist_ok=True)
        self.dirs[path] = self.dirs[parent] = real_time.time()

    def write(self, path: str, text: str) -> None:
        """Written whole (its folders made as needed)."""
        path = normal(path)
        parent = posixpath.dirname(path)
        self.mkdir(parent, parents=True, exist_ok=True)
        if path not in self.files:
            self.dirs[parent] = real_time.time()
        self.files[path] = text

    def append(self, path: str, text: str) -> None:
        self.write(path, (self.read(path) or "") + text)

    def unlink(self, path: str) -> None:
        self.files.pop(normal(path), None)
        self.links.pop(normal(path), None)

    def remove_tree(self, path: str) -> None:
        path = normal(path)
        inside = path.rstrip("/") + "/"
        self.files = {p: t for p, t in self.files.items() if not p.startswith(inside)}
        self.dirs = {p: t for p, t in self.dirs.items()
                     if p != path and not p.startswith(inside)}
        self.links = {p: t for p, t in self.links.items()
                      if p != path and not p.startswith(inside)}

    def rename(self, source: str, target: str) -> None:
        """`mv -T source target` of a link, a file or a folder (with what is in it), in one
        step; a folder over a folder that has entries is refused (as rename(2) does)."""
        source, target = normal(source), normal(target)
        if target in self.dirs and self.listdir(target):
            raise OSError(f"mv: cannot overwrite '{target}': Directory not empty")
        self.unlink(target)  # a file or a link there is replaced
        self.dirs.pop(target, None)
        inside = source.rstrip("/") + "/"
        for table in (self.files, self.dirs, self.links):
            for old in [p for p in table if p == source or p.startswith(inside)]:
                table[target + old[len(source):]] = table.pop(old)
        self.dirs[posixpath.dirname(target)] = real_time.time()

    def touch(self, path: str) -> None:
        self.dirs[normal(path)] = real_time.time()

    def mtime(self, path: str) -> float:
        return self.dirs[normal(path)]

    def set_mtime(self, path: str, mtime: float) -> None:
        self.dirs[normal(path)] = mtime

    # -- a real folder, for the real `sh` ----------------------------------------------
    def to_disk(self, root: Path) -> None:
        for path in sorted(self.dirs):
            (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for path, text in self.files.items():
            (root / path.lstrip("/")).write_text(text)
        for path, target in self.links.items():
            (root / path.lstrip("/")).symlink_to(target)
        for path, mtime in sorted(self.dirs.items(), reverse=True):
            os.utime(root / path.lstrip("/"), (mtime, mtime))

    @classmethod
    def from_disk(cls, root: Path) -> SimFiles:
        found = cls()
        found.dirs = {"/": root.stat().st_mtime}
        for folder, dirs, files in os.walk(root):
            inside = "/" + os.path.relpath(folder, root).removeprefix(".").lstrip("/")
            for name in dirs + files:
                if os.path.islink(os.path.join(folder, name)):
                    found.links[normal(f"{inside}/{name}")] = os.readlink(
                        os.path.join(folder, name))
            for name in dirs:
                if not os.path.islink(os.path.join(folder, name)):
                    found.dirs[normal(f"{inside}/{name}")] = os.stat(
                        os.path.join(folder, name)).st_mtime
            for name in files:
                if not os.path.islink(os.path.join(folder, name)):
                    found.files[normal(f"{inside}/{name}")] = Path(folder, name).read_text()
        return found


def file_command(files: SimFiles, argv: list[str]) -> CommandResult | None:
    """`up`'s commands on files (mkdir, chmod, touch, cp, mv, true) on `files`, as the real
    ones answer (test_simulated_server holds them to it); None for any other command."""
    if argv[:2] == ["mkdir", "-p"]:
        files.mkdir(argv[-1], parents=True, exist_ok=True)
        return CommandResult("", "", 0)
    if argv[:2] == ["chmod", "700"] or argv == ["true"]:
        return CommandResult("", "", 0)
    if argv[:1] == ["touch"] and len(argv) == 2:
        if not files.is_dir(argv[1]) and files.read(argv[1]) is None:
            files.write(argv[1], "")
        return CommandResult("", "", 0)
    if argv[:2] in (["cp", "-f"], ["mv", "-f"]) and len(argv) == 4:
        text = files.read(argv[2])
        if text is None:
            return CommandResult("", f"{argv[0]}: cannot stat '{argv[2]}': No such file "
                                 "or directory\n", 1)
        files.write(argv[3], text)
        if argv[0] == "mv":
            files.unlink(argv[2])
        return CommandResult("", "", 0)
    return None
