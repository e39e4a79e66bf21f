"""Where the cgroup hierarchies are and where each controller lives, read from /proc and /sys.

The one reader of the layout, for detection (runtime.features.cgroups adds the findings) and for
`runtime run` (which needs it fast: plain classes, strings for modes).
"""

from __future__ import annotations

from runtime.linux.mountinfo import Mount
from runtime.linux.sysroot import Sysroot

CGROUP_ROOT = "/sys/fs/cgroup"
UNIFIED = "/sys/fs/cgroup/unified"
V1, V2, HYBRID, NONE = "v1", "v2", "hybrid", "none"
# How a container's devices are limited: the v1 devices controller, an eBPF program on its cgroup2
# directory, or no cgroup mechanism at all (the caller falls back to nodev mounts).
DEVICES_V1, DEVICES_EBPF, DEVICES_NONE = "v1", "ebpf", "none"
DEVICES_SAID = {
    DEVICES_V1: "the cgroup v1 devices controller's allowlist",
    DEVICES_EBPF: "an eBPF device program on the container's cgroup v2 directory",
    DEVICES_NONE: "no cgroup mechanism here (neither a v1 devices controller nor cgroup2)",
}
V1_ONLY_CONTROLLERS = frozenset({"cpuacct", "devices", "freezer", "net_cls", "net_prio", "blkio"})
KNOWN_CONTROLLERS = (
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "net_prio",
    "perf_event", "hugetlb", "pids", "rdma", "misc", "blkio", "io",
)  # fmt: skip


class ProcCgroup:
    __slots__ = ("enabled", "hierarchy", "name")

    def __init__(self, name: str, hierarchy: int, enabled: bool) -> None:
        self.name = name
        self.hierarchy = hierarchy
        self.enabled = enabled


class Layout:
    __slots__ = ("mode", "proc", "v1", "v2_controllers", "v2_mount")

    def __init__(
        self,
        mode: str,
        v2_mount: str | None,
        v1: dict[str, Mount],
        v2_controllers: list[str],
        proc: dict[str, ProcCgroup],
    ) -> None:
        self.mode = mode
        self.v2_mount = v2_mount
        self.v1 = v1  # controller -> the v1 mount that carries it
        self.v2_controllers = v2_controllers
        self.proc = proc  # /proc/cgroups

    def where(self, name: str) -> tuple[str, str | None]:
        """("v1", mount point), ("v2", v2 root) or ("none", None)."""
        if name in self.v1:
            return V1, self.v1[name].mount_point
        implicit = name == "perf_event" and self.v2_mount is not None  # never listed in v2
        if self.v2_mount is not None and (name in self.v2_controllers or implicit):
            return V2, self.v2_mount
        return NONE, None

    def v1_mount_points(self) -> dict[str, str]:
        """Every v1 hierarchy, named ones (name=systemd) included: each of its names -> its mount point.
        A hierarchy mounted twice is one (the first mount, as where() has it); generic mount options
        (rw, xattr, clone_children, ...) are no names."""
        return {
            name: mount.mount_point
            for name, mount in self.v1.items()
            if name.startswith("name=") or name in self.proc or name in KNOWN_CONTROLLERS
        }

    def names(self) -> list[str]:
        """Every controller worth a word here, without those that only restate v1 versus v2 (v1-only
        controllers on a v2 host, io where blkio is in v1)."""
        candidates = dict.fromkeys([*self.proc, *self.v2_controllers, *KNOWN_CONTROLLERS])
        return [name for name in candidates if self._worth_reporting(name)]

    def _worth_reporting(self, name: str) -> bool:
        if self.where(name)[0] != NONE:
            return True
        if name in V1_ONLY_CONTROLLERS:
            return self.mode in (V1, HYBRID) and name in self.proc
        if name == "io":
            return self.mode == V2 or (self.mode == HYBRID and "blkio" not in self.v1)
        return True


def read_proc_cgroups(root: Sysroot) -> dict[str, ProcCgroup]:
    table: dict[str, ProcCgroup] = {}
    for line in (root.read("/proc/cgroups") or "").splitlines():
        fields = line.split()
        if len(fields) == 4 and not line.startswith("#"):
            table[fields[0]] = ProcCgroup(fields[0], int(fields[1]), fields[3] == "1")
    return table


def v1_hierarchies(root: Sysroot) -> dict[str, Mount]:
    found: dict[str, Mount] = {}
    for mount in root.mounts:
        if mount.fstype == "cgroup":
            for option in mount.super_options:
                found.setdefault(option, mount)
    return found


def detect_mode(root: Sysroot) -> tuple[str, str | None]:
    """From the statfs magic of /sys/fs/cgroup and /sys/fs/cgroup/unified."""
    if root.fs_type(CGROUP_ROOT) == "cgroup2":
        return V2, CGROUP_ROOT
    has_v1 = any(m.fstype == "cgroup" for m in root.mounts)
    unified = root.exists(UNIFIED) and root.fs_type(UNIFIED) == "cgroup2"
    if has_v1 and unified:
        return HYBRID, UNIFIED
    if has_v1:
        return V1, None
    if unified:
        return V2, UNIFIED
    return NONE, None


def read(root: Sysroot) -> Layout:
    mode, v2_mount = detect_mode(root)
    v2_controllers = root.words(f"{v2_mount}/cgroup.controllers") if v2_mount else []
    return Layout(mode, v2_mount, v1_hierarchies(root), v2_controllers, read_proc_cgroups(root))


def devices_mechanism(found: Layout, forced: str = "") -> str | None:
    """The v1 devices controller where it is mounted, else an eBPF program on the cgroup2 directory
    (cgroup2 holds device programs with no controller enabled: /sys/fs/cgroup/unified on a hybrid
    host will do), else DEVICES_NONE. forced picks one this host offers, or gets None."""
    offered = [DEVICES_V1] if "devices" in found.v1 else []
    if found.v2_mount is not None:
        offered.append(DEVICES_EBPF)
    if forced:  # the fallback (none) is always on offer
        return forced if forced in (*offered, DEVICES_NONE) else None
    return offered[0] if offered else DEVICES_NONE
