"""One container's cgroups across hierarchies, planned from the layout."""

from __future__ import annotations

from runtime.cgroups import layout
from runtime.cgroups.base import Cgroup, CgroupError, Limits
from runtime.cgroups.devices import DEFAULT_RULES, Rule
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup


class Unavailable(Exception):
    """A limit's controller lives nowhere here."""

    def __init__(self, controller: str) -> None:
        super().__init__(controller)
        self.controller = controller


class DevicesUnrestricted(Exception):
    """No cgroup can limit the container's devices here; str() says why (the caller falls back)."""


class Manager:
    __slots__ = ("devices", "devices_restricted", "parts")

    def __init__(self, parts: tuple[Cgroup, ...], devices: str = layout.DEVICES_NONE) -> None:
        self.parts = parts
        self.devices = devices  # the mechanism planned: layout.DEVICES_V1, DEVICES_EBPF or DEVICES_NONE
        self.devices_restricted = False  # set once restrict_devices() has put it in place

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

    def restrict_devices(self, rules: tuple[Rule, ...] = DEFAULT_RULES) -> str:
        """Allow only rules' devices (Docker's list), on cgroups made but not yet joined: call it after
        create() and before add(). Returns what it did, in a line for --verbose; raises
        DevicesUnrestricted with the reason where nothing here can (no devices controller nor cgroup2,
        or the kernel refuses the eBPF program, as without CONFIG_CGROUP_BPF)."""
        part = self._devices_part()
        try:
            done = part.restrict_devices(rules)
        except OSError as exc:
            raise DevicesUnrestricted(f"{layout.DEVICES_SAID[self.devices]} failed: {exc}") from exc
        self.devices_restricted = True
        return done

    def _devices_part(self) -> V1Cgroup | V2Cgroup:
        wanted = {layout.DEVICES_V1: V1Cgroup, layout.DEVICES_EBPF: V2Cgroup}.get(self.devices)
        for part in self.parts:
            if wanted is not None and isinstance(part, wanted):
                return part
        raise DevicesUnrestricted(layout.DEVICES_SAID[layout.DEVICES_NONE])

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


class NoCgroups(Manager):
    """The Manager where no cgroup hierarchy is mounted: nothing to make, join, limit or remove (it has
    no parts), no OOM kills to count, and devices left to the caller's fallback."""

    __slots__ = ()

    NO_HIERARCHY = "no cgroup hierarchy is mounted here"

    def __init__(self) -> None:
        super().__init__(())

    def restrict_devices(self, rules: tuple[Rule, ...] = DEFAULT_RULES) -> str:  # noqa: ARG002 - Manager's signature
        raise DevicesUnrestricted(self.NO_HIERARCHY)


def plan(found: layout.Layout, container_id: str, limits: Limits, devices: str | None = None) -> Manager:
    """A cgroup in every hierarchy mounted here (each v1 one, named ones too, and cgroup2), so that
    the cgroup namespace the init unshares once it is moved is rooted at the container's own cgroup
    everywhere: without it a container that gains a user namespace could mount a v1 hierarchy and
    write the host's cgroups. Each limit goes where its controller lives; refuses (Unavailable)
    before anything is created when one lives nowhere. devices is the mechanism
    (layout.devices_mechanism's choice when None).

    Nothing is moved where the kernel allows: the setup process is born in the cgroup2 one and joins
    the v1 ones itself (see launch._open_cgroups_for_birth). A move costs one RCU grace period
    (10-20 ms on some hosts) for the first hierarchy, the others follow at once (the sync the first
    one waited for is still in force), and the init mounts meanwhile (see launch._join_cgroups)."""
    v2: list[str] = []
    for name in limits.controllers():
        where, _ = found.where(name)
        if where == layout.V2:
            v2.append(name)
        elif where != layout.V1:
            raise Unavailable(name)
    parts: list[Cgroup] = []
    hierarchies = found.v1_mount_points()
    if hierarchies:
        parts.append(V1Cgroup(container_id, hierarchies))
    if found.v2_mount:
        parts.append(V2Cgroup(container_id, tuple(v2), found.v2_mount))
    chosen = devices if devices is not None else layout.devices_mechanism(found)
    return Manager(tuple(parts), chosen or layout.DEVICES_NONE)
