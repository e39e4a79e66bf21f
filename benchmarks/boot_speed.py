"""Boot-to-SSH-ready per kernel under the chosen accelerator, against the floor: the same kernel and
initramfs booting only until the initramfs says it is alive (kc_probe=1). Target: ready within 1.5x
the floor. Needs root and the images (`nox -s images`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing import line  # noqa: E402
from compat import flavours  # noqa: E402 - after the path is set
from compat.harness.qemu import SMP_DEFAULT, TCG_ACCEL, TCG_CPU, Machine, running  # noqa: E402
from compat.images.build import build_all  # noqa: E402
from compat.images.kernel_catalogue import load_catalogue  # noqa: E402


def floor(kernel: Path, initrd: Path) -> float:
    argv = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-accel", TCG_ACCEL, "-cpu", TCG_CPU, "-smp", str(SMP_DEFAULT), "-m", "1024",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", "console=ttyS0 panic=-1 loglevel=7 kc_probe=1", "-serial", "stdio", "-device", "virtio-rng-pci",
    ]  # fmt: skip
    started = time.perf_counter()
    output = subprocess.run(argv, capture_output=True, timeout=120, check=False).stdout
    if b"KCOMPAT-PROBE-OK" not in output:
        raise SystemExit(f"the floor boot of {kernel} never said it was alive")
    return time.perf_counter() - started


def ready(machine: Machine) -> float:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch, running(machine, Path(scratch), deadline=180):
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kernels", default=",".join(load_catalogue().ids))
    args = parser.parse_args()
    kernels = args.kernels.split(",")
    images = build_all(kernels)
    for kernel_id in kernels:
        kernel_set = images.kernels[kernel_id]
        machine = Machine(
            kernel_set.kernel.vmlinuz, kernel_set.initrd, images.rootfs.image, kernel_set.modules_image,
            flavours.parse("v2"),
        )  # fmt: skip
        floors = [floor(kernel_set.kernel.vmlinuz, kernel_set.initrd) for _ in range(args.runs)]
        readies = [ready(machine) for _ in range(args.runs)]
        print(line(f"{kernel_id} floor (initramfs alive)", floors))
        print(line(f"{kernel_id} boot to SSH ready", readies))
        ratio = sorted(readies)[len(readies) // 2] / sorted(floors)[len(floors) // 2]
        print(
            f"{kernel_id}: ready / floor = {ratio:.2f} ({'within' if ratio <= 1.5 else 'OVER'} the 1.5x target)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
