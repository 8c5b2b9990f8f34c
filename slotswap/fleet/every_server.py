"""A task's change on every server (`up`, `down`, maintenance, a certificate's install): every
server locked first, then the change on each in the inventory's order, stopping at the
first failure or at Ctrl-C (the change in hand finishes; the next server's result says it
was interrupted, exit 130); one result per server reached."""

from __future__ import annotations

from collections.abc import Callable

from slotswap.config.inventory import Inventory
from slotswap.core import interrupts
from slotswap.core.output import progress_for
from slotswap.fleet.errors import EXIT_INTERRUPTED, OPERATION_ERRORS, exit_code_for
from slotswap.fleet.fleet_lock import FleetLock
from slotswap.fleet.outcomes import ServerResult
from slotswap.fleet.runner import close_all, in_turn, servers_of
from slotswap.remote.protocol import ServerLike
from slotswap.server.locking import new_owner

Progress = Callable[[str], None]


def on_every_server(inventory: Inventory, action: Callable[[ServerLike, Inventory, Progress], str],
                    task: str) -> list[ServerResult]:
    """Lock every server, then run `action` on each in order; stop at the first failure."""
    servers = servers_of(inventory)
    results: list[ServerResult] = []
    fleet_lock = FleetLock(servers, inventory, new_owner(task))
    progress_of: dict[str, Progress] = {}  # each timed from the start of its server's turn
    # The server whose turn is next or in hand, and whether its change has begun.
    turn, begun = (servers[0].name if servers else "?"), False

    def change(server: ServerLike) -> str:
        nonlocal turn, begun
        turn, begun = server.name, False
        interrupts.checkpoint()
        begun = True
        progress = progress_of[server.name] = progress_for(server.name)
        # The inventory with this login's folders on this server.
        return action(server, server.with_folders(inventory), progress)

    try:
        with interrupts.guarded(), fleet_lock:
            # The connections stay open until the locks taken through them are released.
            for done in in_turn(servers, change, close=False):
                progress = progress_of[done.server.name]
                if done.error is not None:
                    progress(f"FAILED: {done.error}")
                    results.append(ServerResult(done.server.name, str(done.error), False,
                                                exit_code_for(done.error)))
                    break
                text = str(done.value)
                progress(text)
                results.append(ServerResult(done.server.name, text, True))
    except OPERATION_ERRORS as error:  # taking the locks failed: nothing was changed
        results.append(ServerResult(fleet_lock.failed_on or "?", f"nothing was changed: {error}",
                                    False, exit_code_for(error)))
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM) is seen between two servers' turns (a second one cuts the turn
        # in hand): the locks are released; the error and exit code say so, as a deploy's.
        results.append(ServerResult(turn, "interrupted " + (
            "during its change" if begun else "before its turn"), False, EXIT_INTERRUPTED))
    finally:
        close_all(servers)
    return results

