"""Remove what a runtime killed with SIGKILL left behind: its container's processes, cgroups and state."""

from __future__ import annotations

import os
import shutil
import time

from runtime import state
from runtime.cgroups.base import SIGKILL, CgroupError, kill_procs, remove

STALE_SECONDS = 60  # a claim in progress has a name link and an empty directory for a moment


def collect() -> list[str]:
    """One line for each container whose runtime is gone; live ones are left alone."""
    removed = []
    for found in state.load_all():
        if not found.runtime_alive():
            removed.append(f"{found.name} ({found.container_id}): {_clean(found)}")
    return removed + _unfinished_claims()


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
