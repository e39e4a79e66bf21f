"""The value that answers "what can this kernel do, here, now".

Every feature is a Finding: a status, what was seen, and when it is not ok, the cause and the knob
that fixes it. Nothing is guessed: what could not be determined is UNKNOWN with the reason.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Status(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"  # the kernel does not have it
    DISABLED = "disabled"  # the kernel has it, the host turned it off (boot parameter, sysctl, blacklist)
    UNKNOWN = "unknown"  # could not be determined here; the cause says why


@dataclass(frozen=True)
class Finding:
    status: Status
    detail: str = ""
    cause: str = ""
    hint: str = ""

    @property
    def usable(self) -> bool | None:
        """True, False, or None when unknown."""
        if self.status is Status.UNKNOWN:
            return None
        return self.status is Status.OK


def ok(detail: str = "") -> Finding:
    return Finding(Status.OK, detail)


def missing(cause: str, hint: str = "", detail: str = "") -> Finding:
    return Finding(Status.MISSING, detail, cause, hint)


def disabled(cause: str, hint: str = "", detail: str = "") -> Finding:
    return Finding(Status.DISABLED, detail, cause, hint)


def unknown(cause: str, hint: str = "", detail: str = "") -> Finding:
    return Finding(Status.UNKNOWN, detail, cause, hint)


class CgroupMode(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"
    NONE = "none"
    UNKNOWN = "unknown"


class Where(enum.StrEnum):
    V1 = "v1"
    V2 = "v2"
    NONE = "none"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class KernelVersion:
    release: str
    major: int
    minor: int
    patch: int = 0

    @property
    def triple(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)


@dataclass(frozen=True)
class Controller:
    name: str
    where: Where
    mount: str | None  # the v1 hierarchy's mount point, or the v2 root
    finding: Finding


@dataclass(frozen=True)
class Cgroups:
    mode: CgroupMode
    v2_mount: str | None
    controllers: Mapping[str, Controller]
    extras: Mapping[
        str, Finding
    ]  # cgroup.kill, cgroup.freeze, memory.peak, memory.oom.group, psi, nsdelegate
    finding: Finding


@dataclass(frozen=True)
class UserNamespaces:
    root: Finding
    unprivileged: Finding
    max_user_namespaces: int | None
    unprivileged_userns_clone: int | None

    @property
    def reason(self) -> str:
        """The cause of the first verdict that says no (not merely unknown), for the JSON summary."""
        for finding in (self.root, self.unprivileged):
            if finding.status in (Status.MISSING, Status.DISABLED) and finding.cause:
                return finding.cause
        return ""


@dataclass(frozen=True)
class Overlay:
    registered: Finding
    loadable: Finding
    mountable: Finding
    in_userns: Finding


@dataclass(frozen=True)
class PivotRoot:
    usable: Finding
    root_fstype: str


@dataclass(frozen=True)
class Features:
    source: str  # "host" or "config:<path>"
    euid: int | None  # who asked; None for a config file
    kernel: KernelVersion
    cgroups: Cgroups
    namespaces: Mapping[str, Finding]
    userns: UserNamespaces
    overlay: Overlay
    pivot_root: PivotRoot
    security: Mapping[str, Finding]  # seccomp_filter, no_new_privs, ambient_caps, landlock
    syscalls: Mapping[str, Finding]  # clone3, pidfd_open, mount_api, mount_setattr
    notes: tuple[str, ...] = field(default=())
