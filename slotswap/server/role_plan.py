"""What a deploy (or a rollback: the same, with the previous version) does to the role
containers of one server, decided without touching it (pure). From the role containers Docker
reports there and what each role must be: which containers to remove (all stopped: those in
the generation the version goes into, and those of roles gone; the other generation's are
kept for a rollback), which running old ones to rename out of a new one's way, which to start
(a kept one again, or a new one), which to check, and which old ones to stop once every check
passed.

The steps in order keep this true at every instant: a role that had a running container
has one (never zero workers), and nothing running is stopped before the new containers of
its role have passed their check. A role no longer on the server (out of the inventory, or
of its hosts) has its containers stopped last. Design: docs/roles-design.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from slotswap.commands.docker import (
    LABEL_APP,
    LABEL_GENERATION,
    LABEL_ROLE,
    LABEL_SETTINGS,
    ContainerInfo,
)
from slotswap.commands.role_containers import role_container_name
from slotswap.config.inventory import SLOTS

Action = Literal["remove", "rename", "start", "run", "check", "stop"]
Verdict = Literal["passed", "waiting", "failed"]


@dataclass(frozen=True)
class RoleTarget:
    """What one role must be on the server after the run."""

    role: str
    count: int
    digest: str  # role_containers.role_digest of today's settings
    stop_timeout: int
    # False when the role's env file for this generation changed: a container of this
    # version made with the old one is replaced, not reused.
    reuse: bool = True
    # The image ID the tag names on the server now (None: not known): a container made
    # from another (the tag pushed again since) is replaced, not reused.
    image_id: str | None = None


@dataclass(frozen=True)
class Step:
    action: Action
    role: str
    container: str
    new_name: str | None = None  # rename: the name it gets
    index: int | None = None  # run: n of <app>-<role>-<generation>-<n>
    # stop: None, the container's own (a role gone); run/start: the role's, for undo
    stop_timeout: int | None = None


@dataclass(frozen=True)
class RolePlan:
    version: str
    generation: str
    remove: tuple[Step, ...]  # stopped ones in the new generation's way, and of roles gone
    rename: tuple[Step, ...]  # running old ones holding a new container's name
    start: tuple[Step, ...]  # "start": a kept container of this version; "run": a new one
    check: tuple[Step, ...]  # every container of the new version, started now or before
    stop: tuple[Step, ...]  # the old running ones, once every check passed; then kept
    # The roles whose running old containers are of another version: where the new
    # version's containers a cut run left running stop with the rest of it (undo).
    replaced: frozenset[str] = frozenset()

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step in the order it is taken (a failed check ends the run before `stop`)."""
        return (*self.remove, *self.rename, *self.start, *self.check, *self.stop)

    @property
    def unchanged(self) -> bool:
        """Nothing to start, stop or clean: the server runs this version already."""
        return not (self.remove or self.rename or self.start or self.stop)

    def undo(self) -> tuple[Step, ...]:
        """When the version fails: stop its containers (the role's stop signal and stop
        timeout: a job one took is finished): those this run started, and those a cut run
        left running of each role whose running old ones are of another version (`replaced`);
        containers of the version that served keep running (a count changed, the version
        did not), and never zero workers of a role that had some. The old ones were
        never stopped, they serve on. The stopped containers are kept for `logs`, and the
        next run removes them."""
        started = {step.container for step in self.start}
        return tuple(Step("stop", step.role, step.container, stop_timeout=step.stop_timeout)
                     for step in self.check
                     if step.container in started or step.role in self.replaced)


