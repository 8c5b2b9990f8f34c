"""Fleet benchmark on the sandbox: the kit's deploy to 1, 3, 6 and 10 servers, with the image
already on the servers and with the image delivered over SSH, under load.

Creates its own sandbox (root; run it under the sandbox lock), builds the example app's
tags in the sandbox's build engine (never pushed: every image reaches the servers over SSH),
measures, prints a table and its targets with PASS/FAIL, writes a PNG plot of the
total deploy time against the number of servers (matplotlib: `pip install -e '.[bench]'`),
then removes the sandbox. Figures are reported, not asserted: the exit code is 0 unless the
run itself broke.

    flock /run/slotswap-sandbox.lock .venv/bin/python bench/fleet_bench.py [--sizes 1,3,6,10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from deploy_bench import (  # bench/deploy_bench.py: a script's own folder is on sys.path
    LOAD_CLIENTS,
    MAX_LOAD_REQUESTS,
    SANDBOX_NETWORKS,
    kit_output,
    log,
)

from tasks import docker_commands as docker
from tasks import remote, rollout, sandbox
from tasks.inventory import Inventory, load_inventory
from tasks.loadgen import LoadGeneratorProcess
from tasks.output import format_table
from tasks.proxy import up_server
from tasks.validation import InputError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (1, 3, 6, 10)
DEFAULT_PLOT = ROOT / "bench" / "results" / "fleet.png"
BASE_TAG = "v1"
MODE_PRESENT = "present"  # IMAGE:TAG already on every server (same image ID: nothing sent)
MODE_SSH = "ssh"  # IMAGE:TAG streamed to every server during the deploy
LOAD_SECONDS_PER_SERVER = 60.0  # bound of the load during one deploy (stopped earlier)
TARGET_SWAP_MEDIAN = 1.5
TARGET_PRESENT_FACTOR = 10  # 10 servers, image present, at most 10 x the 1-server time
TARGET_DELIVERY_FACTOR = 3  # delivery to 10 servers at most 3 x the delivery to one


class BenchError(RuntimeError):
    pass


@dataclass
class Row:
    servers: int
    mode: str
    ok: bool
    total_seconds: float
    swap_seconds: list[float]
    connections: int  # SSH connections the deploy opened
    requests_sent: int
    requests_failed: int
    message: str = ""

    @property
    def swap_median(self) -> float | None:
        return statistics.median(self.swap_seconds) if self.swap_seconds else None

    @property
    def swap_max(self) -> float | None:
        return max(self.swap_seconds) if self.swap_seconds else None


@dataclass
class Delivery:
    servers: int
    seconds: float  # putting the image on every server, in parallel, nothing else
    connections: int
    megabytes: float


# -- set-up ------------------------------------------------------------------------------------


def fleet_inventory(sandbox_inventory: Path, folder: Path, servers: int,
                    concurrency: int) -> Inventory:
    """The sandbox's inventory limited to its first `servers` hosts, with delivery: ssh."""
    data = yaml.safe_load(sandbox_inventory.read_text())
    here = sandbox_inventory.parent
    for key in ("identity", "known_hosts"):
        data["ssh"][key] = str(here / data["ssh"][key])
    data["build"] = {k: str((here / v).resolve()) for k, v in data["build"].items()}
    data["hosts"] = data["hosts"][:servers]
    data["delivery"] = {"mode": "ssh", "concurrency": concurrency}
    path = folder / f"hosts-{servers}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_inventory(path)


def build_tags(inventory: Inventory, tags: list[str]) -> None:
    """In the sandbox's build engine (DOCKER_HOST), as `fab build` does; no push."""
    for tag in tags:
        argv = docker.build(inventory.image_ref(tag), tag, str(inventory.build.dockerfile),
                            str(inventory.build.context))
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise BenchError(f"docker build of {tag} failed: {done.stderr.strip()}")


def image_megabytes(image_ref: str) -> float:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image_ref],
                          capture_output=True, text=True, check=False, timeout=60)
    return int(done.stdout.strip() or 0) / 1_000_000


def set_up(inventory: Inventory, verbose: bool) -> None:
    log(f"[setup] fab up and a deploy of {BASE_TAG} on {len(inventory.hosts)} servers, "
        "not measured")
    with kit_output(verbose):
        results = rollout.on_every_server(inventory, up_server, "up")
        failed = [r for r in results if not r.ok]
        if failed:
            raise BenchError(f"fab up failed on {failed[0].name}: {failed[0].text}")
        result = rollout.deploy(inventory, BASE_TAG)
    if not result.ok:
        raise BenchError(f"the set-up deploy of {BASE_TAG} failed: {result.message}")


