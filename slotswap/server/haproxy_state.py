"""Which slot is live, kept where HAProxy starts from: the server-state file its config loads
(`server-state-file`, `load-server-state-from-file global`), with the app's backend's lines
alone (`show servers state <backend>`): an HAProxy several apps share loads one file per
backend, each written under that app's lock only (docs/apps-design.md, decision 5).

The kit moves slots through the runtime API only, which a restarted HAProxy forgets (a
reboot, a Docker engine restart or upgrade, an OOM kill Docker restarts, `up` starting a
stopped HAProxy): from the config alone both slots would come back in rotation, and any
slot container still running would serve beside the live one. So the kit keeps HAProxy's
own dump of its servers' state in that file (through a temporary name and a rename: a cut
write leaves the previous file whole), and the file is never removed while HAProxy's folder
exists. Before a line that moves traffic (the switch, the switch back, a slot put in alone)
the file is written as the state will be once the line ran (save_slot_state_ahead), so a
restart at any moment after it starts from where the kit is going; after other changes it
is written from the dump once they ran (remember_slot_state).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from slotswap.commands.runtime_api import (
    AdminState,
    command_show_servers_state,
    server_state_in,
    servers_state_with,
)
from slotswap.config.inventory import Inventory
from slotswap.config.layout import state_file_path
from slotswap.remote.protocol import ServerLike
from slotswap.server.swap_errors import SwapError

Progress = Callable[[str], None]
OP_RUNNING = 2  # srv_op_state


def state_path(server: ServerLike, inventory: Inventory) -> str:
    return state_file_path(server.with_folders(inventory))


def save_slot_state(server: ServerLike, inventory: Inventory, state: str | None = None,
                    ) -> None:
    """HAProxy's servers' state now (`state`: its answer, read with the change before it in
    one round trip), in the file it loads when it starts. Raises what the runtime API or
    the write raises."""
    if state is None:
        state = server.runtime_api(command_show_servers_state(inventory.app))
    state = state.lstrip("\n")
    server.write_file(state_path(server, inventory), state)


class SlotNotUp(SwapError):
    """HAProxy does not count up a slot that a move of the traffic relies on: restarted since
    the slot's checks passed, from a file written before they did."""

    def __init__(self, message: str, serving: str = ""):
        super().__init__(message, serving)


def require_up(name: str, state: str, backend: str, slot: str) -> None:
    """Raise SlotNotUp unless `show servers state` (`state`) has the slot running."""
    found = server_state_in(state, backend, slot)
    if found is None or found.op_state != OP_RUNNING:
        raise SlotNotUp(f"{name}: HAProxy no longer counts {slot} up (was it restarted?)")


def save_slot_state_ahead(server: ServerLike, inventory: Inventory, backend: str,
                          states: Mapping[str, AdminState], *, up: str | None = None) -> None:
    """The file as HAProxy's servers' state is to be once the line that sets `states` ran,
    written before that line: a restart of HAProxy at any moment after the write starts
    from the state the kit is moving to, never from the one it moves away from (which would
    put the old version back in rotation while the kit says the new one serves). `up`: a line
    the move relies on being up (the new slot, checked just before); HAProxy no longer
    counting it up (restarted meanwhile, from an older file) raises SlotNotUp and writes
    nothing. Raises what the runtime API or the write raises."""
    state = server.runtime_api(command_show_servers_state(backend))
    if up is not None:
        require_up(server.name, state, backend, up)
    server.write_file(state_path(server, inventory), servers_state_with(state, backend, states))


def remember_slot_state(server: ServerLike, inventory: Inventory,
                        progress: Progress, state: str | None = None) -> None:
    """save_slot_state after a change of which slot takes traffic, which has happened
    whatever this does: a failure is a warning (the next change writes the file again),
    never an error that would undo or misreport the change itself."""
    try:
        save_slot_state(server, inventory, state)
    except Exception as error:  # any failure: the change itself stands
        why = (str(error).strip().splitlines() or [type(error).__name__])[0]
        progress(f"WARNING: could not write HAProxy's slot state to "
                 f"{state_path(server, inventory)} ({why}); a restart of HAProxy before the "
                 "next deploy or `up` may start it from an older state")
