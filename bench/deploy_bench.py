"""Benchmark on the sandbox: slotswap's rolling deploy against the naive flow, under load.

For each approach: bring every server to v1 with the kit (not measured), start one load
generator, deploy v2, v1, v2, ... back to back, and after each deploy ask every server which
version it serves. Then print both approaches' figures side by side, and whether the kit
met its targets. Figures are reported, not asserted: the exit code is 0 unless the
run itself broke. The sandbox is left serving v1, deployed by the kit.

    PYTHONPATH=. .venv/bin/python bench/deploy_bench.py [--inventory .sandbox/hosts.yaml] \
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import naive  # bench/naive.py: a script's own folder is on sys.path

from slotswap.config.inventory import SLOTS, Inventory
from slotswap.config.loader import load_inventory
from slotswap.core.output import format_table
from slotswap.core.validation import InputError
from slotswap.fleet import rollout
from slotswap.fleet.errors import OPERATION_ERRORS
from slotswap.fleet.status import status
from testbed import sandbox
from testbed.loadgen import (
    VERSION_PATTERN,
    LoadGeneratorProcess,
    LoadReport,
    check_target_allowed,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = sandbox.STATE_DIR / "hosts.yaml"
# Load and probes go nowhere else (and loopback): the sandbox's subnet (SLOTSWAP_SANDBOX_ID).
SANDBOX_NETWORKS = (sandbox.SUBNET,)
BASE_TAG = "v1"
ROUND_TAGS = ("v2", "v1")  # alternated, so every round really changes the version
LOAD_CLIENTS = 4
MAX_LOAD_REQUESTS = 500_000
PROBES_PER_SERVER = 5
PROBE_TIMEOUT = 5.0  # the load generator's own: "no answer" means what a failed request does
NO_ANSWER = "no answer"
TARGET_FAILED = 0
TARGET_SWAP_MEDIAN = 1.5


class BenchError(RuntimeError):
    """The benchmark cannot go on (the sandbox is not in a state it can measure from)."""


@dataclass(frozen=True)
class Attempt:
    """What one approach's deploy said about itself."""

    reported_ok: bool
    server_seconds: list[float]
    message: str = ""
    detail: list[dict[str, object]] = field(default_factory=list)
    mispicks: int | None = None  # servers where a stopped slot was taken for the live one


@dataclass
class DeployRecord:
    tag: str
    seconds: float
    attempt: Attempt
    served: dict[str, dict[str, int]]  # server address -> version (or NO_ANSWER) -> count
    slowest_probe: float  # seconds: a server still settling answers late

    @property
    def other_version(self) -> bool:
        return any(v not in (self.tag, NO_ANSWER) for c in self.served.values() for v in c)

    @property
    def not_answering(self) -> bool:
        return any(NO_ANSWER in counts for counts in self.served.values())

    @property
    def serves_tag(self) -> bool:
        return not (self.other_version or self.not_answering)


@dataclass
class ApproachResult:
    name: str
    deploys: list[DeployRecord]
    load: LoadReport
    load_cut_short: bool


Deployer = Callable[[Inventory, str], Attempt]


# -- output -----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def kit_output(verbose: bool) -> Iterator[io.StringIO]:
    """The kit prints its progress to stdout; keep stdout for the table."""
    captured = io.StringIO()
    with contextlib.redirect_stdout(sys.stderr if verbose else captured):
        yield captured


# -- the two approaches -----------------------------------------------------------------------


def kit_deployer(verbose: bool) -> Deployer:
    def deploy(inventory: Inventory, tag: str) -> Attempt:
        with kit_output(verbose) as captured:
            result = rollout.deploy(inventory, tag)
        if not result.ok and not verbose:
            log(captured.getvalue().rstrip())
        ran = [o for o in result.outcomes if o.outcome in ("deployed", "failed")]
        return Attempt(result.ok, [o.swap_seconds for o in ran], result.message,
                       [{"server": o.name, "outcome": o.outcome, "seconds": o.seconds,
                         "switch_seconds": o.switch_seconds, "serving": o.serving}
                        for o in result.outcomes])
    return deploy