# -- measuring ---------------------------------------------------------------------------------


def measure_delivery(inventory: Inventory, tag: str) -> Delivery:
    """The image put on every server in parallel (what a deploy does before its first swap)."""
    servers = rollout.servers_of(inventory)
    before = remote.connections_opened()
    started = time.monotonic()
    try:
        with kit_output(False):
            failures = rollout.prepare(servers, inventory, {s.name: tag for s in servers},
                                       refresh=True)
    finally:
        rollout.close_all(servers)
    seconds = time.monotonic() - started
    if failures:
        raise BenchError(f"delivery of {tag} failed: {failures}")
    return Delivery(len(servers), seconds, remote.connections_opened() - before,
                    image_megabytes(inventory.image_ref(tag)))


def measure_deploy(inventory: Inventory, tag: str, mode: str, verbose: bool) -> Row:
    targets = [host.address for host in inventory.hosts]
    load = LoadGeneratorProcess(targets, port=inventory.haproxy.http_port, clients=LOAD_CLIENTS,
                                max_seconds=30 + LOAD_SECONDS_PER_SERVER * len(targets),
                                max_requests=MAX_LOAD_REQUESTS,
                                allowed_networks=SANDBOX_NETWORKS)
    before = remote.connections_opened()
    with load:
        started = time.monotonic()
        with kit_output(verbose) as captured:
            result = rollout.deploy(inventory, tag)
        seconds = time.monotonic() - started
        report = load.stop()
    if not result.ok and not verbose:
        log(captured.getvalue().rstrip())
    swaps = [o.swap_seconds for o in result.outcomes if o.outcome in ("deployed", "failed")]
    row = Row(len(targets), mode, result.ok, seconds, swaps,
              remote.connections_opened() - before, report.sent, report.failed,
              result.message)
    log(f"[{len(targets)} servers, {mode}] {'ok' if row.ok else 'FAILED: ' + row.message} in "
        f"{seconds:.2f}s; swaps {'/'.join(f'{s:.2f}' for s in swaps)}s; "
        f"{row.connections} SSH connections; {report.summary()}")
    return row


def measure_size(sandbox_inventory: Path, folder: Path, servers: int, concurrency: int,
                 verbose: bool) -> tuple[list[Row], Delivery]:
    inventory = fleet_inventory(sandbox_inventory, folder, servers, concurrency)
    present_tag, ssh_tag = f"n{servers}p", f"n{servers}s"
    delivery = measure_delivery(inventory, present_tag)
    log(f"[{servers} servers] delivery alone: {delivery.seconds:.2f}s, "
        f"{delivery.connections} SSH connections")
    rows = [measure_deploy(inventory, present_tag, MODE_PRESENT, verbose),
            measure_deploy(inventory, ssh_tag, MODE_SSH, verbose)]
    return rows, delivery


# -- report ------------------------------------------------------------------------------------


def seconds_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    return format_table(
        ("servers", "delivery", "total deploy (s)", "swap median (s)", "swap max (s)",
         "SSH connections", "requests sent", "failed requests"),
        [(r.servers, r.mode if r.ok else f"{r.mode} (FAILED)", seconds_cell(r.total_seconds),
          seconds_cell(r.swap_median), seconds_cell(r.swap_max), r.connections,
          r.requests_sent, r.requests_failed) for r in rows])


def delivery_table(deliveries: list[Delivery]) -> str:
    return format_table(
        ("servers", "image (MB)", "delivery alone (s)", "SSH connections"),
        [(d.servers, f"{d.megabytes:.1f}", seconds_cell(d.seconds), d.connections)
         for d in deliveries])


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}  {text}"


