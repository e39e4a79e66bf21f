"""pivot_root: usable, or refused because the root is an initramfs (then MS_MOVE + chroot)."""

from __future__ import annotations

from runtime.features.model import PivotRoot, disabled, ok, unknown
from runtime.features.probes import ENTER_USERNS_STEPS, Outcomes
from runtime.linux import mountinfo
from runtime.linux.sysroot import Sysroot

INITRAMFS_TYPES = {"rootfs", "ramfs", "tmpfs"}
USERNS_STEPS = ENTER_USERNS_STEPS


def detect(root: Sysroot, outcomes: Outcomes) -> PivotRoot:
    top = mountinfo.containing(root.mounts, "/")
    fstype = top.fstype if top else "unknown"
    outcome = outcomes.get("pivot_root")
    if outcome is None:
        return PivotRoot(unknown("not probed"), fstype)
    if outcome.ok:
        return PivotRoot(ok(f"pivot_root worked in a private mount namespace (root is {fstype})"), fstype)
    if outcome.step in USERNS_STEPS:
        why = f"not root, and user namespaces are unusable ({outcome.errno} at {outcome.step})"
        return PivotRoot(unknown(f"{why}, so it cannot be tried"), fstype)
    if outcome.step == "pivot_root" and outcome.errno == "EINVAL" and fstype in INITRAMFS_TYPES:
        finding = disabled(
            f"the root is an initramfs ({fstype}): pivot_root gives EINVAL; the runtime uses MS_MOVE + chroot",
            "boot with root= on a disk (or switch_root from the initramfs), or use Linux 7.0+",
        )
        return PivotRoot(finding, fstype)
    return PivotRoot(
        disabled(f"pivot_root gave {outcome.errno} at {outcome.step}; the runtime uses MS_MOVE + chroot"),
        fstype,
    )
