"""One watch window for the whole rollout.

After a server switches, its old slot stays running, drained, and the rollout goes on to the
next server at once; each new slot is watched, in a thread of its own, from its switch until
the window closes, `timeouts.watch` seconds after the last switch. Then every old slot is
stopped (each thread stops its own: in parallel). A failure anywhere while the window is
open stops the rollout; with `--on-failure=rollback` every server still watched goes back
too, in one runtime-API line each (its old slot still runs: no container start, no pull).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class WatchWindow:
    def __init__(self, seconds: float, *, revert_on_failure: bool):
        self.seconds = seconds
        self.revert_on_failure = revert_on_failure
        self._lock = threading.Lock()
        self._last_switch: float | None = None
        self._closes_at: float | None = None
        self._failure: str | None = None
        self._failing: str | None = None  # told by a watch before its clean-up (failing)
        self._threads: list[threading.Thread] = []

    def switched(self, at: float) -> None:
        """A server switched at monotonic time `at`: the window lasts at least until
        `seconds` after it."""
        with self._lock:
            self._last_switch = max(at, self._last_switch or at)

    def watch(self, name: str, body: Callable[[], None]) -> None:
        """Run `body` (the server's watch and the stop of its old slot) in a thread; it must
        catch its own errors."""
        thread = threading.Thread(target=body, name=f"watch-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def closes_at(self) -> float | None:
        """When the window closes (monotonic time); None while servers may still switch."""
        return self._closes_at

    def fail(self, reason: str) -> None:
        """A server failed: no more switches; with revert_on_failure, every new slot still
        watched goes back."""
        with self._lock:
            if self._failure is None:
                self._failure = reason

    def failing(self, reason: str) -> None:
        """A watch sent its server's traffic back: the rollout stops at once, not only once
        that server has read its container's last output and stopped it (meanwhile another
        server could switch). Its fail() gives the reason named in the end."""
        with self._lock:
            if self._failing is None:
                self._failing = reason

    def failure(self) -> str | None:
        """Why the rollout stops (the first failure), or None."""
        return self._failure or self._failing

    def revert_reason(self) -> str | None:
        """Asked by each watch: a reason to switch back although nothing is wrong with it."""
        failure = self.failure()
        if self.revert_on_failure and failure is not None:
            return f"--on-failure=rollback: {failure}"
        return None

    def close(self) -> None:
        """No more switches: the window closes `seconds` after the last one (now, if none);
        wait for every watch to end (each ends by its own deadlines)."""
        with self._lock:
            last = self._last_switch if self._last_switch is not None else time.monotonic()
            self._closes_at = last + self.seconds
        for thread in self._threads:
            thread.join()
        self._threads.clear()
