"""The `healthcheck` section: how HAProxy checks a slot."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config import values
from slotswap.core.validation import validate_url_path


@dataclass(frozen=True)
class HealthcheckSettings:
    path: str = "/health"
    host: str | None = None  # the Host header of the checks (apps that check it)
    status: tuple[int, ...] = (200,)  # answers that count as healthy
    interval: float = 0.5  # seconds between checks of a slot that passes them
    rise: int = 2  # passes in a row before a slot is up
    fall: int = 3  # failures in a row before a slot is down
    port: int | None = None  # None: app_port


HEALTHCHECK_KEYS = ("path", "host", "status", "interval", "rise", "fall", "port")


def parse_healthcheck(section: dict[str, object]) -> HealthcheckSettings:
    defaults = HealthcheckSettings()
    path = section.get("path", defaults.path)
    host = None
    if section.get("host") is not None:
        host = values.string(section["host"], "healthcheck.host", "a host name for the Host header")
        if not values.HEADER_HOST.fullmatch(host):
            raise values.Invalid("healthcheck.host", "expected a host name, optionally with :port, "
                           f"got {values.describe(host)}")
    status = section.get("status", list(defaults.status))
    if isinstance(status, int) and not isinstance(status, bool):
        status = [status]
    if not isinstance(status, list) or not status:
        raise values.Invalid("healthcheck.status", "expected an HTTP status or a list of them, got "
                       f"{values.describe(status)}")
    codes = tuple(values.integer(code, f"healthcheck.status[{index}]", 100, 599)
                  for index, code in enumerate(status))
    interval = values.positive_number(section.get("interval", defaults.interval),
                                "healthcheck.interval")
    if not 0.1 <= interval <= 60:
        raise values.Invalid("healthcheck.interval",
                             f"expected 0.1 to 60 seconds, got {interval:g}")
    return HealthcheckSettings(
        path=values.checked(validate_url_path, path, "healthcheck.path",
                      "a URL path such as /health"),
        host=host, status=codes, interval=interval,
        rise=values.integer(section.get("rise", defaults.rise), "healthcheck.rise", 1, 10),
        fall=values.integer(section.get("fall", defaults.fall), "healthcheck.fall", 1, 10),
        port=values.port(section["port"], "healthcheck.port") if section.get("port") else None,
    )
