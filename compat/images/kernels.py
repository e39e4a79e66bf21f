"""Kernels for the VM matrix: Debian cloud kernels pinned by a lock file, or a user's own build.

    vm-images/kernels.json       the catalogue: id -> Debian suite and how to find its cloud kernel
    vm-images/kernels.lock.json  per id: suite, kernel release, every package (name, version, .deb, sha256)

fetch(id) downloads the locked debs (each a cache artefact `deb-<package>-<key>`, with apt state under
<cache>/apt) and unpacks them into one artefact `kernel-<id>-<key>` laid out like a directory that
from_dir() accepts:

    vmlinuz  config  System.map (only when small)  lib/modules/<release>/{kernel/, modules.*}

Debian's packages do not ship modules.dep (depmod runs in their postinst), so it is written here from
each module's .modinfo (`depends=`, `alias=`), together with modules.alias. A second fetch of the
same lock entry finds the artefact and does nothing; apt is only started when a locked .deb is missing
from the cache or its sha256 does not match.

`python -m compat.images.kernels [--update-lock] [ID|DEB|DIR ...]` fetches (default: every id) and
prints a summary; --update-lock first re-resolves the newest versions into the lock file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import lzma
import re
import shutil
import struct
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cmp_to_key
from pathlib import Path

from compat.images.apt import (
    AptError,
    AptSource,
    PackageNotFound,
    PrivateApt,
    compare_versions,
    extract_deb,
    host_mirror,
    update_verified,
)
from compat.images.cache import Cache, file_digest, key
from compat.proc import CommandError

log = logging.getLogger(__name__)

VM_IMAGES = Path(__file__).resolve().parents[2] / "vm-images"
CATALOGUE_PATH = VM_IMAGES / "kernels.json"
LOCK_PATH = VM_IMAGES / "kernels.lock.json"
LOCK_FORMAT = 1
# Part of every kernel artefact's key: bump it when the artefact's layout changes.
LAYOUT = "kernel-tree-1"
# The System.map of a Debian package is a placeholder note; a real one (several MB) is left out.
SYSTEM_MAP_LIMIT = 1 << 20
SPLIT_HINT = (
    "Debian sid splits the kernel: linux-image-<release> is a meta package, vmlinuz is in "
    "linux-binary-<release>, the modules in linux-modules-<release>, the config and modules.builtin in "
    "linux-base-<release>. Unpack all of them into one directory DIR (dpkg-deb -x), write its modules.dep "
    "(python3 -m compat.images.kernels --depmod DIR/usr/lib/modules/<release>) and pass DIR"
)


class KernelError(RuntimeError):
    """What failed and why (the message), and what fixes it (the hint)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


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


# --- the catalogue ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    suite: str
    release_re: str  # what the kernel release starts with
    arch: str = "amd64"
    flavour: str = "cloud-amd64"
    note: str = ""

    @property
    def image_pattern(self) -> str:
        """apt package names of this line's kernel images (fullmatch)."""
        return rf"linux-image-{self.release_re}\S*-{self.flavour}"


@dataclass(frozen=True)
class Catalogue:
    arch: str
    entries: tuple[CatalogueEntry, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.entries)

    @property
    def fallback_suites(self) -> list[str]:
        """Suites newest first: a keyring that checks sid most likely comes from the next-newest."""
        return list(dict.fromkeys(e.suite for e in reversed(self.entries)))

    def get(self, kernel_id: str) -> CatalogueEntry:
        for entry in self.entries:
            if entry.id == kernel_id:
                return entry
        raise KernelError(
            f"unknown kernel id {kernel_id!r}; known ids: {', '.join(self.ids)}",
            hint="add it to vm-images/kernels.json, or give a linux-image .deb or a kernel directory",
        )


def _want(data: Mapping[str, object], name: str, kind: type, where: str) -> object:
    value = data.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise KernelError(f"{where}: {name!r} must be of type {kind.__name__}, got {value!r}")
    return value


