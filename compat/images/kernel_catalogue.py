"""The kernel catalogue and its lock file, and the error every kernel module raises.

    vm-images/kernels.json       the catalogue: id -> Debian suite and how to find its cloud kernel
    vm-images/kernels.lock.json  per id: suite, kernel release, every package (name, version, .deb, sha256)

Both are read and validated here (one clear error per bad field, read with runtime/jsonfields.py); the
lock is also written here. The kernel ids of the catalogue are the project's kernel list: the full
matrix, `python3 -m compat.images` and the boot benchmark take theirs from it.
Resolving and downloading what the lock names is kernel_download.py's job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from compat.errors import CompatError
from compat.images.apt import PACKAGE_NAME
from compat.paths import VM_IMAGES
from runtime.jsonfields import INTEGER, LIST, OBJECT, STRING, Field, Wording

CATALOGUE_PATH = VM_IMAGES / "kernels.json"
LOCK_PATH = VM_IMAGES / "kernels.lock.json"
LOCK_FORMAT = 1
UPDATE_HINT = "python3 -m compat.images.kernels --update-lock {id}"


class KernelError(CompatError):
    """A kernel that cannot be found, fetched or read: what and why (message), what fixes it (hint)."""


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


_TYPE_NAMES = {STRING: "str", INTEGER: "int", LIST: "list"}


class _CatalogueWording(Wording):
    """`vm-images/kernels.json: 6.1: 'suite' must be of type str, got None`."""

    def wrong(self, field: Field, expected: str) -> KernelError:
        if expected == OBJECT:
            where = field.label if field.key is None else f"{field.label}: {field.key}"
            return KernelError(f"{where}: expected a JSON object, got {type(field.value).__name__}")
        kind = _TYPE_NAMES.get(expected, expected)
        return KernelError(f"{field.label}: {field.key!r} must be of type {kind}, got {field.value!r}")

    def missing(self, field: Field) -> KernelError:
        return KernelError(f"{field.label}: {field.key!r} is missing")

    def empty(self, field: Field) -> KernelError:
        return KernelError(f"{field.label}: {field.key!r} is empty")


_WORDING = _CatalogueWording()


def _fields(value: object, where: str) -> Field:
    """value, an object, as the Field labelled where."""
    found = Field(value, _WORDING, where)
    found.mapping()
    return found


def _text(fields: Field, name: str) -> str:
    return fields.get(name).string(empty_ok=False)


def _read_json(path: Path, hint: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KernelError(f"cannot read {path}: {exc.strerror}", hint) from exc
    except json.JSONDecodeError as exc:
        raise KernelError(f"{path} is not valid JSON: {exc}", hint) from exc


def parse_catalogue(data: object, where: str = "catalogue") -> Catalogue:
    top = _fields(data, where)
    arch, flavour = _text(top, "arch"), _text(top, "flavour")
    entries = []
    for kernel_id, raw in top.get("kernels").mapping().items():
        fields = _fields(raw, f"{where}: {kernel_id}")
        release_re = _text(fields, "release_re")
        try:
            re.compile(release_re)
        except re.error as exc:
            raise KernelError(f"{where}: {kernel_id}: bad release_re {release_re!r}: {exc}") from exc
        note = fields.mapping().get("note", "")
        suite = _text(fields, "suite")
        entries.append(CatalogueEntry(kernel_id, suite, release_re, arch, flavour, str(note)))
    if not entries:
        raise KernelError(f"{where}: no kernels")
    return Catalogue(arch, tuple(entries))


def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    return parse_catalogue(_read_json(path, "restore vm-images/kernels.json"), str(path))


# --- the lock file ---------------------------------------------------------------------------

_SHA256 = re.compile(r"[0-9a-f]{64}")


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
    fields = _fields(raw, where)
    name, version, deb = (_text(fields, k) for k in ("name", "version", "deb"))
    sha256 = _text(fields, "sha256")
    size = fields.get("size").integer()
    if not PACKAGE_NAME.fullmatch(name):
        raise KernelError(f"{where}: {name!r} is not a Debian package name")
    if not _SHA256.fullmatch(sha256):
        raise KernelError(f"{where}: sha256 of {name} must be 64 lower-case hex digits")
    if "/" in deb or not deb.startswith(f"{name}_") or not deb.endswith(".deb"):
        raise KernelError(f"{where}: deb {deb!r} is not a file name of the form {name}_<version>_<arch>.deb")
    return LockedPackage(name, version, deb, sha256, size)


def parse_lock(data: object, where: str = "lock") -> Lock:
    top = _fields(data, where)
    if top.get("format").value != LOCK_FORMAT:
        raise KernelError(f"{where}: format {top.get('format').value!r} is not {LOCK_FORMAT}")
    entries = []
    for kernel_id, raw in top.get("kernels").mapping().items():
        here = f"{where}: {kernel_id}"
        fields = _fields(raw, here)
        suite, release = _text(fields, "suite"), _text(fields, "release")
        if "/" in release:
            raise KernelError(f"{here}: release {release!r} contains '/'")
        packages = fields.get("packages").array()
        if not packages:
            raise KernelError(f"{here}: no packages")
        parsed = tuple(_package(p, f"{here}: package {i + 1}") for i, p in enumerate(packages))
        entries.append(LockEntry(kernel_id, suite, release, parsed))
    return Lock(_text(top, "arch"), tuple(entries))


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
    hint = UPDATE_HINT.format(id="").rstrip()
    return parse_lock(_read_json(path, hint), str(path))


def write_if_changed(path: Path, text: str) -> str:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return "unchanged"
    path.write_text(text, encoding="utf-8")
    return "written"


def checked_entry(lock: Lock, entry: CatalogueEntry) -> LockEntry:
    """The lock's entry for a catalogue entry, refused when the two no longer describe the same kernel."""
    locked = lock.get(entry.id)
    hint = UPDATE_HINT.format(id=entry.id)
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
