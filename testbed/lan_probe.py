"""What a host on a server's local network can send that a normal client cannot: a TCP SYN
for 127.0.0.1:PORT addressed to the server's MAC address (moby/moby#45610). Run inside the
neighbour's network namespace:

    python -m testbed.lan_probe IFACE SOURCE_IP SERVER_MAC PORT

Exit 0 when a SYN-ACK comes back within 3 s (the server let it through to a container), 1
when none does. Needs root (a raw packet socket)."""

from __future__ import annotations

import random
import socket
import struct
import sys
import time

LOOPBACK = "127.0.0.1"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn_packet(source: str, port: int, source_port: int) -> bytes:
    """Pure: an IPv4 packet carrying a TCP SYN from source:source_port to 127.0.0.1:port."""
    src, dst = socket.inet_aton(source), socket.inet_aton(LOOPBACK)
    tcp = struct.pack("!HHIIBBHHH", source_port, port, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0, 64, socket.IPPROTO_TCP,
                     0, src, dst)
    return ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:] + tcp


def is_syn_ack_to(packet: bytes, source_port: int) -> bool:
    """Pure: an IPv4 packet is a TCP SYN-ACK to source_port."""
    if len(packet) < 20 or packet[9] != socket.IPPROTO_TCP:
        return False
    segment = packet[(packet[0] & 0xF) * 4:]
    return (len(segment) >= 14 and struct.unpack("!H", segment[2:4])[0] == source_port
            and segment[13] & 0x12 == 0x12)


def syn_gets_answer(iface: str, source: str, server_mac: bytes, port: int,
                    seconds: float = 3.0) -> bool:
    ipv4 = 0x0800
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ipv4)) as raw:
        raw.bind((iface, 0))
        source_port = random.randint(40000, 60000)
        own_mac = raw.getsockname()[4]
        raw.send(server_mac + own_mac + struct.pack("!H", ipv4)
                 + syn_packet(source, port, source_port))
        raw.settimeout(0.5)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                frame = raw.recv(2048)
            except TimeoutError:
                continue
            if is_syn_ack_to(frame[14:], source_port):
                return True
    return False


def main(argv: list[str]) -> int:
    iface, source, mac, port = argv
    return 0 if syn_gets_answer(iface, source, bytes.fromhex(mac.replace(":", "")),
                                int(port)) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
