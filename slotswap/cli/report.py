"""--json: one JSON document on stdout per run, for pipelines; everything else goes to
stderr (slotswap.core.output.messages_to_stderr).

A deploy or rollback:
  {"task": "deploy", "tag": "v2", "ok": true, "exit_code": 0, "message": "",
   "servers": [{"name": "s1", "address": "10.0.0.1", "old_tag": "v1", "new_tag": "v2",
                "outcome": "deployed", "seconds": 3.4, "switch_seconds": 1.4,
                "watched": {"requests": 812, "errors": 0}, "error": null,
                "serving": "v2 in web2"}, ...]}
  (outcome: deployed, unchanged (it already served the tag), rolled back, failed,
   not switched, left switched (failed after its switch: the new tag serves), not started,
   interrupted, rollback failed; watched: the new slot's
   requests and failed ones during its watch, null when it was not watched)
A status:
  {"task": "status", "ok": true, "exit_code": 0,
   "servers": [{"name": "s1", "address": "10.0.0.1", "live": "web2", "version": "v2",
                "slots": ["web1: ...", "web2: ..."], "maintenance": false,
                "haproxy": "haproxy:2.8 (HAProxy 2.8.5)", "web": true,
                "roles": [{"name": "s-worker-web2-1", "role": "worker", "version": "v2",
                           "generation": "web2", "state": "running", "restarts": 0}],
                "error": null}, ...]}
  (a worker-only host: "web": false, "live": null, "slots": [], "haproxy": null, and
   "version" the versions its running role containers have)
"""

from __future__ import annotations

import json
import sys
from typing import Any

from slotswap.fleet.outcomes import RolloutResult
from slotswap.fleet.status import ServerStatus


def rollout_document(task: str, result: RolloutResult) -> dict[str, Any]:
    return {
        "task": task,
        "tag": result.tag,
        "ok": result.ok,
        "exit_code": result.exit_code,
        "message": result.message,
        "servers": [{
            "name": o.name,
            "address": o.address,
            "old_tag": o.old_tag,
            "new_tag": o.new_tag,
            "outcome": o.outcome,
            "seconds": round(o.seconds, 3),
            "switch_seconds": None if o.switch_seconds is None else round(o.switch_seconds, 3),
            "watched": None if o.watched_requests is None else {
                "requests": o.watched_requests, "errors": o.watched_errors},
            "error": o.error or None,
            "serving": o.serving,
            "timings": o.timings.document() if o.timings is not None else None,
        } for o in result.outcomes],
        "timings": {name: round(seconds, 3) for name, seconds in result.timings.seconds.items()},
    }


def status_document(reports: list[ServerStatus], exit_code: int) -> dict[str, Any]:
    return {
        "task": "status",
        "ok": exit_code == 0,
        "exit_code": exit_code,
        "servers": [{
            "name": r.name,
            "address": r.address,
            "live": None if r.error or not r.web else r.live,
            "version": None if r.error else r.version,
            "slots": r.slots,
            "maintenance": r.maintenance,
            "haproxy": (r.haproxy or None) if not r.error else None,
            "web": r.web,
            "roles": [container.document() for container in r.roles],
            "error": r.error or None,
            # The shared HAProxy (haproxy.shared only: today's document is unchanged).
            **({"proxy": r.proxy.document()} if r.proxy is not None and not r.error else {}),
        } for r in reports],
    }


def emit(document: dict[str, Any]) -> None:
    """The document, alone on stdout."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()