def plan_roles(containers: Iterable[ContainerInfo], *, app: str, version: str,
               generation: str, targets: Iterable[RoleTarget]) -> RolePlan:
    """Pure: the steps that leave the server running `version`'s containers of each target
    role in `generation`, and none of any other version or role."""
    if generation not in SLOTS:
        raise ValueError(f"unknown generation {generation!r}: expected one of {SLOTS}")
    wanted = {target.role: target for target in targets}
    mine = [info for info in containers
            if info.labels.get(LABEL_APP) == app and LABEL_GENERATION in info.labels]
    new_names = {role_container_name(app, target.role, generation, index): (target, index)
                 for target in wanted.values() for index in range(1, target.count + 1)}
    fresh = {info.name: info for info in mine if _is_fresh(info, new_names, version)}
    old = [info for info in mine if info.name not in fresh]

    # Stopped: in the new generation (the names are needed, or a cut run's), or of a role no
    # longer on the server. Those of the other generation are the previous version's, kept
    # (like the idle web slot) for a rollback until a deploy goes into that generation.
    remove = [Step("remove", _role(info), info.name) for info in old if not info.running and (
        info.labels[LABEL_GENERATION] == generation or _role(info) not in wanted)]
    removed = {step.container for step in remove}
    running_old = [info for info in old if info.running]
    taken = {info.name for info in mine if info.name not in removed} | set(new_names)
    rename = []
    for info in running_old:
        if info.name in new_names:
            new_name = _free_name(f"{info.name}-old", taken)
            taken.add(new_name)
            rename.append(Step("rename", _role(info), info.name, new_name=new_name))
    renamed = {step.container: step.new_name for step in rename}

    start, check = [], []
    for name, (target, index) in new_names.items():
        info = fresh.get(name)
        if info is None:
            start.append(Step("run", target.role, name, index=index,
                              stop_timeout=target.stop_timeout))
        elif not info.running:
            start.append(Step("start", target.role, name, stop_timeout=target.stop_timeout))
        check.append(Step("check", target.role, name, stop_timeout=target.stop_timeout))
    stop = [Step("stop", _role(info), renamed.get(info.name) or info.name,
                 stop_timeout=wanted[_role(info)].stop_timeout if _role(info) in wanted
                 else None)
            for info in running_old]
    anything = remove or rename or start or stop
    replaced = frozenset(_role(info) for info in running_old if info.version != version)
    return RolePlan(version, generation, tuple(remove), tuple(rename), tuple(start),
                    tuple(check) if anything else (), tuple(stop), replaced)


def _role(info: ContainerInfo) -> str:
    return info.labels.get(LABEL_ROLE, "")


def _is_fresh(info: ContainerInfo, new_names: dict[str, tuple[RoleTarget, int]],
              version: str) -> bool:
    """A container the run can keep as one of the new version's: its name is a new one's,
    of this version, made with today's settings (and env file, unless `reuse` says no)
    from the image the tag names now (when known)."""
    if info.name not in new_names:
        return False
    target, _ = new_names[info.name]
    return (info.version == version and _role(info) == target.role and target.reuse
            and info.labels.get(LABEL_SETTINGS) == target.digest
            and target.image_id in (None, info.image_id))


def _free_name(wanted: str, taken: set[str]) -> str:
    name, number = wanted, 1
    while name in taken:
        number += 1
        name = f"{wanted}{number}"
    return name


# -- which generation, and how a new container is doing ---------------------------------------


def other_generation(generation: str) -> str:
    return SLOTS[1 - SLOTS.index(generation)]


def worker_only_generation(containers: Iterable[ContainerInfo], *, app: str,
                           version: str) -> str:
    """The generation `version` goes into on a host without web slots (the web hosts use
    their idle slot's name): where containers of that version are already (a run again, a
    rollback to kept ones: running ones first, then the newest), else the other one than the
    newest running container's, else the first."""
    mine = [info for info in containers if info.labels.get(LABEL_APP) == app
            and info.labels.get(LABEL_GENERATION) in SLOTS]
    same = sorted((info for info in mine if info.version == version),
                  key=lambda info: (info.running, info.started_ns), reverse=True)
    if same:
        return same[0].labels[LABEL_GENERATION]
    running = sorted((info for info in mine if info.running), key=lambda info: info.started_ns)
    if running:
        return other_generation(running[-1].labels[LABEL_GENERATION])
    return SLOTS[0]


def judge_running(info: ContainerInfo | None, *, seconds: float, now_ns: int,
                  restarts: int = 0) -> Verdict:
    """The `{running: S}` check of a new container: failed when it is gone, not running, or
    Docker restarted it (its app crashed: more restarts than `restarts`, the count when it
    was first seen: one restarted long ago and running since is no crash now); passed once
    it has run `seconds` since it was started (StartedAt; `now_ns` on the same clock)."""
    if info is None or not info.running or info.restart_count > restarts:
        return "failed"
    if now_ns - info.started_ns >= seconds * 1_000_000_000:
        return "passed"
    return "waiting"


def role_trouble(info: ContainerInfo | None, started_ns: int,
                 restarts: int = 0) -> str | None:
    """A new container in the watch window (`started_ns`, `restarts`: its start and Docker's
    restart count as its check saw them): what went wrong, or None. Gone, stopped, or
    started again since (Docker's restart policy brings a crashing worker back up): the
    version fails on that server."""
    if info is None:
        return "its container no longer exists"
    if not info.running:
        return f"its container stopped ({info.status}, exit code {info.exit_code})"
    if info.started_ns != started_ns or info.restart_count > restarts:
        return "its container crashed: Docker restarted it"
    return None
