"""One container's cgroups across hierarchies, planned from the layout."""

from __future__ import annotations

from runtime.cgroups import layout
from runtime.cgroups.base import Cgroup, CgroupError, Limits
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup


class Unavailable(Exception):
    """A limit's controller lives nowhere here."""

    def __init__(self, controller: str) -> None:
        super().__init__(controller)
        self.controller = controller


class Manager:
    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Cgroup, ...]) -> None:
        self.parts = parts

    def directories(self) -> list[str]:
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


def plan(found: layout.Layout, container_id: str, limits: Limits) -> Manager | None:
    """Each limited controller is handled where it lives; refuses (Unavailable) before anything
    is created when one lives nowhere.

    Without limits there is no cgroup at all: the PID namespace already holds every process of the
    container, and moving a process into a cgroup costs an RCU grace period (10-20 ms on some hosts),
    half of a whole `runc run`."""
    v1: dict[str, str] = {}
    v2: list[str] = []
    for name in limits.controllers():
        where, mount = found.where(name)
        if where == layout.V1 and mount:
            v1[name] = mount
        elif where == layout.V2:
            v2.append(name)
        else:
            raise Unavailable(name)
    parts: list[Cgroup] = []
    if v1:
        parts.append(V1Cgroup(container_id, v1))
    if v2 and found.v2_mount:
        parts.append(V2Cgroup(container_id, tuple(v2), found.v2_mount))
    return Manager(tuple(parts)) if parts else None
