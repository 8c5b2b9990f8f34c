"""The command's start-up: a deploy imports no ACME client (acme, josepy, requests): they are
imported when a certificate is issued, and cost 0.1 s of every run on an idle machine."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("acme", "josepy", "requests")


def modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    return {name.split(".")[0] for name in json.loads(out)}


def test_the_tasks_and_a_deploy_import_no_acme_client() -> None:
    loaded = modules_after(
        "import slotswap.cli.tasks, slotswap.cli.program, slotswap.fleet.rollout")
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_the_acme_error_is_one_class_wherever_it_is_imported_from() -> None:
    from slotswap.https import acme as acme_client
    from slotswap.https import files as certificates
    assert acme_client.AcmeError is certificates.AcmeError
