"""The artefact cache: content-addressed by what went into a build, safe against two builders.

    <root>/artifacts/<name>-<key>/   a finished build; only ever made by renaming a finished tmp dir
    <root>/tmp/<name>-<key>-<pid>/   a build in progress; removed when it fails
    <root>/locks/<name>-<key>.lock   flock'ed while that artefact is built

The root is $KCOMPAT_CACHE, or ~/.cache/kcompat. A key is a hash of the inputs: package versions and
checksums, recipe files, scripts. The same inputs give the same key, so a second run builds nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
KEY_LENGTH = 16


def cache_root() -> Path:
    configured = os.environ.get("KCOMPAT_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "kcompat"


def key(*inputs: object) -> str:
    """A stable hash of JSON-able inputs; file contents go in as their sha256 (see file_digest)."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:KEY_LENGTH]


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Slot:
    """Where a build writes (work) and where the finished artefact lives (path)."""

    name: str
    path: Path
    work: Path
    hit: bool


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()

    def path(self, name: str, build_key: str) -> Path:
        return self.root / "artifacts" / f"{name}-{build_key}"

    def has(self, name: str, build_key: str) -> bool:
        return self.path(name, build_key).is_dir()

    @contextmanager
    def build(self, name: str, build_key: str, rebuild: bool = False) -> Iterator[Slot]:
        """Yield a slot: a hit (nothing to do) or a fresh work dir that becomes the artefact only if
        the with-block ends without an exception."""
        final = self.path(name, build_key)
        if final.is_dir() and not rebuild:
            yield Slot(name, final, final, hit=True)
            return
        for sub in ("artifacts", "tmp", "locks"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        with self._lock(f"{name}-{build_key}"):
            if final.is_dir() and not rebuild:  # another builder finished it while we waited
                yield Slot(name, final, final, hit=True)
                return
            work = self.root / "tmp" / f"{name}-{build_key}-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            try:
                yield Slot(name, final, work, hit=False)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            if final.is_dir():
                shutil.rmtree(final)
            work.rename(final)
            log.info("built %s", final.name)

    @contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        fd = os.open(self.root / "locks" / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