class NaiveDeployer:
    """Runs the naive flow and counts its wrong picks of the live slot. The truth comes from
    the kit's status before the first deploy, then from where each deploy put the new tag
    (the only slot it leaves running); reading it during the run would slow the flow down."""

    def __init__(self, inventory: Inventory):
        # status says "none" or "web1,web2" when there is no single live slot.
        self.live: dict[str, str | None] | None = {
            r.name: r.live if r.live in SLOTS else None for r in status(inventory)}

    def __call__(self, inventory: Inventory, tag: str) -> Attempt:
        try:
            outcomes = naive.deploy(inventory, tag)
        except OPERATION_ERRORS as error:
            self.live = None  # half-done: the truth is unknown from here on
            return Attempt(False, [], str(error))
        mispicks = None
        if self.live is not None:
            mispicks = sum(o.live != self.live.get(o.name) for o in outcomes)
        self.live = {o.name: o.slot for o in outcomes}
        return Attempt(True, [o.seconds for o in outcomes], "",
                       [{"server": o.name, "took_as_live": o.live, "new_slot": o.slot,
                         "seconds": o.seconds} for o in outcomes], mispicks)


# -- what the servers serve -------------------------------------------------------------------


def fetch_version(address: str, port: int) -> str:
    connection = http.client.HTTPConnection(address, port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return NO_ANSWER
    finally:
        connection.close()
    match = VERSION_PATTERN.search(body)
    return match.group(1) if response.status == 200 and match else NO_ANSWER


def timed_fetch(address: str, port: int) -> tuple[str, float]:
    started = time.monotonic()
    version = fetch_version(address, port)
    return version, time.monotonic() - started


def probe_versions(targets: list[str], port: int) -> tuple[dict[str, dict[str, int]], float]:
    """Ask each server several times (round-robin between two live slots shows up); return
    the versions per server and the slowest answer."""
    served, slowest = {}, 0.0
    for target in targets:
        check_target_allowed(target, SANDBOX_NETWORKS)
        answers = [timed_fetch(target, port) for _ in range(PROBES_PER_SERVER)]
        served[target] = dict(Counter(version for version, _ in answers))
        slowest = max(slowest, *(seconds for _, seconds in answers))
    return served, slowest


def describe_served(served: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{target} " + "+".join(sorted(counts)) for target, counts in served.items())


# -- running an approach ----------------------------------------------------------------------


def targets_of(inventory: Inventory) -> list[str]:
    targets = [host.address for host in inventory.hosts]
    for target in targets:
        check_target_allowed(target, SANDBOX_NETWORKS)
    return targets


def load_seconds_bound(inventory: Inventory, rounds: int) -> float:
    """Long enough for every deploy to use all its timeouts; the load is stopped earlier."""
    timeouts = inventory.timeouts
    per_server = timeouts.healthy + timeouts.drain + timeouts.stop + 30
    return 30 + rounds * len(inventory.hosts) * per_server


def measure_deploy(deployer: Deployer, inventory: Inventory, tag: str) -> DeployRecord:
    started = time.monotonic()
    attempt = deployer(inventory, tag)
    seconds = time.monotonic() - started
    served, slowest = probe_versions(targets_of(inventory), inventory.haproxy.http_port)
    return DeployRecord(tag, seconds, attempt, served, slowest)


def log_deploy(name: str, index: int, rounds: int, record: DeployRecord) -> None:
    swaps = "/".join(f"{s:.2f}" for s in record.attempt.server_seconds) or "-"
    state = "ok" if record.attempt.reported_ok else f"FAILED ({record.attempt.message})"
    log(f"[{name}] deploy {index + 1}/{rounds} of {record.tag}: {state} in "
        f"{record.seconds:.2f}s (per server {swaps}s); serving: "
        f"{describe_served(record.served)} (slowest answer {record.slowest_probe * 1000:.0f} ms)")


def run_approach(name: str, deployer: Deployer, inventory: Inventory,
                 rounds: int) -> ApproachResult:
    max_seconds = load_seconds_bound(inventory, rounds)
    load = LoadGeneratorProcess(targets_of(inventory), port=inventory.haproxy.http_port,
                         clients=LOAD_CLIENTS, max_seconds=max_seconds,
                         max_requests=MAX_LOAD_REQUESTS, allowed_networks=SANDBOX_NETWORKS)
    deploys: list[DeployRecord] = []
    started = time.monotonic()
    load.start()
    try:
        for index in range(rounds):
            record = measure_deploy(deployer, inventory, ROUND_TAGS[index % len(ROUND_TAGS)])
            deploys.append(record)
            log_deploy(name, index, rounds, record)
    finally:
        report = load.stop()
    cut_short = (report.sent >= MAX_LOAD_REQUESTS
                 or time.monotonic() - started >= max_seconds)
    return ApproachResult(name, deploys, report, cut_short)


def reset(inventory: Inventory, why: str, verbose: bool) -> None:
    """Every server on BASE_TAG through the kit, checked from outside; not measured."""
    log(f"[setup] kit deploy of {BASE_TAG} ({why}), not measured")
    attempt = kit_deployer(verbose)(inventory, BASE_TAG)
    if not attempt.reported_ok:
        raise BenchError(f"the kit's deploy of {BASE_TAG} failed: {attempt.message}")
    served, _ = probe_versions(targets_of(inventory), inventory.haproxy.http_port)
    if any(set(counts) != {BASE_TAG} for counts in served.values()):
        raise BenchError(f"after the kit's deploy of {BASE_TAG} the servers serve: "
                         f"{describe_served(served)}")


# -- figures ----------------------------------------------------------------------------------


def figures(result: ApproachResult) -> dict[str, object]:
    deploys = result.deploys
    swaps = [s for d in deploys for s in d.attempt.server_seconds]
    totals = [d.seconds for d in deploys]
    not_serving = [d for d in deploys if not d.serves_tag]
    mispicks = [d.attempt.mispicks for d in deploys if d.attempt.mispicks is not None]
    return {
        "load_seconds": result.load.seconds,
        "requests_sent": result.load.sent,
        "requests_failed": result.load.failed,
        "longest_gap_ms": round(result.load.longest_gap * 1000),
        "swap_median_s": statistics.median(swaps) if swaps else None,
        "swap_max_s": max(swaps) if swaps else None,
        "deploy_median_s": statistics.median(totals) if totals else None,
        "deploys": len(deploys),
        "reported_ok": sum(d.attempt.reported_ok for d in deploys),
        "not_serving_tag": len(not_serving),
        "other_version": sum(d.other_version for d in deploys),
        "not_answering": sum(d.not_answering for d in deploys),
        "silent": sum(d.attempt.reported_ok for d in not_serving),
        "slowest_probe_ms": round(max((d.slowest_probe for d in deploys), default=0) * 1000),
        "mispicks": sum(mispicks) if mispicks else None,
        "load_cut_short": result.load_cut_short,
    }


def seconds_cell(value: object) -> str:
    return "-" if value is None else f"{value:.2f}"


def count_cell(value: object) -> str:
    # "-": the approach does not guess (the kit asks Docker whether a slot runs).
    return "-" if value is None else str(value)


def table(results: list[ApproachResult], servers: int) -> str:
    columns = [figures(r) for r in results]

    def row(label: str, cell: Callable[[dict[str, object]], str]) -> list[str]:
        return [label, *(cell(f) for f in columns)]

    rows = [
        row("load ran for (s)", lambda f: seconds_cell(f["load_seconds"])),
        row("requests sent", lambda f: str(f["requests_sent"])),
        row("requests failed", lambda f: str(f["requests_failed"])),
        row("longest stretch with no success (ms)", lambda f: str(f["longest_gap_ms"])),
        row("per-server swap, median (s)", lambda f: seconds_cell(f["swap_median_s"])),
        row("per-server swap, max (s)", lambda f: seconds_cell(f["swap_max_s"])),
        row(f"deploy of {servers} servers, median (s)",
            lambda f: seconds_cell(f["deploy_median_s"])),
        row("deploys reported successful", lambda f: f"{f['reported_ok']}/{f['deploys']}"),
        row("deploys not serving the asked tag",
            lambda f: f"{f['not_serving_tag']}/{f['deploys']}"),
        row("  another version answered", lambda f: str(f["other_version"])),
        row("  a server did not answer", lambda f: str(f["not_answering"])),
        row("  ...while reporting success", lambda f: str(f["silent"])),
        row("slowest answer right after a deploy (ms)", lambda f: str(f["slowest_probe_ms"])),
        row("stopped slot taken for the live one", lambda f: count_cell(f["mispicks"])),
    ]
    return format_table(["figure", *(r.name for r in results)], rows)


def target_lines(kit: dict[str, object]) -> list[str]:
    failed, median = kit["requests_failed"], kit["swap_median_s"]
    failed_ok = failed == TARGET_FAILED
    median_ok = median is not None and median <= TARGET_SWAP_MEDIAN  # type: ignore[operator]
    return [
        f"{'PASS' if failed_ok else 'FAIL'}  kit: {TARGET_FAILED} failed requests "
        f"(got {failed})",
        f"{'PASS' if median_ok else 'FAIL'}  kit: per-server swap median <= "
        f"{TARGET_SWAP_MEDIAN:g} s (got {seconds_cell(median)} s)",
    ]


def json_document(results: list[ApproachResult], args: argparse.Namespace) -> dict[str, object]:
    return {
        "inventory": str(args.inventory),
        "rounds": args.rounds,
        "approaches": {
            r.name: {
                "figures": figures(r),
                "load": {"sent": r.load.sent, "failed": r.load.failed,
                         "seconds": r.load.seconds, "versions": dict(r.load.versions),
                         "first_failures": r.load.failures},
                "deploys": [{"tag": d.tag, "seconds": d.seconds, "served": d.served,
                             "serves_tag": d.serves_tag, "slowest_probe": d.slowest_probe,
                             **asdict(d.attempt)}
                            for d in r.deploys],
            }
            for r in results
        },
    }


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, default=DEFAULT_INVENTORY,
                        help="the sandbox's inventory (default: .sandbox/hosts.yaml)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="deploys per approach, alternating v2 and v1 (default: 3)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the figures and every deploy's details here")
    parser.add_argument("--verbose", action="store_true",
                        help="show the kit's own progress lines (on stderr)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def run(inventory: Inventory, args: argparse.Namespace) -> list[ApproachResult]:
    approaches: list[tuple[str, Callable[[], Deployer]]] = [
        ("kit", lambda: kit_deployer(args.verbose)),
        ("naive", lambda: NaiveDeployer(inventory)),
    ]
    results = []
    try:
        for name, make_deployer in approaches:
            reset(inventory, f"before {name}", args.verbose)
            results.append(run_approach(name, make_deployer(), inventory, args.rounds))
    except BaseException:
        # Leave the sandbox healthy even so, but report the first error, not this one's.
        try:
            reset(inventory, "leaving the sandbox healthy", args.verbose)
        except Exception as error:
            log(f"could not leave the sandbox on {BASE_TAG}: {error}")
        raise
    reset(inventory, "leaving the sandbox healthy", args.verbose)
    return results


def report(results: list[ApproachResult], inventory: Inventory,
           args: argparse.Namespace) -> None:
    print(f"{args.rounds} deploys per approach (alternating {'/'.join(ROUND_TAGS)}) on "
          f"{len(inventory.hosts)} servers, {LOAD_CLIENTS} load clients\n")
    print(table(results, len(inventory.hosts)))
    for result in results:
        if result.load_cut_short:
            print(f"note: {result.name}'s load hit its bound before the deploys ended; its "
                  "request figures cover only part of the run")
    print()
    kit = next(r for r in results if r.name == "kit")
    print("\n".join(target_lines(figures(kit))))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_document(results, args), indent=2) + "\n")
        print(f"\nfigures written to {args.json}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        inventory = load_inventory(args.inventory)
        targets_of(inventory)  # refuse a non-sandbox inventory before anything moves
    except (InputError, ValueError) as error:
        log(f"error: {error}")
        return 2
    try:
        results = run(inventory, args)
    except (BenchError, *OPERATION_ERRORS) as error:
        log(f"error: {error}")
        return 1
    report(results, inventory, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
