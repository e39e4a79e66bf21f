"""Bounds on what an import writes: --max-size across its layers, and a reserve of free space.

A 2 MB gzip layer can unpack to 2 GB, and its diff_id is only known wrong at the end. So the bytes
unpacked are counted as they stream, and the store's file system is asked (statvfs) every few MiB
whether the next few still leave the reserve free: the import stops with a message before the disk
fills, and the failed import's tmp/ directory goes as any other's.
"""

from __future__ import annotations

import os
import re

from runtime.storage.extract import Refused

RESERVE_SHARE = 20  # 1/20: 5% of the file system...
RESERVE_CAP = 1 << 30  # ...or 1 GiB, whichever is smaller
INODE_RESERVE_CAP = 65_536
CHECK_EVERY = 4 << 20  # bytes of tar between statvfs calls
# Small files take a 4 KiB block for 1 KiB of tar: the disk may lose 4x what the tar says between checks.
SLACK = 4 * CHECK_EVERY
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgt]?)i?b?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from 10m, 2g, 512k, 1.5GiB or a plain number: binary units, as Docker's RAMInBytes."""
    found = SIZE.fullmatch(text.strip())
    if not found or not float(found[1]) > 0:
        raise ValueError(f"{text!r} is not a size")
    return int(float(found[1]) * UNITS[found[2].lower()])


def show(size: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} bytes"


class Budget:
    """What one import may still unpack. take() raises (Refused, naming the layer) when it may not."""

    def __init__(self, store_path: str, max_size: int | None) -> None:
        self.path = store_path
        self.max_size = max_size
        fs = os.statvfs(store_path)
        self.reserve = min(fs.f_blocks * fs.f_frsize // RESERVE_SHARE, RESERVE_CAP)
        self.inode_reserve = min(fs.f_files // RESERVE_SHARE, INODE_RESERVE_CAP)
        self.used = 0
        self.unchecked = CHECK_EVERY  # the first bytes are checked: the disk may be full already

    def take(self, size: int, layer: str) -> None:
        self.used += size
        if self.max_size is not None and self.used > self.max_size:
            raise Refused(
                layer,
                f"the image unpacks to more than --max-size {show(self.max_size)}",
                "give a larger --max-size if the image is meant to be this large",
            )
        self.unchecked += size
        if self.unchecked >= CHECK_EVERY:
            self.unchecked = 0
            problem = self._space_problem()
            if problem:
                raise Refused(layer, problem, self._hint())

    def _space_problem(self) -> str | None:
        fs = os.statvfs(self.path)
        free = fs.f_bavail * fs.f_frsize
        if free < self.reserve + SLACK:
            return (
                f"the store's file system ({self.path}) is down to {show(free)} free, and an import keeps "
                f"{show(self.reserve)} free (5% of the file system or 1 GiB, whichever is smaller)"
            )
        if fs.f_files and fs.f_favail < self.inode_reserve + CHECK_EVERY // 512:
            return (
                f"the store's file system ({self.path}) is down to {fs.f_favail} free inodes, and an import "
                f"keeps {self.inode_reserve} free (5% of them or {INODE_RESERVE_CAP}, whichever is smaller)"
            )
        return None

    def _hint(self) -> str:
        return "free some space there, or point $RUNTIME_STORE at a larger file system"
