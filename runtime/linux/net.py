"""Bring a network interface up without ip(8): one ioctl."""

from __future__ import annotations

import fcntl
import socket
import struct

from runtime.linux import constants as c


def set_up(interface: str = "lo") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", interface.encode(), 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, c.SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, c.SIOCSIFFLAGS, struct.pack("16sH14x", interface.encode(), flags | c.IFF_UP))
