"""Contradictions between one app's inventory and what the other apps on a server registered
(several apps on one server, docs/apps-design.md, decision 2). Pure: each check takes the
app's new registration, the registrations read from the server and the shared settings
record, and gives one line naming the server, both apps and the key (None: no
contradiction). `up` checks them all before any change anywhere; the run exits 2.

Only present registrations count: an app whose `down` began (`leaving`) is in no generation
again, and the app's own registration from its last `up` is the one being replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from slotswap.config.haproxy import CHECK_PORT_OFFSET
from slotswap.core.validation import InputError
from slotswap.server.proxy_registry import (
    MAX_SLOT_PORT,
    SHARED_KEYS,
    Registration,
    SharedSettings,
    current_owner,
    others_present,
)

NOTHING_CHANGED = "nothing was changed"
# Where a suggested pair of slot ports is looked for when none is free above the app's own.
_LOWEST_SUGGESTED_PORT = 1024


class ProxyContradiction(InputError):
    """An app's inventory contradicts what another app registered on a server. ``str()`` is
    the whole message, one line."""


@dataclass(frozen=True)
class Findings:
    """All the checks' outcome on one server: the first contradiction (None: none), and the
    notices (one line each) that refuse nothing."""

    contradiction: str | None
    notices: tuple[str, ...]


def find_contradictions(server: str, mine: Registration, registrations: Sequence[Registration],
                        settings: SharedSettings | None, *, names_key: str,
                        shared_ports: Mapping[str, int] | None = None,
                        own_haproxys: Sequence[tuple[str, Sequence[int]]] = (),
                        inventory_file: str = "hosts.yaml") -> Findings:
    """Every check, in a fixed order (the kit's version first: an older kit's other checks
    may not know what the newer one registered), the first contradiction and the notices.

    ``mine``: the registration the app's `up` would write (its shared_settings: the shared
    keys its inventory writes); ``registrations``: those read from the server (``mine``'s
    old one and those leaving are left out); ``names_key``: where the app's names are
    written (`https.names` or `names`); ``shared_ports``: the shared HAProxy's public ports
    by key (haproxy.http_port, https.port) and ``own_haproxys``: (app, ports) of each other
    app's own HAProxy the caller found on the server."""
    others = others_present(registrations, mine.app)
    lines = (
        kit_version_contradiction(server, mine.kit_version, settings),
        shared_key_contradiction(server, mine, others, settings, inventory_file),
        name_contradiction(server, mine, others, names_key),
        default_contradiction(server, mine, others, inventory_file),
        port_contradiction(server, mine, others, tuple((shared_ports or {}).values())),
        own_haproxy_contradiction(server, mine.app, shared_ports or {}, own_haproxys),
    )
    first = next((line for line in lines if line is not None), None)
    return Findings(first, exact_name_notices(server, mine, others))


def check_contradictions(server: str, mine: Registration, registrations: Sequence[Registration],
                         settings: SharedSettings | None, *, names_key: str,
                         shared_ports: Mapping[str, int] | None = None,
                         own_haproxys: Sequence[tuple[str, Sequence[int]]] = (),
                         inventory_file: str = "hosts.yaml") -> tuple[str, ...]:
    """find_contradictions, raising the first contradiction; else the notices."""
    found = find_contradictions(server, mine, registrations, settings, names_key=names_key,
                                shared_ports=shared_ports, own_haproxys=own_haproxys,
                                inventory_file=inventory_file)
    if found.contradiction is not None:
        raise ProxyContradiction(found.contradiction)
    return found.notices


# -- a. shared keys written by an app that does not own them --------------------------------

def shared_key_contradiction(server: str, mine: Registration, others: Sequence[Registration],
                             settings: SharedSettings | None,
                             inventory_file: str = "hosts.yaml") -> str | None:
    """A shared key in ``mine``'s inventory while another present app owns the shared
    settings (even with the same value: one inventory sets them)."""
    owner = _owner(settings, others)
    written = [key for key in SHARED_KEYS if key in mine.shared_settings]
    if owner is None or owner.app == mine.app or not written:
        return None
    key = written[0]
    recorded, by, at = _recorded(key, owner, settings)
    owners_keys = [name for name in SHARED_KEYS if name in owner.shared_settings]
    theirs = "" if key in owners_keys else f" {', '.join(owners_keys) or 'them'}"
    return (f"{server}: {key}: {mine.app}'s {inventory_file} sets "
            f"{_shown(mine.shared_settings[key])}, but the shared HAProxy takes its settings "
            f"from {owner.app}'s inventory ({recorded}, {by}, {at}); set them in one "
            f"inventory only: remove {key} from {mine.app}'s, or{theirs} from {owner.app}'s "
            f"and run its up first; {NOTHING_CHANGED}")


