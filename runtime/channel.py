"""Messages from the container's setup processes to the runtime: one line each, "kind text"."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from collections.abc import Iterator


def send(fd: int, kind: str, text: str = "") -> None:
    line = f"{kind} {text}".replace("\n", " ").strip() + "\n"
    os.write(fd, line.encode())


def receive(fd: int) -> Iterator[tuple[str, str]]:
    """Yield (kind, text) until every writer has closed its end."""
    pending = b""
    while chunk := os.read(fd, 4096):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            kind, _, text = line.decode(errors="replace").partition(" ")
            yield kind, text


def wait_for(fd: int, expected: bytes) -> None:
    """Block until the runtime says go; an early EOF means it gave up."""
    if os.read(fd, 1) != expected:
        os._exit(125)
