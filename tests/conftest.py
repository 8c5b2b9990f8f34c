"""Run before any test module is imported, in each process of the run.

`scripts/test.sh` runs the suite in two processes (pytest-xdist, `-n 2 --dist loadfile`:
a module's tests stay in one process, with its module fixtures). Each process that runs
sandbox tests creates a sandbox of its own: the first the ID the run was started with
(`SLOTSWAP_SANDBOX_ID`, default 0), the next one ID + 1, and so on, so that two of them
never share a bridge, a namespace or a folder (testbed/sandbox.py reads the ID when it is
imported, which is after this file). A run takes IDs base to base + N - 1: another run on
the same machine must start past them (a sandbox created with an ID in use replaces that
one).
"""

from __future__ import annotations

import os
import re

import pytest


def _sandbox_id_of_this_process() -> None:
    worker = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    if worker is None or worker[1] == "0":
        return
    base = os.environ.get("SLOTSWAP_SANDBOX_ID", "0") or "0"
    if not base.isdigit():
        return  # testbed.sandbox refuses it, with its own message
    mine = int(base) + int(worker[1])
    if mine > 9:
        raise pytest.UsageError(
            f"test process {worker[0]} would use sandbox ID {mine} (SLOTSWAP_SANDBOX_ID "
            f"{base} + {worker[1]}); IDs go up to 9: start from a lower SLOTSWAP_SANDBOX_ID "
            "or run fewer processes")
    os.environ["SLOTSWAP_SANDBOX_ID"] = str(mine)


_sandbox_id_of_this_process()
