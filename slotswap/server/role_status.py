"""The app's role containers on one server as Docker reports them, for the tasks that show or
reach them (`status`, `logs --role`, `exec --role`, `down`): one round trip
(role_containers.inspect_roles), and none when the inventory has no roles; and how `down`
stops the running ones (role_stops).

Everything is read from the containers' labels (role, version, generation), never from
their names. Design: docs/roles-design.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.commands.role_containers import stop_deadline, stop_roles
from slotswap.config.inventory import Inventory
from slotswap.config.roles import RoleSettings
from slotswap.core.validation import InputError
from slotswap.remote.protocol import ServerLike
from slotswap.server.role_run import role_containers_on


@dataclass(frozen=True)
class RoleContainer:
    """One role container as `status` shows it."""

    name: str
    role: str
    version: str
    generation: str
    running: bool
    restarts: int  # Docker's restarts of it since it was last started
    image_id: str

    @property
    def state(self) -> str:
        return "running" if self.running else "stopped"

    def describe(self) -> str:
        """`worker  shop-worker-web2-1  v2 (web2)  running, 0 restarts`."""
        plural = "" if self.restarts == 1 else "s"
        return (f"{self.role:<10} {self.name}  {self.version} ({self.generation})  "
                f"{self.state}, {self.restarts} restart{plural}")

    def document(self) -> dict[str, object]:
        return {"name": self.name, "role": self.role, "version": self.version,
                "generation": self.generation, "state": self.state,
                "restarts": self.restarts}


def role_container_of(info: docker.ContainerInfo) -> RoleContainer:
    labels = info.labels
    return RoleContainer(
        name=info.name, role=labels.get(docker.LABEL_ROLE, "?"), version=info.version or "?",
        generation=labels.get(docker.LABEL_GENERATION, "?"), running=info.running,
        restarts=info.restart_count, image_id=info.image_id)


def read_role_containers(server: ServerLike, inventory: Inventory) -> list[RoleContainer]:
    """Every role container of the app on the server, running or not, by role then name
    (also those of roles no longer in the inventory)."""
    found = [role_container_of(info) for info in role_containers_on(server, inventory.app)]
    return sorted(found, key=lambda c: (c.role, c.name))


def running_of_role(containers: list[RoleContainer], role: str) -> list[RoleContainer]:
    return [c for c in containers if c.role == role and c.running]


def role_by_name(inventory: Inventory, name: str) -> RoleSettings:
    """The role `--role=NAME` names; an unknown name is an InputError (exit 2) naming the
    inventory's roles."""
    for role in inventory.roles:
        if role.name == name:
            return role
    known = ", ".join(role.name for role in inventory.roles)
    raise InputError(f"--role: {name!r} is not a role of {inventory.path.name} "
                     + (f"(its roles: {known})" if known else "(it has no roles)"))


def hosts_of_role(inventory: Inventory, role: RoleSettings) -> Inventory:
    """The inventory with only the selected hosts that run `role` (InputError when none
    does: the selection, e.g. --hosts, names none of its hosts)."""
    hosts = tuple(host for host in inventory.hosts if host.name in role.hosts)
    if not hosts:
        raise InputError(f"--role={role.name}: it runs on {', '.join(role.hosts)}, none of "
                         "the servers selected")
    return dataclasses.replace(inventory, hosts=hosts)


def with_web_slots(inventory: Inventory, instead: str) -> Inventory:
    """The inventory with only the selected hosts that have web slots, for a task about the
    slots; InputError when the selection has none (`instead`: what to use there)."""
    hosts = inventory.web_hosts
    if not hosts:
        names = ", ".join(host.name for host in inventory.hosts)
        raise InputError(f"{names}: no web slots there (web: false); {instead}")
    return dataclasses.replace(inventory, hosts=hosts)


@dataclass(frozen=True)
class RoleStop:
    """One `docker stop` of a role's running containers, and its deadline."""

    role: str
    argv: list[str]
    stop_timeout: int | None  # the role's; None: each container's own (a role gone)

    @property
    def time_to_finish(self) -> str:
        if self.stop_timeout is None:
            return "each its own stop timeout to finish its job (a role gone)"
        return f"up to {self.stop_timeout}s to finish their jobs"

    @property
    def deadline(self) -> float:
        """Longer than the stop timeout: a job gets all of it (a container made with its
        own has at most MAX_STOP_TIMEOUT)."""
        return stop_deadline(self.stop_timeout)


def role_stops(inventory: Inventory, containers: list[RoleContainer]) -> list[RoleStop]:
    """The running role containers stopped one role at a time, each with its role's stop
    signal and stop timeout (`down`: a job in progress finishes before they are removed)."""
    timeouts = {role.name: role.stop_timeout for role in inventory.roles}
    running: dict[str, list[str]] = {}
    for container in containers:
        if container.running:
            running.setdefault(container.role, []).append(container.name)
    return [RoleStop(role, stop_roles(names, timeouts.get(role)), timeouts.get(role))
            for role, names in running.items()]
