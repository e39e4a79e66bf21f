"""After the runs: `runtime gc`, again once gc's grace for unfinished claims is over; and, once the
leaks are counted, the removal of what the runtime left, so that the next soak starts clean."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable

from benchmarks.soak.leaks import Leaks, Snapshot, live_foreign, mountinfo, new_and_ours, state_entries
from benchmarks.soak.procfs import sigkill, start_time

# What gc waits for before it removes a claim that has no state file yet (runtime/gc.py STALE_SECONDS).
GC_GRACE_SECONDS = 60
# The kinds of leak that are paths to remove, after the processes and the cgroups.
ENTRY_KINDS = ("store containers", "store tmp", "state")


def collect(gc: Callable[[], str], before: Snapshot, marker: str, say: Callable[[str], None]) -> None:
    """`runtime gc`, then again once the claims of runtimes killed during start-up are old enough for
    gc to take them (it leaves a claim alone for a while: it may be in progress)."""
    say(f"gc: {gc()}")
    now = state_entries()
    waiting = new_and_ours(now.keys(), before.state.keys(), live_foreign(marker), now.__getitem__)
    if waiting:
        newest = max(_mtime(path) for path in waiting)
        pause = min(GC_GRACE_SECONDS + 1.0, max(0.0, newest + GC_GRACE_SECONDS + 1.0 - time.time()))
        if pause:
            say(
                f"gc: {len(waiting)} state entries left; waiting {pause:.0f} s, the age at which gc takes a claim"
            )
            try:
                time.sleep(pause)
            except KeyboardInterrupt:
                say("gc: interrupted: no more waiting")
    say(f"gc: {gc()}")


def clean_up_leaks(leaks: Leaks, say: Callable[[str], None]) -> None:
    """What the runtime left, removed once counted: the soak's processes first, then their cgroups,
    store directories and state."""
    killed = sum(1 for proc in leaks.procs if start_time(proc.pid) == proc.start and sigkill(proc.pid))
    if killed:
        time.sleep(0.5)
    removed = Counter[str]()
    for path in sorted(leaks.items("cgroups"), key=len, reverse=True):  # the deepest first
        try:
            os.rmdir(path)
            removed["cgroup"] += 1
        except OSError:
            pass
    mount_points = [fields[4] for fields in mountinfo()]
    for kind in ENTRY_KINDS:
        for path in leaks.items(kind):
            if any(point == path or point.startswith(path + "/") for point in mount_points):
                continue  # never delete through a mount
            _remove(path)
            removed[kind] += 1
    if killed or removed:
        what = ", ".join(f"{count} {kind}" for kind, count in removed.items()) or "nothing else"
        say(f"cleanup (--keep-leaks keeps them): killed {killed} leaked process(es); removed {what}")


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    try:
        os.unlink(path)
    except OSError:
        pass


def _mtime(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0
