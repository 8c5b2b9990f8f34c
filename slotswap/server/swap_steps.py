"""The swap on one server as one plan (pure): what was read on the server in (its slots, and
whether the idle slot keeps a container to start again), every step out, in order: the
runtime-API lines, shell commands and files written, and what is waited for between them;
and the steps taken when the new version fails in its watch (back_steps). The dry run
(slotswap.fleet.dry_run) prints them; the run (slotswap.server.swap) takes them, its lines
built by the same pure builders (slotswap.server.swap_plan). A unit test holds that what a
run changes on a server is exactly its plan's changes, in order, with only reads between
them (tests/unit/test_swap_steps.py).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from slotswap.commands import docker
from slotswap.commands import runtime_api as haproxy
from slotswap.commands.runtime_api import AdminState
from slotswap.config.inventory import Inventory
from slotswap.config.layout import env_file_path, state_file_path
from slotswap.server.slots import SlotView, slot_published_ports
from slotswap.server.swap_plan import (
    alone_states,
    has_fallback_lines,
    out_of_rotation_line,
    plan_slots,
    states_line,
    switch_back_line,
    switch_line,
    switch_states,
    uses_fallback,
)

States = dict[str, AdminState]  # line -> the state a runtime-API line sets
# The run's timing steps (slotswap.core.timings) the swap's steps belong to.
Phase = Literal["idle slot out", "start new", "health checks", "switch", "watch",
                "verify, stop old"]
# "api": a runtime-API line; "shell": commands in one round trip; "write": a file written;
# "wait": polls until something holds; "if": a condition the dry run cannot read (the steps
# after it are its "else").
Kind = Literal["api", "shell", "write", "wait", "if"]
PREFIX: dict[Kind, str] = {"api": "runtime API> ", "shell": "$ ", "write": "write ",
                           "wait": "wait: ", "if": "if "}


@dataclass(frozen=True)
class Step:
    """One thing the swap does, as the run does it and the dry run shows it."""

    phase: Phase
    kind: Kind
    text: str  # the line; the commands as sent (`a && b`); the file's path; what is waited for
    note: str = ""  # shown after it: a file's mode and content, ...

    def render(self) -> str:
        return PREFIX[self.kind] + self.text + (f" {self.note}" if self.note else "")


def chain_text(commands: Sequence[Sequence[str]]) -> str:
    """Pure: commands as Server.run_chain sends them in one round trip."""
    return " && ".join(shlex.join(argv) for argv in commands)


@dataclass(frozen=True)
class StartCommand:
    """How the new version starts in the idle slot."""

    restart: bool  # the slot's kept container of this tag started again: no new container
    env_file: str | None  # written first (0600) with the app's environment; None: none
    chain: tuple[tuple[str, ...], ...]  # one round trip, the new container's inspect last


def start_command(inventory: Inventory, view: SlotView, tag: str, *,
                  restart: bool) -> StartCommand:
    """Pure: the kept container started again (`restart`), or what is left in the slot
    removed (its env file too when the app has no environment: a slot's file is always the
    one its container was made with) and a new container run. `inventory` has the login's
    folders (Server.with_folders)."""
    slot, name = view.slot, inventory.container_name(view.slot)
    inspect = tuple(docker.inspect_containers(name))
    if restart:
        return StartCommand(True, None, (tuple(docker.start(name)), inspect))
    env_file = None if inventory.env.empty else env_file_path(inventory, slot)
    removal = [tuple(docker.remove(name))] if view.container is not None else []
    if env_file is None:
        removal.append(("rm", "-f", env_file_path(inventory, slot)))
    run = docker.run_app_slot(
        container=name, image_ref=inventory.image_ref(tag), network=inventory.network,
        app=inventory.app, slot=slot, version=tag, app_port=inventory.app_port,
        stop_timeout=inventory.timeouts.stop, env_file=env_file,
        options=inventory.container, published=slot_published_ports(inventory, slot))
    return StartCommand(False, env_file, (*removal, tuple(run), inspect))


def address_line(inventory: Inventory, slot: str, view: SlotView) -> str:
    """Pure: the slot's lines (its fallback line too) to the loopback port its container
    publishes, which only it can publish (set again: HAProxy's address may be one of the
    app's network, after `fab up` moved HAProxy to the server's network)."""
    port = inventory.slot_port(slot)
    check_port = inventory.slot_check_port(slot) or port
    lines = [slot, haproxy.fallback_name(slot)] if view.fallback else [slot]
    return haproxy.join_commands(*(
        haproxy.command_set_address(inventory.app, line, docker.LOOPBACK, port, check_port)
        for line in lines))


def check_line(backend: str, slot: str) -> str:
    """Pure: checks run, no traffic (drain); forced down, so `rise` fresh passes are needed
    before HAProxy calls it UP: nothing stale from before the container started counts."""
    return haproxy.join_commands(
        haproxy.command_set_state(backend, slot, AdminState.DRAIN),
        haproxy.command_force_health_down(backend, slot))


def switch_read_line(backend: str, new: str, old: str, *, fallback: bool) -> str:
    """Pure: the switch (swap_plan.switch_line) with HAProxy's state of the backend in the
    same round trip: the new slot must still be up once it ran (haproxy_state.require_up)."""
    return haproxy.join_commands(switch_line(backend, new, old, fallback=fallback),
                                 haproxy.command_show_servers_state(backend))


@dataclass(frozen=True)
class SwapPlan:
    """The swap on one server, decided from what was read on it."""

    backend: str
    tag: str
    live: str | None  # the slot serving now (None: nothing serves, e.g. the first deploy)
    idle: str  # the slot the new version goes into
    old_version: str | None
    fallback: bool  # the live slot's fallback line takes part in the switch (uses_fallback)
    idle_fallback: bool  # the idle slot has a fallback line, taken out with it
    fallback_lines: bool  # both slots have fallback lines (has_fallback_lines)
    # The idle slot still takes traffic or has sessions (a cut run; a first deploy on a
    # HAProxy whose config left it ready): drained first.
    drain_idle: bool
    start: StartCommand
    address_line: str  # the idle slot's lines to the loopback port its container publishes
    stop_new: tuple[str, ...]  # the new container stopped when it fails
    stop_old: tuple[str, ...]  # the live slot's container stopped once the new one is proven

    @property
    def drain_line(self) -> str:
        return haproxy.command_set_state(self.backend, self.idle, AdminState.DRAIN)

    @property
    def idle_out_line(self) -> str:
        """The idle slot out of rotation, its fallback line too, HAProxy's state read in the
        same round trip (it goes to the state file)."""
        return haproxy.join_commands(
            out_of_rotation_line(self.backend, self.idle, fallback=self.idle_fallback),
            haproxy.command_show_servers_state(self.backend))

    @property
    def check_line(self) -> str:
        return check_line(self.backend, self.idle)

    @property
    def moving(self) -> States:
        """The states the line that puts the new slot in rotation sets."""
        if self.live is None:
            return alone_states(self.idle, fallback=self.fallback_lines)
        return switch_states(self.idle, self.live, fallback=self.fallback)

    @property
    def in_line(self) -> str:
        """The line that puts the new slot in rotation: the switch, with HAProxy's state of
        the backend in the same round trip (the new slot must still be up); or, with nothing
        serving, the new slot alone."""
        if self.live is None:
            return states_line(self.backend, self.moving)
        return switch_read_line(self.backend, self.idle, self.live, fallback=self.fallback)

    @property
    def back_line(self) -> str:
        assert self.live is not None
        return switch_back_line(self.backend, self.idle, self.live, fallback=self.fallback)

    @property
    def retire_line(self) -> str:
        assert self.live is not None
        return out_of_rotation_line(self.backend, self.live, fallback=self.fallback)


def plan_swap(views: dict[str, SlotView], inventory: Inventory, tag: str, *,
              restart: bool) -> SwapPlan:
    """Pure: the swap of `tag` on a server whose slots read `views`. `restart`: the idle
    slot keeps a stopped container of this tag, made as today, with today's environment
    (SlotSwap.can_restart). `inventory` has the login's folders (Server.with_folders)."""
    slots = plan_slots(views)
    live, idle = slots.live, slots.idle
    view = views[idle]
    stop_old = (tuple(docker.stop(inventory.container_name(live), inventory.timeouts.stop))
                if live is not None else ())
    stop_new = tuple(docker.stop(inventory.container_name(idle), inventory.timeouts.stop))
    return SwapPlan(
        backend=inventory.app, tag=tag, live=live, idle=idle,
        old_version=views[live].version if live else None,
        fallback=uses_fallback(views, live), idle_fallback=view.fallback is not None,
        fallback_lines=has_fallback_lines(views),
        drain_idle=view.stat.takes_new_traffic or view.stat.sessions > 0,
        start=start_command(inventory, view, tag, restart=restart),
        address_line=address_line(inventory, idle, view), stop_new=stop_new,
        stop_old=stop_old)


