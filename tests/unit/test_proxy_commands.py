"""The shared HAProxy's Docker command lines (several apps on one server, build step 6's
first part): its container, and the check of a generation that needs no `current` yet."""

from __future__ import annotations

import pytest

from slotswap.commands.proxy_commands import bind_mount, check_generation, run_shared_proxy

INSIDE = "/usr/local/etc/haproxy"
FOLDER = "/etc/slotswap/_proxy/haproxy"


def test_the_shared_container_belongs_to_no_app_and_loads_the_current_generation() -> None:
    argv = run_shared_proxy(image_ref="haproxy:2.8", haproxy_dir=FOLDER,
                            admin_dir=f"{FOLDER}/admin", instance="ab12")
    assert argv[:6] == ["docker", "run", "--detach", "--name", "slotswap-proxy", "--network"]
    labels = [argv[i + 1] for i, word in enumerate(argv) if word == "--label"]
    assert labels == ["slotswap.role=haproxy", "slotswap.shared=1"]
    assert not any(label.startswith("slotswap.app=") for label in labels)
    assert f"type=bind,source={FOLDER},target={INSIDE},readonly" in argv
    assert f"type=bind,source={FOLDER}/admin,target=/run/slotswap-admin" in argv
    assert "SLOTSWAP_HAPROXY_INSTANCE=ab12" in argv
    assert argv[-5:] == ["haproxy:2.8", "-f", f"{INSIDE}/current/haproxy.cfg",
                         "-f", f"{INSIDE}/current/backends"]


def test_a_generation_is_checked_at_current_with_what_it_refers_to_each_mounted_alone() -> None:
    argv = check_generation(image_ref="haproxy:2.8", haproxy_dir=FOLDER,
                            generation="gen-0123456789ab")
    mounts = [argv[i + 1] for i, word in enumerate(argv) if word == "--mount"]
    assert mounts == [
        f"type=bind,source={FOLDER}/gen-0123456789ab,target={INSIDE}/current,readonly",
        f"type=bind,source={FOLDER}/apps,target={INSIDE}/apps,readonly",
        f"type=bind,source={FOLDER}/maintenance.lua,target={INSIDE}/maintenance.lua,readonly",
        f"type=bind,source={FOLDER}/fallback.pem,target={INSIDE}/fallback.pem,readonly"]
    # Not the whole folder: with no `current` yet, runc cannot make that mount point in a
    # read-only mount of it.
    assert f"source={FOLDER},target={INSIDE}" not in " ".join(mounts)
    assert argv[argv.index("haproxy:2.8"):] == [
        "haproxy:2.8", "-c", "-f", f"{INSIDE}/current/haproxy.cfg",
        "-f", f"{INSIDE}/current/backends"]
    assert argv[3:5] == ["--network", "none"] and "--rm" in argv


@pytest.mark.parametrize("path", ["relative/x", "/a,b", '/a"b', "/a'b", "/a\nb"])
def test_a_path_a_bind_mount_would_misread_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="not a path a bind mount can name"):
        bind_mount(path, INSIDE)
