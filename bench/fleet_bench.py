"""Fleet benchmark on the sandbox: the kit's deploy to 1, 3, 6 and 10 servers under load, with
the default 5 s watch: the image already on the servers (one watch window for the whole
rollout, and the older per-server watch for comparison), a redeploy of the tag every server
already serves, and the image delivered over SSH.

Creates its own sandbox (root; run it under the sandbox lock), builds the example app's
tags in the sandbox's build engine and pushes the ones the registry rows deploy (the
default delivery: each server pulls, the registry asked once per run), measures with the
load running and this machine kept busy (`--busy` processes that spin on a CPU each),
prints a table and its targets with PASS/FAIL, writes a PNG plot of the
total deploy time against the number of servers (matplotlib: `pip install -e '.[bench]'`),
then removes the sandbox. Figures are reported, not asserted: the exit code is 0 unless the
run itself broke.

    PYTHONPATH=. flock /run/slotswap-sandbox.lock .venv/bin/python bench/fleet_bench.py \
        [--sizes 1,3,6,10]
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from deploy_bench import (  # bench/deploy_bench.py: a script's own folder is on sys.path
    LOAD_CLIENTS,
    MAX_LOAD_REQUESTS,
    SANDBOX_NETWORKS,
    kit_output,
    log,
)

from slotswap.cli.summary import timings_tables
from slotswap.commands import docker
from slotswap.config.inventory import Inventory
from slotswap.config.loader import load_inventory
from slotswap.core.output import format_table
from slotswap.core.validation import InputError
from slotswap.fleet import rollout
from slotswap.fleet.errors import OPERATION_ERRORS
from slotswap.fleet.every_server import on_every_server
from slotswap.fleet.runner import close_all, servers_of
from slotswap.remote import server as remote
from slotswap.server.haproxy import up_server
from testbed import sandbox
from testbed.loadgen import LoadGeneratorProcess

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (1, 3, 6, 10)
DEFAULT_PLOT = ROOT / "bench" / "results" / "fleet.png"
BASE_TAG = "v1"
# Registry delivery (the default), IMAGE:TAG already on every server: nothing is downloaded.
MODE_PRESENT = "present"
MODE_EACH = "present, watch each"  # the same, each server watched before the next starts
MODE_NOOP = "no-op redeploy"  # the tag every server serves already: nothing to do
MODE_SSH = "ssh"  # IMAGE:TAG streamed to every server during the deploy
WATCH_SECONDS = 5.0  # timeouts.watch: the default
LOAD_SECONDS_PER_SERVER = 60.0  # bound of the load during one deploy (stopped earlier)
TARGET_SWAP_MEDIAN = 1.3
TARGET_PER_EXTRA_SERVER = 2.0  # 10 servers at most the 1-server time + 9 x this
TARGET_NOOP_SECONDS = 3.0  # a no-op redeploy of 10 servers
TARGET_DELIVERY_FACTOR = 3  # delivery to 10 servers at most 3 x the delivery to one
DEFAULT_ROUNDS = 3  # deploys (and deliveries) per fleet size and mode; the median is reported
DEFAULT_BUSY = 1  # processes spinning on a CPU each while a deploy is measured
REGISTRY_MODES = (MODE_PRESENT, MODE_EACH, MODE_NOOP)
KIND_SHARED = "layers shared"  # a new tag of the example app: its one layer is v1's
KIND_NEW = "new layer"  # the same with a layer on top that no server has
NEW_LAYER_BYTES = 4_500_000  # as big as the example app's own layer


class BenchError(RuntimeError):
    pass


@dataclass
class Row:
    servers: int
    mode: str
    ok: bool  # every round's deploy succeeded
    rounds: list[float]  # seconds of each round's whole deploy
    swap_seconds: list[float]  # every server's swap, all rounds
    connections: int  # SSH connections one deploy opened (the most of any round)
    requests_sent: int  # all rounds
    requests_failed: int
    message: str = ""
    # CPU-seconds the machine spent during each round, without the load generator's and the
    # busy processes': the kit, every server's sshd, Docker and HAProxy, the apps, the kernel
    cpu_seconds: list[float] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)  # per server, mean of each round

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_seconds) if self.cpu_seconds else 0.0

    @property
    def total_seconds(self) -> float:
        return statistics.median(self.rounds)

    @property
    def swap_median(self) -> float | None:
        return statistics.median(self.swap_seconds) if self.swap_seconds else None

    @property
    def swap_max(self) -> float | None:
        return max(self.swap_seconds) if self.swap_seconds else None


@dataclass
class Delivery:
    servers: int
    kind: str  # KIND_SHARED or KIND_NEW
    rounds: list[float]  # seconds to put the image on every server, in parallel
    connections: int  # SSH connections one round opened
    megabytes: float  # the image's size
    cpu_seconds: float  # CPU time this machine used during a round (median)

    @property
    def seconds(self) -> float:
        return statistics.median(self.rounds)


# -- set-up ------------------------------------------------------------------------------------


def fleet_inventory(sandbox_inventory: Path, folder: Path, servers: int,
                    concurrency: int, mode: str = "ssh") -> Inventory:
    """The sandbox's inventory limited to its first `servers` hosts, with that delivery."""
    data = yaml.safe_load(sandbox_inventory.read_text())
    here = sandbox_inventory.parent
    for key in ("identity", "known_hosts"):
        data["ssh"][key] = str(here / data["ssh"][key])
    data["build"] = {k: str((here / v).resolve()) for k, v in data["build"].items()}
    data["hosts"] = data["hosts"][:servers]
    data["delivery"] = {"mode": mode, "concurrency": concurrency}
    data.setdefault("timeouts", {})["watch"] = WATCH_SECONDS
    data.pop("watch", None)  # the default: one window for the whole rollout
    path = folder / f"hosts-{servers}-{mode}.yaml"
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


