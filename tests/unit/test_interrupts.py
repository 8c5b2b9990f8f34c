"""Signals during a guarded run become a request to stop at the next checkpoint."""

from __future__ import annotations

import os
import signal

import pytest

from slotswap.core import interrupts


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


def test_a_second_signal_cuts_the_connections_and_raises_at_once() -> None:
    cut: list[str] = []
    interrupts.when_stopping_now(lambda: cut.append("cut"))
    try:
        with interrupts.guarded():
            os.kill(os.getpid(), signal.SIGINT)
            assert interrupts.requested() and not interrupts.stopping_now()
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)  # raised right here, not at a checkpoint
                for _ in range(1000):  # the handler runs between two bytecodes
                    pass
            assert interrupts.stopping_now() and cut == ["cut"]
        with interrupts.guarded():
            assert not interrupts.stopping_now()  # a new run starts afresh
    finally:
        interrupts._stopping_now_callbacks.remove(interrupts._stopping_now_callbacks[-1])
