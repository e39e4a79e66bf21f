"""cgroup v2: a leaf under the runtime's own subtree, controllers enabled on the way down."""

from __future__ import annotations

import os

from runtime.cgroups.base import CPU_PERIOD_US, SUBTREE, Cgroup, Limits, kill_procs, read, read_keyed, write

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from runtime.cgroups.devices import Rule


class V2Cgroup(Cgroup):
    def __init__(self, container_id: str, controllers: tuple[str, ...], mount: str) -> None:
        super().__init__(container_id, controllers)
        self.mount = mount
        self.subtree = os.path.join(mount, SUBTREE)
        self.leaf = os.path.join(self.subtree, container_id)

    def directories(self) -> list[str]:
        return [self.leaf]

    def create(self) -> None:
        try:
            os.mkdir(self.subtree)
        except FileExistsError:
            pass
        for parent in (self.mount, self.subtree):
            control = os.path.join(parent, "cgroup.subtree_control")
            enabled = read(control).split()
            wanted = [f"+{name}" for name in self.controllers if name not in enabled]
            if wanted:
                write(control, " ".join(wanted))
        os.mkdir(self.leaf)

    def apply(self, limits: Limits) -> None:
        if limits.memory is not None and "memory" in self.controllers:
            write(self._file("memory.max"), str(limits.memory))
            if os.path.exists(self._file("memory.swap.max")):
                write(self._file("memory.swap.max"), "0")  # the limit is the whole budget
        if limits.cpus is not None and "cpu" in self.controllers:
            write(self._file("cpu.max"), f"{round(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        if limits.pids is not None and "pids" in self.controllers:
            write(self._file("pids.max"), str(limits.pids))
        if limits.cpuset_cpus is not None and "cpuset" in self.controllers:
            # cpuset.mems is left empty: a v2 cpuset without its own takes its parent's
            write(self._file("cpuset.cpus"), limits.cpuset_cpus)

    def restrict_devices(self, rules: tuple[Rule, ...]) -> str:
        """cgroup v2 has no devices files: an eBPF program on the leaf decides each open and mknod."""
        from runtime.cgroups.devices import program
        from runtime.linux import bpf

        code = program(rules)
        bpf.attach_to_cgroup(
            self.leaf, bpf.BPF_PROG_TYPE_CGROUP_DEVICE, code, bpf.BPF_CGROUP_DEVICE, "runtime_devices"
        )
        return f"devices: eBPF device program on {self.leaf}"

    def _file(self, name: str) -> str:
        return os.path.join(self.leaf, name)

    def oom_kills(self) -> int:
        return read_keyed(self._file("memory.events")).get("oom_kill", 0)

    def kill_all(self) -> None:
        if os.path.exists(self._file("cgroup.kill")):
            try:
                write(self._file("cgroup.kill"), "1")
                return
            except OSError:
                pass
        kill_procs(self.leaf)
