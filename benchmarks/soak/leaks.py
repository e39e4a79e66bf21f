"""What the runs may leave, counted against a snapshot taken before them: mounts, cgroups, state,
store directories, processes, namespaces and disk. Only the soak's count: a container that someone
else runs on this host meanwhile is left out."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass

from benchmarks.soak.plan import ENDLESS
from benchmarks.soak.procfs import Proc, ns_inode, pids, processes, read_bytes, start_time

STATE_ROOT = "/run/runtime"
NAMESPACES = ("mnt", "pid", "net", "uts", "ipc", "cgroup", "user")
SETTLE_SECONDS = 5.0


# --- what is there ----------------------------------------------------------------------------------


def mountinfo() -> list[list[str]]:
    with open("/proc/self/mountinfo") as file:
        return [line.split() for line in file]


def fstype(fields: list[str]) -> str:
    return fields[fields.index("-") + 1]


def host_mounts() -> Counter[str]:
    """The host's mounts as "mount point fstype source" (mount ids left out: they are reused)."""
    mounts: Counter[str] = Counter()
    for fields in mountinfo():
        separator = fields.index("-")
        mounts[f"{fields[4]} {fields[separator + 1]} {fields[separator + 2]}"] += 1
    return mounts


def nsfs_mounts() -> set[str]:
    """Bind-mounted namespaces: the root field of an nsfs mount names it, "net:[4026532...]"."""
    return {fields[3].strip("/") for fields in mountinfo() if fstype(fields) == "nsfs"}


def cgroups() -> set[str]:
    """Every directory under each hierarchy's runtime/ (v1 controllers, the unified one, v2 alone)."""
    roots = {
        os.path.join(fields[4], "runtime")
        for fields in mountinfo()
        if fstype(fields) in ("cgroup", "cgroup2")
    }
    found: set[str] = set()
    for root in roots:
        for directory, subdirectories, _ in os.walk(root):
            found.update(os.path.join(directory, name) for name in subdirectories)
    return found


def listing(directory: str) -> set[str]:
    try:
        return {os.path.join(directory, name) for name in os.listdir(directory)}
    except OSError:
        return set()


def state_entries() -> dict[str, str]:
    """Each entry of the runtime's state, with the container it is for."""
    entries = listing(f"{STATE_ROOT}/containers") | listing(f"{STATE_ROOT}/names")
    return {path: entry_owner(path) for path in entries}


def entry_owner(path: str) -> str:
    """The container a state or store entry is for: a name link's target, else the entry's name."""
    if path.startswith(f"{STATE_ROOT}/names/"):
        try:
            return os.path.basename(os.readlink(path))
        except OSError:
            return ""
    return os.path.basename(path)


def store_entries(store: str) -> set[str]:
    return listing(f"{store}/containers") | listing(f"{store}/tmp")


def store_bytes(store: str) -> int:
    """Disk used under the store, each inode once. The store's own directories (the root, containers/,
    tmp/, ...) are left out: they appear on first use, and a directory never shrinks."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, subdirectories, files in os.walk(store):
        counted = files if directory == store else files + subdirectories
        for name in counted:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def free_bytes(path: str) -> int:
    usage = os.statvfs(path)
    return usage.f_bavail * usage.f_frsize


def namespaces_held() -> dict[str, frozenset[int]]:
    """Each namespace that a process is in ("mnt:[inode]"), with those processes."""
    held: dict[str, set[int]] = {}
    for pid in pids():
        for kind in NAMESPACES:
            inode = ns_inode(pid, kind)
            if inode:
                held.setdefault(f"{kind}:[{inode}]", set()).add(pid)
    return {name: frozenset(holders) for name, holders in held.items()}


def read_state(directory: str) -> dict[str, str]:
    text = read_bytes(os.path.join(directory, "state")).decode(errors="replace")
    return {key: value for key, _, value in (line.partition("=") for line in text.splitlines())}


def live_foreign(marker: str) -> frozenset[str]:
    """Ids of containers that someone else runs right now: their directories are not the soak's."""
    ids = set()
    for directory in listing(f"{STATE_ROOT}/containers"):
        values = read_state(directory)
        pid, start = values.get("runtime_pid", ""), values.get("runtime_start", "")
        if not values.get("name", "").startswith(marker) and pid.isdigit() and start_time(int(pid)) == start:
            ids.add(os.path.basename(directory))
    return frozenset(ids)


# --- snapshots and their difference -----------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    mounts: Counter[str]
    cgroups: frozenset[str]
    state: Mapping[str, str]  # entry: the container it is for
    store: frozenset[str]
    procs: tuple[Proc, ...]
    held: Mapping[str, frozenset[int]]  # namespace: the processes in it
    nsfs: frozenset[str]  # bind-mounted namespaces
    store_bytes: int
    free_bytes: int

    def namespaces(self) -> frozenset[str]:
        return frozenset(self.held) | self.nsfs


def snapshot(store: str) -> Snapshot:
    return Snapshot(
        host_mounts(),
        frozenset(cgroups()),
        state_entries(),
        frozenset(store_entries(store)),
        tuple(processes()),
        namespaces_held(),
        frozenset(nsfs_mounts()),
        store_bytes(store),
        free_bytes(store),
    )


@dataclass(frozen=True)
class Scope:
    """Whose leaks count: the soak's containers (named with the marker), not others' in `foreign`."""

    marker: str
    store: str
    host_pidns: int
    foreign: frozenset[str]


@dataclass(frozen=True)
class Leak:
    kind: str
    items: tuple[str, ...]  # what is left (a few are shown)
    count: int  # how many; for disk, bytes


