"""How a swap on one server fails: each error says what the server serves now, for the
summary (slotswap.server.swap raises them; the fleet tells them apart)."""

from __future__ import annotations


class SwapError(RuntimeError):
    """The swap did not happen; `serving` says what the server serves now."""

    def __init__(self, message: str, serving: str):
        super().__init__(message)
        self.serving = serving


class SwapStopped(SwapError):
    """The new version was ready but never took traffic: the rollout stopped elsewhere."""


class SwapRolledBack(SwapError):
    """The new version took traffic, then failed during the watch period or its verification
    (a failed check, out of rotation, its container stopped or restarted): traffic went back
    to the old slot, which had been kept running for that."""
