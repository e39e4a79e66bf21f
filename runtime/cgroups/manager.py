"""One container's cgroups across hierarchies, planned from the detected layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.cgroups.base import Cgroup, CgroupError, Limits
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup
from runtime.features.cgroups import Layout
from runtime.features.model import Finding, Where, missing

TRACKED = ("memory", "cpu", "pids")  # joined whenever available, limited or not: accounting and cleanup


class Unavailable(Exception):
    def __init__(self, controller: str, finding: Finding) -> None:
        super().__init__(controller)
        self.controller = controller
        self.finding = finding


@dataclass(frozen=True)
class Manager:
    parts: tuple[Cgroup, ...]

    def directories(self) -> list[Path]:
        return [directory for part in self.parts for directory in part.directories()]

    def create(self) -> None:
        made: list[Cgroup] = []
        try:
            for part in self.parts:
                part.create()
                made.append(part)
        except OSError:
            for part in made:
                part.destroy()
            raise

    def add(self, pid: int) -> None:
        for part in self.parts:
            part.add(pid)

    def apply(self, limits: Limits) -> None:
        for part in self.parts:
            part.apply(limits)

    def oom_kills(self) -> int:
        return sum(part.oom_kills() for part in self.parts)

    def destroy(self) -> None:
        errors: list[CgroupError] = []
        for part in self.parts:
            try:
                part.destroy()
            except CgroupError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def plan(layout: Layout, container_id: str, limits: Limits) -> Manager:
    """Where each controller lives decides which implementation handles it. Refuses (Unavailable)
    before anything is created when a limit's controller is nowhere."""
    for name in limits.controllers():
        controller = layout.controllers.get(name)
        if controller is None or controller.where not in (Where.V1, Where.V2):
            raise Unavailable(
                name, controller.finding if controller else missing(f"the kernel has no {name} controller")
            )
    where = {name: layout.controllers[name] for name in TRACKED if name in layout.controllers}
    v1 = {name: c.mount for name, c in where.items() if c.where is Where.V1 and c.mount}
    v2 = tuple(name for name, c in where.items() if c.where is Where.V2)
    parts: list[Cgroup] = []
    if v1:
        parts.append(V1Cgroup(container_id, v1))
    if layout.v2_mount:
        parts.append(V2Cgroup(container_id, v2, layout.v2_mount))
    return Manager(tuple(parts))