@dataclass(frozen=True)
class Leaks:
    """Each kind, expected 0 of each; notes on what is not counted; the soak's processes still there."""

    found: tuple[Leak, ...]
    notes: tuple[str, ...]
    procs: tuple[Proc, ...]

    def kinds(self) -> list[str]:
        return [leak.kind for leak in self.found if leak.count]

    def items(self, kind: str) -> tuple[str, ...]:
        return next(leak.items for leak in self.found if leak.kind == kind)


def measure(before: Snapshot, marker: str, store: str, host_pidns: int) -> Leaks:
    scope = Scope(marker, store, host_pidns, live_foreign(marker))
    return diff(before, snapshot(store), scope)


def diff(before: Snapshot, after: Snapshot, scope: Scope) -> Leaks:
    """What `after` has that `before` had not, and is the soak's."""
    notes: list[str] = []
    state = after.state
    store = new_and_ours(after.store, before.store, scope.foreign, os.path.basename)
    procs, process_leaks = _process_leaks(before, after, scope, notes)
    grown = after.store_bytes - before.store_bytes
    notes.append(
        f"disk: the store {size(before.store_bytes)} -> {size(before.store_bytes + grown)}; "
        f"free space {size(before.free_bytes)} -> {size(after.free_bytes)}"
    )
    found = (
        _leak("mounts", sorted((after.mounts - before.mounts).elements())),
        _leak("cgroups", new_and_ours(after.cgroups, before.cgroups, scope.foreign, cgroup_owner)),
        _leak("state", new_and_ours(state.keys(), before.state.keys(), scope.foreign, state.__getitem__)),
        _leak("store containers", [path for path in store if path.startswith(f"{scope.store}/containers/")]),
        _leak("store tmp", [path for path in store if path.startswith(f"{scope.store}/tmp/")]),
        *process_leaks,
        Leak("disk", (), max(0, grown)),
    )
    return Leaks(found, tuple(notes), tuple(procs))


def _process_leaks(
    before: Snapshot, after: Snapshot, scope: Scope, notes: list[str]
) -> tuple[list[Proc], tuple[Leak, Leak]]:
    """The soak's processes, and the namespaces they hold or that stay bind-mounted."""
    everyone = new_processes(before, after.procs)
    procs = soak_processes(scope.marker, scope.host_pidns, everyone)
    others = [proc for proc in everyone if proc.pidns != scope.host_pidns and proc not in procs]
    if others:
        notes.append(
            f"processes: {len(others)} other new one(s) in other PID namespaces, not the soak's (not counted): "
            + "; ".join(proc.describe() for proc in others[:3])
        )
    containers = {proc.pidns for proc in procs if proc.pidns != scope.host_pidns}
    runtimes = sum(1 for proc in procs if proc.pidns == scope.host_pidns)
    notes.append(f"processes: {len(containers)} container(s) still running, {runtimes} runtime process(es)")
    ours = {proc.pid for proc in procs}
    known = before.namespaces()
    new = {name: holders for name, holders in after.held.items() if name not in known}
    held = sorted(name for name, holders in new.items() if holders & ours)
    mounted = sorted(f"{name} (bind-mounted)" for name in after.nsfs - known)
    if len(new) > len(held):
        notes.append(
            f"namespaces: {len(new) - len(held)} new one(s) held by processes that are not the soak's (not counted)"
        )
    return procs, (
        _leak("processes", [proc.describe() for proc in procs]),
        _leak("namespaces", held + mounted),
    )


def _leak(kind: str, items: list[str]) -> Leak:
    return Leak(kind, tuple(items), len(items))


def new_and_ours(
    now: Set[str], before: Set[str], foreign: Set[str], owner: Callable[[str], str]
) -> list[str]:
    return sorted(path for path in now - before if owner(path) not in foreign)


def cgroup_owner(path: str) -> str:
    """<hierarchy>/runtime/<id>[/...]: the id."""
    parts = path.split("/")
    index = len(parts) - 1 - parts[::-1].index("runtime")
    return parts[index + 1]


def new_processes(before: Snapshot, now: Iterable[Proc]) -> list[Proc]:
    known = {(proc.pid, proc.start) for proc in before.procs}
    return [proc for proc in now if (proc.pid, proc.start) not in known]


def soak_processes(marker: str, host_pidns: int, everyone: list[Proc]) -> list[Proc]:
    """The soak's: a process whose cmdline carries the marker (a runtime, its setup process, a
    container's init, which is a fork of the runtime) or is the soak's endless command in a container,
    and every process in the PID namespace of such a process. Other people's containers on this host
    are not counted."""
    endless = " ".join(ENDLESS)
    marked = {
        proc.pid
        for proc in everyone
        if marker in proc.cmdline or (proc.cmdline == endless and proc.pidns != host_pidns)
    }
    namespaces = {proc.pidns for proc in everyone if proc.pid in marked and proc.pidns != host_pidns}
    return [proc for proc in everyone if proc.pid in marked or proc.pidns in namespaces]


def settle(before: Snapshot, marker: str, host_pidns: int) -> None:
    """A killed init takes its PID namespace's processes with it, but not at once: wait (at most 5 s)
    until no new process in a container is on its way out and the count of the soak's stops falling."""
    last, deadline = -1, time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        new = new_processes(before, processes())
        exiting = any(proc.exiting() for proc in new if proc.pidns != host_pidns)
        count = len(soak_processes(marker, host_pidns, new))
        if not exiting and count in (0, last):
            return
        last = count
        time.sleep(0.2)


def size(count: int) -> str:
    value, unit = float(count), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, larger
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
