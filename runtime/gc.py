"""Remove what a runtime killed with SIGKILL left behind: its container's processes, cgroups and state,
and in the image store the container roots no live container owns and the directories of imports that
no longer run."""

from __future__ import annotations

import os
import shutil
import time

from runtime import state
from runtime.cgroups.base import SIGKILL, CgroupError, kill_procs, remove
from runtime.linux import constants as c
from runtime.linux import libc
from runtime.storage import images
from runtime.storage.importer import STAGING_PREFIX, WORK_PREFIX, import_running
from runtime.storage.store import Store

STALE_SECONDS = 60  # a claim in progress has a name link and an empty directory for a moment


def collect(store: Store | None = None) -> list[str]:
    """One line for each thing removed; what live containers and running imports use is left alone."""
    store = store or Store()
    # Listed before the states are read: a run claims its state before it makes its root, so a root
    # listed here whose state is not read below belongs to no live runtime (see container.run).
    roots = _entries(store.sub("containers"))
    removed = []
    for found in state.load_all():
        if not found.runtime_alive():
            removed.append(f"{found.name} ({found.container_id}): {_clean(found)}")
    removed += _unfinished_claims()
    if os.path.isdir(store.path):
        store.ensure()  # an older runtime's store gets the modes that keep others out
        removed += _container_roots(roots) + _imports(store) + _orphan_layers(store)
    return removed


def _container_roots(roots: list[str]) -> list[str]:
    owners = {found.container_id for found in state.load_all() if found.runtime_alive()}
    removed = []
    for root in roots:
        if os.path.basename(root) in owners:
            continue
        size = _size(root)
        unmounted = _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
        note = f", {unmounted} mount(s) detached" if unmounted else ""
        removed.append(
            f"containers/{os.path.basename(root)}: a container root no live container owns ({_mib(size)}{note})"
        )
    return removed


def _imports(store: Store) -> list[str]:
    """tmp/import-* of imports that are gone: nobody holds the owner file's lock (see importer.py).
    One without an owner file (an older runtime's), and tmp/.new-* (an import killed in its first
    moment), once stale."""
    removed = []
    now = time.time()
    for work in _entries(store.sub("tmp")):
        base = os.path.basename(work)
        if base.startswith(WORK_PREFIX):
            running = import_running(work)
        elif base.startswith(STAGING_PREFIX):
            running = None
        else:
            continue
        if running or (running is None and now - os.lstat(work).st_mtime <= STALE_SECONDS):
            continue
        size = _size(work)
        shutil.rmtree(work, ignore_errors=True)
        removed.append(f"tmp/{base}: an import that is no longer running ({_mib(size)})")
    return removed


def _orphan_layers(store: Store) -> list[str]:
    """Layers an import killed in its commit moved in before the image naming them. Only when the
    store is free: an import holding it may be moving layers in right now."""
    lock = store.try_lock()
    if lock is None:
        return []
    try:
        count = images.collect_layers(store)
    finally:
        os.close(lock)
    return [f"layers: {count} layer(s) that no image names"] if count else []


def _unmount_under(root: str) -> int:
    """An overlay is mounted in the container's own mount namespace, which dies with it; but a mount
    the host sees under root would make rmtree delete through it: detach those first, deepest first."""
    root = os.path.realpath(root)  # as mountinfo names it
    with open("/proc/self/mountinfo") as file:
        points = [_unescape(line.split()[4]) for line in file]
    inside = sorted((p for p in points if p == root or p.startswith(root + "/")), key=len, reverse=True)
    for point in inside:
        try:
            libc.umount(point, c.MNT_DETACH)
        except OSError:
            pass  # already gone with an outer one
    return len(inside)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def _size(path: str) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                pass
    return total


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB"


def _unfinished_claims() -> list[str]:
    """State directories without a state file, and names that point at no container (a runtime
    killed while it claimed them)."""
    removed = []
    now = time.time()
    containers, names = (os.path.join(state.STATE_ROOT, part) for part in ("containers", "names"))
    for directory in _entries(containers):
        if (
            not os.path.exists(os.path.join(directory, "state"))
            and now - os.lstat(directory).st_mtime > STALE_SECONDS
        ):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(f"{os.path.basename(directory)}: an unfinished container directory")
    for link in _entries(names):
        target = os.path.join(containers, os.readlink(link))
        if not os.path.isdir(target) and now - os.lstat(link).st_mtime > STALE_SECONDS:
            os.unlink(link)
            removed.append(f"{os.path.basename(link)}: a name without a container")
    return removed


def _entries(directory: str) -> list[str]:
    try:
        return [os.path.join(directory, name) for name in sorted(os.listdir(directory))]
    except FileNotFoundError:
        return []


def _clean(found: state.State) -> str:
    if found.init_alive():  # the start time tells a reused PID apart
        try:
            os.kill(found.init_pid, SIGKILL)
        except ProcessLookupError:
            pass
    left = []
    for directory in found.cgroups:
        kill_procs(directory)
        try:
            remove(directory)
        except CgroupError as exc:
            left.append(str(exc))
    state.release(found)
    return "; ".join(left) if left else f"killed, {len(found.cgroups)} cgroup(s) removed"
