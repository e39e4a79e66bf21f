"""KVM or TCG: never trust /dev/kvm alone. Here /dev/kvm exists and a trivial ioctl VM works, but
real guests hang under KVM. So KVM is used only when a probe VM, booting the real kernel, reaches its
marker within a deadline; the verdict is cached per kernel and QEMU."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from compat.images.cache import cache_root, key
from compat.proc import run, spawn

log = logging.getLogger(__name__)
PROBE_DEADLINE = 15.0
PROBE_MARKER = "KCOMPAT-PROBE-OK"


def _qemu_version() -> str:
    done = run(["qemu-system-x86_64", "--version"], check=False, capture=True)
    return done.stdout.splitlines()[0] if done.stdout else "unknown"


def probe_kvm(kernel: Path, initrd: Path, deadline: float = PROBE_DEADLINE) -> bool:
    """Boot kernel and initramfs under KVM until the initramfs says it is alive (kc_probe=1)."""
    argv = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-accel", "kvm", "-cpu", "host", "-m", "256", "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 quiet kc_probe=1", "-serial", "stdio",
    ]  # fmt: skip
    # A VM with a deadline, not a command that completes: spawned, and killed at the deadline (a guest
    # hung under KVM never exits by itself).
    with spawn(argv, stdout=subprocess.PIPE) as probe:
        output = probe.communicate(timeout=deadline)
    return PROBE_MARKER.encode() in output


def decide(
    requested: str, kvm_device: bool, cached: bool | None, probe: Callable[[], bool]
) -> tuple[str, bool | None]:
    """The accelerator, and the verdict to cache (None when nothing was learnt)."""
    if requested in ("kvm", "tcg"):
        return requested, None
    if not kvm_device:
        return "tcg", None
    if cached is not None:
        return ("kvm" if cached else "tcg"), None
    verdict = probe()
    return ("kvm" if verdict else "tcg"), verdict


def choose(requested: str, kernel: str) -> str:
    """The accelerator for VMs of kernel (a catalogue id, .deb or directory)."""
    if requested == "tcg" or (requested == "auto" and not os.path.exists("/dev/kvm")):
        return "tcg"
    from compat.images.build import build_all

    kernel_set = build_all([kernel]).kernels[kernel]
    verdict_file = cache_root() / "accel" / f"{key(kernel_set.kernel.release, _qemu_version())}.json"
    cached = json.loads(verdict_file.read_text())["kvm"] if verdict_file.exists() else None

    def probe() -> bool:
        started = time.monotonic()
        works = probe_kvm(kernel_set.kernel.vmlinuz, kernel_set.initrd)
        log.info(
            "kvm probe for %s: %s in %.1f s", kernel_set.kernel.release, works, time.monotonic() - started
        )
        return works

    chosen, learnt = decide(requested, True, cached, probe)
    if learnt is not None:
        verdict_file.parent.mkdir(parents=True, exist_ok=True)
        verdict_file.write_text(json.dumps({"kvm": learnt, "release": kernel_set.kernel.release}))
    return chosen