def push_tags(inventory: Inventory, tags: list[str]) -> None:
    """To the sandbox's registry, for the rows that deploy with delivery: registry."""
    for tag in tags:
        done = subprocess.run(["docker", "push", "--quiet", inventory.image_ref(tag)],
                              capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise BenchError(f"docker push of {tag} failed: {done.stderr.strip()}")


class Busy:
    """`count` processes spinning on a CPU each (an operator's machine that is busy with
    something else), for at most `seconds`; their CPU time is read when they stop."""

    SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\n" \
           "while time.monotonic() < end:\n    pass\n"

    def __init__(self, count: int, seconds: float):
        self.count, self.seconds = count, seconds
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Busy:
        self.processes = [subprocess.Popen([sys.executable, "-c", self.SPIN, str(self.seconds)])
                          for _ in range(self.count)]
        return self

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(p.pid) for p in self.processes)

    def __exit__(self, *exc: object) -> None:
        for process in self.processes:
            process.kill()
            process.wait()


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a running process and its waited-for children."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def build_new_layer_image(inventory: Inventory, base_tag: str, tag: str, folder: Path) -> None:
    """`tag`: `base_tag` with one more layer of NEW_LAYER_BYTES random bytes on top."""
    context = folder / f"context-{tag}"
    context.mkdir()
    (context / "release.bin").write_bytes(os.urandom(NEW_LAYER_BYTES))
    (context / "Dockerfile").write_text(f"FROM {inventory.image_ref(base_tag)}\n"
                                        f"COPY release.bin /release.bin\n"
                                        f"ENV APP_VERSION={tag}\n")
    done = subprocess.run(["docker", "build", "--quiet", "--tag", inventory.image_ref(tag),
                           str(context)], capture_output=True, text=True, check=False,
                          timeout=300)
    if done.returncode != 0:
        raise BenchError(f"docker build of {tag} failed: {done.stderr.strip()}")


