"""Step 3 of the guest rootfs, and the modules image: an ext4 image packed from a tree, no loop mount.

`mkfs.ext4 -d` copies the tree into a new file system of the tree's size times SIZE_FACTOR plus
SIZE_SLACK_MIB, and e2fsck must find it clean.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from compat.images.debootstrap import LC_C, MIB
from compat.images.recipe import RootfsError
from compat.proc import run, tail

log = logging.getLogger(__name__)

SIZE_FACTOR = 1.4
SIZE_SLACK_MIB = 64
# 4 KiB blocks whatever the size: below 512 MiB mke2fs would otherwise pick its "small" type (1 KiB blocks).
MKFS_OPTIONS = ("-b", "4096", "-E", "root_owner=0:0")


def image_size_mib(tree_size: int) -> int:
    """The ext4 image's size for a tree of tree_size bytes: times 1.4, plus 64 MiB, rounded up to MiB."""
    return math.ceil(tree_size * SIZE_FACTOR / MIB) + SIZE_SLACK_MIB


def mkfs_argv(tree: Path, image: Path, label: str, size_mib: int) -> list[str]:
    return ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), *MKFS_OPTIONS, str(image), f"{size_mib}M"]


def pack(tree: Path, image: Path, label: str, size_mib: int) -> None:
    log.info("making %s (%d MiB, label %s)", image.name, size_mib, label)
    run(mkfs_argv(tree, image, label, size_mib), capture=True)  # it says "Creating regular file" even with -q
    check = run(["e2fsck", "-fn", image], check=False, capture=True, env=LC_C)
    if check.returncode != 0:
        raise RootfsError(
            f"e2fsck finds errors in the new image {image} (exit {check.returncode}): "
            f"{tail(check.stdout + check.stderr)}",
            "check e2fsprogs (mkfs.ext4 -d)",
        )
