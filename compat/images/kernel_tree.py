"""A kernel tree: a kernel's files laid out so the VM builder finds them, made from .debs or given.

    vmlinuz  config  System.map (only when small)  lib/modules/<release>/{kernel/, modules.*}

assemble() unpacks a kernel's .debs into that layout; Debian's packages ship no modules.dep (depmod
runs in their postinst), so kmod's depmod writes it and the other module indexes here. read_tree()
reads the layout back, and also accepts a user's directory (vmlinuz-*, bzImage, boot/, usr/lib/modules).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compat.images.apt import extract_deb
from compat.images.cache import Cache, file_digest, key
from compat.images.kernel_catalogue import KernelError
from compat.proc import CommandError, run, tail

log = logging.getLogger(__name__)

# Part of every kernel artefact's key: bump it when the artefact's content changes.
# 2: kmod's depmod writes the module indexes (modules.dep lists dependencies in its own order, and
# the .bin indexes are there), not a Python scanner of .modinfo.
LAYOUT = "kernel-tree-2"
# The System.map of a Debian package is a placeholder note; a real one (several MB) is left out.
SYSTEM_MAP_LIMIT = 1 << 20
SPLIT_HINT = (
    "Debian sid splits the kernel: linux-image-<release> is a meta package, vmlinuz is in "
    "linux-binary-<release>, the modules in linux-modules-<release>, the config and modules.builtin in "
    "linux-base-<release>. Unpack all of them into one directory DIR (dpkg-deb -x), index its modules "
    "(python3 -m compat.images.kernels --depmod DIR) and pass DIR"
)


@dataclass(frozen=True)
class KernelTree:
    """A kernel ready to boot: paths into a cache artefact or into the user's directory."""

    id: str
    release: str
    root: Path
    vmlinuz: Path
    modules: Path  # .../lib/modules/<release>
    config: Path | None  # None only for a user's directory without one
    modules_builtin: Path | None  # None only when a user's kernel has no modules.builtin
    modules_dep: Path
    source: str


# --- module indexes ---------------------------------------------------------------------------


def depmod(base: Path, release: str) -> None:
    """Index base/lib/modules/<release> with kmod's depmod: modules.dep and the .bin, alias, symbol
    and softdep indexes modprobe reads. The one way modules are indexed, for every tree and disk."""
    moddir = base / "lib" / "modules" / release
    try:
        done = run(["depmod", "-b", base, release], capture=True)
    except CommandError as exc:
        hint = "apt-get install kmod" if exc.returncode == 127 else "give a lib/modules/<release> directory"
        raise KernelError(f"cannot index the modules of {moddir}: {exc}", hint) from exc
    # depmod skips a module it cannot read and still exits 0: the index would silently lack it.
    errors = [line for line in done.stderr.splitlines() if "ERROR:" in line]
    if errors:
        raise KernelError(
            f"depmod could not read every module in {moddir}: {tail(chr(10).join(errors))}",
            "replace the damaged module files (or remove them) and try again",
        )


def index_modules(root: Path) -> Path:
    """depmod for the one release of a kernel directory, in lib/modules or usr/lib/modules."""
    if not root.is_dir():
        raise KernelError(f"{root} is not a directory", "give the kernel directory that holds lib/modules")
    dirs = release_dirs(root)
    if len(dirs) != 1:
        found = ", ".join(str(d.relative_to(root)) for d in dirs) or "none"
        raise KernelError(f"{root} must hold exactly one lib/modules/<release> directory (found: {found})")
    moddir = dirs[0]
    # kmod 30 reads BASE/lib/modules: for usr/lib/modules/<release> that BASE is root/usr.
    depmod(moddir.parents[2], moddir.name)
    return moddir / "modules.dep"


# --- assembling an artefact from debs ---------------------------------------------------------


def release_dirs(root: Path) -> list[Path]:
    """lib/modules/* and usr/lib/modules/*, each directory once (lib may be a symlink to usr/lib)."""
    bases = (root / "lib" / "modules", root / "usr" / "lib" / "modules")
    found = [d for base in bases if base.is_dir() for d in sorted(base.iterdir()) if d.is_dir()]
    unique: dict[Path, Path] = {}
    for directory in found:
        unique.setdefault(directory.resolve(), directory)
    return list(unique.values())


def _single_release(root: Path, what: str) -> str:
    releases = sorted({d.name for d in release_dirs(root)})
    if not releases:
        raise KernelError(f"{what} has no lib/modules/<release> directory", SPLIT_HINT)
    if len(releases) > 1:
        raise KernelError(f"{what} holds several kernel releases: {', '.join(releases)}")
    return releases[0]


def _merge(src: Path, dst: Path) -> None:
    """Move src's tree into dst, merging directories that exist in both."""
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
        return
    if not (src.is_dir() and dst.is_dir()):
        raise KernelError(f"{src.name} is in more than one of the kernel's packages")
    for child in sorted(src.iterdir()):
        _merge(child, dst / child.name)
    src.rmdir()


