"""The shared HAProxy's registry on one server (several apps on one server, issue 23; see
docs/apps-design.md, decisions 1 and 2): what each app that uses the server's shared HAProxy
registered there, and the shared settings that HAProxy runs with. Pure: the model, its JSON
as the server keeps it (every field checked when read back), the shared settings an app
uses and who owns them, and what later steps read from the registrations. The contradictions
between an app's inventory and what others registered: slotswap.server.proxy_contradictions.
Reading and writing the files is the caller's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from slotswap.config import values
from slotswap.config.haproxy import CHECK_PORT_OFFSET, networks
from slotswap.config.https import dns_name
from slotswap.config.inventory import SHARED_KEYS
from slotswap.config.layout import ProxyError
from slotswap.core.validation import validate_app_name, validate_image_reference

# SHARED_KEYS, the keys of the inventory that are the server's, not an app's, is defined
# once in slotswap.config.inventory (the loader reads which ones a file writes) and imported
# here, where the server layer's callers find it.
# The interface a fragment relies on (the transaction variables, the Lua service): an older
# app's fragment keeps working while the shared part still offers its version.
FRAGMENT_VERSION = 1
# A slot port leaves room above it for its check port, as the inventory's does.
MAX_SLOT_PORT = 65535 - CHECK_PORT_OFFSET
# The longest drain a registration may hold, in seconds: the shared HAProxy's soft stop at a
# hand-over waits for the longest present app's, so one file must not hold it for days. The
# inventory's timeouts.drain has no maximum (config/timeouts.py), so this is the kit's own:
# an hour, as a lock's longest lease.
MAX_DRAIN = 3600.0

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
    # The run that assembled it: its app and task (`admin`, `up`), named when an older kit
    # is refused.
    assembled_app: str = ""
    assembled_task: str = ""


class RegistryFileError(ProxyError):
    """A registration or the shared settings read from a server is not what the kit writes.
    ``str()`` is one line: where (server and file), the key, what was expected."""


# -- JSON as the server keeps it ------------------------------------------------------------
# Every field is checked when read: a file on a server is data, not trusted, and what it
# holds reaches config lines (names, ports) and command lines (the image). Keys the kit does
# not know are left out, in the file and in its shared_settings or values alike (a newer
# kit's additions; kit_version_contradiction refuses an older kit's shared change), and so
# no key name read from a file is ever in a message: every message is one line.

def registration_json(registration: Registration) -> str:
    return json.dumps(dataclasses.asdict(registration), indent=2) + "\n"


def settings_json(settings: SharedSettings) -> str:
    return json.dumps(dataclasses.asdict(settings), indent=2) + "\n"


def parse_registration(text: str, where: str, app: str | None = None) -> Registration:
    """A registration as `apps/<app>.json` holds it; ``where`` names the file in errors
    (``s1: /var/lib/slotswap/_proxy/apps/shop.json``); ``app``: the app the file's name says,
    which the registration must be."""
    data = _json_object(text, where)
    try:
        return _registration(data, app)
    except values.Invalid as problem:
        raise RegistryFileError(f"{where}: {problem}") from None


def parse_settings(text: str, where: str) -> SharedSettings:
    """The shared settings as `settings.json` holds them."""
    data = _json_object(text, where)
    try:
        return _settings(data)
    except values.Invalid as problem:
        raise RegistryFileError(f"{where}: {problem}") from None


def _json_object(text: str, where: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError as error:
        raise RegistryFileError(f"{where}: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise RegistryFileError(f"{where}: expected a JSON object, got "
                                f"{values.describe(data)}")
    return data


def _required(data: dict[str, object], names: tuple[str, ...]) -> None:
    for name in names:
        if name not in data:
            raise values.Invalid(name, "required key is missing")


_REGISTRATION_REQUIRED = tuple(item.name for item in dataclasses.fields(Registration))


def _registration(data: dict[str, object], expected_app: str | None) -> Registration:
    _required(data, _REGISTRATION_REQUIRED)
    app = values.checked(validate_app_name, data["app"], "app", "an app name")
    if expected_app is not None and app != expected_app:
        raise values.Invalid("app", f"expected {expected_app} (the file's name), got "
                                    f"{values.describe(app)}")
    default = values.boolean(data["default"], "default")
    names = _names(data["names"], "names", default)
    check_ports = data["check_ports"]
    return Registration(
        app=app, names=names, default=default, https=values.boolean(data["https"], "https"),
        slot_ports=_port_pair(data["slot_ports"], "slot_ports", MAX_SLOT_PORT),
        check_ports=None if check_ports is None else _port_pair(check_ports, "check_ports"),
        shared_settings=checked_shared_values(data["shared_settings"], "shared_settings"),
        drain=_drain(data["drain"], "drain"),
        kit_version=_text(data["kit_version"], "kit_version", "a slotswap version"),
        by=_text(data["by"], "by", "user@machine"), at=_moment(data["at"], "at"),
        state=_state(data["state"], "state"),
        fragment=values.integer(data["fragment"], "fragment", 1, 1000))


def _settings(data: dict[str, object]) -> SharedSettings:
    _required(data, ("values", "owner"))
    owner = data["owner"]
    # Empty: not known yet (no generation assembled).
    found = {name: "" if data.get(name, "") == "" else check(data[name], name)
             for name, check in _SETTINGS_TEXT.items()}
    return SharedSettings(
        values=checked_shared_values(data["values"], "values"),
        owner=None if owner is None else values.checked(
            validate_app_name, owner, "owner", "an app name or null"), **found)


_SETTINGS_TEXT: dict[str, Callable[[object, str], str]] = {
    "by": lambda value, key: _text(value, key, "user@machine"),
    "at": lambda value, key: _moment(value, key),
    "assembled_by": lambda value, key: _text(value, key, "a slotswap version"),
    "assembled_app": lambda value, key: values.checked(validate_app_name, value, key,
                                                       "an app name"),
    "assembled_task": lambda value, key: values.matching(
        value, key, r"[a-z][a-z.]{0,30}", "a task's name", "a task's name such as up"),
}


def _names(value: object, key: str, default: bool) -> tuple[str, ...]:
    if not isinstance(value, list) or (not value and not default):
        raise values.Invalid(key, "expected a list of DNS names (empty only for the default "
                                  f"app), got {values.describe(value)}")
    names: list[str] = []
    for index, item in enumerate(value):
        name = dns_name(item, f"{key}[{index}]", wildcard=True)
        if name in names:
            raise values.Invalid(f"{key}[{index}]", f"{name} is listed twice")
        names.append(name)
    return tuple(names)


def _port_pair(value: object, key: str, high: int = 65535) -> tuple[int, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise values.Invalid(key, f"expected a list of two ports, got {values.describe(value)}")
    first, second = (values.integer(port, f"{key}[{index}]", 1, high)
                     for index, port in enumerate(value))
    if first == second:
        raise values.Invalid(key, f"expected two different ports, got {first} twice")
    return first, second


def checked_shared_values(value: object, key: str) -> dict[str, object]:
    """Shared keys (SHARED_KEYS) and their values as JSON has them (lists), each checked as
    the inventory checks it; other keys are left out (a newer kit's). Raises values.Invalid
    at ``key``.<name> (at <name> when ``key`` is ""). Also assembly's check of the effective
    settings before any of them goes into a config line."""
    if not isinstance(value, dict):
        raise values.Invalid(key, f"expected a mapping of shared keys ({', '.join(SHARED_KEYS)})"
                                  f", got {values.describe(value)}")
    return {name: _SHARED_CHECKS[name](value[name], values.child(key, name))
            for name in SHARED_KEYS if name in value}


_SHARED_CHECKS: dict[str, Callable[[object, str], object]] = {
    "haproxy.image": lambda value, key: values.checked(
        validate_image_reference, value, key, "an image reference such as haproxy:2.8"),
    "haproxy.http_port": values.port,
    "https.port": values.port,
    "haproxy.trusted_proxies": networks,
}


def _drain(value: object, key: str) -> float:
    seconds = values.positive_number(value, key)
    if seconds > MAX_DRAIN:
        raise values.Invalid(key, f"expected a number of seconds greater than 0 and at most "
                                  f"{MAX_DRAIN:g}, got {values.describe(value)}")
    return seconds


def _text(value: object, key: str, expected: str) -> str:
    """A short line of printable text (it is shown in messages, never in a config line)."""
    text = values.string(value, key, expected)
    if len(text) > 100 or not text.isprintable():
        raise values.Invalid(key, f"expected {expected} on one line of at most 100 printable "
                                  f"characters, got {values.describe(text)}")
    return text


def _moment(value: object, key: str) -> str:
    text = values.string(value, key, "a moment in ISO 8601")
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise values.Invalid(key, "expected a moment in ISO 8601 such as "
                                  f"2026-12-01T10:00:00+00:00, got {values.describe(text)}"
                             ) from None
    return text


def _state(value: object, key: str) -> State:
    if value == "present":
        return "present"
    if value == "leaving":
        return "leaving"
    raise values.Invalid(key, f"expected present or leaving, got {values.describe(value)}")


# -- what later steps read from a list of registrations -------------------------------------

def present(registrations: Iterable[Registration]) -> tuple[Registration, ...]:
    """The registrations of apps on the server: one `leaving` (its `down` began) is in no
    generation and in no check again."""
    return tuple(item for item in registrations if item.state == "present")


def others_present(registrations: Iterable[Registration], app: str) -> tuple[Registration, ...]:
    """The present registrations of every app but ``app``."""
    return tuple(item for item in present(registrations) if item.app != app)


def longest_drain(registrations: Iterable[Registration]) -> float | None:
    """The longest timeouts.drain of the present apps: what the shared HAProxy's soft stop
    waits for at a hand-over (None: no app present)."""
    return max((item.drain for item in present(registrations)), default=None)


def routing_differs(old: Registration | None, new: Registration) -> bool:
    """Whether the generation ``old`` is in routes otherwise than ``new`` would: its names
    (their order too: the redirect goes to the first), the default app, HTTPS, the ports,
    its state. A deploy warns then (`names changed: run up`)."""
    if old is None:
        return True
    return any(getattr(old, name) != getattr(new, name) for name in _ROUTING_FIELDS)


_ROUTING_FIELDS = ("names", "default", "https", "slot_ports", "check_ports", "state")


# -- the shared settings an app uses, and their owner (decision 2) --------------------------

@dataclass(frozen=True)
class EffectiveSettings:
    """What one app's `up` uses on one server: every shared key's value (in the shared part
    and in its own fragment: the redirect's https.port), and the record to keep after it."""

    values: dict[str, object]
    record: SharedSettings


def current_owner(settings: SharedSettings | None, others: Iterable[Registration]) -> str | None:
    """The app whose inventory the shared settings come from, when it is still on the server
    (present among ``others``); an owner gone (no present registration) holds nothing."""
    if settings is None or settings.owner is None:
        return None
    return settings.owner if settings.owner in {item.app for item in present(others)} else None


def effective_settings(app: str, written: Mapping[str, object], defaults: Mapping[str, object],
                       recorded: SharedSettings | None, others: Iterable[Registration], *,
                       by: str, at: str) -> EffectiveSettings:
    """The shared settings ``app``'s `up` uses, and the record after it.

    ``written``: the shared keys its inventory writes itself (keyed as SHARED_KEYS), only
    those; ``defaults``: the kit's, for every shared key; ``recorded``: the server's record
    (None: no shared HAProxy runs there yet); ``others``: the registrations read (its own and
    those leaving are left out). The first app on a server gets its keys over the kit's
    defaults; later, an app that writes keys owns them all (a non-owner that writes one is a
    contradiction: check it first, this refuses it with ValueError), its values over the
    recorded ones; one that writes none uses the recorded values. When the owner's inventory
    drops the keys, the values stay and no app owns them. ``by`` and ``at`` are recorded when
    the values or the owner change."""
    _check_keys(written, defaults)
    if recorded is None:
        return EffectiveSettings({**defaults, **written}, SharedSettings(
            {**defaults, **written}, app if written else None, by, at))
    owner = current_owner(recorded, others_present(others, app))
    if owner is not None and written:
        raise ValueError(f"{app} writes shared keys that {owner} owns: a contradiction to "
                         "refuse before (slotswap.server.proxy_contradictions)")
    if recorded.owner == app:
        owner = app
    used = {**defaults, **recorded.values, **written}
    new_owner = app if written else (None if owner == app else owner)
    if used == recorded.values and new_owner == recorded.owner:
        return EffectiveSettings(used, recorded)
    return EffectiveSettings(used, dataclasses.replace(
        recorded, values=used, owner=new_owner, by=by, at=at))


def settings_after_down(app: str, recorded: SharedSettings | None,
                        others: Iterable[Registration], *, by: str, at: str
                        ) -> SharedSettings | None:
    """The record after ``app``'s `down`: its ownership ends (the values stay until another
    app writes them); None when no other app is present (the last `down` removes the shared
    HAProxy: nothing runs with any settings, and the next app is a first app again)."""
    if recorded is None or not others_present(others, app):
        return None
    if recorded.owner != app:
        return recorded
    return dataclasses.replace(recorded, owner=None, by=by, at=at)


def assembled(settings: SharedSettings, version: str, app: str, task: str) -> SharedSettings:
    """The record once ``app``'s ``task`` (slotswap ``version``) assembled the generation
    that runs."""
    return dataclasses.replace(settings, assembled_by=version, assembled_app=app,
                               assembled_task=task)


def _check_keys(written: Mapping[str, object], defaults: Mapping[str, object]) -> None:
    unknown = sorted(set(written) - set(SHARED_KEYS))
    if unknown or set(defaults) != set(SHARED_KEYS):
        raise ValueError(f"shared keys are {', '.join(SHARED_KEYS)}: written has "
                         f"{sorted(written)}, defaults {sorted(defaults)}")
