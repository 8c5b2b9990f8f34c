"""testbed.loadgen.check_target_allowed: load only ever goes to loopback or the sandbox.

Nothing here starts a load generator or opens a connection.
"""

from __future__ import annotations

import re

import pytest

from testbed.loadgen import LoadGenerator, check_target_allowed

SANDBOX = ("10.77.0.0/24",)


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "10.77.0.1", "10.77.0.11",
     "10.77.0.13", "10.77.0.0", "10.77.0.255"],
)
def test_allowed(address: str) -> None:
    check_target_allowed(address, SANDBOX)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "192.168.1.1", "10.77.1.1", "10.78.0.11", "10.0.0.1", "0.0.0.0",
     "203.0.113.10", "2001:4860:4860::8888", "::ffff:8.8.8.8"],
)
def test_refused(address: str) -> None:
    expected = f"refusing to send load to {address}: only loopback and 10.77.0.0/24 are allowed"
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_target_allowed(address, SANDBOX)


@pytest.mark.parametrize("address", ["localhost", "10.77.0.300", "", "10.77.0.11:80"])
def test_not_an_address(address: str) -> None:
    with pytest.raises(ValueError):
        check_target_allowed(address, SANDBOX)


def test_other_allowed_networks() -> None:
    check_target_allowed("192.168.1.1", ("10.77.0.0/24", "192.168.1.0/30"))
    with pytest.raises(ValueError, match=re.escape("10.77.0.0/24, 192.168.1.0/30 are allowed")):
        check_target_allowed("192.168.1.4", ("10.77.0.0/24", "192.168.1.0/30"))


def test_no_allowed_networks_leaves_loopback() -> None:
    check_target_allowed("127.0.0.1", ())
    with pytest.raises(ValueError):
        check_target_allowed("10.77.0.11", ())


@pytest.mark.parametrize("targets", [["8.8.8.8"], ["10.77.0.11", "192.168.1.1"]])
def test_load_generator_refuses_before_it_starts(targets: list[str]) -> None:
    # Refused in the constructor: no thread, no connection.
    with pytest.raises(ValueError, match="refusing to send load"):
        LoadGenerator(targets)
