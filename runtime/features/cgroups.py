"""Cgroup layout: the mode, where each controller lives, and the v2 extras.

Read-only except for one thing: when no non-root v2 cgroup exists to look at, root makes an empty
probe cgroup and removes it again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from runtime.cgroups import layout
from runtime.features.model import (
    CgroupMode,
    Cgroups,
    Controller,
    Finding,
    KernelVersion,
    Where,
    disabled,
    missing,
    ok,
    unknown,
)
from runtime.linux.sysroot import Sysroot

if TYPE_CHECKING:  # kconfig pulls in tarfile; `runtime run` never needs it on its start path
    from runtime.features.kconfig import KernelConfig

V1_ONLY_OPTIONS = {"memory": "MEMCG_V1", "cpuset": "CPUSETS_V1"}
# The v2 files the runtime uses, with the first Linux that has each (fromconfig and compat's matrix
# read them here); the memory files also need the memory controller in the v2 hierarchy.
CORE_FILES = {"cgroup.kill": (5, 14), "cgroup.freeze": (5, 2)}
MEMORY_FILES = {"memory.peak": (5, 19), "memory.oom.group": (4, 19)}
V2_HINT = (
    "boot with cgroup v2: mount only cgroup2 on /sys/fs/cgroup (systemd: systemd.unified_cgroup_hierarchy=1)"
)


def controllers(
    root: Sysroot, found: layout.Layout, config: KernelConfig | None = None
) -> dict[str, Controller]:
    """Every controller with where it lives and, where it lives nowhere, why."""
    context = _Context(root, found, CgroupMode(found.mode), config)
    return {name: context.controller(name) for name in found.names()}


def detect(root: Sysroot, kernel: KernelVersion, config: KernelConfig | None, euid: int | None) -> Cgroups:
    found = layout.read(root)
    mode = CgroupMode(found.mode)
    where = controllers(root, found, config)
    return Cgroups(
        mode=mode,
        v2_mount=found.v2_mount,
        controllers=where,
        extras=detect_extras(root, kernel, found.v2_mount, where, euid),
        finding=_mode_finding(mode, found.v2_mount, where),
    )


class _Context:
    def __init__(
        self, root: Sysroot, found: layout.Layout, mode: CgroupMode, config: KernelConfig | None
    ) -> None:
        self.root = root
        self.mode = mode
        self.v2_mount = found.v2_mount
        self.layout = found
        self.proc = found.proc
        self.config = config

    def controller(self, name: str) -> Controller:
        where, mount = self.layout.where(name)
        if where == layout.V1:
            return Controller(name, Where.V1, mount, ok(f"v1 at {mount}"))
        if where == layout.V2:
            return Controller(name, Where.V2, mount, ok(self._v2_detail(name)))
        return Controller(name, Where.NONE, None, self._why_nowhere(name))

    def _v2_detail(self, name: str) -> str:
        detail = f"v2 at {self.v2_mount}"
        if name == "perf_event":
            detail += " (implicit, never listed)"
        option = V1_ONLY_OPTIONS.get(name)
        if (
            self.mode is CgroupMode.HYBRID
            and option
            and self.config is not None
            and self.config.value(option) == "n"
        ):
            detail += f"; kernel built without CONFIG_{option}, so v1 cannot have it"
        elif self.mode is CgroupMode.HYBRID:
            detail += "; no v1 hierarchy is mounted with it"
        return detail

    def _why_nowhere(self, name: str) -> Finding:
        cmdline = self.root.cmdline
        entry = self.proc.get(name)
        if name in cmdline.get("cgroup_disable", "").split(","):
            return disabled(
                f"disabled at boot (cgroup_disable={name})",
                f"remove cgroup_disable={name} from the kernel command line",
            )
        if entry is not None and not entry.enabled:
            return disabled(
                "listed as disabled in /proc/cgroups", "check cgroup_disable= on the kernel command line"
            )
        if self.mode is CgroupMode.NONE:
            return missing("no cgroup hierarchy is mounted", "mount cgroup2 on /sys/fs/cgroup")
        option = V1_ONLY_OPTIONS.get(name)
        if option and self.v2_mount is None:
            return self._v1_only_host(name, option)
        no_v1 = cmdline.get("cgroup_no_v1", "").split(",")
        if self.v2_mount is None and ("all" in no_v1 or name in no_v1):
            return disabled(
                f"cgroup_no_v1={cmdline['cgroup_no_v1']} forbids v1 and no v2 hierarchy is mounted", V2_HINT
            )
        if entry is None:
            return missing(
                "the kernel does not have this controller (not in /proc/cgroups nor cgroup.controllers)"
            )
        mount_v1 = f"mount -t cgroup -o {name} cgroup /sys/fs/cgroup/{name}"
        if name in layout.V1_ONLY_CONTROLLERS:
            return disabled("a v1-only controller, and no v1 hierarchy is mounted with it", mount_v1)
        where = (
            f"and {self.v2_mount}/cgroup.controllers does not list it"
            if self.v2_mount
            else "and no v2 hierarchy"
        )
        return disabled(
            f"the kernel has it, but no v1 hierarchy is mounted with it {where}", f"{mount_v1}, or {V2_HINT}"
        )

    def _v1_only_host(self, name: str, option: str) -> Finding:
        if self.config is not None and self.config.value(option) == "n":
            return missing(
                f"kernel built without CONFIG_{option}: no v1 {name} controller, and this host mounts only v1",
                V2_HINT,
            )
        cause = f"no v1 hierarchy carries {name} and no v2 hierarchy is mounted"
        if self.config is None:
            cause += f" (kernels built without CONFIG_{option}, such as Debian's 6.12+, have no v1 {name})"
        return disabled(cause, f"mount -t cgroup -o {name} cgroup /sys/fs/cgroup/{name}, or {V2_HINT}")


def _mode_finding(mode: CgroupMode, v2_mount: str | None, controllers: dict[str, Controller]) -> Finding:
    if mode is CgroupMode.NONE:
        return missing(
            "nothing mounted at /sys/fs/cgroup", "mount cgroup2 on /sys/fs/cgroup (or boot an init that does)"
        )
    if mode is CgroupMode.HYBRID:
        in_v2 = sorted(c.name for c in controllers.values() if c.where is Where.V2 and c.name != "perf_event")
        shown = ", ".join(in_v2) if in_v2 else "none (empty)"
        return ok(f"hybrid: v1 controllers plus cgroup2 at {v2_mount}; controllers in v2: {shown}")
    if mode is CgroupMode.V2:
        return ok(f"unified: cgroup2 at {v2_mount}")
    return ok("legacy: v1 hierarchies only")


# --- v2 extras ---------------------------------------------------------------------------------------


def detect_extras(
    root: Sysroot,
    kernel: KernelVersion,
    v2_mount: str | None,
    controllers: dict[str, Controller],
    euid: int | None,
) -> dict[str, Finding]:
    extras = {"psi": _psi(root), "nsdelegate": _nsdelegate(root, v2_mount)}
    if v2_mount is None:
        no_v2 = disabled("no cgroup v2 hierarchy is mounted", V2_HINT)
        return {name: no_v2 for name in (*CORE_FILES, *MEMORY_FILES)} | extras
    memory_elsewhere = _memory_not_in_v2(controllers)
    with _non_root_cgroup(root, v2_mount, euid) as (where, why_not):
        if where is None:
            found = {name: unknown(why_not) for name in (*CORE_FILES, *MEMORY_FILES)}
        else:
            found = {name: _core_file(root, where, name, kernel, since) for name, since in CORE_FILES.items()}
            found |= {name: _memory_file(root, where, name) for name in MEMORY_FILES}
    if memory_elsewhere is not None:
        found |= {name: memory_elsewhere for name in MEMORY_FILES}
    return found | extras


@contextlib.contextmanager
def _non_root_cgroup(root: Sysroot, v2_mount: str, euid: int | None) -> Iterator[tuple[str | None, str]]:
    """A non-root v2 cgroup to look at: ours, an existing one, or an empty one made for the look."""
    own = _own_v2_cgroup(root)
    if own not in (None, "/") and root.exists(f"{v2_mount}{own}"):
        yield f"{v2_mount}{own}", ""
        return
    for name in root.listdir(v2_mount):
        if root.is_dir(f"{v2_mount}/{name}"):
            yield f"{v2_mount}/{name}", ""
            return
    if not root.live or euid != 0:
        yield None, "no non-root cgroup exists under the v2 hierarchy, and only root may make one to look"
        return
    probe = Path(v2_mount) / f"runtime-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError as exc:
        yield None, f"cannot make a probe cgroup {probe}: {exc.strerror}"
        return
    try:
        yield str(probe), ""
    finally:
        probe.rmdir()


def _own_v2_cgroup(root: Sysroot) -> str | None:
    for line in (root.read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            return line[3:].strip()
    return None


def _core_file(
    root: Sysroot, where: str, name: str, kernel: KernelVersion, since: tuple[int, int]
) -> Finding:
    if root.exists(f"{where}/{name}"):
        return ok(f"{name} present")
    version = dotted(since)
    return missing(
        f"no {name} in {where}: added in Linux {version}, this is {kernel.release}", f"needs Linux {version}+"
    )


def dotted(since: tuple[int, int]) -> str:
    """(5, 14) -> "5.14"."""
    return ".".join(map(str, since))


def _memory_not_in_v2(controllers: dict[str, Controller]) -> Finding | None:
    memory = controllers.get("memory")
    if memory is not None and memory.where is Where.V2:
        return None
    place = "is in v1" if memory is not None and memory.where is Where.V1 else "is not available"
    return disabled(f"the memory controller {place}, not in the v2 hierarchy", V2_HINT)


def _memory_file(root: Sysroot, where: str, name: str) -> Finding:
    parent = os.path.dirname(where)
    if "memory" not in root.words(f"{parent}/cgroup.subtree_control"):
        return unknown(
            f"memory is not enabled in {parent}/cgroup.subtree_control, so {where} shows no memory files"
        )
    if root.exists(f"{where}/{name}"):
        return ok(f"{name} present")
    return missing(
        f"{where} has memory files but no {name}", f"{name} needs Linux {dotted(MEMORY_FILES[name])}+"
    )


def _psi(root: Sysroot) -> Finding:
    if root.exists("/proc/pressure/cpu"):
        return ok("/proc/pressure present")
    if root.cmdline.get("psi") == "0":
        return disabled("turned off at boot (psi=0)", "remove psi=0 from the kernel command line")
    return missing(
        "no /proc/pressure: kernel without CONFIG_PSI (4.20+), or built with CONFIG_PSI_DEFAULT_DISABLED",
        "boot with psi=1, or use a kernel with CONFIG_PSI=y",
    )


def _nsdelegate(root: Sysroot, v2_mount: str | None) -> Finding:
    features = root.words("/sys/kernel/cgroup/features")
    if not root.exists("/sys/kernel/cgroup/features"):
        return unknown("no /sys/kernel/cgroup/features (Linux 4.15+) to ask")
    if "nsdelegate" not in features:
        return missing("the kernel does not offer nsdelegate", "needs Linux 4.13+")
    if v2_mount is None:
        return disabled("the kernel offers nsdelegate, but no cgroup2 hierarchy is mounted", V2_HINT)
    mounted = [m for m in root.mounts if m.fstype == "cgroup2" and m.mount_point == v2_mount]
    if mounted and mounted[-1].has_option("nsdelegate"):
        return ok(f"{v2_mount} is mounted with nsdelegate")
    return disabled(
        f"the kernel offers nsdelegate, but {v2_mount} is mounted without it",
        f"mount -o remount,nsdelegate {v2_mount}",
    )
