"""testbed.lan_probe: the SYN it sends is one a Linux server takes (checksums right), and only
a SYN-ACK to its own port counts as an answer."""

from __future__ import annotations

import socket
import struct

from testbed.lan_probe import checksum, is_syn_ack_to, syn_packet


def test_the_syn_for_the_loopback_has_valid_checksums() -> None:
    packet = syn_packet("10.77.6.2", 18081, 45000)
    header, tcp = packet[:20], packet[20:]
    assert checksum(header) == 0
    assert header[12:16] == socket.inet_aton("10.77.6.2")
    assert header[16:20] == socket.inet_aton("127.0.0.1")
    pseudo = header[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    assert checksum(pseudo + tcp) == 0
    assert struct.unpack("!HH", tcp[:4]) == (45000, 18081) and tcp[13] == 0x02  # SYN


def reply(flags: int, to_port: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", 18081, to_port, 7, 2, 5 << 4, flags, 1000, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, socket.IPPROTO_TCP, 0,
                     socket.inet_aton("127.0.0.1"), socket.inet_aton("10.77.6.2"))
    return ip + tcp


def test_only_a_syn_ack_to_the_probes_port_is_an_answer() -> None:
    assert is_syn_ack_to(reply(0x12, 45000), 45000)
    assert not is_syn_ack_to(reply(0x12, 45001), 45000)
    assert not is_syn_ack_to(reply(0x14, 45000), 45000)  # RST-ACK: refused
    assert not is_syn_ack_to(b"\x45" + b"\0" * 8 + b"\x11" + b"\0" * 10, 45000)  # UDP
    assert not is_syn_ack_to(b"", 45000)
