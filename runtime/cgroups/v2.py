"""cgroup v2: a leaf under the runtime's own subtree, controllers enabled on the way down."""

from __future__ import annotations

import contextlib
from pathlib import Path

from runtime.cgroups.base import SUBTREE, Cgroup, Limits, kill_procs, read_keyed, write

CPU_PERIOD_US = 100_000


class V2Cgroup(Cgroup):
    def __init__(self, container_id: str, controllers: tuple[str, ...], mount: str) -> None:
        super().__init__(container_id, controllers)
        self.mount = Path(mount)
        self.leaf = self.mount / SUBTREE / container_id

    def directories(self) -> list[Path]:
        return [self.leaf]

    def create(self) -> None:
        subtree = self.mount / SUBTREE
        subtree.mkdir(exist_ok=True)
        for parent in (self.mount, subtree):
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            wanted = [f"+{name}" for name in self.controllers if name not in enabled]
            if wanted:
                write(parent / "cgroup.subtree_control", " ".join(wanted))
        self.leaf.mkdir()

    def apply(self, limits: Limits) -> None:
        if limits.memory is not None and "memory" in self.controllers:
            write(self.leaf / "memory.max", str(limits.memory))
            if (self.leaf / "memory.swap.max").exists():
                write(self.leaf / "memory.swap.max", "0")  # the limit is the whole budget
        if limits.cpus is not None and "cpu" in self.controllers:
            write(self.leaf / "cpu.max", f"{round(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        if limits.pids is not None and "pids" in self.controllers:
            write(self.leaf / "pids.max", str(limits.pids))

    def oom_kills(self) -> int:
        return read_keyed(self.leaf / "memory.events").get("oom_kill", 0)

    def kill_all(self) -> None:
        kill = self.leaf / "cgroup.kill"
        if kill.exists():
            with contextlib.suppress(OSError):
                kill.write_text("1")
                return
        kill_procs(self.leaf)