def swap_steps(plan: SwapPlan, inventory: Inventory, *, masked_env: str = "") -> list[Step]:
    """Pure: the plan's steps in the order the run takes them (SlotSwap.switch_in, then
    watch_and_retire) when nothing fails. `masked_env`: the env file's text as shown
    (secrets as <secret>)."""
    timeouts, idle, live, tag = inventory.timeouts, plan.idle, plan.live, plan.tag
    name = inventory.container_name(idle)
    state_file = state_file_path(inventory)
    steps: list[Step] = []

    def add(phase: Phase, kind: Kind, text: str, note: str = "") -> None:
        steps.append(Step(phase, kind, text, note))

    if plan.drain_idle:
        add("idle slot out", "api", plan.drain_line)
        add("idle slot out", "wait", f"{idle} has no sessions left (up to "
            f"{timeouts.drain:g}s)")
    add("idle slot out", "api", plan.idle_out_line)
    add("idle slot out", "write", state_file, "(mode 0644): that answer's state")
    if plan.start.env_file is not None:
        add("start new", "write", plan.start.env_file, f"(mode 0600): {masked_env}")
    add("start new", "shell", chain_text(plan.start.chain))
    add("start new", "api", plan.address_line)
    add("start new", "wait", f"HAProxy resolves {name} to its new address (up to "
        f"{timeouts.healthy:g}s)")
    add("health checks", "api", plan.check_line)
    add("health checks", "wait", f"HAProxy's checks pass: GET {inventory.healthcheck.path} "
        f"answers 200, {idle} DRAIN L7OK (up to {timeouts.healthy:g}s; else {idle} back to "
        f"maint, `docker stop` of {name}, and the run stops here)")
    add("health checks", "api", haproxy.command_show_servers_state(inventory.app))
    add("health checks", "write", state_file, "(mode 0644): that answer as it will be once "
        f"the next line ran (a restarted HAProxy starts from it); {idle} no longer up in "
        "it: the run stops here")
    add("switch", "api", plan.in_line)
    if live is None:
        add("switch", "wait", f"{idle} serves {tag} (show stat, docker inspect)")
        return steps
    window = ("after this switch" if inventory.watch.each
              else "after the rollout's last switch; the next server starts now")
    watch = inventory.watch
    add("watch", "wait", f"{live} has no sessions left (up to {timeouts.drain:g}s) and "
        f"{timeouts.watch:g}s have passed {window}; if {idle} fails a check, leaves "
        f"rotation, its container stops or restarts, or its share of failed requests "
        f"(HAProxy's counters, those {live} answered for it included, once it has had "
        f"{watch.min_requests}) exceeds {live}'s by more than {watch.max_error_rate:.0%} "
        "meanwhile: the steps `if it fails` below, and the run stops there")
    add("verify, stop old", "wait", f"{idle} serves {tag} (show stat, docker inspect)")
    add("verify, stop old", "api", plan.retire_line)
    add("verify, stop old", "api", haproxy.command_show_servers_state(inventory.app))
    add("verify, stop old", "write", state_file, "(mode 0644): that answer")
    add("verify, stop old", "shell", chain_text([plan.stop_old]))
    return steps


def back_steps(plan: SwapPlan, inventory: Inventory) -> list[Step]:
    """Pure: what the run does when the new version fails in its watch (SlotSwap.switch_back):
    the state file as it will be after the line back, the line back, the failed container's
    last output read and the container stopped."""
    assert plan.live is not None
    state_file = state_file_path(inventory)
    name = inventory.container_name(plan.idle)
    return [Step("watch", "api", haproxy.command_show_servers_state(inventory.app)),
            Step("watch", "write", state_file, "(mode 0644): that answer as it will be once "
                 "the next line ran"),
            Step("watch", "api", plan.back_line),
            Step("watch", "shell", chain_text([docker.logs_tail(name)])),
            Step("watch", "shell", chain_text([plan.stop_new]))]
