"""Which slot is live, kept where HAProxy starts from: the server-state file its config loads
(`server-state-file`, `load-server-state-from-file global`).

The kit moves slots through the runtime API only, which a restarted HAProxy forgets (a
reboot, a Docker engine restart or upgrade, an OOM kill Docker restarts, `up` starting a
stopped HAProxy): from the config alone both slots would come back in rotation, and any
slot container still running would serve beside the live one. So after every change of
which slot takes traffic, the kit writes HAProxy's own dump of its servers' state to that
file (through a temporary name and a rename: a cut write leaves the previous file whole), and
the file is never removed while HAProxy's folder exists. A cut between a change and its
write leaves the file one step behind, a state the kit itself set a moment before.
"""

from __future__ import annotations

from collections.abc import Callable

from slotswap.config.inventory import Inventory
from slotswap.config.layout import STATE_NAME, haproxy_dir
from slotswap.remote.protocol import ServerLike

Progress = Callable[[str], None]
SHOW_STATE = "show servers state"


def state_path(server: ServerLike, inventory: Inventory) -> str:
    return f"{haproxy_dir(server.with_folders(inventory))}/{STATE_NAME}"


def save_slot_state(server: ServerLike, inventory: Inventory) -> None:
    """HAProxy's servers' state now, in the file it loads when it starts. Raises what the
    runtime API or the write raises."""
    state = server.runtime_api(SHOW_STATE)
    server.write_file(state_path(server, inventory), state)


def remember_slot_state(server: ServerLike, inventory: Inventory,
                        progress: Progress) -> None:
    """save_slot_state after a change of which slot takes traffic, which has happened
    whatever this does: a failure is a warning (the next change writes the file again),
    never an error that would undo or misreport the change itself."""
    try:
        save_slot_state(server, inventory)
    except Exception as error:  # any failure: the change itself stands
        why = (str(error).strip().splitlines() or [type(error).__name__])[0]
        progress(f"WARNING: could not write HAProxy's slot state to "
                 f"{state_path(server, inventory)} ({why}); a restart of HAProxy before the "
                 "next deploy or `up` may start it from an older state")