def _owner(settings: SharedSettings | None,
           others: Sequence[Registration]) -> Registration | None:
    """The present app that owns the shared settings: the record's owner, or (no record of
    one) a present app whose registration writes shared keys."""
    by_app = {item.app: item for item in others}
    owner = current_owner(settings, others)
    if owner is not None:
        return by_app[owner]
    if settings is not None and settings.owner is not None:
        return None  # the recorded owner is gone: ownership is free
    return next((item for item in others if item.shared_settings), None)


def _recorded(key: str, owner: Registration,
              settings: SharedSettings | None) -> tuple[str, str, str]:
    """The owner's value of ``key``, who set it and on which day: the record's, else the
    owner's registration's."""
    if settings is not None and settings.owner == owner.app and key in settings.values:
        return (_shown(settings.values[key]), settings.by or owner.by,
                _day(settings.at or owner.at))
    value = owner.shared_settings.get(key, settings.values.get(key) if settings else None)
    return ("not recorded" if value is None else _shown(value)), owner.by, _day(owner.at)


# -- b. names, c. the default app -----------------------------------------------------------

def name_contradiction(server: str, mine: Registration, others: Sequence[Registration],
                       names_key: str) -> str | None:
    """A name (or the same wildcard) of ``mine`` that another present app routes."""
    routed = {name: item.app for item in others for name in item.names}
    for name in mine.names:
        if name in routed:
            return (f"{server}: {names_key}: {name} is {routed[name]}'s; a name routes to "
                    f"one app; {NOTHING_CHANGED}")
    return None


def default_contradiction(server: str, mine: Registration, others: Sequence[Registration],
                          inventory_file: str = "hosts.yaml") -> str | None:
    if not mine.default:
        return None
    other = next((item.app for item in others if item.default), None)
    if other is None:
        return None
    return (f"{server}: haproxy.default: {mine.app}'s {inventory_file} sets it, but {other} "
            f"is the default app; one app per server gets the names no app routes; "
            f"{NOTHING_CHANGED}")


# -- d. slot and check ports ----------------------------------------------------------------

def port_contradiction(server: str, mine: Registration, others: Sequence[Registration],
                       reserved: Sequence[int] = ()) -> str | None:
    """A slot or check port of ``mine`` that is another present app's slot or check port,
    with the next free pair of slot ports (``reserved``: ports no suggestion may use, such
    as the shared public ones)."""
    taken: dict[int, str] = {}
    for item in others:
        taken.update({port: f"{item.app}'s check port" for port in item.check_ports or ()})
        taken.update({port: f"{item.app}'s" for port in item.slot_ports})
    mine_ports = [(port, str(port)) for port in mine.slot_ports]
    for slot_port, check_port in zip(mine.slot_ports, mine.check_ports or (), strict=False):
        mine_ports.append((check_port, f"{check_port} (the check port of {slot_port})"))
    clash = next(((port, shown) for port, shown in mine_ports if port in taken), None)
    if clash is None:
        return None
    port, shown = clash
    pair = free_slot_ports(mine, set(taken) | set(reserved))
    fix = (f"set [{pair[0]}, {pair[1]}] here" if pair is not None
           else f"no free pair of ports is left below {MAX_SLOT_PORT}")
    return f"{server}: haproxy.slot_ports: {shown} is {taken[port]}; {fix}; {NOTHING_CHANGED}"


def free_slot_ports(mine: Registration, taken: set[int]) -> tuple[int, int] | None:
    """The next pair of slot ports (p, p + 1) from ``mine``'s first one up, else from 1024,
    such that neither they nor, when ``mine`` has check ports, their check ports (+100) are
    ``taken``; None when there is none up to MAX_SLOT_PORT."""
    start = min(mine.slot_ports)
    for low in (*range(start, MAX_SLOT_PORT), *range(_LOWEST_SUGGESTED_PORT, start)):
        wanted = [low, low + 1]
        if mine.check_ports is not None:
            wanted += [low + CHECK_PORT_OFFSET, low + 1 + CHECK_PORT_OFFSET]
        if not taken.intersection(wanted):
            return low, low + 1
    return None


