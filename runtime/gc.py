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
    if found.init_pid and _is_container_init(found):
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


def _is_container_init(found: state.State) -> bool:
    """A PID is reused: trust it only while it still sits in one of the container's cgroups."""
    try:
        with open(f"/proc/{found.init_pid}/cgroup") as file:
            lines = file.read().splitlines()
    except OSError:
        return False
    return any(line.rsplit(":", 1)[-1].endswith(f"/{found.container_id}") for line in lines)
