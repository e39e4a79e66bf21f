"""A per-kernel initramfs: busybox, the modules that reach the root disk, and /init.

The module set is derived from the kernel's own modules.dep and modules.builtin, not hard-coded:
5.10 needs virtio, virtio_ring, virtio_pci and virtio_blk as modules, 6.1 adds virtio_pci's two
helpers, 6.12+ builds virtio in and needs only virtio_blk. virtio-rng comes too: without it the first
boot waits a second or more for entropy. Modules are stored uncompressed, for busybox's insmod.
"""

from __future__ import annotations

import gzip
import io
import lzma
import stat
from dataclasses import dataclass
from pathlib import Path

from compat.errors import CompatError
from compat.paths import VM_IMAGES

# What the guest needs before its root disk is mounted; dependencies come from modules.dep.
WANTED = ("virtio_pci", "virtio_blk", "virtio_rng", "virtio_net")
INIT = VM_IMAGES / "init" / "initramfs-init"


class ModuleError(CompatError):
    """A kernel whose modules cannot make the initramfs."""


def module_name(path: str) -> str:
    """kernel/drivers/char/hw_random/virtio-rng.ko.xz -> virtio_rng"""
    base = path.rsplit("/", 1)[-1]
    for suffix in (".xz", ".zst", ".gz"):
        base = base.removesuffix(suffix)
    return base.removesuffix(".ko").replace("-", "_")


@dataclass(frozen=True)
class ModuleTable:
    paths: dict[str, str]  # name -> path relative to lib/modules/<release>
    deps: dict[str, list[str]]  # name -> names it needs
    builtin: frozenset[str]

    @classmethod
    def parse(cls, modules_dep: str, modules_builtin: str) -> ModuleTable:
        paths: dict[str, str] = {}
        deps: dict[str, list[str]] = {}
        for line in modules_dep.splitlines():
            path, sep, needed = line.partition(":")
            if not sep:
                continue
            name = module_name(path)
            paths[name] = path.strip()
            deps[name] = [module_name(dep) for dep in needed.split()]
        builtin = frozenset(module_name(line) for line in modules_builtin.split() if line)
        return cls(paths, deps, builtin)

    def load_order(self, wanted: tuple[str, ...] = WANTED) -> list[str]:
        """The modules to insmod, dependencies first; built-in ones are left out."""
        order: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in self.builtin or name in order:
                return
            if name not in self.paths:
                raise ModuleError(
                    f"{name} is neither a module nor built in (needed by {' -> '.join(chain) or 'the initramfs'})",
                    "use a kernel built with the virtio drivers, as module or built in",
                )
            if name in chain:
                raise ModuleError(
                    f"a dependency loop in modules.dep: {' -> '.join((*chain, name))}",
                    "rebuild the kernel tree's modules.dep (python3 -m compat.images --rebuild)",
                )
            for dep in self.deps[name]:
                visit(dep, (*chain, name))
            order.append(name)

        for name in wanted:
            visit(name, ())
        return order


def read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        raise ModuleError(
            f"{path.name} is zstd-compressed; the standard library cannot unpack it",
            "use a kernel whose modules are xz- or gzip-compressed, or uncompressed",
        )
    return data


# --- cpio (newc), written here: one format, a few dozen lines ------------------------------------------------


class Cpio:
    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.inode = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self.out.write(b"070701" + b"".join(f"{value:08x}".encode() for value in fields))
        self.out.write(encoded)
        self._pad()
        self.out.write(data)
        self._pad()
        self.inode += 1

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def build(modules_dir: Path, busybox: Path, init: Path = INIT) -> bytes:
    """The gzip-compressed cpio for the kernel whose lib/modules/<release> is modules_dir."""
    release = modules_dir.name
    table = ModuleTable.parse(
        (modules_dir / "modules.dep").read_text(), _text(modules_dir / "modules.builtin")
    )
    order = table.load_order()
    archive = Cpio()
    for directory in (
        "bin",
        "dev",
        "proc",
        "sys",
        "sysroot",
        "run",
        "tmp",
        "lib",
        "lib/modules",
        f"lib/modules/{release}",
    ):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", init.read_bytes(), 0o755)
    for name in order:
        archive.file(f"lib/modules/{release}/{name}.ko", read_module(modules_dir / table.paths[name]))
    archive.file("modules.order", "".join(f"{name}\n" for name in order).encode())
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
