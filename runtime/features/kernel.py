"""Kernel release and version."""

from __future__ import annotations

import re

from runtime.errors import Failure
from runtime.features.model import KernelVersion
from runtime.linux.sysroot import Sysroot

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


MOUNT_PROC = "mount -t proc proc /proc"


class BadRelease(Failure):
    """No kernel version to judge by: `runtime check` says so (exit 2, the host is not fit to judge) and why."""


def parse_release(release: str) -> KernelVersion:
    match = _VERSION.match(release.strip())
    if not match:
        raise BadRelease(f"cannot read a kernel version from {release!r}")
    major, minor, patch = match.groups()
    return KernelVersion(release.strip(), int(major), int(minor), int(patch or 0))


def detect(root: Sysroot) -> KernelVersion:
    where = root.path("/proc/sys/kernel/osrelease")
    release = (root.read("/proc/sys/kernel/osrelease") or "").strip()
    if not release:
        raise BadRelease(
            f"{where} is missing or empty: is /proc mounted?", f"mount the kernel's proc: {MOUNT_PROC}"
        )
    try:
        return parse_release(release)
    except BadRelease as bad:
        hint = f"{where} should hold the running kernel's release: is /proc the kernel's proc? ({MOUNT_PROC})"
        raise BadRelease(bad.message, hint) from None
