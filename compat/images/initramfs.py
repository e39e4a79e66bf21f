"""A per-kernel initramfs: busybox, the modules that reach and mount the root disk, and /init.

The module set is derived from the kernel's own modules.dep, modules.softdep, modules.alias and
modules.builtin, not hard-coded: 5.10 needs virtio, virtio_ring, virtio_pci and virtio_blk as modules,
6.1 adds virtio_pci's two helpers, 6.12+ builds virtio in and needs only virtio_blk. The cloud kernels
build ext4 in; Debian's generic and rt kernels have it as a module, with jbd2, mbcache, crc16 and (a
soft dependency, through the crypto-crc32c alias) crc32c_generic and crc32c_intel. virtio-rng comes
too: without it the first boot waits a second or more for entropy. Modules are stored uncompressed,
for busybox's insmod.
"""

from __future__ import annotations

import gzip
import io
import lzma
import stat
from dataclasses import dataclass, field
from pathlib import Path

from compat.errors import CompatError
from compat.paths import VM_IMAGES

# The filesystem of the root and modules disks (ext4.py makes them; /init mounts them -t ext4).
ROOT_FILESYSTEM = "ext4"
# What the guest needs before its root disk is mounted; dependencies come from modules.dep.
WANTED = ("virtio_pci", "virtio_blk", ROOT_FILESYSTEM, "virtio_rng", "virtio_net")
INIT = VM_IMAGES / "init" / "initramfs-init"


class ModuleError(CompatError):
    """A kernel whose modules cannot make the initramfs."""


def module_name(path: str) -> str:
    """kernel/drivers/char/hw_random/virtio-rng.ko.xz -> virtio_rng"""
    base = path.rsplit("/", 1)[-1]
    for suffix in (".xz", ".zst", ".gz"):
        base = base.removesuffix(suffix)
    return base.removesuffix(".ko").replace("-", "_")


def _normal(name: str) -> str:
    """modprobe's spelling of a module or alias name: dashes and underscores are the same."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class ModuleTable:
    paths: dict[str, str]  # name -> path relative to lib/modules/<release>
    deps: dict[str, list[str]]  # name -> names it needs
    builtin: frozenset[str]
    # name -> (pre, post): modules or aliases modprobe loads before and after it, if they exist
    softdeps: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)  # alias -> module names, in file order

    @classmethod
    def parse(
        cls, modules_dep: str, modules_builtin: str, modules_softdep: str = "", modules_alias: str = ""
    ) -> ModuleTable:
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
        return cls(paths, deps, builtin, _parse_softdeps(modules_softdep), _parse_aliases(modules_alias))

    def load_order(self, wanted: tuple[str, ...] = WANTED, *, soft: bool = True) -> list[str]:
        """The modules to insmod, dependencies first; built-in ones are left out. With soft, a
        module's soft dependencies (modules.softdep) come too: pre before it, post after it."""
        order: list[str] = []

        def visit(name: str, chain: tuple[str, ...]) -> None:
            if name in self.builtin or name in order:
                return
            if name not in self.paths:
                raise ModuleError(
                    f"{name} is neither a module nor built in (needed by {' -> '.join(chain) or 'the initramfs'})",
                    "use a kernel built with the virtio and ext4 drivers, as module or built in",
                )
            if name in chain:
                raise ModuleError(
                    f"a dependency loop in modules.dep: {' -> '.join((*chain, name))}",
                    "rebuild the kernel tree's modules.dep (python3 -m compat.images --rebuild)",
                )
            pre, post = self.softdeps.get(name, ([], [])) if soft else ([], [])
            for target in pre:
                visit_soft(target, (*chain, name))
            for dep in self.deps[name]:
                visit(dep, (*chain, name))
            order.append(name)
            for target in post:
                visit_soft(target, (*chain, name))

        def visit_soft(target: str, chain: tuple[str, ...]) -> None:
            # As modprobe does: a soft dependency that is missing is skipped, and one already on
            # the way (a loop through softdeps) is not an error.
            for name in self.resolve(target):
                if name not in chain:
                    visit(name, chain)

        for name in wanted:
            visit(name, ())
        return order

    def soft_only(self, wanted: tuple[str, ...] = WANTED) -> set[str]:
        """The modules that come only as soft dependencies: the guest may fail to load them (crc32c_intel
        on a CPU without SSE 4.2) without harm."""
        return set(self.load_order(wanted)) - set(self.load_order(wanted, soft=False))

    def resolve(self, target: str) -> list[str]:
        """The modules a softdep target names: itself if it is a module, else its alias's modules."""
        name = _normal(target)
        if name in self.paths or name in self.builtin:
            return [name]
        return self.aliases.get(name, [])


def _parse_softdeps(text: str) -> dict[str, tuple[list[str], list[str]]]:
    """softdep ext4 pre: crypto-crc32c  (modules.softdep, as depmod writes it from .modinfo)"""
    softdeps: dict[str, tuple[list[str], list[str]]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3 or words[0] != "softdep":
            continue
        pre, post = softdeps.setdefault(module_name(words[1]), ([], []))
        current: list[str] | None = None
        for word in words[2:]:
            if word in ("pre:", "post:"):
                current = pre if word == "pre:" else post
            elif current is not None:
                current.append(word)
    return softdeps


def _parse_aliases(text: str) -> dict[str, list[str]]:
    """alias crypto-crc32c crc32c_generic  (modules.alias); only exact names are looked up here."""
    aliases: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "alias":
            targets = aliases.setdefault(_normal(words[1]), [])
            if module_name(words[2]) not in targets:
                targets.append(module_name(words[2]))
    return aliases


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
        (modules_dir / "modules.dep").read_text(),
        _text(modules_dir / "modules.builtin"),
        _text(modules_dir / "modules.softdep"),
        _text(modules_dir / "modules.alias"),
    )
    order = table.load_order()
    soft = table.soft_only()
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
    # One module a line, in load order; "soft" marks one /init may fail to load without harm.
    lines = (f"{name} soft\n" if name in soft else f"{name}\n" for name in order)
    archive.file("modules.order", "".join(lines).encode())
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
