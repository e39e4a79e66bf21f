"""Kernel release and version."""

from __future__ import annotations

import re

from runtime.features.model import KernelVersion
from runtime.features.sysroot import Sysroot

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


class BadRelease(ValueError):
    pass


def parse_release(release: str) -> KernelVersion:
    match = _VERSION.match(release.strip())
    if not match:
        raise BadRelease(f"cannot read a kernel version from {release!r}")
    major, minor, patch = match.groups()
    return KernelVersion(release.strip(), int(major), int(minor), int(patch or 0))


def detect(root: Sysroot) -> KernelVersion:
    release = (root.read("/proc/sys/kernel/osrelease") or "").strip()
    if not release:
        raise BadRelease(f"{root.path('/proc/sys/kernel/osrelease')} is missing: is /proc mounted?")
    return parse_release(release)