def busy_cpu_seconds() -> float:
    """CPU time this machine has spent on anything but idling, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle, iowait = fields[3], fields[4]
    return (sum(fields) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def image_megabytes(image_ref: str) -> float:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image_ref],
                          capture_output=True, text=True, check=False, timeout=60)
    return int(done.stdout.strip() or 0) / 1_000_000


def set_up(inventory: Inventory, verbose: bool) -> None:
    log(f"[setup] fab up and a deploy of {BASE_TAG} on {len(inventory.hosts)} servers, "
        "not measured")
    with kit_output(verbose):
        results = on_every_server(inventory, up_server, "up")
        failed = [r for r in results if not r.ok]
        if failed:
            raise BenchError(f"fab up failed on {failed[0].name}: {failed[0].text}")
        result = rollout.deploy(inventory, BASE_TAG)
    if not result.ok:
        raise BenchError(f"the set-up deploy of {BASE_TAG} failed: {result.message}")


# -- measuring ---------------------------------------------------------------------------------


def forget_image(inventory: Inventory, tag: str) -> None:
    """Remove IMAGE:TAG from every server (its layers go too unless another image has them),
    so that the next round delivers it again."""
    servers = servers_of(inventory)
    try:
        for server in servers:
            server.run(docker.remove_images(inventory.image_ref(tag)), check=False)
    finally:
        close_all(servers)


def measure_delivery(inventory: Inventory, tag: str, kind: str, rounds_wanted: int) -> Delivery:
    """The image put on every server in parallel (what a deploy does before its first swap),
    `rounds_wanted` times; the connections are opened as part of it."""
    rounds, cpu = [], []
    for _ in range(rounds_wanted):
        forget_image(inventory, tag)
        servers = servers_of(inventory)
        before = remote.connections_opened()
        cpu_before, started = busy_cpu_seconds(), time.monotonic()
        try:
            with kit_output(False):
                failures = rollout.prepare(servers, inventory, {s.name: tag for s in servers},
                                           refresh=True)
        finally:
            close_all(servers)
        rounds.append(time.monotonic() - started)
        cpu.append(busy_cpu_seconds() - cpu_before)
        if failures:
            raise BenchError(f"delivery of {tag} failed: {failures}")
    return Delivery(len(servers), kind, rounds, remote.connections_opened() - before,
                    image_megabytes(inventory.image_ref(tag)), statistics.median(cpu))


def measure_deploys(inventory: Inventory, tags: list[str], mode: str, verbose: bool,
                    busy: int) -> Row:
    """One deploy under load per tag, one after the other."""
    row = Row(len(inventory.hosts), mode, True, [], [], 0, 0, 0)
    for tag in tags:
        deploy_under_load(inventory, tag, row, verbose, busy)
    return row


def deploy_under_load(inventory: Inventory, tag: str, row: Row, verbose: bool,
                      busy: int) -> None:
    """One deploy of `tag` under load, its figures added to `row` (its mode says how)."""
    targets = [host.address for host in inventory.hosts]
    load = LoadGeneratorProcess(targets, port=inventory.haproxy.http_port, clients=LOAD_CLIENTS,
                                max_seconds=30 + LOAD_SECONDS_PER_SERVER * len(targets),
                                max_requests=MAX_LOAD_REQUESTS,
                                allowed_networks=SANDBOX_NETWORKS)
    before = remote.connections_opened()
    bound = 30 + LOAD_SECONDS_PER_SERVER * len(targets)
    with load, Busy(busy, bound) as spinning:
        loadgen_before, spin_before = load_cpu_seconds(load), spinning.cpu_seconds()
        cpu_before, started = busy_cpu_seconds(), time.monotonic()
        with kit_output(verbose) as captured:
            result = rollout.deploy(inventory, tag, watch_each=row.mode == MODE_EACH)
        seconds = time.monotonic() - started
        cpu = busy_cpu_seconds() - cpu_before - (load_cpu_seconds(load) - loadgen_before) - (
            spinning.cpu_seconds() - spin_before)
        report = load.stop()
    if not result.ok and not verbose:
        log(captured.getvalue().rstrip())
    swaps = [o.swap_seconds for o in result.outcomes if o.outcome in ("deployed", "failed")]
    if row.mode == MODE_NOOP and any(o.outcome != "unchanged" for o in result.outcomes):
        result.exit_code, result.message = 1, "a no-op redeploy changed a server"
    connections = remote.connections_opened() - before
    row.ok = row.ok and result.ok
    row.message = row.message or result.message
    row.rounds.append(seconds)
    row.cpu_seconds.append(max(0.0, cpu))
    trips = [o.timings.total_round_trips for o in result.outcomes if o.timings is not None]
    row.round_trips.append(statistics.mean(trips) if trips else 0.0)
    row.swap_seconds += swaps
    row.connections = max(row.connections, connections)
    row.requests_sent += report.sent
    row.requests_failed += report.failed
    log(f"[{len(targets)} servers, {row.mode}, {tag}] "
        f"{'ok' if result.ok else 'FAILED: ' + result.message} in {seconds:.2f}s; swaps "
        f"{'/'.join(f'{s:.2f}' for s in swaps)}s; {connections} SSH connections; "
        f"{row.round_trips[-1]:.1f} round trips per server; {max(0.0, cpu):.2f} CPU-seconds; "
        f"{report.summary()}")
    if verbose or row.servers == max(DEFAULT_SIZES):
        log(timings_tables(result))


def load_cpu_seconds(load: LoadGeneratorProcess) -> float:
    process = getattr(load, "_process", None)
    pid = getattr(process, "pid", None)
    return process_cpu_seconds(pid) if pid else 0.0


def measure_size(sandbox_inventory: Path, folder: Path, servers: int, args: argparse.Namespace
                 ) -> tuple[list[Row], list[Delivery]]:
    rounds, verbose, busy = args.rounds, args.verbose, args.busy
    inventory = fleet_inventory(sandbox_inventory, folder, servers, args.concurrency)
    pulled = fleet_inventory(sandbox_inventory, folder, servers, args.concurrency, "registry")
    present_tag, other_tag = f"n{servers}p", f"n{servers}q"
    ssh_tags = [f"n{servers}s{round_}" for round_ in range(1, rounds + 1)]
    deliveries = [measure_delivery(inventory, f"n{servers}l", KIND_NEW, rounds),
                  measure_delivery(inventory, present_tag, KIND_SHARED, rounds)]
    for delivery in deliveries:
        log(f"[{servers} servers] delivery alone, {delivery.kind}: "
            f"{'/'.join(f'{s:.2f}' for s in delivery.rounds)}s, {delivery.connections} SSH "
            f"connections, {delivery.cpu_seconds:.2f} CPU-seconds")
    # A second tag already on every server, so that present rounds can go back and forth.
    with kit_output(False):
        servers = servers_of(inventory)
        try:
            rollout.prepare(servers, inventory, {s.name: other_tag for s in servers},
                            refresh=True)
        finally:
            close_all(servers)
    back_and_forth = ([present_tag, other_tag] * (rounds + 1))[:rounds + 1]
    rows = [measure_deploys(pulled, back_and_forth[:rounds], MODE_PRESENT, verbose, busy),
            measure_deploys(pulled, back_and_forth[1:], MODE_EACH, verbose, busy)]
    live = back_and_forth[rounds]
    rows += [measure_deploys(pulled, [live] * rounds, MODE_NOOP, verbose, busy),
             measure_deploys(inventory, ssh_tags, MODE_SSH, verbose, busy)]
    return rows, deliveries


# -- report ------------------------------------------------------------------------------------


def seconds_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    return format_table(
        ("servers", "mode", "total deploy, median (s)", "rounds (s)", "swap median (s)",
         "swap max (s)", "SSH connections", "round trips per server", "CPU-seconds",
         "requests sent", "failed requests"),
        [(r.servers, r.mode if r.ok else f"{r.mode} (FAILED)", seconds_cell(r.total_seconds),
          " / ".join(f"{s:.2f}" for s in r.rounds), seconds_cell(r.swap_median),
          seconds_cell(r.swap_max), r.connections,
          f"{statistics.median(r.round_trips):.1f}" if r.round_trips else "-",
          f"{r.cpu_median:.2f}", r.requests_sent, r.requests_failed)
         for r in rows])


def delivery_table(deliveries: list[Delivery]) -> str:
    return format_table(
        ("servers", "image", "image (MB)", "delivery alone, median (s)", "rounds (s)",
         "SSH connections", "CPU-seconds used"),
        [(d.servers, d.kind, f"{d.megabytes:.1f}", seconds_cell(d.seconds),
          " / ".join(f"{s:.2f}" for s in d.rounds), d.connections, f"{d.cpu_seconds:.2f}")
         for d in sorted(deliveries, key=lambda d: (d.kind, d.servers))])


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
    by_size = {r.servers: r for r in rows if r.mode == MODE_PRESENT}
    present = {size: row.total_seconds for size, row in by_size.items()}
    if 1 in present and 10 in present:
        per_server = (present[10] - present[1]) / 9
        lines.append(verdict(per_server <= TARGET_PER_EXTRA_SERVER, (
            f"per added server, image present, one watch window: (10-server time - 1-server "
            f"time) / 9 = ({present[10]:.2f} - {present[1]:.2f}) / 9 = {per_server:.2f} s "
            f"(target {TARGET_PER_EXTRA_SERVER:.1f} s)")))
        cpu = (by_size[10].cpu_median - by_size[1].cpu_median) / 9
        lines.append(floor_line(cpu, "each added server", per_server,
                                TARGET_PER_EXTRA_SERVER))
    each = {r.servers: r.total_seconds for r in rows if r.mode == MODE_EACH}
    if 10 in each and 10 in present:
        lines.append(f"      (each server watched in turn: {each[10]:.2f} s, "
                     f"{each[10] / present[10]:.1f} x the window's time)")
    noops = {r.servers: r for r in rows if r.mode == MODE_NOOP}
    if 10 in noops:
        noop = noops[10]
        lines.append(verdict(noop.total_seconds <= TARGET_NOOP_SECONDS, (
            f"no-op redeploy of 10 servers: {noop.total_seconds:.2f} s (target "
            f"{TARGET_NOOP_SECONDS:g} s; the registry asked once, by the first server's pull; "
            f"{statistics.median(noop.round_trips):.1f} round trips per server)")))
        lines.append(floor_line(noop.cpu_median, "it", noop.total_seconds,
                                TARGET_NOOP_SECONDS))
    for kind in (KIND_SHARED, KIND_NEW):
        of_kind = [d for d in deliveries if d.kind == kind]
        lines += ratio_lines({d.servers: d.seconds for d in of_kind}, TARGET_DELIVERY_FACTOR,
                             f"delivery to 10 servers in parallel ({kind})")
        lines += [cpu_floor_line(d, of_kind) for d in of_kind if d.servers == 10]
    return lines


def floor_line(cpu_seconds: float, what: str, got: float, target: float) -> str:
    """The least time the CPU-seconds measured (load generator and busy processes left out)
    take on this machine's cores, had they had them to themselves."""
    cores = os.cpu_count() or 1
    floor = cpu_seconds / cores
    verdict_text = ("the target is below it: not reachable on this machine" if floor > target
                    else f"{got / floor:.1f} x the floor" if floor > 0 else "")
    return (f"      (CPU floor: {what} used {cpu_seconds:.2f} CPU-seconds of the kit, the "
            f"servers' sshd, Docker, HAProxy and apps; on {cores} cores at least {floor:.2f} s, "
            f"{verdict_text})")