def target_lines(rows: list[Row], deliveries: list[Delivery]) -> list[str]:
    failed = sum(r.requests_failed for r in rows)
    swaps = [s for r in rows for s in r.swap_seconds]
    median = statistics.median(swaps) if swaps else None
    lines = [
        verdict(failed == 0 and all(r.ok for r in rows),
                f"0 failed requests, every deploy successful (got {failed} failed)"),
        verdict(median is not None and median <= TARGET_SWAP_MEDIAN,
                f"per-server swap median <= {TARGET_SWAP_MEDIAN:g} s "
                f"(got {seconds_cell(median)} s)"),
    ]
    present = {r.servers: r.total_seconds for r in rows if r.mode == MODE_PRESENT}
    alone = {d.servers: d.seconds for d in deliveries}
    for seconds, factor, what in (
            (present, TARGET_PRESENT_FACTOR, "10 servers, image present"),
            (alone, TARGET_DELIVERY_FACTOR, "delivery to 10 servers in parallel")):
        if 1 in seconds and 10 in seconds:
            ratio = seconds[10] / seconds[1]
            lines.append(verdict(ratio <= factor, f"{what}: at most {factor} x the 1-server "
                                 f"time (got {seconds[10]:.2f} s = {ratio:.1f} x "
                                 f"{seconds[1]:.2f} s)"))
    return lines


def plot(rows: list[Row], deliveries: list[Delivery], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot not written: matplotlib is missing (.venv/bin/pip install -e '.[bench]')"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for mode, label in ((MODE_PRESENT, "deploy, image present"),
                        (MODE_SSH, "deploy, image delivered over SSH")):
        points = sorted((r.servers, r.total_seconds) for r in rows if r.mode == mode)
        axes.plot(*zip(*points, strict=True), marker="o", label=label)
    points = sorted((d.servers, d.seconds) for d in deliveries)
    axes.plot(*zip(*points, strict=True), marker="s", linestyle="--",
              label="delivery over SSH alone")
    axes.set_xlabel("servers")
    axes.set_ylabel("seconds")
    axes.set_title("slotswap on the sandbox: total time against fleet size")
    axes.set_xticks(sorted({r.servers for r in rows}))
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return f"plot written to {path}"


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="fleet sizes, comma-separated (default: 1,3,6,10)")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="delivery.concurrency of the inventories (default: 10)")
    parser.add_argument("--plot", type=Path, default=DEFAULT_PLOT,
                        help="where to write the PNG (default: bench/results/fleet.png)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--verbose", action="store_true",
                        help="show the kit's own progress lines (on stderr)")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted({int(size) for size in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes: expected numbers separated by commas, got {args.sizes!r}")
    if not args.sizes or not 1 <= args.sizes[0] <= args.sizes[-1] <= sandbox.MAX_SERVERS:
        parser.error(f"--sizes: from 1 to {sandbox.MAX_SERVERS} servers")
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency: from 1 to 64")
    return args


def run(args: argparse.Namespace, folder: Path) -> tuple[list[Row], list[Delivery]]:
    log(f"[setup] sandbox with {args.sizes[-1]} servers")
    sandbox_inventory = sandbox.create(args.sizes[-1], log=log)
    os.environ["DOCKER_HOST"] = sandbox.BUILDER_NODE.docker_host
    whole = fleet_inventory(sandbox_inventory, folder, args.sizes[-1], args.concurrency)
    tags = [BASE_TAG, *(f"n{size}{kind}" for size in args.sizes for kind in "ps")]
    log(f"[setup] building {', '.join(tags)} in the sandbox's build engine")
    build_tags(whole, tags)
    set_up(whole, args.verbose)
    rows: list[Row] = []
    deliveries: list[Delivery] = []
    for size in args.sizes:
        size_rows, delivery = measure_size(sandbox_inventory, folder, size, args.concurrency,
                                           args.verbose)
        rows += size_rows
        deliveries.append(delivery)
    return rows, deliveries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="slotswap-bench-") as folder:
            rows, deliveries = run(args, Path(folder))
    except (BenchError, InputError, sandbox.SandboxError, *rollout.OPERATION_ERRORS) as error:
        log(f"error: {error}")
        return 1
    finally:
        sandbox.destroy(log=log)
    print(f"{LOAD_CLIENTS} load clients on the deployed servers; delivery.concurrency "
          f"{args.concurrency}; rows: image already on the servers ({MODE_PRESENT}), image "
          f"streamed over SSH during the deploy ({MODE_SSH})\n")
    print(table(rows))
    print()
    print(delivery_table(deliveries))
    print()
    print("\n".join(target_lines(rows, deliveries)))
    print(plot(rows, deliveries, args.plot))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows],
                                         "deliveries": [asdict(d) for d in deliveries]},
                                        indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
