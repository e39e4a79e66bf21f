"""Kernels for the VM matrix: Debian cloud kernels pinned by a lock file, or a user's own build.

The entry points, joining the three parts:

    kernel_catalogue.py  vm-images/kernels.json and kernels.lock.json (and KernelError)
    kernel_download.py   resolving with apt into the lock; downloading the locked .debs, sha256-checked
    kernel_tree.py       unpacking .debs into a kernel tree, indexed by kmod's depmod; reading a tree

fetch(id) downloads the locked debs and unpacks them into one cache artefact `kernel-<id>-<key>`. A
second fetch of the same lock entry finds the artefact and does nothing; apt is only started when a
locked .deb is missing from the cache or its sha256 does not match.

`python -m compat.images.kernels [--update-lock] [ID|DEB|DIR ...]` fetches (default: every id) and
prints a summary; --update-lock first re-resolves the newest versions into the lock file.
`--depmod DIR` only indexes the modules of a kernel directory.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from compat.images.cache import Cache, key
from compat.images.kernel_catalogue import (
    Catalogue,
    KernelError,
    Lock,
    checked_entry,
    load_catalogue,
    load_lock,
    lock_entry_json,
)
from compat.images.kernel_download import locked_debs, update_lock
from compat.images.kernel_tree import (
    LAYOUT,
    KernelTree,
    assemble,
    from_deb,
    from_dir,
    index_modules,
    read_tree,
    tree_size,
)

log = logging.getLogger(__name__)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


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
    locked = checked_entry(lock or load_lock(), catalogue.get(kernel_id))
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
        log.info(
            "kernel %s: %s ready in %.1f s (%s)", kernel_id, tree.release, took, _mb(tree_size(slot.path))
        )
    return tree


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
    raise KernelError(
        f"kernel {spec!r} {what}; known ids: {', '.join(catalogue.ids)}",
        hint="add it to vm-images/kernels.json, or give a linux-image .deb or a kernel directory",
    )


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
    parser.add_argument(
        "--depmod",
        type=Path,
        metavar="DIR",
        help="only index the modules of kernel directory DIR (kmod's depmod)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        if args.depmod:
            print(f"wrote {index_modules(args.depmod.absolute())}")
            return 0
        return _fetch_all(args.kernels, args.update_lock, args.rebuild)
    except KernelError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
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
        print(f"{tree.id:>6}  {tree.release:<32} {_mb(tree_size(tree.root)):>9}  {tree.source}")
    print(f"{len(trees)} kernels ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
