"""testbed.sandbox.parse_ldd, on `ldd /usr/sbin/haproxy` recorded from Debian's HAProxy 2.6.12."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.sandbox import parse_ldd
from tests.unit.fake_server import FIXTURES

LIB = "/lib/x86_64-linux-gnu"
HAPROXY_LIBRARIES = [
    Path(f"{LIB}/{name}") for name in (
        "libcrypt.so.1", "libssl.so.3", "libcrypto.so.3", "liblua5.3.so.0", "libsystemd.so.0",
        "libpcre2-8.so.0", "libopentracing-c-wrapper.so.0", "libc.so.6", "libm.so.6",
        "libcap.so.2", "libgcrypt.so.20", "liblzma.so.5", "libzstd.so.1", "liblz4.so.1",
    )
] + [Path("/lib64/ld-linux-x86-64.so.2")] + [
    Path(f"{LIB}/{name}") for name in (
        "libopentracing.so.1", "libstdc++.so.6", "libgcc_s.so.1", "libgpg-error.so.0",
    )
]


def test_parse_ldd_recorded_haproxy() -> None:
    text = (FIXTURES / "ldd_haproxy_2.6.12.txt").read_text(encoding="utf-8")
    libraries = parse_ldd(text)
    assert libraries == HAPROXY_LIBRARIES  # in ldd's order, the loader included
    assert Path("linux-vdso.so.1") not in libraries  # the kernel's: no file to copy
    assert all(path.is_absolute() for path in libraries)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("", []),
        ("\tstatically linked\n", []),
        ("\tnot a dynamic executable\n", []),
        ("\tlinux-vdso.so.1 (0x00007ffd5a1f2000)\n", []),
        ("\tlinux-gate.so.1 =>  (0xb7f8c000)\n", []),  # older ldd: arrow, no path
        ("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f916861e000)\n",
         [Path("/lib/x86_64-linux-gnu/libc.so.6")]),
        ("\t/lib64/ld-linux-x86-64.so.2 (0x00007f91693a6000)\n",
         [Path("/lib64/ld-linux-x86-64.so.2")]),
        ("\t/lib/ld-musl-x86_64.so.1 (0x7f2c5a9b0000)\n"
         "\tlibc.musl-x86_64.so.1 => /lib/ld-musl-x86_64.so.1 (0x7f2c5a9b0000)\n",
         [Path("/lib/ld-musl-x86_64.so.1"), Path("/lib/ld-musl-x86_64.so.1")]),
        # A missing library is skipped, not reported: the image build then lacks it.
        ("\tliblua5.3.so.0 => not found\n", []),
    ],
    ids=["empty", "static", "not-dynamic", "vdso", "vdso-old-style", "library", "loader",
         "musl", "not-found"],
)
def test_parse_ldd_lines(output: str, expected: list[Path]) -> None:
    assert parse_ldd(output) == expected