def _text(data: Mapping[str, object], name: str, where: str) -> str:
    value = _want(data, name, str, where)
    assert isinstance(value, str)
    if not value:
        raise KernelError(f"{where}: {name!r} is empty")
    return value


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise KernelError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _read_json(path: Path, hint: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KernelError(f"cannot read {path}: {exc.strerror}", hint) from exc
    except json.JSONDecodeError as exc:
        raise KernelError(f"{path} is not valid JSON: {exc}", hint) from exc


def parse_catalogue(data: object, where: str = "catalogue") -> Catalogue:
    top = _mapping(data, where)
    arch, flavour = _text(top, "arch", where), _text(top, "flavour", where)
    entries = []
    for kernel_id, raw in _mapping(top.get("kernels"), f"{where}: kernels").items():
        fields = _mapping(raw, f"{where}: {kernel_id}")
        release_re = _text(fields, "release_re", f"{where}: {kernel_id}")
        try:
            re.compile(release_re)
        except re.error as exc:
            raise KernelError(f"{where}: {kernel_id}: bad release_re {release_re!r}: {exc}") from exc
        note = fields.get("note", "")
        suite = _text(fields, "suite", f"{where}: {kernel_id}")
        entries.append(CatalogueEntry(kernel_id, suite, release_re, arch, flavour, str(note)))
    if not entries:
        raise KernelError(f"{where}: no kernels")
    return Catalogue(arch, tuple(entries))


def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    return parse_catalogue(_read_json(path, "restore vm-images/kernels.json"), str(path))


# --- the lock file ---------------------------------------------------------------------------

_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_UPDATE_HINT = "python3 -m compat.images.kernels --update-lock {id}"


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    deb: str  # the .deb's file name
    sha256: str
    size: int


@dataclass(frozen=True)
class LockEntry:
    id: str
    suite: str
    release: str
    packages: tuple[LockedPackage, ...]  # the linux-image package first, then its same-version parts


@dataclass(frozen=True)
class Lock:
    arch: str
    entries: tuple[LockEntry, ...]

    def get(self, kernel_id: str) -> LockEntry | None:
        return next((e for e in self.entries if e.id == kernel_id), None)

    def with_entry(self, new: LockEntry, order: Sequence[str] = ()) -> Lock:
        """This lock with new in place of the entry of the same id; entries sorted by order."""
        entries = [e for e in self.entries if e.id != new.id] + [new]
        rank = {kernel_id: i for i, kernel_id in enumerate(order)}
        entries.sort(key=lambda e: rank.get(e.id, len(rank)))
        return Lock(self.arch, tuple(entries))


def _package(raw: object, where: str) -> LockedPackage:
    fields = _mapping(raw, where)
    name, version, deb = (_text(fields, k, where) for k in ("name", "version", "deb"))
    sha256 = _text(fields, "sha256", where)
    size = _want(fields, "size", int, where)
    assert isinstance(size, int)
    if not _PACKAGE_NAME.fullmatch(name):
        raise KernelError(f"{where}: {name!r} is not a Debian package name")
    if not _SHA256.fullmatch(sha256):
        raise KernelError(f"{where}: sha256 of {name} must be 64 lower-case hex digits")
    if "/" in deb or not deb.startswith(f"{name}_") or not deb.endswith(".deb"):
        raise KernelError(f"{where}: deb {deb!r} is not a file name of the form {name}_<version>_<arch>.deb")
    return LockedPackage(name, version, deb, sha256, size)


def parse_lock(data: object, where: str = "lock") -> Lock:
    top = _mapping(data, where)
    if top.get("format") != LOCK_FORMAT:
        raise KernelError(f"{where}: format {top.get('format')!r} is not {LOCK_FORMAT}")
    entries = []
    for kernel_id, raw in _mapping(top.get("kernels"), f"{where}: kernels").items():
        here = f"{where}: {kernel_id}"
        fields = _mapping(raw, here)
        suite, release = _text(fields, "suite", here), _text(fields, "release", here)
        if "/" in release:
            raise KernelError(f"{here}: release {release!r} contains '/'")
        packages = _want(fields, "packages", list, here)
        assert isinstance(packages, list)
        if not packages:
            raise KernelError(f"{here}: no packages")
        parsed = tuple(_package(p, f"{here}: package {i + 1}") for i, p in enumerate(packages))
        entries.append(LockEntry(kernel_id, suite, release, parsed))
    return Lock(_text(top, "arch", where), tuple(entries))


def lock_entry_json(entry: LockEntry) -> dict[str, object]:
    packages = [
        {"name": p.name, "version": p.version, "deb": p.deb, "sha256": p.sha256, "size": p.size}
        for p in entry.packages
    ]
    return {"suite": entry.suite, "release": entry.release, "packages": packages}


def dump_lock(lock: Lock) -> str:
    data = {
        "_comment": "Written by `python3 -m compat.images.kernels --update-lock`. fetch() downloads exactly these debs.",
        "format": LOCK_FORMAT,
        "arch": lock.arch,
        "kernels": {e.id: lock_entry_json(e) for e in lock.entries},
    }
    return json.dumps(data, indent=2) + "\n"


def load_lock(path: Path = LOCK_PATH) -> Lock:
    hint = _UPDATE_HINT.format(id="").rstrip()
    return parse_lock(_read_json(path, hint), str(path))


def write_if_changed(path: Path, text: str) -> str:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return "unchanged"
    path.write_text(text, encoding="utf-8")
    return "written"


# --- resolving with apt (shared with tests/data/kconfig/refresh.py) ---------------------------


def open_apt(
    entry: CatalogueEntry, mirror: AptSource, workdir: Path, fallback_suites: Sequence[str]
) -> PrivateApt:
    """A PrivateApt for entry's suite under workdir, its lists updated and verified."""
    apt = PrivateApt(workdir / f"apt-{entry.suite}", mirror, entry.suite, arch=entry.arch)
    return update_verified(apt, fallback_suites, workdir / "keyring")


def newest_image(apt: PrivateApt, entry: CatalogueEntry) -> str:
    """The linux-image-<release>-<flavour> of this kernel line with the highest version."""
    names = apt.search_names(entry.image_pattern)
    if not names:
        raise PackageNotFound(f"no linux-image-{entry.id}*-{entry.flavour} in {entry.suite}")
    versions = {name: apt.candidate_version(name) for name in names}

    def order(a: str, b: str) -> int:
        return compare_versions(versions[a], versions[b]) or (a > b) - (a < b)

    return max(names, key=cmp_to_key(order))


def same_version_depends(apt: PrivateApt, package: str) -> list[str]:
    """Dependencies pinned to exactly this package's version: the parts of a split kernel."""
    rec = apt.record(package)
    pinned = re.compile(rf"(\S+) \(= {re.escape(rec['version'])}\)")
    return [m[1] for dep in rec.get("depends", "").split(",") if (m := pinned.fullmatch(dep.strip()))]


def kernel_parts(apt: PrivateApt, entry: CatalogueEntry) -> list[str]:
    """The newest image package, then (on sid) its linux-binary, -modules and -base parts."""
    image = newest_image(apt, entry)
    return [image, *same_version_depends(apt, image)]


def resolve_entry(apt: PrivateApt, entry: CatalogueEntry) -> LockEntry:
    parts = kernel_parts(apt, entry)
    packages = []
    for name in parts:
        rec = apt.record(name)
        deb = Path(rec["filename"]).name
        packages.append(LockedPackage(name, rec["version"], deb, rec["sha256"], int(rec["size"])))
    release = parts[0].removeprefix("linux-image-")
    return LockEntry(entry.id, entry.suite, release, tuple(packages))


@contextmanager
def _apt_errors(what: str) -> Iterator[None]:
    try:
        yield
    except (AptError, CommandError) as exc:
        hint = "check that this machine reaches the Debian mirror in its apt sources (apt-get update)"
        raise KernelError(f"{what}: {exc}", hint) from exc


def update_lock(
    ids: Sequence[str] | None = None,
    cache: Cache | None = None,
    *,
    catalogue: Catalogue | None = None,
    lock_path: Path = LOCK_PATH,
) -> Lock:
    """Re-resolve the newest kernel of each id (None: all) and write the lock file."""
    catalogue = catalogue or load_catalogue()
    workdir = (cache or Cache()).root / "apt"
    lock = load_lock(lock_path) if lock_path.exists() else Lock(catalogue.arch, ())
    with _apt_errors("cannot find the host's Debian mirror"):
        mirror = host_mirror()
    for entry in catalogue.entries if ids is None else [catalogue.get(i) for i in ids]:
        with _apt_errors(f"cannot resolve kernel {entry.id} in {entry.suite}"):
            apt = open_apt(entry, mirror, workdir, catalogue.fallback_suites)
            resolved = resolve_entry(apt, entry)
        old = lock.get(entry.id)
        was = f"{old.release} {old.packages[0].version}" if old else "nothing"
        now = f"{resolved.release} {resolved.packages[0].version}"
        log.info("kernel %s: %s (%s)", entry.id, now, "unchanged" if was == now else f"was {was}")
        lock = lock.with_entry(resolved, catalogue.ids)
    status = write_if_changed(lock_path, dump_lock(lock))
    log.info("%s %s", lock_path.name, status)
    return lock


# --- downloading the locked debs --------------------------------------------------------------


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _deb_slot(pkg: LockedPackage) -> tuple[str, str]:
    return f"deb-{pkg.name}", key(pkg.sha256)


def _cached_deb(cache: Cache, pkg: LockedPackage) -> Path | None:
    deb = cache.path(*_deb_slot(pkg)) / pkg.deb
    if not deb.is_file():
        return None
    if file_digest(deb) != pkg.sha256:
        log.warning("cached %s does not match its sha256; downloading it again", deb)
        return None
    return deb


def _check_candidate(apt: PrivateApt, pkg: LockedPackage, kernel_id: str) -> None:
    """The mirror must still offer exactly the locked version."""
    hint = _UPDATE_HINT.format(id=kernel_id)
    with _apt_errors(f"kernel {kernel_id}: cannot look up {pkg.name}"):
        try:
            version = apt.candidate_version(pkg.name)
        except PackageNotFound as exc:
            raise KernelError(f"kernel {kernel_id}: {pkg.name} is no longer in {apt.suite}", hint) from exc
    if version != pkg.version:
        raise KernelError(
            f"kernel {kernel_id}: {apt.suite} now has {pkg.name} {version}, the lock wants {pkg.version}",
            hint,
        )


def _download(apt: PrivateApt, pkg: LockedPackage, cache: Cache, kernel_id: str) -> Path:
    _check_candidate(apt, pkg, kernel_id)
    with cache.build(*_deb_slot(pkg), rebuild=True) as slot:
        log.info("kernel %s: downloading %s %s (%s)", kernel_id, pkg.name, pkg.version, _mb(pkg.size))
        started = time.monotonic()
        with _apt_errors(f"kernel {kernel_id}: cannot download {pkg.name}"):
            got = apt.download(pkg.name, slot.work)
        deb = slot.work / pkg.deb
        if got != deb:
            got.rename(deb)
        digest = file_digest(deb)
        if digest != pkg.sha256:
            raise KernelError(
                f"kernel {kernel_id}: sha256 mismatch for {pkg.name} {pkg.version}: "
                f"{pkg.deb} has {digest}, the lock says {pkg.sha256}",
                f"if the archive really changed this file, {_UPDATE_HINT.format(id=kernel_id)}",
            )
        log.info("kernel %s: downloaded %s in %.1f s", kernel_id, pkg.deb, time.monotonic() - started)
    return slot.path / pkg.deb


def locked_debs(entry: LockEntry, cache: Cache, catalogue: Catalogue) -> list[Path]:
    """The entry's debs from the download cache; apt is updated only if one is missing or damaged."""
    found = {pkg.name: _cached_deb(cache, pkg) for pkg in entry.packages}
    missing = [pkg for pkg in entry.packages if found[pkg.name] is None]
    if missing:
        with _apt_errors(f"kernel {entry.id}: cannot update the apt lists of {entry.suite}"):
            apt = open_apt(
                catalogue.get(entry.id), host_mirror(), cache.root / "apt", catalogue.fallback_suites
            )
        for pkg in missing:
            found[pkg.name] = _download(apt, pkg, cache, entry.id)
    return [path for pkg in entry.packages if (path := found[pkg.name]) is not None]


# --- module indexes (what depmod would write) -------------------------------------------------

_MODULE_FILE = re.compile(r"(?P<stem>[^/]+)\.ko(?:\.(?P<comp>xz|gz|zst))?")


@dataclass(frozen=True)
class _Module:
    path: str  # relative to lib/modules/<release>
    depends: tuple[str, ...]
    aliases: tuple[str, ...]


def _ko_bytes(path: Path, compression: str | None) -> bytes:
    if compression == "zst":
        raise KernelError(
            f"{path} is zstd-compressed, which this reader cannot open",
            hint="write modules.dep first with kmod's `depmod -b <root> <release>`; this reader takes .ko, .ko.xz, .ko.gz",
        )
    raw = path.read_bytes()
    try:
        return lzma.decompress(raw) if compression == "xz" else gzip.decompress(raw) if compression else raw
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise KernelError(f"cannot decompress module {path}: {exc}") from exc


def elf_section(data: bytes, name: str) -> bytes | None:
    """The contents of section name of an ELF file (32 or 64 bit, either byte order)."""
    if data[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    wide, order = data[4] == 2, "<" if data[5] == 1 else ">"
    (shoff,) = struct.unpack_from(order + ("Q" if wide else "I"), data, 0x28 if wide else 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 0x3A if wide else 0x2E)
    header = order + ("IIQQQQ" if wide else "IIIIII")

    def section(index: int) -> tuple[int, int, int]:
        name_at, _, _, _, offset, size = struct.unpack_from(header, data, shoff + index * shentsize)
        return name_at, offset, size

    _, names_at, _ = section(shstrndx)
    for index in range(shnum):
        name_at, offset, size = section(index)
        end = data.index(b"\0", names_at + name_at)
        if data[names_at + name_at : end].decode("ascii", "replace") == name:
            return data[offset : offset + size]
    return None


def modinfo(data: bytes) -> list[tuple[str, str]]:
    """The key=value pairs of a module's .modinfo section."""
    section = elf_section(data, ".modinfo") or b""
    pairs = (item.decode("utf-8", "replace").partition("=") for item in section.split(b"\0") if item)
    return [(k, v) for k, sep, v in pairs if sep]


def _scan_module(path: Path, moddir: Path, compression: str | None) -> _Module:
    try:
        info = modinfo(_ko_bytes(path, compression))
    except (ValueError, IndexError, struct.error) as exc:
        raise KernelError(f"cannot read the .modinfo of {path}: {exc}") from exc
    # modpost writes some names with '-' (dm-mod); module names compare with '_'.
    depends = tuple(d.replace("-", "_") for k, v in info if k == "depends" for d in v.split(",") if d)
    aliases = tuple(v for k, v in info if k == "alias")
    return _Module(path.relative_to(moddir).as_posix(), depends, aliases)


def _scan_modules(moddir: Path) -> dict[str, _Module]:
    modules: dict[str, _Module] = {}
    for path in sorted(p for p in moddir.rglob("*.ko*") if p.is_file()):
        match = _MODULE_FILE.fullmatch(path.name)
        if match is None:
            continue
        name = match["stem"].replace("-", "_")
        if name in modules:
            log.warning("module %s found twice; keeping %s", name, modules[name].path)
            continue
        modules[name] = _scan_module(path, moddir, match["comp"])
    return modules


def _dependency_paths(name: str, modules: Mapping[str, _Module]) -> list[str]:
    """Every module name needs, users before what they use: modprobe loads the list from its end."""
    order: list[str] = []
    seen = {name}

    def visit(current: str) -> None:
        for dep in sorted(modules[current].depends):
            if dep in seen or dep not in modules:
                continue
            seen.add(dep)
            visit(dep)
            order.append(dep)

    visit(name)
    return [modules[dep].path for dep in reversed(order)]


def write_module_indexes(moddir: Path) -> int:
    """Write modules.dep and modules.alias for the modules under moddir; returns how many there are."""
    if not moddir.is_dir():
        raise KernelError(f"{moddir} is not a directory", "give the lib/modules/<release> directory")
    modules = _scan_modules(moddir)
    for name, module in modules.items():
        for dep in module.depends:
            if dep not in modules:
                log.warning("%s depends on %s, which is not in %s", name, dep, moddir)
    by_path = sorted(modules.items(), key=lambda item: item[1].path)
    dep_lines = [f"{m.path}: {' '.join(_dependency_paths(n, modules))}".rstrip() + "\n" for n, m in by_path]
    (moddir / "modules.dep").write_text("".join(dep_lines), encoding="utf-8")
    alias_lines = [f"alias {alias} {name}\n" for name, m in by_path for alias in m.aliases]
    (moddir / "modules.alias").write_text(
        "# Aliases extracted from modules themselves.\n" + "".join(alias_lines), encoding="utf-8"
    )
    return len(modules)


# --- assembling an artefact from debs ---------------------------------------------------------


def _release_dirs(root: Path) -> list[Path]:
    """lib/modules/* and usr/lib/modules/*, each directory once (lib may be a symlink to usr/lib)."""
    bases = (root / "lib" / "modules", root / "usr" / "lib" / "modules")
    found = [d for base in bases if base.is_dir() for d in sorted(base.iterdir()) if d.is_dir()]
    unique: dict[Path, Path] = {}
    for directory in found:
        unique.setdefault(directory.resolve(), directory)
    return list(unique.values())


def _single_release(root: Path, what: str) -> str:
    releases = sorted({d.name for d in _release_dirs(root)})
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


def _size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def assemble(debs: Sequence[Path], work: Path, what: str) -> str:
    """Unpack debs into work in the from_dir() layout and write the module indexes; the release."""
    unpack = work / ".unpack"
    for deb in debs:
        log.info("extracting %s (%s)", deb.name, _mb(deb.stat().st_size))
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
        count = write_module_indexes(moddir)
        log.info("wrote modules.dep and modules.alias for %d modules of %s", count, release)
    return release


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
    dirs = _release_dirs(root)
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
            hint=f"write it with `depmod -b {root} {release}` or `python3 -m compat.images.kernels --depmod {moddir}`",
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


# --- the public entry points ------------------------------------------------------------------


def _checked_entry(lock: Lock, entry: CatalogueEntry) -> LockEntry:
    locked = lock.get(entry.id)
    hint = _UPDATE_HINT.format(id=entry.id)
    if locked is None:
        raise KernelError(f"kernel {entry.id} is not in the lock file", hint)
    if (
        lock.arch != entry.arch
        or locked.suite != entry.suite
        or not re.match(entry.release_re, locked.release)
    ):
        raise KernelError(
            f"the lock's kernel {entry.id} ({locked.release}, {locked.suite}, {lock.arch}) does not fit the "
            f"catalogue ({entry.release_re}, {entry.suite}, {entry.arch})",
            hint,
        )
    return locked


def fetch(
    kernel_id: str,
    cache: Cache | None = None,
    *,
    rebuild: bool = False,
    catalogue: Catalogue | None = None,
    lock: Lock | None = None,
) -> KernelTree:
    """The catalogue kernel kernel_id as pinned by the lock file, unpacked in the cache."""
    cache = cache or Cache()
    catalogue = catalogue or load_catalogue()
    locked = _checked_entry(lock or load_lock(), catalogue.get(kernel_id))
    image = locked.packages[0]
    source = f"Debian {locked.suite}: {image.name} {image.version}"
    started = time.monotonic()
    with cache.build(f"kernel-{kernel_id}", key(LAYOUT, lock_entry_json(locked)), rebuild) as slot:
        if not slot.hit:
            debs = locked_debs(locked, cache, catalogue)
            release = assemble(debs, slot.work, f"kernel {kernel_id} ({', '.join(d.name for d in debs)})")
            if release != locked.release:
                raise KernelError(
                    f"kernel {kernel_id}: the debs hold {release}, the lock says {locked.release}"
                )
    tree = read_tree(slot.path, kernel_id, source)
    if slot.hit:
        log.info("kernel %s: %s already in %s", kernel_id, tree.release, slot.path)
    else:
        took = time.monotonic() - started
        log.info("kernel %s: %s ready in %.1f s (%s)", kernel_id, tree.release, took, _mb(_size(slot.path)))
    return tree


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


def from_dir(path: Path) -> KernelTree:
    """A user's kernel directory: vmlinuz (or vmlinuz-*, bzImage) and lib/modules/<release>."""
    root = path.absolute()
    if not root.is_dir():
        raise KernelError(f"{root} is not a directory")
    return read_tree(root, None, f"directory {root}")


def resolve(
    spec: str, cache: Cache | None = None, *, rebuild: bool = False, catalogue: Catalogue | None = None
) -> KernelTree:
    """A catalogue id, a path to a .deb, or a kernel directory."""
    catalogue = catalogue or load_catalogue()
    if spec in catalogue.ids:
        return fetch(spec, cache, rebuild=rebuild, catalogue=catalogue)
    path = Path(spec).expanduser()
    if path.is_dir():
        return from_dir(path)
    if path.is_file() and path.suffix == ".deb":
        return from_deb(path, cache, rebuild=rebuild)
    what = "is not a .deb" if path.exists() else "is neither a catalogue id nor an existing .deb or directory"
    raise KernelError(f"kernel {spec!r} {what}; known ids: {', '.join(catalogue.ids)}")


# --- command line -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m compat.images.kernels",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kernels", nargs="*", metavar="ID|DEB|DIR", help="default: every catalogue id")
    parser.add_argument("--update-lock", action="store_true", help="re-resolve the newest versions first")
    parser.add_argument("--rebuild", action="store_true", help="unpack again even if the artefact exists")
    parser.add_argument("--depmod", type=Path, metavar="MODDIR", help="only write modules.dep in MODDIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        if args.depmod:
            print(f"{write_module_indexes(args.depmod)} modules in {args.depmod / 'modules.dep'}")
            return 0
        return _fetch_all(args.kernels, args.update_lock, args.rebuild)
    except KernelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1


def _fetch_all(specs: Sequence[str], update: bool, rebuild: bool) -> int:
    started = time.monotonic()
    cache, catalogue = Cache(), load_catalogue()
    if update:
        ids = [s for s in specs if s in catalogue.ids] if specs else None
        update_lock(ids, cache, catalogue=catalogue)
    trees = [resolve(spec, cache, rebuild=rebuild, catalogue=catalogue) for spec in specs or catalogue.ids]
    for tree in trees:
        print(f"{tree.id:>6}  {tree.release:<32} {_mb(_size(tree.root)):>9}  {tree.source}")
    print(f"{len(trees)} kernels ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
