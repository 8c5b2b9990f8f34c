"""The shared HAProxy's registry on one server (several apps on one server, issue 23; see
docs/apps-design.md, decisions 1 and 2): what each app that uses the server's shared HAProxy
registered there, and the shared settings that HAProxy runs with. Pure: the model, its JSON
as the server keeps it, and the contradictions between an app's inventory and what others
registered. Reading and writing the files is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The keys of the inventory that are the server's, not an app's: one app's inventory sets
# them (their owner on that server); the others use what the server records.
SHARED_KEYS = ("haproxy.image", "haproxy.http_port", "https.port", "haproxy.trusted_proxies")
# The interface a fragment relies on (the transaction variables, the Lua service): an older
# app's fragment keeps working while the shared part still offers its version.
FRAGMENT_VERSION = 1

State = Literal["present", "leaving"]


@dataclass(frozen=True)
class Registration:
    """One app's registration on a server (`apps/<app>.json`), written by its own `up`."""

    app: str
    # Host names that route to the app: exact names, and wildcards ("*.example.com", one
    # label), lower case; empty only for the default app.
    names: tuple[str, ...]
    default: bool  # requests for a name no app claims come here (one app per server)
    https: bool  # the app has a certificate in the shared crt-list
    slot_ports: tuple[int, int]  # web1's and web2's loopback ports
    check_ports: tuple[int, int] | None  # the slots' check ports, with healthcheck.port
    # The shared keys (SHARED_KEYS) the app's inventory writes itself, with their values.
    shared_settings: dict[str, object]
    drain: float  # timeouts.drain: the hand-over's soft stop waits for the longest
    kit_version: str  # the slotswap that wrote it
    by: str  # who ran the `up` that wrote it (user@machine)
    at: str  # when (ISO 8601, UTC)
    state: State = "present"
    fragment: int = FRAGMENT_VERSION


@dataclass(frozen=True)
class SharedSettings:
    """What the server's shared HAProxy runs with (`_proxy/state/settings.json`): the shared
    keys' values, the app whose inventory set them (None: the kit's defaults, from the
    first app's `up`), who and when, and the kit that assembled the running generation."""

    values: dict[str, object] = field(default_factory=dict)
    owner: str | None = None
    by: str = ""
    at: str = ""
    assembled_by: str = ""  # the slotswap version that assembled the running generation