def ratio_lines(seconds: dict[int, float], factor: float, what: str) -> list[str]:
    if 1 not in seconds or 10 not in seconds:
        return []
    ratio = seconds[10] / seconds[1]
    return [verdict(ratio <= factor, f"{what}: at most {factor} x the 1-server time (got "
                                     f"{seconds[10]:.2f} s = {ratio:.1f} x {seconds[1]:.2f} s)")]


def cpu_floor_line(delivery: Delivery, of_kind: list[Delivery]) -> str:
    """What this machine's cores allow at best: the CPU time the delivery used (the servers'
    sshd and Docker engines, the kit, the kernel) spread over every core at once."""
    cores = os.cpu_count() or 1
    floor = delivery.cpu_seconds / cores
    one = next((d.seconds for d in of_kind if d.servers == 1), None)
    versus = f" = {floor / one:.1f} x the 1-server time" if one else ""
    return (f"      (it used {delivery.cpu_seconds:.2f} CPU-seconds; on {cores} cores that takes "
            f"at least {floor:.2f} s{versus})")


def plot(rows: list[Row], deliveries: list[Delivery], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot not written: matplotlib is missing (.venv/bin/pip install -e '.[bench]')"
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for mode, label in ((MODE_PRESENT, "deploy, image present"),
                        (MODE_EACH, "deploy, image present, each server watched in turn"),
                        (MODE_NOOP, "redeploy of the tag served (no-op)"),
                        (MODE_SSH, "deploy, image delivered over SSH")):
        points = sorted((r.servers, r.total_seconds) for r in rows if r.mode == mode)
        axes.plot(*zip(*points, strict=True), marker="o", label=label)
    for kind in (KIND_SHARED, KIND_NEW):
        points = sorted((d.servers, d.seconds) for d in deliveries if d.kind == kind)
        axes.plot(*zip(*points, strict=True), marker="s", linestyle="--",
                  label=f"delivery over SSH alone ({kind})")
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
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS,
                        help=f"deploys per size and mode (default: {DEFAULT_ROUNDS})")
    parser.add_argument("--busy", type=int, default=DEFAULT_BUSY,
                        help="processes that spin on a CPU each while a deploy is measured: "
                             f"the operator's machine busy (default: {DEFAULT_BUSY})")
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
    if not 1 <= args.rounds <= 9 or not 0 <= args.busy <= 8:
        parser.error("--rounds: from 1 to 9; --busy: from 0 to 8")
    return args


