"""The README's demo: a sandbox of local servers, v1 deployed, then v2 rolled out under load.

Run with `bash scripts/demo.sh` (as root); it leaves the sandbox running for you to explore
(`fab status --inventory .sandbox/hosts.yaml`) and `fab sandbox.destroy` removes it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from slotswap.core.output import format_table
from testbed import sandbox
from testbed.loadgen import AddressedHTTPSConnection, LoadGenerator, TlsTarget

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
    https_inventory = show_https(options.servers, env)
    print(f"\nThe sandbox keeps running: try `.venv/bin/fab status --inventory={relative}` or "
          f"`.venv/bin/fab certs --inventory={https_inventory}`; remove it with "
          "`.venv/bin/fab sandbox.destroy`.")
    return 0 if report.failed == 0 else 1


def show_https(servers: int, env: dict[str, str]) -> str:
    """HTTPS with a certificate from an ACME CA (the sandbox's pebble): `up` has it issued
    for every server's name, then each server answers over TLS, trusted by that CA alone."""
    nodes = sandbox.server_nodes(servers)
    acme = sandbox.start_acme_ca(nodes)
    data = yaml.safe_load((sandbox.STATE_DIR / "hosts.yaml").read_text())
    data["https"] = {"names": list(acme.names),
                     "acme": {"directory": acme.directory, "ca_bundle": str(acme.ca_bundle),
                              "account_key": "acme-account.pem"}}
    path = sandbox.STATE_DIR / "hosts-https.yaml"
    path.write_text(yaml.safe_dump(data))
    relative = str(path.relative_to(sandbox.ROOT))
    print(f"\nHTTPS: an ACME CA at {acme.directory} (pebble), names {', '.join(acme.names)}")
    fab("up", f"--inventory={relative}", env=env)
    roots = sandbox.STATE_DIR / "pebble" / "roots.pem"
    roots.write_text(acme.roots_pem())
    rows = []
    for node, name in zip(nodes, acme.names, strict=True):
        connection = AddressedHTTPSConnection(node.ip, TlsTarget(name, str(roots)), 443, 10)
        connection.connect()
        sock = connection.sock
        issuer = dict(item[0] for item in sock.getpeercert()["issuer"])  # type: ignore[union-attr]
        version = sock.version()  # type: ignore[union-attr]
        connection.request("GET", "/forwarded", headers={"Connection": "close"})
        body = connection.getresponse().read().decode().strip()
        connection.close()
        rows.append((f"https://{name}/", version, issuer.get("commonName", "?"), body))
    print(format_table(("request", "TLS", "issuer", "the app saw"), rows))
    return relative


if __name__ == "__main__":
    sys.exit(main())
