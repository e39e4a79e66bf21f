"""Remove what a runtime killed with SIGKILL left behind: its container's processes, cgroups and state."""

from __future__ import annotations

import os

from runtime import state
from runtime.cgroups.base import SIGKILL, CgroupError, kill_procs, remove


def collect() -> list[str]:
    """One line for each container whose runtime is gone; live ones are left alone."""
    removed = []
    for found in state.load_all():
        if not found.runtime_alive():
            removed.append(f"{found.name} ({found.container_id}): {_clean(found)}")
    return removed


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
