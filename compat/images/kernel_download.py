"""Resolving catalogue kernels with apt, and downloading the .debs the lock file pins.

apt runs on a private state under <cache>/apt (never the host's), against the host's own Debian mirror.
Each locked .deb becomes a cache artefact `deb-<package>-<key of its sha256>`; apt is only started when
one is missing from the cache or its sha256 does not match, and a download is checked against the lock.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cmp_to_key
from pathlib import Path

from compat.images.apt import (
    AptError,
    AptSource,
    PackageNotFound,
    PrivateApt,
    compare_versions,
    host_mirror,
    update_verified,
)
from compat.images.cache import Cache, file_digest, key
from compat.images.kernel_catalogue import (
    LOCK_PATH,
    UPDATE_HINT,
    Catalogue,
    CatalogueEntry,
    KernelError,
    Lock,
    LockedPackage,
    LockEntry,
    dump_lock,
    load_catalogue,
    load_lock,
    write_if_changed,
)
from compat.proc import CommandError

log = logging.getLogger(__name__)
MIRROR_HINT = "check that this machine reaches the Debian mirror in its apt sources (apt-get update)"


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
        raise KernelError(f"{what}: {exc}", MIRROR_HINT) from exc


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
    hint = UPDATE_HINT.format(id=kernel_id)
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
        log.info("kernel %s: downloading %s %s (%.1f MB)", kernel_id, pkg.name, pkg.version, pkg.size / 1e6)
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
                f"if the archive really changed this file, {UPDATE_HINT.format(id=kernel_id)}",
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


def flavour_deb(kernel_id: str, flavour: str, cache: Cache | None = None) -> Path:
    """The linux-image .deb of another flavour (amd64, rt-amd64) of a catalogue kernel's locked
    release, through the private apt state: Debian's generic and rt kernels, to qualify as candidates."""
    cache = cache or Cache()
    catalogue = load_catalogue()
    locked = load_lock().get(kernel_id)
    if locked is None:
        raise KernelError(f"kernel {kernel_id} is not in {LOCK_PATH.name}", UPDATE_HINT.format(id=kernel_id))
    release = locked.release.removesuffix(f"-{catalogue.get(kernel_id).flavour}")
    package = f"linux-image-{release}-{flavour}"
    with _apt_errors(f"kernel {kernel_id}: cannot update the apt lists of {catalogue.get(kernel_id).suite}"):
        apt = open_apt(catalogue.get(kernel_id), host_mirror(), cache.root / "apt", catalogue.fallback_suites)
    with _apt_errors(f"kernel {kernel_id}: cannot look up {package}"):
        version = apt.candidate_version(package)
    with (
        cache.build(f"deb-{package}", key(version)) as slot,
        _apt_errors(f"kernel {kernel_id}: cannot download {package}"),
    ):
        if not slot.hit:
            apt.download(package, slot.work)
    return next(slot.path.glob("*.deb"))
