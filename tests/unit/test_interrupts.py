"""Signals during a guarded run become a request to stop at the next checkpoint."""

from __future__ import annotations

import os
import signal

import pytest

from slotswap import interrupts


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_is_noted_and_raised_only_at_a_checkpoint(sig: signal.Signals) -> None:
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when started in the background
    with interrupts.guarded():
        os.kill(os.getpid(), sig)  # no KeyboardInterrupt here, in the middle of anything
        assert interrupts.requested()
        with pytest.raises(KeyboardInterrupt):
            interrupts.checkpoint()
    assert signal.getsignal(signal.SIGINT) is before  # what was there is back


def test_a_new_guarded_run_starts_without_an_old_request() -> None:
    with interrupts.guarded():
        os.kill(os.getpid(), signal.SIGINT)
    with interrupts.guarded():
        interrupts.checkpoint()  # nothing pending
