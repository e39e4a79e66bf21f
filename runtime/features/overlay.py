"""overlayfs: registered, loadable, mountable, and mountable inside a user namespace."""

from __future__ import annotations

import re

from runtime.features.model import Finding, KernelVersion, Overlay, disabled, missing, ok, unknown
from runtime.features.probes import (
    ENTER_USERNS_STEPS,
    MAKE_PRIVATE_STEP,
    MOUNT_TMPFS_STEP,
    Outcome,
    Outcomes,
)
from runtime.linux.sysroot import Sysroot

_MODULE = re.compile(r"^(\S*fs/overlayfs/overlay\.ko(?:\.\w+)?):", re.MULTILINE)
# Before the overlay mount in a user namespace: a failure there means userns, not overlay, is the trouble.
USERNS_STEPS = ENTER_USERNS_STEPS | {MAKE_PRIVATE_STEP, MOUNT_TMPFS_STEP}
BLACKLIST_HINT = "remove module_blacklist=overlay from the kernel command line"


def detect(root: Sysroot, kernel: KernelVersion, outcomes: Outcomes, euid: int | None) -> Overlay:
    registered = _registered(root)
    blacklisted = "overlay" in root.cmdline.get("module_blacklist", "").split(",")
    return Overlay(
        registered=registered,
        loadable=_loadable(root, kernel, registered, blacklisted),
        mountable=_mountable(outcomes.get("overlay.mount"), euid, blacklisted),
        in_userns=_in_userns(outcomes.get("overlay.userns"), kernel, blacklisted),
    )


def mount_verdict(root: Sysroot, outcome: Outcome) -> Finding:
    """What a trial overlay mount by root means here (for `runtime run --storage`)."""
    return _mountable(outcome, 0, "overlay" in root.cmdline.get("module_blacklist", "").split(","))


def _registered(root: Sysroot) -> Finding:
    names = [line.split()[-1] for line in (root.read("/proc/filesystems") or "").splitlines() if line.strip()]
    if "overlay" in names:
        return ok("listed in /proc/filesystems")
    return missing("not in /proc/filesystems (module not loaded, or not built)", "modprobe overlay")


def _loadable(root: Sysroot, kernel: KernelVersion, registered: Finding, blacklisted: bool) -> Finding:
    modules = f"/lib/modules/{kernel.release}"
    if blacklisted:
        return disabled("module_blacklist=overlay: the kernel refuses to load it", BLACKLIST_HINT)
    if "fs/overlayfs/overlay.ko" in (root.read(f"{modules}/modules.builtin") or ""):
        return ok("built into the kernel")
    if match := _MODULE.search(root.read(f"{modules}/modules.dep") or ""):
        return ok(f"module {match[1].rsplit('/', 1)[-1]} for {kernel.release}")
    if registered.status.value == "ok":
        return ok("already registered (no module tree to say whether built in)")
    if not root.exists(f"{modules}/modules.dep"):
        return unknown(f"no {modules}/modules.dep to look for overlay.ko")
    return missing(f"no overlay module in {modules}", "a kernel with CONFIG_OVERLAY_FS=m or =y")


def _mountable(outcome: Outcome | None, euid: int | None, blacklisted: bool) -> Finding:
    if euid != 0:
        return unknown("a trial mount needs root; overlay.in_userns tells what a rootless container gets")
    if outcome is None:
        return unknown("not probed")
    if outcome.ok:
        return ok("a trial mount in a private mount namespace worked")
    return _mount_failure(outcome, blacklisted)


def _mount_failure(outcome: Outcome, blacklisted: bool) -> Finding:
    if outcome.step == "mount-overlay" and outcome.errno == "ENODEV":
        if blacklisted:
            return disabled("mount gave ENODEV: module_blacklist=overlay", BLACKLIST_HINT)
        return missing(
            "mount gave ENODEV: overlay is not registered and could not be loaded",
            "modprobe overlay (kernel option CONFIG_OVERLAY_FS); the runtime falls back to copying layers",
        )
    return unknown(f"trial mount failed: {outcome.errno} at {outcome.step}")


def _in_userns(outcome: Outcome | None, kernel: KernelVersion, blacklisted: bool) -> Finding:
    if outcome is None:
        return unknown("not probed")
    if outcome.ok:
        if outcome.value == 2:
            return ok("mounted in a user namespace without userxattr (Debian's permit_mounts_in_userns=1)")
        return ok("mounted in a user namespace with userxattr")
    if outcome.step in USERNS_STEPS:
        return unknown(
            f"user namespaces are unusable here ({outcome.errno} at {outcome.step}), so it cannot be tried"
        )
    if outcome.errno == "EPERM":
        return missing(
            f"mount in a user namespace gave EPERM: overlay allows it from Linux 5.11 (this is {kernel.release})",
            "Linux 5.11+; on Debian 5.10 load overlay with permit_mounts_in_userns=1",
        )
    return _mount_failure(outcome, blacklisted)