# -- e. another app's own HAProxy on a shared port ------------------------------------------

def own_haproxy_contradiction(server: str, app: str, shared_ports: Mapping[str, int],
                              own_haproxys: Sequence[tuple[str, Sequence[int]]]) -> str | None:
    """A shared public port that another app's own HAProxy binds: both would open it
    (SO_REUSEPORT) and split its connections. ``app``'s own (the move) is not another's."""
    for key, port in shared_ports.items():
        for other, ports in own_haproxys:
            if other != app and port in ports:
                return (f"{server}: {key}: {port} is bound by {other}'s own HAProxy; "
                        f"{app}'s shared HAProxy would split its connections with it: "
                        f"`down` {other}, give it other public ports, or move it to the "
                        f"shared HAProxy first (its `up` with haproxy.shared); {NOTHING_CHANGED}")
    return None


# -- f. a kit older than the one that assembled the running generation ----------------------

# A PEP 440 version without an epoch (as packaging spells and normalises it): its release
# numbers, then any pre-release, post-release, dev and local parts, which are not compared.
_VERSION = re.compile(
    r"v?(?P<release>[0-9]+(?:\.[0-9]+)*)"
    r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?[0-9]*)?"
    r"(?:-[0-9]+|[-_.]?(?:post|rev|r)[-_.]?[0-9]*)?"
    r"(?:[-_.]?dev[-_.]?[0-9]*)?"
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?", re.IGNORECASE)


def kit_version_contradiction(server: str, version: str,
                              settings: SharedSettings | None) -> str | None:
    """This kit (``version``) older than the one that assembled the running generation: its
    shared part would drop what the newer one has. The same version string is never older
    (`unknown (not installed)` twice: the same checkout, as far as can be told). Otherwise
    versions compare by their release numbers as dotted whole numbers (0.5 == 0.5.0 <
    0.10.0), a dev, pre- or post-release as its release (0.6.0.dev1 and 0.6.0rc1 as 0.6.0:
    a dev build is not refused against its release); one that is no such version cannot be
    compared, and is refused."""
    if settings is None or not settings.assembled_by:
        return None
    theirs = settings.assembled_by
    if version == theirs:
        return None
    run = (f"{settings.assembled_app}'s {settings.assembled_task}"
           if settings.assembled_app else "an unknown run")
    mine_match, theirs_match = _VERSION.fullmatch(version), _VERSION.fullmatch(theirs)
    if mine_match is None or theirs_match is None:
        return (f"{server}'s shared HAProxy was assembled by slotswap {theirs}, {run}; this "
                f"is {version}: cannot tell which is newer (versions compare as numbers such "
                f"as 0.5.0); run the same slotswap; {NOTHING_CHANGED}")
    if _numbers(mine_match["release"]) >= _numbers(theirs_match["release"]):
        return None
    return (f"{server}'s shared HAProxy was assembled by slotswap {theirs}, {run}; this is "
            f"{version}: upgrade; {NOTHING_CHANGED}")


def _numbers(version: str) -> tuple[int, ...]:
    numbers = [int(part) for part in version.split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


# -- notices: an exact name under another app's wildcard ------------------------------------

def exact_name_notices(server: str, mine: Registration,
                       others: Sequence[Registration]) -> tuple[str, ...]:
    """One line per exact name of one app under the other's wildcard (one label): the exact
    name wins, whichever app has it."""
    notices: list[str] = []
    for other in others:
        notices += _covered(server, mine, other) + _covered(server, other, mine)
    return tuple(notices)


def _covered(server: str, exact: Registration, wildcard: Registration) -> list[str]:
    wildcards = {name for name in wildcard.names if name.startswith("*.")}
    lines = []
    for name in exact.names:
        parent = f"*.{name.partition('.')[2]}"
        if not name.startswith("*.") and "." in name and parent in wildcards:
            lines.append(f"{server}: {name} is {exact.app}'s, under {wildcard.app}'s "
                         f"{parent}: the exact name wins")
    return lines


def _shown(value: object) -> str:
    if isinstance(value, list | tuple):
        return f"[{', '.join(str(item) for item in value)}]"
    return str(value)


def _day(moment: str) -> str:
    return moment[:10]
