"""Step 1 of the guest rootfs: the debootstrap tree, from the host's mirror, made the same on any host.

debootstrap runs as root with the recipe's suite, variant, arch and packages (a progress line every
HEARTBEAT_SECONDS); what it leaves mounted in the target is unmounted, whatever happens. Then apt's
lists and caches, and what names the mirror or the host, are removed, so the tree's cache key never
has to include the mirror.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compat.images.apt import DEFAULT_KEYRING, AptSource
from compat.images.recipe import Recipe, RootfsError
from compat.images.treefiles import inside, manifest, write
from compat.proc import run, tail

log = logging.getLogger(__name__)

MIB = 1 << 20
HEARTBEAT_SECONDS = 15.0
LC_C = {"LC_ALL": "C"}

# Host tools a build needs, with the Debian package that has each.
BUILD_TOOLS = {
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "ssh-keygen": "openssh-client",
    "useradd": "passwd",
    "groupadd": "passwd",
    "chroot": "coreutils",
}


def keyring_for(mirror: AptSource) -> str:
    """The keyring file that verifies the mirror; Debian's own when the source names none (or
    embeds its key inline, which debootstrap cannot use)."""
    signed_by = mirror.signed_by
    return signed_by if signed_by and signed_by.startswith("/") else DEFAULT_KEYRING


def debootstrap_argv(recipe: Recipe, mirror: AptSource, target: Path) -> list[str]:
    argv = ["debootstrap", f"--variant={recipe.variant}", f"--arch={recipe.arch}"]
    if recipe.include:
        argv.append(f"--include={','.join(recipe.include)}")
    return [*argv, f"--keyring={keyring_for(mirror)}", recipe.suite, str(target), mirror.uri]


def require_build_host() -> None:
    if os.geteuid() != 0:
        raise RootfsError(
            "building the guest rootfs needs root (debootstrap makes device nodes and owned files)",
            "run as root, or point KCOMPAT_CACHE at a cache that already has the image",
        )
    missing = sorted({pkg for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise RootfsError(
            "tools to build the guest rootfs are missing", f"apt-get install {' '.join(missing)}"
        )


def make_tree(recipe: Recipe, mirror: AptSource, out: Path) -> None:
    target = out / "tree"
    started = time.monotonic()
    _debootstrap(recipe, mirror, target)
    seconds = time.monotonic() - started
    _scrub(target, out)
    size = tree_bytes(target)
    version = run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"], check=False, capture=True).stdout
    manifest(
        out, {**recipe.tree_inputs(), "debootstrap": version, "seconds": round(seconds, 1), "bytes": size}
    )
    log.info("debootstrap %s (%s): %.0f s, %d MiB tree", recipe.suite, recipe.variant, seconds, size // MIB)


def _debootstrap(recipe: Recipe, mirror: AptSource, target: Path) -> None:
    argv = debootstrap_argv(recipe, mirror, target)
    log.info(
        "debootstrap %s (%s, from the host's mirror) with %s",
        recipe.suite,
        recipe.variant,
        ", ".join(recipe.include),
    )
    try:
        with _heartbeat(f"debootstrap {recipe.suite}", target):
            proc = run(argv, check=False, capture=True, env=LC_C)
    finally:
        _unmount_below(target)
    # Its I:/W:/E: lines go to stdout; everything else to target/debootstrap/debootstrap.log.
    for line in proc.stdout.splitlines():
        log.debug("debootstrap: %s", line)
        if line.startswith("W: "):
            log.warning("debootstrap: %s", line[3:])
    if proc.returncode != 0:
        detail = tail(proc.stdout) or _last_line(target / "debootstrap" / "debootstrap.log")
        raise RootfsError(
            f"debootstrap of {recipe.suite} from {mirror.uri} failed (exit {proc.returncode}): {detail}",
            f"check the host's apt sources, the keyring {keyring_for(mirror)} (debian-archive-keyring) "
            "and the package names in vm-images/rootfs.json",
        )


@contextmanager
def _heartbeat(what: str, tree: Path) -> Iterator[None]:
    """Log a progress line every HEARTBEAT_SECONDS while the with-block runs."""
    started = time.monotonic()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            last = _last_line(tree / "debootstrap" / "debootstrap.log")
            log.info(
                "%s: %.0f s, %d MiB so far; %s",
                what,
                time.monotonic() - started,
                tree_bytes(tree) // MIB,
                last,
            )

    thread = threading.Thread(target=beat, name="rootfs-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _last_line(path: Path, limit: int = 120) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 4096))
            lines = [
                line.strip() for line in file.read().decode(errors="replace").splitlines() if line.strip()
            ]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def mounts_below(path: Path, mountinfo: str) -> list[str]:
    """Mount points at or under path in mountinfo's text, deepest first."""
    top = str(path.resolve())
    points = [_unescape(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]
    return sorted((p for p in points if p == top or p.startswith(top + "/")), key=len, reverse=True)


def _unmount_below(path: Path) -> None:
    """Detach what a failed or killed debootstrap left mounted in the target (proc, sys)."""
    for point in mounts_below(path, Path("/proc/self/mountinfo").read_text(encoding="utf-8")):
        log.warning("unmounting %s, left behind by debootstrap", point)
        run(["umount", "--lazy", point])


def _scrub(tree: Path, out: Path) -> None:
    """Remove apt's lists and caches, and what debootstrap copied from the host or wrote about the
    mirror, so that the tree is the same from any mirror on any host."""
    for rel in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for entry in inside(tree, rel).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    for cache_file in inside(tree, "var/cache/apt").glob("*.bin"):
        cache_file.unlink()
    log_file = inside(tree, "var/log/bootstrap.log")
    if log_file.is_file():
        shutil.move(log_file, out / "debootstrap.log")
    for rel in ("etc/resolv.conf", "etc/hostname"):
        inside(tree, rel).unlink(missing_ok=True)
    write(tree, "etc/apt/sources.list", "# The guest has no mirror: the image was built from the host's.\n")


def tree_bytes(root: Path) -> int:
    """Disk usage of the tree, like du: allocated blocks, each hard-linked inode once. Entries that
    vanish while it counts are skipped."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
