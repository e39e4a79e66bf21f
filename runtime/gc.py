"""Remove what a runtime killed with SIGKILL left behind: its container's processes, cgroups and state."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from runtime import state
from runtime.cgroups.base import CgroupError, kill_procs, remove


def collect() -> list[str]:
    removed = []
    for found in state.load_all():
        if found.runtime_alive():
            continue
        removed.append(f"{found.name} ({found.container_id}): {_clean(found)}")
    return removed


def _clean(found: state.State) -> str:
    if found.init_pid and _is_container_init(found):
        with contextlib.suppress(ProcessLookupError):
            os.kill(found.init_pid, signal.SIGKILL)
    left = []
    for directory in map(Path, found.cgroups):
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
        lines = Path(f"/proc/{found.init_pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    return any(line.rsplit(":", 1)[-1].endswith(f"/{found.container_id}") for line in lines)
