"""The `delivery` section: how the image reaches the servers."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config import values
from slotswap.config.fields import (
    Context,
    Kind,
    checked_section,
    keys,
    parse_fields,
    section_schema,
    setting,
)

DELIVERY_MODES = ("registry", "ssh")
MAX_DELIVERY_CONCURRENCY = 64


def _mode(value: object, key: str, _: Context) -> str:
    if value not in DELIVERY_MODES:
        raise values.Invalid(key, f"expected one of {', '.join(DELIVERY_MODES)}, "
                                  f"got {values.describe(value)}")
    return str(value)


def _concurrency(value: object, key: str, _: Context) -> int:
    if (isinstance(value, bool) or not isinstance(value, int)
            or not 1 <= value <= MAX_DELIVERY_CONCURRENCY):
        raise values.Invalid(key, "expected a number of servers at a time from 1 to "
                                  f"{MAX_DELIVERY_CONCURRENCY}, got {values.describe(value)}")
    return value


_MODE = Kind(_mode, {"enum": list(DELIVERY_MODES)})


@dataclass(frozen=True)
class DeliverySettings:
    """How IMAGE:TAG reaches the servers before the first swap: `registry` (each server pulls
    it) or `ssh` (streamed from the operator's Docker over each server's SSH connection);
    `concurrency` servers at a time."""

    mode: str = setting(_MODE, "registry")
    concurrency: int = setting(Kind(_concurrency, {
        "type": "integer", "minimum": 1, "maximum": MAX_DELIVERY_CONCURRENCY}), 8)


def parse_delivery(value: object, key: str, context: Context) -> DeliverySettings:
    """`delivery: ssh` is short for `delivery: {mode: ssh}`."""
    if isinstance(value, str):
        return DeliverySettings(mode=_mode(value, key, context))
    if not isinstance(value, dict):
        raise values.Invalid(key, f"expected {' or '.join(DELIVERY_MODES)}, or a mapping with "
                                  f"keys {', '.join(keys(DeliverySettings))}, "
                                  f"got {values.describe(value)}")
    section = checked_section(DeliverySettings, value, key)
    return DeliverySettings(**parse_fields(DeliverySettings, section, key, context))


DELIVERY = Kind(parse_delivery, {"oneOf": [
    {"type": "null"}, _MODE.schema, section_schema(DeliverySettings, nullable=False)]})
