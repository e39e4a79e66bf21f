"""Detection on the running host.

detect() reads /proc and /sys and runs probes in forked children; it works on a recorded tree too
(see Sysroot), with recorded probe outcomes.
"""

from __future__ import annotations

import os

from runtime.features import cgroups, kconfig, kernel, namespaces, overlay, pivot, security, userns
from runtime.features.model import Features
from runtime.features.probes import Outcomes, run_all
from runtime.linux.sysroot import LIVE, Sysroot


def detect(root: Sysroot = LIVE, outcomes: Outcomes | None = None, euid: int | None = None) -> Features:
    """What this host can do for the caller. Outcomes default to running the probes here."""
    euid = os.geteuid() if euid is None else euid
    if outcomes is None:
        outcomes = run_all(euid)
    version = kernel.detect(root)
    config = kconfig.for_running_kernel(root, version.release)
    user = userns.detect(root, outcomes, euid)
    return Features(
        source="host",
        euid=euid,
        kernel=version,
        cgroups=cgroups.detect(root, version, config, euid),
        namespaces=namespaces.detect(root, outcomes, euid, user.root if euid == 0 else user.unprivileged),
        userns=user,
        overlay=overlay.detect(root, version, outcomes, euid),
        pivot_root=pivot.detect(root, outcomes),
        security=security.detect(outcomes, security.SECURITY),
        syscalls=security.detect(outcomes, security.SYSCALLS),
        notes=(f"kernel config read from {config.source}",) if config else (),
    )
