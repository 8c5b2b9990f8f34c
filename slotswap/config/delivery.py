"""The `delivery` section: how the image reaches the servers."""

from __future__ import annotations

from dataclasses import dataclass

from slotswap.config import values

DELIVERY_MODES = ("registry", "ssh")


MAX_DELIVERY_CONCURRENCY = 64


@dataclass(frozen=True)
class DeliverySettings:
    """How IMAGE:TAG reaches the servers before the first swap: `registry` (each server pulls
    it) or `ssh` (streamed from the operator's Docker over each server's SSH connection);
    `concurrency` servers at a time."""

    mode: str = "registry"
    concurrency: int = 8


DELIVERY_KEYS = ("mode", "concurrency")


def parse_delivery(value: object) -> DeliverySettings:
    """`delivery: ssh` is short for `delivery: {mode: ssh}`."""
    defaults = DeliverySettings()
    if value is None:
        return defaults
    if not isinstance(value, str | dict):
        raise values.Invalid("delivery", f"expected {' or '.join(DELIVERY_MODES)}, or a mapping "
                             f"with keys {', '.join(DELIVERY_KEYS)}, got {values.describe(value)}")
    section = {"mode": value} if isinstance(value, str) else values.mapping(
        value, "delivery", DELIVERY_KEYS)
    key = "delivery.mode" if isinstance(value, dict) else "delivery"
    mode = section.get("mode", defaults.mode)
    if mode not in DELIVERY_MODES:
        raise values.Invalid(key, f"expected one of {', '.join(DELIVERY_MODES)}, "
                                  f"got {values.describe(mode)}")
    concurrency = section.get("concurrency", defaults.concurrency)
    if (isinstance(concurrency, bool) or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_DELIVERY_CONCURRENCY):
        raise values.Invalid("delivery.concurrency", "expected a number of servers at a time "
                             f"from 1 to {MAX_DELIVERY_CONCURRENCY}, "
                             f"got {values.describe(concurrency)}")
    return DeliverySettings(mode=str(mode), concurrency=concurrency)
