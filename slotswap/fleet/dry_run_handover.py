"""--dry-run of the shared HAProxy's hand-over to a new image (server/proxy_handover.py), and
of the end of one a cut run left: its steps, as fleet/dry_run.py prints today's hand-over.
Read-only (one `docker inspect`)."""

from __future__ import annotations

from collections.abc import Sequence

from slotswap.commands import docker
from slotswap.commands.proxy_commands import run_shared_proxy
from slotswap.commands.runtime_api import command_show_servers_state
from slotswap.config.inventory import Inventory
from slotswap.config.layout import PROXY_CONTAINER, proxy_admin_dir, proxy_haproxy_dir
from slotswap.fleet.dry_run import ServerPlan
from slotswap.remote.protocol import ServerLike
from slotswap.server.haproxy_handover import cut_hand_over, soft_stop_commands
from slotswap.server.proxy_handover import NEXT_PROXY


def finish_steps(plan: ServerPlan, seconds: int) -> None:
    """As haproxy_handover.finish_hand_over with the shared names."""
    plan.shell(*soft_stop_commands(PROXY_CONTAINER))
    plan.shell(docker.wait_exit(PROXY_CONTAINER, seconds))
    plan.shell(docker.remove(PROXY_CONTAINER), docker.rename(NEXT_PROXY, PROXY_CONTAINER))


def hand_over_steps(plan: ServerPlan, inventory: Inventory, image: str, apps: Sequence[str],
                    current: str | None, generation: str, seconds: int) -> None:
    """As proxy_handover.hand_over: each backend's state saved, `current` switched, the new
    container started beside the old one, then the point of no return."""
    plan.summary += f"; a hand-over to a new container of {image}"
    plan.api(*(command_show_servers_state(app) for app in apps))
    plan.steps[-1] += "  (each saved to apps/<app>/server-state)"
    plan.steps.append(f"current -> {generation}, previous -> {current or 'none'} (when it ran)")
    plan.shell(run_shared_proxy(image_ref=image, haproxy_dir=proxy_haproxy_dir(inventory),
                                admin_dir=proxy_admin_dir(inventory), container=NEXT_PROXY,
                                instance="<a new token>"))
    plan.wait(f"{NEXT_PROXY} answers on the shared admin socket with its token, its frontend "
              f"OPEN; any failure before the next step removes it, puts `current` back and "
              f"reloads {PROXY_CONTAINER} (USR2)")
    finish_steps(plan, seconds)


def interrupted_steps(plan: ServerPlan, server: ServerLike, seconds: int) -> bool:
    """As proxy_handover.end_interrupted_hand_over: the steps that end a hand-over a cut run
    left (under every other present app's lock). False when there was none."""
    found = docker.parse_inspect(server.run(
        docker.inspect_containers(PROXY_CONTAINER, NEXT_PROXY), check=False).stdout)
    cut = cut_hand_over(found, PROXY_CONTAINER, NEXT_PROXY)
    if cut is None:
        return False
    if cut.how == "finish":
        plan.steps.append(f"{PROXY_CONTAINER} was told to stop: the interrupted hand-over is "
                          f"finished, {NEXT_PROXY} takes its place")
        if not cut.temporary_running:
            plan.shell(docker.start(NEXT_PROXY))
        finish_steps(plan, seconds)
    elif cut.how == "undo":
        plan.steps.append(f"{NEXT_PROXY}, left by an interrupted hand-over, is removed; "
                          f"`current` back at the generation {PROXY_CONTAINER} ran; it gets "
                          "its admin socket back by a reload")
        plan.shell(docker.remove(NEXT_PROXY))
        plan.shell(docker.signal_container(PROXY_CONTAINER, "USR2"))
    else:
        plan.steps.append(f"{NEXT_PROXY}, left by an interrupted hand-over, becomes "
                          f"{PROXY_CONTAINER}")
        plan.shell(docker.remove(PROXY_CONTAINER), docker.rename(NEXT_PROXY, PROXY_CONTAINER))
    return True
