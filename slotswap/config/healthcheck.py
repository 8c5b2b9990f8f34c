"""The `healthcheck` section: how HAProxy checks a slot."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config import kinds, values
from slotswap.config.fields import Context, Kind, parse_fields, setting
from slotswap.core.validation import validate_url_path


def _path(value: object, key: str, _: Context) -> str:
    return values.checked(validate_url_path, value, key, "a URL path such as /health")


def _host(value: object, key: str, _: Context) -> str:
    return values.matching(value, key, values.HEADER_HOST, "a host name for the Host header",
                           "a host name, optionally with :port")


def _status(value: object, key: str, _: Context) -> tuple[int, ...]:
    status = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(status, list) or not status:
        raise values.Invalid(key, "expected an HTTP status or a list of them, got "
                                  f"{values.describe(status)}")
    return tuple(values.integer(code, f"{key}[{index}]", 100, 599)
                 for index, code in enumerate(status))


def _interval(value: object, key: str, _: Context) -> float:
    interval = values.positive_number(value, key)
    if not 0.1 <= interval <= 60:
        raise values.Invalid(key, f"expected 0.1 to 60 seconds, got {interval:g}")
    return interval


_CODE = {"type": "integer", "minimum": 100, "maximum": 599}


@dataclass(frozen=True)
class HealthcheckSettings:
    path: str = setting(Kind(_path, {"type": "string", "pattern": "^/"}), "/health",
                        description="HAProxy sends GET here; only 200 is healthy.")
    # the Host header of the checks (apps that check it)
    host: str | None = setting(
        Kind(_host, {"type": "string"}), None, blank="null",
        description="Host header of the checks, for apps that check it (Django's "
        "ALLOWED_HOSTS, Rails' host authorization).")
    status: tuple[int, ...] = setting(
        Kind(_status, {"oneOf": [_CODE, {"type": "array", "minItems": 1, "items": _CODE}],
                       "default": 200}),
        (200,), description="Answers that count as healthy.")
    # seconds between checks of a slot that passes them
    interval: float = setting(Kind(_interval, {"type": "number", "minimum": 0.1, "maximum": 60}),
                              0.5, description="Seconds between checks.")
    rise: int = setting(kinds.integer(1, 10), 2)  # passes in a row before a slot is up
    fall: int = setting(kinds.integer(1, 10), 3)  # failures in a row before a slot is down
    port: int | None = setting(kinds.PORT, None, blank="empty",  # None: app_port
                               description="Default: app_port.")


def parse_healthcheck(section: dict[str, object], key: str,
                      context: Context) -> HealthcheckSettings:
    # The Host header first, the path after the interval: the order of earlier versions'
    # checks, so that a file with several problems is told the same one first.
    return HealthcheckSettings(**parse_fields(
        HealthcheckSettings, section, key, context,
        order=("host", "status", "interval", "path", "rise", "fall", "port")))
