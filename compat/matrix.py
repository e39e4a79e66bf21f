"""The kernel x flavour matrix, and what each cell is expected to show.

Expectations are derived, not copied per cell: from the kernel's config (is the v1 memory controller
built? overlay? user namespaces?), its version (cgroup.kill came in 5.14, memory.peak in 5.19, overlay in
a user namespace in 5.11, pivot_root from an initramfs in 7.0) and the flavour's knobs. The facts are
those of the kernel-features reference (kept beside this repository, not in it); tests/unit/test_harness.py
holds the matrix's expectations against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compat import flavours
from compat.errors import CompatError
from compat.flavours import Cgroups, Flavour, Overlay, Root, Userns
from compat.images.kernel_catalogue import load_catalogue
from runtime.features.cgroups import CORE_FILES, MEMORY_FILES
from runtime.features.kconfig import KernelConfig

DEFAULT = (
    "5.10-v1", "5.10-v2", "6.1-hybrid", "6.1-v2+userns-off", "6.1-v2+no-overlay",
    "6.12-v2", "6.12-hybrid", "7.x-v2", "6.1-initramfs-root",
)  # fmt: skip
FULL_FLAVOURS = (
    "v2",
    "hybrid",
    "v1",
    "v2+userns-off",
    "v2+userns-unpriv-off",
    "v2+no-overlay",
    "initramfs-root",
)
FEATURES = (
    "cgroup.mode", "cgroup.memory", "cgroup.cpuset", "userns.root", "userns.unprivileged",
    "overlay.mountable", "overlay.in_userns", "pivot_root.usable", "cgroup.kill", "memory.peak", "psi",
)  # fmt: skip
Value = str | bool | None


class MatrixError(CompatError):
    """A matrix or cell that names no runnable cell, or a cell whose expectations cannot be derived."""


@dataclass(frozen=True)
class Cell:
    kernel: str  # a catalogue id, or a path to a user's kernel
    flavour: Flavour

    @property
    def id(self) -> str:
        return f"{self.kernel}-{self.flavour.name}"


def parse_cell(text: str) -> Cell:
    """6.1-v2, 6.12-hybrid, 6.1-v2+userns-off …: the kernel id has no '-', the flavour may."""
    kernel, sep, flavour = text.strip().partition("-")
    if not sep or not kernel or not flavour:
        raise MatrixError(f"{text!r} is not a cell", "a cell is KERNEL-FLAVOUR, e.g. 6.1-v2")
    try:
        return Cell(kernel, flavours.parse(flavour))
    except flavours.FlavourError as exc:
        raise MatrixError(f"cell {text!r}: {exc.message}", exc.hint) from exc


def full() -> tuple[str, ...]:
    """Every kernel of the catalogue (vm-images/kernels.json) in every flavour."""
    return tuple(f"{kernel}-{flavour}" for kernel in load_catalogue().ids for flavour in FULL_FLAVOURS)


def select(matrix: str = "default", cells: str | None = None) -> list[Cell]:
    if cells:
        return [parse_cell(cell) for cell in cells.split(",") if cell.strip()]
    if matrix not in ("default", "full"):
        raise MatrixError(f"unknown matrix {matrix!r}", "the matrices are default and full")
    return [parse_cell(cell) for cell in (DEFAULT if matrix == "default" else full())]


# --- expectations ------------------------------------------------------------------------------------------


def _v1_built(config: KernelConfig, base: str, v1_option: str) -> bool:
    # Before 6.11 there is no separate option: v1 comes with the controller.
    return config.built(base) and config.value(v1_option) != "n"


def _where(config: KernelConfig, flavour: Flavour, base: str, v1_option: str) -> str:
    if not config.built(base):
        return "none"
    if flavour.cgroups is Cgroups.V2:
        return "v2"
    if _v1_built(config, base, v1_option):
        return "v1"
    return "v2" if flavour.cgroups is Cgroups.HYBRID else "none"


def expected(cell: Cell, config: KernelConfig) -> dict[str, Value]:
    if config.version is None:
        raise MatrixError(
            f"cell {cell.id}: the kernel config names no version",
            "use the kernel's own config, which starts '# Linux/ARCH VERSION Kernel Configuration'",
        )
    version = config.version
    flavour = cell.flavour
    userns_built = config.built("USER_NS")
    root_userns = userns_built and flavour.userns is not Userns.OFF
    overlay = config.built("OVERLAY_FS") and flavour.overlay is Overlay.LOAD
    memory = _where(config, flavour, "MEMCG", "MEMCG_V1")
    has_v2 = flavour.cgroups in (Cgroups.V2, Cgroups.HYBRID)
    return {
        "cgroup.mode": flavour.cgroups.value,
        "cgroup.memory": memory,
        "cgroup.cpuset": _where(config, flavour, "CPUSETS", "CPUSETS_V1"),
        "userns.root": root_userns,
        "userns.unprivileged": userns_built and flavour.userns is Userns.ON,
        "overlay.mountable": overlay,
        # Tried only inside a user namespace: unknown (None) where there is none to try in.
        "overlay.in_userns": (overlay and version.at_least(5, 11)) if root_userns else None,
        "pivot_root.usable": flavour.root is Root.DISK or version.at_least(7, 0),
        "cgroup.kill": has_v2 and version.at_least(*CORE_FILES["cgroup.kill"]),
        "memory.peak": memory == "v2" and version.at_least(*MEMORY_FILES["memory.peak"]),
        "psi": config.built("PSI") and config.value("PSI_DEFAULT_DISABLED") != "y",
    }


DEVICES_V1 = "cgroup v1 devices allowlist"
DEVICES_EBPF = "eBPF device program"
DEVICES_NODEV = "nodev mounts"


def devices_mechanism(cell: Cell, config: KernelConfig) -> str:
    """How the runtime should hold a container to Docker's device list in this cell: the v1 devices
    controller where v1 hierarchies exist, an eBPF program on its cgroup2 cgroup, else nodev mounts."""
    if cell.flavour.cgroups is not Cgroups.V2 and config.built("CGROUP_DEVICE"):
        return DEVICES_V1
    if cell.flavour.cgroups is not Cgroups.V1 and config.built("CGROUP_BPF"):
        return DEVICES_EBPF
    return DEVICES_NODEV


def observed(check: dict[str, Any]) -> dict[str, Value]:
    """The same keys, read from `runtime check --json` run in the guest."""
    controllers = check["cgroup"]["controllers"]
    extras = check["cgroup"]["extras"]

    def ok(name: str) -> bool | None:
        status = extras.get(name, {}).get("status")
        return None if status in (None, "unknown") else status == "ok"

    return {
        "cgroup.mode": check["cgroup"]["mode"],
        "cgroup.memory": controllers.get("memory", {}).get("where", "none"),
        "cgroup.cpuset": controllers.get("cpuset", {}).get("where", "none"),
        "userns.root": check["userns"]["root"],
        "userns.unprivileged": check["userns"]["unprivileged"],
        "overlay.mountable": check["overlay"]["mountable"],
        "overlay.in_userns": check["overlay"]["in_userns"],
        "pivot_root.usable": check["pivot_root"]["usable"],
        "cgroup.kill": ok("cgroup.kill"),
        "memory.peak": ok("memory.peak"),
        "psi": ok("psi"),
    }
