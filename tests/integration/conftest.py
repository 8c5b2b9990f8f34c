"""The integration suite runs the real `fab` against the project's sandbox: real sshd, dockerd,
HAProxy and registry, in network namespaces on this machine. Needs root."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from testbed import sandbox
from testbed.loadgen import LoadGenerator

ROOT = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).with_name("fab"))
SERVERS = 3
TAGS = ("v1", "v2", "bad1", "flaky1", "crash1", "broken1", "hangup1")
# Progress lines of one swap, in order: the fault tests interrupt a deploy right after each.
SWAP_STEPS = (
    "live slot",
    "started webapp-web",
    "waiting for HAProxy's health checks",
    "passed HAProxy's health checks",
    "is taking traffic",
    "drained in",
    "watched web",
    "done in",
)

# Every login's ~/.bashrc (one HOME for all servers), and what a chatty server prints for every
# SSH command before the command's own output: its last line, without a newline, ends like
# HAProxy's prompt (`\n> `), so that it would pass for an answer of HAProxy's. The German
# messages (mkdir's "Die Datei existiert bereits") must not change any outcome.
LOGIN_BASHRC = sandbox.LOGIN_HOME / ".bashrc"
BANNER_BASHRC = """\
echo "Welcome to $(hostname)! Last backup: never."
echo "[ {not json" >&2
printf 'no newline at the end\\n> '
export LANGUAGE=de LANG=C.UTF-8
"""


@contextlib.contextmanager
def chatty_logins(on: bool = True) -> Iterator[None]:
    """Every login's ~/.bashrc prints (on) or is absent, until the end of the block."""
    if on:
        LOGIN_BASHRC.write_text(BANNER_BASHRC)
    try:
        yield
    finally:
        LOGIN_BASHRC.unlink(missing_ok=True)


def sandbox_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, dockerd)"
    missing = [p for p in sandbox.REQUIRED_PROGRAMS if shutil.which(p) is None]
    return (f"missing programs: {', '.join(missing)} (scripts/bootstrap.sh installs them)"
            if missing else None)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = sandbox_unavailable()
    if reason is None:
        return
    if os.environ.get("SLOTSWAP_REQUIRE_SANDBOX"):
        raise pytest.UsageError(f"the sandbox is required here but {reason}")
    for item in items:
        if "sandbox" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True)
class Sandbox:
    inventory: Path
    addresses: list[str]
    env: dict[str, str]

    def fab(self, *args: str, inventory: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        argv = [FAB, *args]
        if args and args[0] in ("build", "up", "deploy", "rollback", "status", "history",
                                "lock", "unlock", "down", "logs", "check", "certs",
                                "certs.renew", "exec", "maintenance.on", "maintenance.off"):
            argv += ["--inventory", str(inventory or self.inventory)]
        result = subprocess.run(argv, cwd=ROOT, env=self.env, text=True, capture_output=True,
                                timeout=timeout, check=False)
        # Shown by pytest when a test fails: what the operator would have seen.
        print(f"$ fab {' '.join(args)}  -> exit {result.returncode}\n{result.stdout}"
              f"{result.stderr}")
        return result

    def build_tags(self) -> None:
        """Every tag the tests deploy, built and pushed to the sandbox's registry."""
        for tag in TAGS:
            result = self.fab("build", "--tag", tag)
            assert result.returncode == 0, result.stderr

    def inventory_copy(self, folder: Path, **changes: object) -> Path:
        """The sandbox's inventory with some top-level keys changed (a mapping is merged into
        the section it names), written into folder, its relative paths made absolute."""
        data = yaml.safe_load(self.inventory.read_text())
        here = self.inventory.parent
        data["ssh"]["identity"] = str(here / data["ssh"]["identity"])
        data["ssh"]["known_hosts"] = str(here / data["ssh"]["known_hosts"])
        data["build"] = {k: str((here / v).resolve()) for k, v in data["build"].items()}
        for key, value in changes.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key].update(value)
            else:
                data[key] = value
        path = folder / "hosts.yaml"
        path.write_text(yaml.safe_dump(data))
        return path

    def ssh(self, address: str, command: str) -> str:
        key, known = self.inventory.parent / "id_ed25519", self.inventory.parent / "known_hosts"
        result = subprocess.run(
            ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known}",
             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{address}",
             command], text=True, capture_output=True, timeout=60, check=True)
        return result.stdout

    def load(self, addresses: list[str] | None = None) -> LoadGenerator:
        """Steady load: 4 clients, a new connection per request, spread over the servers,
        bounded in time and count."""
        return LoadGenerator(addresses or self.addresses, clients=4, max_seconds=240,
                             max_requests=400_000)

    def live_versions(self) -> dict[str, str]:
        """Per server, what `fab status` says it serves; exactly one live slot is required."""
        result = self.fab("status")
        assert result.returncode == 0, result.stdout + result.stderr
        found = dict(re.findall(r"^(\S+) \(\S+\): live web[12], serving (\S+)$",
                                result.stdout, re.MULTILINE))
        assert len(found) == len(self.addresses), result.stdout
        return found

    def containers(self, address: str) -> str:
        """Every container of the server with its id, state and start time: equal only if
        nothing was started, stopped or replaced in between."""
        return self.ssh(address, "docker inspect --format "
                        "'{{.Name}} {{.Id}} {{.State.Status}} {{.State.StartedAt}}' "
                        "$(docker ps -aq) | sort")

    def served_versions(self, address: str, requests: int = 6) -> set[str]:
        versions = set()
        for _ in range(requests):
            with urllib.request.urlopen(f"http://{address}/", timeout=5) as response:
                body = response.read().decode()
            match = re.search(r"version=(\S+)", body)
            versions.add(match.group(1) if match else body)
        return versions


