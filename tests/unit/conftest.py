"""What every unit test starts from, whatever ran before it in the same process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slotswap.core import output


@pytest.fixture(autouse=True)
def _plain_output() -> Iterator[None]:
    """Messages on stdout and no live display: a task run in-process with `--json` sends
    its messages to stderr for the rest of the process (a command runs one task), and the
    next test must not inherit that."""
    yield
    output.messages_to_stderr(False)
    output.set_live_display(None)
