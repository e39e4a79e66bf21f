"""Bring a network interface up without ip(8): one ioctl. _socket, not socket: the latter imports
enum and selectors (6 ms) on `runtime run`'s start path."""

from __future__ import annotations

import _socket
import fcntl
import struct

from runtime.linux import constants as c

IFREQ = "16sH14x"


def set_up(interface: str = "lo") -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        name = interface.encode()
        flags = struct.unpack(IFREQ, fcntl.ioctl(sock.fileno(), c.SIOCGIFFLAGS, struct.pack(IFREQ, name, 0)))[
            1
        ]
        fcntl.ioctl(sock.fileno(), c.SIOCSIFFLAGS, struct.pack(IFREQ, name, flags | c.IFF_UP))
    finally:
        sock.close()
