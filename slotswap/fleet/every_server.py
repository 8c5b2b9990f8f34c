"""A task's change on every server (`up`, `down`, maintenance, a certificate's install): every
server locked first, then the change on each in the inventory's order, stopping at the
first failure or at Ctrl-C (the change in hand finishes; the next server's result says it
was interrupted, exit 130); one result per server reached."""

from __future__ import annotations

from collections.abc import Callable

from slotswap.config.inventory import Inventory
from slotswap.core import interrupts
from slotswap.core.output import progress_for
from slotswap.fleet.errors import (
    EXIT_INTERRUPTED,
    OPERATION_ERRORS,
    exit_code_for,
    nothing_changed,
)
from slotswap.fleet.fleet_lock import FleetLock
from slotswap.fleet.outcomes import ServerResult
from slotswap.fleet.runner import Done, close_all, in_turn, servers_of
from slotswap.remote.protocol import ServerLike
from slotswap.server.locking import new_owner

Progress = Callable[[str], None]
# A check of every server before any changes (fleet.shared_checks): what each one found.
FirstPass = Callable[[list[ServerLike], Inventory], list[Done[None]]]


def on_every_server(inventory: Inventory, action: Callable[[ServerLike, Inventory, Progress], str],
                    task: str, first: FirstPass | None = None,
                    in_rotation: bool = False) -> list[ServerResult]:
    """Lock every server, then run `action` on each in order; stop at the first failure.
    `first`: a check of every server once they are locked, before any changes (a server it
    refuses is the only result: nothing was changed). `in_rotation`: the task changes what
    the app's names answer (maintenance): with haproxy.shared, a server where the app is
    not (or no longer wholly) on the shared HAProxy refuses it (FleetLock)."""
    servers = servers_of(inventory)
    results: list[ServerResult] = []
    fleet_lock = FleetLock(servers, inventory, new_owner(task), in_rotation=in_rotation)
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
            refused = first_refusal(first(servers, inventory)) if first is not None else None
            if refused is not None:
                results.append(refused)
                progress_for(refused.name)(f"FAILED: {refused.text}")
            # The connections stay open until the locks taken through them are released.
            for done in in_turn(servers if refused is None else [], change, close=False):
                progress = progress_of[done.server.name]
                if done.error is not None and interrupts.stopping_now():
                    # A second Ctrl-C cut every connection: the error that followed (a
                    # clean-up's lost connection) is the interrupt's.
                    raise KeyboardInterrupt
                begun = False  # its change is over: an interrupt from here on is the next's
                if done.error is not None:
                    results.append(ServerResult(done.server.name, str(done.error), False,
                                                exit_code_for(done.error)))
                    progress(f"FAILED: {done.error}")
                    break
                text = str(done.value)
                results.append(ServerResult(done.server.name, text, True))
                progress(text)
            else:
                # A Ctrl-C noted during the last change, which then finished: the task
                # stops here (up issues no certificate after it), and says so.
                interrupts.checkpoint()
    except OPERATION_ERRORS as error:  # taking the locks failed: nothing was changed
        results.append(ServerResult(fleet_lock.failed_on or "?", nothing_changed(error),
                                    False, exit_code_for(error)))
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM) is seen between two servers' turns (a second one cuts the turn
        # in hand): the locks are released; the error and exit code say so, as a deploy's.
        results.append(interrupted(servers, results, turn, begun=begun))
    finally:
        close_all(servers)
    return results


def first_refusal(found: list[Done[None]]) -> ServerResult | None:
    """Pure: the result of the first server the first pass refused (None: none did)."""
    done = next((done for done in found if done.error is not None), None)
    if done is None or done.error is None:
        return None
    return ServerResult(done.server.name, nothing_changed(done.error), False,
                        exit_code_for(done.error))


def interrupted(servers: list[ServerLike], results: list[ServerResult], turn: str, *,
                begun: bool) -> ServerResult:
    """Pure: the result that says where an interrupt stopped the task: the change in hand
    (`turn`, `begun`), else the first server with no result yet, else the last server's,
    done before the run stopped."""
    done = {result.name for result in results}
    if begun and turn not in done:
        return ServerResult(turn, "interrupted during its change", False, EXIT_INTERRUPTED)
    waiting = next((server.name for server in servers if server.name not in done), None)
    if waiting is not None:
        return ServerResult(waiting, "interrupted before its turn", False, EXIT_INTERRUPTED)
    return ServerResult(results[-1].name if results else turn, "interrupted once its change "
                        "was done; the task stops here", False, EXIT_INTERRUPTED)