def _take(candidates: Sequence[Path], dest: Path) -> bool:
    """Move the first existing candidate to dest; False if there is none."""
    found = next((c for c in candidates if c.is_file()), None)
    if found is not None:
        found.rename(dest)
    return found is not None


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def assemble(debs: Sequence[Path], work: Path, what: str) -> str:
    """Unpack debs into work in the read_tree() layout and index the modules; the release."""
    unpack = work / ".unpack"
    for deb in debs:
        log.info("extracting %s (%.1f MB)", deb.name, deb.stat().st_size / 1e6)
        extract_deb(deb, unpack)
    release = _single_release(unpack, what)
    moddir = work / "lib" / "modules" / release
    for base in ("lib", "usr/lib"):
        if (unpack / base / "modules" / release).is_dir():
            _merge(unpack / base / "modules" / release, moddir)
    boot = unpack / "boot"
    if not _take([boot / f"vmlinuz-{release}", moddir / "vmlinuz"], work / "vmlinuz"):
        raise KernelError(
            f"{what} has no kernel image (boot/vmlinuz-{release} or lib/modules/{release}/vmlinuz)",
            SPLIT_HINT,
        )
    if not _take([boot / f"config-{release}", moddir / "config"], work / "config"):
        raise KernelError(
            f"{what} has no kernel config (boot/config-{release} or lib/modules/{release}/config)", SPLIT_HINT
        )
    _take([boot / f"System.map-{release}", moddir / "System.map"], work / "System.map")
    if (work / "System.map").is_file() and (work / "System.map").stat().st_size > SYSTEM_MAP_LIMIT:
        (work / "System.map").unlink()
    for link in ("build", "source"):
        if (moddir / link).is_symlink():
            (moddir / link).unlink()
    shutil.rmtree(unpack)
    if not (moddir / "modules.dep").is_file():
        depmod(work, release)
        log.info("indexed the modules of %s with depmod", release)
    return release


def from_deb(path: Path, cache: Cache | None = None, *, rebuild: bool = False) -> KernelTree:
    """A user's linux-image .deb (with vmlinuz, config and modules), unpacked in the cache."""
    cache = cache or Cache()
    deb = path.absolute()
    if not deb.is_file():
        raise KernelError(f"{deb} is not a file")
    digest = file_digest(deb)
    with cache.build("kernel-deb", key(LAYOUT, digest), rebuild) as slot:
        if not slot.hit:
            assemble([deb], slot.work, deb.name)
    return read_tree(slot.path, None, f"{deb} (sha256 {digest[:16]})")


# --- reading a tree ---------------------------------------------------------------------------


def _one(paths: Sequence[Path], what: str) -> Path | None:
    if len(paths) > 1:
        raise KernelError(f"several {what}: {', '.join(str(p) for p in paths)}", "leave only one")
    return paths[0] if paths else None


def _first(candidates: Sequence[Path]) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def _find_vmlinuz(root: Path, moddir: Path, release: str) -> Path:
    named = [root / "vmlinuz", root / f"vmlinuz-{release}", root / "boot" / f"vmlinuz-{release}"]
    named += [root / "bzImage", root / "boot" / "bzImage", moddir / "vmlinuz"]
    others = sorted(p for p in [*root.glob("vmlinuz-*"), *root.glob("boot/vmlinuz-*")] if p.is_file())
    found = _first(named) or _one(others, f"kernel images in {root}")
    if found is None:
        raise KernelError(
            f"no kernel image in {root}: looked for vmlinuz, vmlinuz-*, boot/vmlinuz-*, bzImage",
            hint="copy arch/x86/boot/bzImage of the build there as vmlinuz",
        )
    return found


def _find_config(root: Path, moddir: Path, release: str) -> Path | None:
    named = [root / "config", root / "boot" / f"config-{release}", moddir / "config"]
    others = sorted(p for p in root.glob("boot/config-*") if p.is_file())
    return _first(named) or _one(others, f"configs in {root}/boot")


def read_tree(root: Path, kernel_id: str | None, source: str) -> KernelTree:
    """The KernelTree of a directory with vmlinuz and lib/modules/<release> (the artefact layout)."""
    dirs = release_dirs(root)
    if len(dirs) != 1:
        found = ", ".join(str(d.relative_to(root)) for d in dirs) or "none"
        raise KernelError(
            f"{root} must hold exactly one lib/modules/<release> directory (found: {found})",
            hint="install the modules there: make modules_install INSTALL_MOD_PATH=<dir>",
        )
    moddir = dirs[0]
    release = moddir.name
    if not (moddir / "modules.dep").is_file():
        raise KernelError(
            f"{moddir} has no modules.dep",
            hint=f"write it with `depmod -b {moddir.parents[2]} {release}` "
            f"or `python3 -m compat.images.kernels --depmod {root}`",
        )
    builtin = moddir / "modules.builtin"
    return KernelTree(
        id=kernel_id or release,
        release=release,
        root=root,
        vmlinuz=_find_vmlinuz(root, moddir, release),
        modules=moddir,
        config=_find_config(root, moddir, release),
        modules_builtin=builtin if builtin.is_file() else None,
        modules_dep=moddir / "modules.dep",
        source=source,
    )


def from_dir(path: Path) -> KernelTree:
    """A user's kernel directory: vmlinuz (or vmlinuz-*, bzImage) and lib/modules/<release>."""
    root = path.absolute()
    if not root.is_dir():
        raise KernelError(f"{root} is not a directory")
    return read_tree(root, None, f"directory {root}")
