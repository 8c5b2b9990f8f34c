"""`fab logs`: the app's container logs per server, each line prefixed by the server's name.

Which container: the live slot's (the one HAProxy sends new traffic to and whose container
runs) or the idle one's, found as the deploy finds them
(slotswap.server.slots.read_slots, slotswap.server.swap_plan.plan_slots); with `--role`, each
running container of that role (slotswap.server.role_status), its lines prefixed by the
server's name and the container's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.core.validation import InputError
from slotswap.remote.protocol import ServerLike
from slotswap.server.role_status import read_role_containers, running_of_role
from slotswap.server.slots import read_slots
from slotswap.server.swap_plan import plan_slots

LIVE, IDLE = "live", "idle"
SLOT_CHOICES = (LIVE, IDLE)


@dataclass(frozen=True)
class LogSource:
    server: ServerLike
    slot: str | None  # None: the server has no slot of that kind (e.g. nothing serves)
    container: str | None
    role: str | None = None  # a role's container (--role), not a slot's

    @property
    def prefix(self) -> str:
        if self.role is None:
            return self.server.name
        return f"{self.server.name} {self.container or '-'}"


def validate_choice(slot: str, lines: int) -> None:
    if slot not in SLOT_CHOICES:
        raise InputError(f"--slot must be one of {', '.join(SLOT_CHOICES)}, got {slot!r}")
    if lines < 0:
        raise InputError(f"--lines must be 0 or more, got {lines}")


def pick_slot(server: ServerLike, inventory: Inventory, which: str) -> LogSource:
    plan = plan_slots(read_slots(server, inventory))
    slot = plan.live if which == LIVE else plan.idle
    return LogSource(server, slot, inventory.container_name(slot) if slot else None)


def pick_role(server: ServerLike, inventory: Inventory, role: str) -> list[LogSource]:
    """Each running container of `role` on the server (one source without a container when
    none runs)."""
    running = running_of_role(read_role_containers(server, inventory), role)
    if not running:
        return [LogSource(server, None, None, role)]
    return [LogSource(server, None, container.name, role) for container in running]


def prefixed(name: str, width: int, say: Callable[[str], None]) -> Callable[[str], None]:
    return lambda line: say(f"{name:<{width}} | {line}")


def with_containers(sources: list[LogSource], say: Callable[[str], None]
                    ) -> Iterator[tuple[LogSource, str, Callable[[str], None]]]:
    """Each source that has a container, with the printer of its prefixed lines."""
    width = max(len(s.prefix) for s in sources)
    for source in sources:
        on_line = prefixed(source.prefix, width, say)
        if source.container is None:
            on_line("(no container in that slot)" if source.role is None else
                    f"(no running container of role {source.role})")
            continue
        yield source, source.container, on_line


def show(sources: list[LogSource], lines: int, say: Callable[[str], None]) -> list[str]:
    """The last `lines` lines of each container, server after server; returns problems."""
    problems = []
    for source, container, on_line in with_containers(sources, say):
        code = source.server.stream_lines(docker.logs(container, lines), on_line)
        if code != 0:
            problems.append(f"{source.server.name}: docker logs exited {code}")
    return problems


def follow(sources: list[LogSource], lines: int, say: Callable[[str], None]) -> None:
    """Stream every container's log at once, until each stream ends or Ctrl-C (then the
    connections are closed, which ends the remote `docker logs --follow`)."""
    threads = []
    for source, container, on_line in with_containers(sources, say):
        argv = docker.logs(container, lines, follow=True)
        thread = threading.Thread(target=_stream_quietly, args=(source.server, argv, on_line),
                                  name=f"logs-{source.server.name}", daemon=True)
        thread.start()
        threads.append(thread)
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.2)


def _stream_quietly(server: ServerLike, argv: list[str], on_line: Callable[[str], None]) -> None:
    try:
        server.stream_lines(argv, on_line, follow=True)
    except Exception as error:  # a connection closed by Ctrl-C, or lost
        on_line(f"(stream ended: {error})")
