"""The README's demo: a sandbox of local servers, v1 deployed, then v2 rolled out under load.

Run with `bash scripts/demo.sh` (as root); it leaves the sandbox running for you to explore
(`fab status -i .sandbox/hosts.yaml`) and `fab sandbox.destroy` removes it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

from slotswap.output import format_table
from testbed import sandbox
from testbed.loadgen import LoadGenerator

FAB = str(Path(sys.executable).with_name("fab"))


def fab(*args: str, env: dict[str, str]) -> None:
    print(f"\n$ fab {shlex.join(args)}", flush=True)
    result = subprocess.run([FAB, *args], cwd=sandbox.ROOT, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: `fab {shlex.join(args)}` exited {result.returncode}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=3, help="servers in the sandbox")
    options = parser.parse_args()
    inventory = sandbox.create(options.servers)
    relative = str(inventory.relative_to(sandbox.ROOT))
    env = {**os.environ, "DOCKER_HOST": sandbox.BUILDER_NODE.docker_host}
    addresses = [node.ip for node in sandbox.server_nodes(options.servers)]

    for tag in ("v1", "v2"):
        fab("build", f"--tag={tag}", f"--inventory={relative}", env=env)
    fab("up", f"--inventory={relative}", env=env)
    fab("deploy", "--tag=v1", f"--inventory={relative}", env=env)

    print(f"\nload: 4 clients, a new connection per request, over {', '.join(addresses)}")
    with LoadGenerator(addresses, clients=4, max_seconds=300) as load:
        fab("deploy", "--tag=v2", f"--inventory={relative}", env=env)
    report = load.stop()
    fab("status", f"--inventory={relative}", env=env)

    print("\nwhat the clients saw during the v2 rollout:")
    rows = [(address, sum(counts.values()),
             ", ".join(f"{v}: {n}" for v, n in sorted(counts.items())))
            for address, counts in report.versions_by_target.items()]
    print(format_table(("server", "answers", "versions seen"), rows))
    print(f"\nrequests sent: {report.sent}   failed: {report.failed}   "
          f"longest gap without a success: {report.longest_gap * 1000:.0f} ms")
    for failure in report.failures:
        print(f"  failed: {failure}")
    print(f"\nThe sandbox keeps running: try `.venv/bin/fab status --inventory={relative}`; "
          "remove it with `.venv/bin/fab sandbox.destroy`.")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
