"""Host flavours: how a VM is booted so that its kernel looks like a given kind of host.

A flavour name is a cgroup layout with modifiers: `v2`, `hybrid`, `v1`, `v2+userns-off`,
`v2+no-overlay`, `initramfs-root` (v2 with the root left on the initramfs) … The guest init reads the
resulting kernel parameters (`kc_*`, which the kernel hands to init as environment variables; dotted
names would be dropped, see kernel-features.md §3) and sets the host up.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from compat.errors import CompatError


class FlavourError(CompatError):
    """A flavour name that does not name one way to boot."""


class Cgroups(enum.StrEnum):
    V2 = "v2"
    HYBRID = "hybrid"
    V1 = "v1"


class Userns(enum.StrEnum):
    ON = "on"
    OFF = "off"  # user.max_user_namespaces=0: ENOSPC for everyone
    UNPRIVILEGED_OFF = "unprivileged-off"  # Debian's kernel.unprivileged_userns_clone=0: EPERM for non-root


class Overlay(enum.StrEnum):
    LOAD = "load"
    WITHHOLD = "withhold"  # module_blacklist=overlay: the kernel refuses to load it


class Root(enum.StrEnum):
    DISK = "disk"
    INITRAMFS = "initramfs"  # stays on the initramfs: pivot_root gives EINVAL before 7.0


MODIFIERS: dict[str, tuple[str, object]] = {
    "userns-off": ("userns", Userns.OFF),
    "userns-unpriv-off": ("userns", Userns.UNPRIVILEGED_OFF),
    "no-overlay": ("overlay", Overlay.WITHHOLD),
    "initramfs-root": ("root", Root.INITRAMFS),
}
READY_MARKER = "KCOMPAT-READY"


@dataclass(frozen=True)
class Flavour:
    cgroups: Cgroups = Cgroups.V2
    userns: Userns = Userns.ON
    overlay: Overlay = Overlay.LOAD
    root: Root = Root.DISK

    @property
    def name(self) -> str:
        parts = [self.cgroups.value]
        for word, (field, value) in MODIFIERS.items():
            if getattr(self, field) == value:
                parts.append(word)
        if parts[1:] == ["initramfs-root"] and self.cgroups is Cgroups.V2:
            return "initramfs-root"
        return "+".join(parts)

    def kernel_args(self) -> list[str]:
        args = [
            f"kc_cgroups={self.cgroups}",
            f"kc_userns={self.userns}",
            f"kc_overlay={self.overlay}",
            f"kc_root={self.root}",
        ]
        if self.overlay is Overlay.WITHHOLD:
            args.append("module_blacklist=overlay")
        return args


def parse(name: str) -> Flavour:
    """`v2`, `hybrid+no-overlay`, `initramfs-root` …; unknown words and contradictions are refused."""
    words = [word for word in name.strip().split("+") if word]
    known = ", ".join([*(c.value for c in Cgroups), *MODIFIERS])
    if not words:
        raise FlavourError(
            "an empty flavour name", f"name a cgroup layout and modifiers joined by '+': {known}"
        )
    layouts = [word for word in words if word in {c.value for c in Cgroups}]
    if len(layouts) > 1:
        raise FlavourError(
            f"flavour {name!r} names two cgroup layouts: {', '.join(layouts)}", "keep one cgroup layout"
        )
    fields: dict[str, object] = {"cgroups": Cgroups(layouts[0]) if layouts else Cgroups.V2}
    for word in words:
        if word in layouts:
            continue
        if word not in MODIFIERS:
            raise FlavourError(f"unknown flavour part {word!r} in {name!r}", f"known parts: {known}")
        field, value = MODIFIERS[word]
        if field in fields:
            raise FlavourError(
                f"flavour {name!r} sets {field} twice", f"keep one of the parts that set {field}"
            )
        fields[field] = value
    return Flavour(**fields)  # type: ignore[arg-type]
