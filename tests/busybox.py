"""The busybox root filesystem of the integration tests and the benchmarks: compat/images/busybox.py,
which the compat harness uses too, under the name the tests have always imported."""

from compat.images.busybox import (
    BUSYBOX,
    GROUP,
    PASSWD,
    BusyboxMissing,
    build_rootfs,
    is_static_elf,
    static_busybox,
)

__all__ = ["BUSYBOX", "GROUP", "PASSWD", "BusyboxMissing", "build_rootfs", "is_static_elf", "static_busybox"]
