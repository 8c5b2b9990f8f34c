"""Which platform `build` builds for: build.platform, else what `up` recorded for the
servers, else this machine's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotswap.config.loader import load_inventory
from slotswap.server import platforms


@pytest.fixture
def inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "hosts.yaml").write_text("app: webapp\nimage: r.example/webapp\n"
                                         "hosts: [192.0.2.1, 192.0.2.2]\n")
    return load_inventory(tmp_path / "hosts.yaml")


def test_nothing_recorded_builds_for_this_machine(inventory) -> None:
    assert platforms.for_build(inventory)[0] is None


def test_what_up_saw_is_kept_when_the_servers_agree(inventory) -> None:
    assert platforms.record(inventory, {"s1": "linux/arm64", "s2": "linux/arm64"}) == \
        "linux/arm64"
    assert platforms.for_build(inventory) == ("linux/arm64",
                                              "the servers' platform, as `up` found it")


def test_servers_that_differ_record_nothing(inventory) -> None:
    assert platforms.record(inventory, {"s1": "linux/arm64", "s2": "linux/amd64"}) is None
    assert platforms.recorded(inventory) is None


def test_the_inventory_wins(inventory, tmp_path: Path) -> None:
    platforms.record(inventory, {"s1": "linux/arm64"})
    (tmp_path / "hosts.yaml").write_text("app: webapp\nimage: r.example/webapp\n"
                                         "build: {platform: linux/amd64}\nhosts: [192.0.2.1]\n")
    assert platforms.for_build(load_inventory(tmp_path / "hosts.yaml"))[0] == "linux/amd64"


@pytest.mark.parametrize("output", [
    # the classic builder (Docker 20.10), a base image of another platform only
    "Error response from daemon: image with reference r.example/base:1 was found but does not "
    "match the specified platform: wanted linux/s390x, actual: linux/amd64",
    "no matching manifest for linux/s390x in the manifest list entries",
    # BuildKit, no base image for the platform; a RUN step without emulation
    "ERROR: failed to solve: r.example/base:1: no match for platform in manifest sha256:ab: "
    "not found",
    "#5 0.101 exec /bin/sh: exec format error",
    '"--platform" is only supported on a Docker daemon with experimental features enabled',
])
def test_a_build_that_cannot_target_the_platform_says_so_in_one_line(output: str) -> None:
    line = platforms.build_failure(f"Step 1/3 : FROM r.example/base:1\n{output}\n",
                                   "linux/s390x", "r.example/webapp:v1")
    assert "\n" not in line
    assert line.startswith("this machine's Docker cannot build r.example/webapp:v1 for "
                           "linux/s390x (")
    assert "docker buildx" in line and "set build.platform" in line


def test_any_other_build_failure_points_at_its_output() -> None:
    output = "COPY failed: file not found in build context: app/webapp"
    assert platforms.build_failure(output, "linux/amd64", "r/w:v1") == \
        "docker build of r/w:v1 failed (its output is above)"
    assert platforms.build_failure("exec format error", None, "r/w:v1") == \
        "docker build of r/w:v1 failed (its output is above)"


def test_an_image_built_for_another_platform_is_refused_in_one_line() -> None:
    line = platforms.built_for_another("linux/amd64\n", "linux/s390x")
    assert line is not None and "\n" not in line
    assert line.startswith("this machine's Docker built an image for linux/amd64, not "
                           "linux/s390x")
    assert platforms.built_for_another("linux/arm64", "linux/arm64") is None
    assert platforms.built_for_another("linux/arm", "linux/arm/v7") is None
    assert platforms.built_for_another("", "linux/arm64") is None  # cannot tell
