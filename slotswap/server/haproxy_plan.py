"""What `up` does with HAProxy on one server, decided from what was read there (pure). The
run (slotswap.server.haproxy.set_up_haproxy) and the dry run (slotswap.fleet.dry_run.up_plan)
both follow this one decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.server.haproxy_config import runs_config
from slotswap.server.haproxy_handover import LABEL_SPEC, container_spec, on_host_network


@dataclass(frozen=True)
class HAProxyPlan:
    replace: bool  # only a new container can have the image, admin socket, network, folders
    hand_over: bool  # ... from a running HAProxy on the server's network: a new one takes over
    reload: bool  # HAProxy runs and stays: a new config is loaded by a reload
    config_changed: bool  # HAProxy does not run the config rendered now
    start: Literal["run", "start", ""]  # "run": no container yet; "start": a stopped one

    @property
    def new_config(self) -> bool:
        """The rendered config is written, checked and put in place."""
        return self.config_changed or self.replace


def plan_haproxy(container: docker.ContainerInfo | None, inventory: Inventory, *,
                 carried: bool, current: str | None, running: str | None,
                 wanted: str) -> HAProxyPlan:
    """Pure: `container` is HAProxy's as inspected (None: none); `carried`: it runs from
    another login's folders (slotswap.server.carry_over); `current`, `running`: the installed
    config and the hash of the one HAProxy was seen running with; `wanted`: the config
    rendered now. "Unchanged" means HAProxy runs that config, not only that the file is it."""
    replace = (container is not None
               and (carried or container.labels.get(LABEL_SPEC) != container_spec(inventory)))
    running_now = container is not None and container.running
    hand_over = (replace and container is not None and container.running
                 and on_host_network(container))
    start: Literal["run", "start", ""] = ""
    if not replace:
        start = "run" if container is None else ("" if container.running else "start")
    return HAProxyPlan(replace=replace, hand_over=hand_over,
                       reload=running_now and not replace,
                       config_changed=not runs_config(current, running, wanted), start=start)
