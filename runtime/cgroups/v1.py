"""cgroup v1: one directory per hierarchy, named ones (name=systemd) included."""

from __future__ import annotations

import errno
import os

from runtime.cgroups.base import CPU_PERIOD_US, SUBTREE, Cgroup, CgroupError, Limits, read, read_keyed, write

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from runtime.cgroups.devices import Rule

CPUSET_FILES = ("cpuset.cpus", "cpuset.mems")


class V1Cgroup(Cgroup):
    def __init__(self, container_id: str, mounts: dict[str, str]) -> None:
        super().__init__(container_id, tuple(mounts))
        self.dirs = {name: os.path.join(mount, SUBTREE, container_id) for name, mount in mounts.items()}

    def directories(self) -> list[str]:
        return list(dict.fromkeys(self.dirs.values()))  # co-mounted controllers share one directory

    def create(self) -> None:
        for directory in self.directories():
            os.makedirs(directory)
        if "cpuset" in self.dirs:
            _inherit_cpuset(os.path.dirname(self.dirs["cpuset"]))
            _inherit_cpuset(self.dirs["cpuset"])

    def restrict_devices(self, rules: tuple[Rule, ...]) -> str:
        """Deny everything, then allow each rule: a new devices cgroup starts with its parent's "a *:* rwm"."""
        if "devices" not in self.dirs:
            raise CgroupError(errno.ENOENT, "no cgroup v1 devices controller is mounted")
        directory = self.dirs["devices"]
        write(os.path.join(directory, "devices.deny"), "a")
        for rule in rules:
            write(os.path.join(directory, "devices.allow"), rule.v1_line())  # one rule per write
        return f"devices: cgroup v1 devices allowlist at {directory}"

    def apply(self, limits: Limits) -> None:
        if limits.memory is not None and "memory" in self.dirs:
            memory = self.dirs["memory"]
            write(os.path.join(memory, "memory.limit_in_bytes"), str(limits.memory))
            memsw = os.path.join(memory, "memory.memsw.limit_in_bytes")
            if os.path.exists(memsw):
                write(memsw, str(limits.memory))  # no swap on top of the limit
        if limits.cpus is not None and "cpu" in self.dirs:
            write(os.path.join(self.dirs["cpu"], "cpu.cfs_period_us"), str(CPU_PERIOD_US))
            write(os.path.join(self.dirs["cpu"], "cpu.cfs_quota_us"), str(round(limits.cpus * CPU_PERIOD_US)))
        if limits.pids is not None and "pids" in self.dirs:
            write(os.path.join(self.dirs["pids"], "pids.max"), str(limits.pids))
        if limits.cpuset_cpus is not None and "cpuset" in self.dirs:
            # after create()'s inherit step: cpuset.mems stays the parent's
            write(os.path.join(self.dirs["cpuset"], "cpuset.cpus"), limits.cpuset_cpus)

    def oom_kills(self) -> int:
        if "memory" not in self.dirs:
            return 0
        control = read_keyed(os.path.join(self.dirs["memory"], "memory.oom_control"))
        if "oom_kill" in control:  # 4.13+
            return control["oom_kill"]
        return 1 if read(os.path.join(self.dirs["memory"], "memory.failcnt")).strip() not in ("", "0") else 0


def _inherit_cpuset(directory: str) -> None:
    """A new v1 cpuset has no CPUs and no memory nodes, and refuses processes (ENOSPC) until it gets
    some: its parent's, as cgroup.clone_children would have copied them."""
    parent = os.path.dirname(directory)
    for name in CPUSET_FILES:
        path = os.path.join(directory, name)
        if os.path.exists(path) and not read(path).strip():
            write(path, read(os.path.join(parent, name)).strip())