@pytest.fixture(scope="session")
def sandbox_env() -> Iterator[Sandbox]:
    inventory = sandbox.create(SERVERS)
    env = {**os.environ, "DOCKER_HOST": sandbox.BUILDER_NODE.docker_host}
    box = Sandbox(inventory, [n.ip for n in sandbox.server_nodes(SERVERS)], env)
    try:
        box.build_tags()
        yield box
    finally:
        if not os.environ.get("SLOTSWAP_KEEP_SANDBOX"):
            sandbox.destroy()


@pytest.fixture(scope="module")
def fleet_on_v1(sandbox_env: Sandbox) -> Sandbox:
    """Each module that asks starts from HAProxy up and v1 served everywhere, from a fresh
    swap (--force: also where v1 serves already, as an earlier module may have left a
    server with its old slot still running)."""
    assert sandbox_env.fab("up").returncode == 0
    assert sandbox_env.fab("deploy", "--tag", "v1", "--force").returncode == 0
    return sandbox_env


# What a client may send to pass itself off as someone else, or its request as HTTPS: every
# header the example app's /headers shows.
FORGED_HEADERS = {
    "Forwarded": "for=1.2.3.4;proto=https;host=evil.example",
    "X-Forwarded-For": "1.2.3.4",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Port": "1234",
    "X-Forwarded-Proto": "https",
    "X-Real-IP": "1.2.3.4",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Scheme": "https",
    "X-Forwarded-Prefix": "/evil",
    "Client-IP": "1.2.3.4",
    "X-Client-IP": "1.2.3.4",
    "True-Client-IP": "1.2.3.4",
    "X-Cluster-Client-IP": "1.2.3.4",
}


def seen_headers(body: str) -> dict[str, str]:
    """The example app's /headers answer: each header as the app got it ("" when absent)."""
    return {name: value.strip() for name, _, value in
            (line.partition(":") for line in body.splitlines())}


def forwarded_by_haproxy(client: str, proto: str, host: str, port: int) -> dict[str, str]:
    """What the app must see when HAProxy alone says who the client is (nothing else)."""
    return {**{name: "" for name in FORGED_HEADERS},
            "Forwarded": f"for={client};proto={proto}", "X-Forwarded-For": client,
            "X-Forwarded-Host": host, "X-Forwarded-Port": str(port),
            "X-Forwarded-Proto": proto, "X-Real-IP": client}


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


class BackgroundDeploy:
    """`fab deploy` in the background, its output read line by line, so that a test can act
    on the sandbox right after a server prints a given progress line."""

    def __init__(self, box: Sandbox, tag: str, inventory: Path | None = None,
                 *flags: str) -> None:
        self.process = subprocess.Popen(
            [FAB, "deploy", "--tag", tag, "--inventory", str(inventory or box.inventory),
             *flags], cwd=ROOT, env=box.env, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.lines: list[str] = []

    def until(self, server: str, pattern: str, timeout: float = 120) -> re.Match[str] | None:
        """Read its output until a line of `server` matches `pattern` (a regular expression);
        None if the deploy ended first."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(pattern, line) if line.startswith(f"[{server}") else None
            if match:
                return match
            assert time.monotonic() < deadline, "".join(self.lines)
        return None

    def finish(self, timeout: float) -> tuple[int, str]:
        """Its exit code and whole output (printed); fails if it runs longer than `timeout`."""
        assert self.process.stdout is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            self.lines.extend(self.process.stdout)
            raise AssertionError(f"still running after {timeout}s:\n"
                                 + "".join(self.lines)) from None
        self.lines.extend(self.process.stdout)
        output = "".join(self.lines)
        print(output)
        return self.process.returncode, output

    def interrupt(self) -> None:
        self.process.send_signal(signal.SIGINT)
