"""A host turned worker-only (`hosts[].web: false`) after it ran the web: `up` takes the
app's HAProxy and web slots off it, and nothing else (its network and role containers
stay). Gracefully, in this order: HAProxy soft-stops (it closes its listeners and lets its
open connections finish, up to timeouts.drain, as in a hand-over), then each slot gets its
stop timeout, then HAProxy's folder and the slots' env files go, then the containers. The
operator takes the host out of the load balancer or DNS first (README: worker-only hosts).

Before, `up` left them running: the host went on serving the version it had to whoever
still reached it, while deploys moved only its workers. A cut anywhere here leaves what
the next `up` reads again and finishes: every step is one it can take again."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.layout import (
    env_file_path,
    own_haproxy_dir,
    own_next_container,
    require_own_haproxy,
)
from slotswap.remote.protocol import ServerLike
from slotswap.server.haproxy_handover import soft_stop_commands, soft_stop_seconds

MARGIN = 30.0  # seconds a Docker command gets beyond the time it waits on the server


@dataclass(frozen=True)
class RemovalStep:
    argv: list[str]
    deadline: float
    check: bool = True


def web_container_names(inventory: Inventory) -> list[str]:
    """The app's own HAProxy (and the one a cut hand-over left under its temporary name),
    then the slots: never the shared HAProxy, which serves other apps too."""
    return [inventory.haproxy_container, own_next_container(inventory),
            *(inventory.container_name(slot) for slot in SLOTS)]


def web_containers_on(server: ServerLike, inventory: Inventory) -> dict[str, docker.ContainerInfo]:
    """The app's HAProxy and web slot containers on the server, running or not (one round
    trip; none on a host that never ran the web)."""
    result = server.run(docker.inspect_containers(*web_container_names(inventory)), check=False)
    return docker.parse_inspect(result.stdout)


def removal_steps(inventory: Inventory,
                  found: dict[str, docker.ContainerInfo]) -> list[RemovalStep]:
    """Pure: the commands that take `found` off the server, in order (none when nothing
    was found). `inventory` has the login's folders. Today's layout's: with haproxy.shared
    taking an app off a host is the shared down's job."""
    require_own_haproxy(inventory, "taking the web off a worker-only host")
    if not found:
        return []
    names = web_container_names(inventory)
    steps: list[RemovalStep] = []
    soft_stop = soft_stop_seconds(inventory)
    for name in names[:2]:
        if name in found and found[name].running:
            steps += [*(RemovalStep(argv, MARGIN) for argv in soft_stop_commands(name)),
                      # 124 once the drain is over: the removal below ends it.
                      RemovalStep(docker.wait_exit(name, soft_stop), soft_stop + MARGIN,
                                  check=False)]
    stop = inventory.timeouts.stop
    steps += [RemovalStep(docker.stop(name, stop), stop + MARGIN)
              for name in names[2:] if name in found and found[name].running]
    # The files (the certificate's key, the slots' env files) before the containers: a cut
    # between the two leaves containers, which the next `up` finds and takes off again.
    steps.append(RemovalStep(["rm", "-rf", "--", own_haproxy_dir(inventory),
                              *(env_file_path(inventory, slot) for slot in SLOTS)], MARGIN))
    steps.append(RemovalStep(docker.remove(*[n for n in names if n in found]), 120))
    return steps


def describe_removal(found: dict[str, docker.ContainerInfo]) -> str:
    """Pure: what a worker-only host still runs of the web, for the progress line."""
    running = sorted(name for name, info in found.items() if info.running)
    stopped = sorted(name for name, info in found.items() if not info.running)
    parts = ([f"running: {', '.join(running)}"] if running else []) + \
        ([f"stopped: {', '.join(stopped)}"] if stopped else [])
    return "; ".join(parts)


def web_left_on_worker_only(server: str, found: dict[str, docker.ContainerInfo]) -> str | None:
    """Pure: why a deploy must not move a worker-only host's workers while the web's
    containers still run there (it would go on serving their version, unseen by the kit's
    summary), or None."""
    if not any(info.running for info in found.values()):
        return None
    return (f"{server} is web: false but still runs the web's containers "
            f"({describe_removal(found)}): `fab up` takes them off (take the host out of "
            "the load balancer first)")