def run(args: argparse.Namespace, folder: Path) -> tuple[list[Row], list[Delivery]]:
    log(f"[setup] sandbox with {args.sizes[-1]} servers")
    sandbox_inventory = sandbox.create(args.sizes[-1], log=log)
    os.environ["DOCKER_HOST"] = sandbox.BUILDER_NODE.docker_host
    whole = fleet_inventory(sandbox_inventory, folder, args.sizes[-1], args.concurrency)
    tags = [BASE_TAG, *(f"n{size}{kind}" for size in args.sizes for kind in "pq"),
            *(f"n{size}s{round_}" for size in args.sizes
              for round_ in range(1, args.rounds + 1))]
    log(f"[setup] building {', '.join(tags)} in the sandbox's build engine, and n<size>l "
        "with a new layer")
    build_tags(whole, tags)
    push_tags(whole, [BASE_TAG, *(f"n{size}{kind}" for size in args.sizes for kind in "pq")])
    for size in args.sizes:
        build_new_layer_image(whole, BASE_TAG, f"n{size}l", folder)
    set_up(whole, args.verbose)
    rows: list[Row] = []
    deliveries: list[Delivery] = []
    for size in args.sizes:
        size_rows, size_deliveries = measure_size(sandbox_inventory, folder, size, args)
        rows += size_rows
        deliveries += size_deliveries
    return rows, deliveries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="slotswap-bench-") as folder:
            rows, deliveries = run(args, Path(folder))
    except (BenchError, InputError, sandbox.SandboxError, *OPERATION_ERRORS) as error:
        log(f"error: {error}")
        return 1
    finally:
        sandbox.destroy(log=log)
    print(f"{LOAD_CLIENTS} load clients on the deployed servers; {args.busy} process(es) "
          f"spinning on a CPU each during every deploy; delivery.concurrency "
          f"{args.concurrency}; rows: image already on the servers, delivery: registry "
          f"({MODE_PRESENT}, {MODE_EACH}, {MODE_NOOP}), image streamed over SSH during the "
          f"deploy ({MODE_SSH}); this machine has {os.cpu_count()} CPUs for the operator and "
          "every server\n")
    print(table(rows))
    print()
    print(delivery_table(deliveries))
    print()
    print("\n".join(target_lines(rows, deliveries)))
    print(plot(rows, deliveries, args.plot))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        figures = {"rows": [asdict(r) | {"total_seconds": r.total_seconds} for r in rows],
                   "deliveries": [asdict(d) | {"seconds": d.seconds} for d in deliveries]}
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
