"""Everything a VM needs, built or taken from the cache: `nox -s images`, `python3 -m compat.images`.

For each kernel: the kernel tree (kernels.py), its initramfs (initramfs.py) and a disk with its
modules, for modprobe in the guest. Once: the guest root filesystem (rootfs.py). A second run finds
every key in the cache and builds nothing.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compat.errors import CompatError
from compat.images import debootstrap, ext4, initramfs, kernel_catalogue, kernel_tree, kernels, rootfs
from compat.images.cache import Cache, file_digest, key
from compat.proc import run

log = logging.getLogger(__name__)
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static: the initramfs has no libc


class BuildError(CompatError):
    """The host lacks what building the VM images needs."""


@dataclass(frozen=True)
class KernelSet:
    """One kernel, ready to boot with the shared root disk."""

    kernel: kernel_tree.KernelTree
    initrd: Path
    modules_image: Path


@dataclass(frozen=True)
class Images:
    rootfs: rootfs.RootfsImage
    kernels: dict[str, KernelSet]
    built: tuple[str, ...]
    reused: tuple[str, ...]


class Tally:
    def __init__(self) -> None:
        self.built: list[str] = []
        self.reused: list[str] = []

    def note(self, name: str, hit: bool) -> None:
        (self.reused if hit else self.built).append(name)


def initrd_for(tree: kernel_tree.KernelTree, cache: Cache, tally: Tally, rebuild: bool) -> Path:
    inputs = key(
        "initramfs", tree.release, file_digest(tree.modules_dep), file_digest(initramfs.INIT),
        file_digest(BUSYBOX), initramfs.WANTED, file_digest(Path(initramfs.__file__)),
    )  # fmt: skip
    with cache.build(f"initramfs-{tree.id or tree.release}", inputs, rebuild) as slot:
        if not slot.hit:
            (slot.work / "initrd.img").write_bytes(initramfs.build(tree.modules, BUSYBOX))
    tally.note(f"initramfs {tree.release}", slot.hit)
    return slot.path / "initrd.img"


def modules_image_for(tree: kernel_tree.KernelTree, cache: Cache, tally: Tally, rebuild: bool) -> Path:
    """The kernel's lib/modules/<release> on an ext4 disk (no loop mount: mkfs.ext4 -d), indexed by
    kmod's depmod: the guest's modprobe reads modules.dep.bin, which Debian's packages leave to postinst."""
    inputs = key("modules-image", 3, tree.release, file_digest(tree.modules_dep), str(tree.root))
    with cache.build(f"modules-{tree.id or tree.release}", inputs, rebuild) as slot:
        if not slot.hit:
            staged = slot.work / "root" / "lib" / "modules"
            staged.mkdir(parents=True)
            shutil.copytree(tree.modules, staged / tree.release, symlinks=True)
            kernel_tree.depmod(slot.work / "root", tree.release)
            size_mib = ext4.image_size_mib(debootstrap.tree_bytes(staged))
            run(ext4.mkfs_argv(staged, slot.work / "modules.ext4", "kcompat-mods", size_mib), capture=True)
            shutil.rmtree(slot.work / "root")
    tally.note(f"modules disk {tree.release}", slot.hit)
    return slot.path / "modules.ext4"


def check_tools() -> None:
    tools = ("debootstrap", "mkfs.ext4", "e2fsck", "ssh-keygen", "dpkg-deb", "depmod")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        packages = "debootstrap e2fsprogs openssh-client dpkg kmod"
        raise BuildError(f"missing tools: {', '.join(missing)}", f"apt-get install {packages}")
    if not BUSYBOX.exists():
        raise BuildError(f"{BUSYBOX} is missing", "apt-get install busybox-static")


def build_all(kernel_specs: Sequence[str], cache: Cache | None = None, rebuild: bool = False) -> Images:
    check_tools()
    cache = cache or Cache()
    tally = Tally()
    image = rootfs.build_rootfs(cache, rebuild)
    tally.note("root filesystem", not image.built)
    sets: dict[str, KernelSet] = {}
    for spec in kernel_specs:
        tree = kernels.resolve(spec, cache, rebuild=rebuild)
        sets[spec] = KernelSet(
            tree, initrd_for(tree, cache, tally, rebuild), modules_image_for(tree, cache, tally, rebuild)
        )
    return Images(image, sets, tuple(tally.built), tuple(tally.reused))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m compat.images", description=__doc__)
    parser.add_argument(
        "--kernels",
        help="ids, .deb files or directories, comma-separated (default: every kernel of vm-images/kernels.json)",
    )
    parser.add_argument("--rebuild", action="store_true", help="build again even what the cache has")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr
    )
    started = time.monotonic()
    try:
        given = args.kernels.split(",") if args.kernels is not None else kernel_catalogue.load_catalogue().ids
        specs = [spec for spec in given if spec]
        images = build_all(specs, rebuild=args.rebuild)
    except (CompatError, kernel_catalogue.KernelError) as exc:
        print(f"images: error: {exc}", file=sys.stderr)
        return 1
    for spec, kernel_set in images.kernels.items():
        print(f"{spec:>6}  {kernel_set.kernel.release:<32} {kernel_set.initrd.parent.name}")
    print(f"root filesystem: {images.rootfs.image}")
    took = time.monotonic() - started
    print(f"images: built {len(images.built)}, reused {len(images.reused)} in {took:.1f} s"
          + (f" (built: {', '.join(images.built)})" if images.built else ""))  # fmt: skip
    return 0
