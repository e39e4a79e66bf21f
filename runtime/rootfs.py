"""The container's filesystem view, built inside its own mount namespace before the switch of root.

Everything here runs in the container's init, after unshare and before exec; no subprocess. Nothing
mounted here can reach the host: propagation is made private first.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path

from runtime.linux import constants as c
from runtime.linux import libc

# Docker's masked and read-only paths (moby oci/defaults.go)
MASKED = (
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
)  # fmt: skip
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
NOSUID_NODEV_NOEXEC = c.MS_NOSUID | c.MS_NODEV | c.MS_NOEXEC
# statvfs f_flag bits that must be kept when remounting a bind read-only (locked in a user namespace)
_ST_TO_MS = {os.ST_NOSUID: c.MS_NOSUID, os.ST_NODEV: c.MS_NODEV, os.ST_NOEXEC: c.MS_NOEXEC}


class MountFailed(OSError):
    pass


def _mount(
    source: str | None, target: Path, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    try:
        libc.mount(source, target, fstype, flags, data)
    except OSError as exc:
        what = fstype or ("bind" if flags & c.MS_BIND else "remount")
        raise MountFailed(exc.errno, f"mount {what} on {target}: {exc.strerror}") from exc


def _remount_read_only(target: Path) -> None:
    kept = 0
    flags = os.statvfs(target).f_flag
    for st_flag, ms_flag in _ST_TO_MS.items():
        if flags & st_flag:
            kept |= ms_flag
    _mount(None, target, None, c.MS_BIND | c.MS_REMOUNT | c.MS_RDONLY | kept)


def _bind(source: Path, target: Path, read_only: bool = False) -> None:
    _mount(str(source), target, None, c.MS_BIND | c.MS_REC)
    if read_only:
        _remount_read_only(target)


def prepare(rootfs: Path, read_only: bool, note: Callable[[str], None]) -> None:
    """Mount /proc, /sys, /dev and the masks under rootfs, which becomes a mount point of its own."""
    _mount(None, Path("/"), None, c.MS_REC | c.MS_PRIVATE)
    _bind(rootfs, rootfs)
    _mount_proc(rootfs / "proc")
    _mount_sys(rootfs / "sys", note)
    _mount_dev(rootfs / "dev")
    _mask(rootfs)
    if read_only:
        _remount_read_only(rootfs)


def _ensure_dir(path: Path) -> None:
    if not path.is_dir():
        path.mkdir(mode=0o755, parents=True)


def _mount_proc(target: Path) -> None:
    _ensure_dir(target)
    _mount("proc", target, "proc", NOSUID_NODEV_NOEXEC)


def _mount_sys(target: Path, note: Callable[[str], None]) -> None:
    _ensure_dir(target)
    try:
        _mount("sysfs", target, "sysfs", NOSUID_NODEV_NOEXEC | c.MS_RDONLY)
    except MountFailed as exc:
        if exc.errno != errno.EPERM:
            raise
        # A user namespace that does not own the network namespace may not mount sysfs.
        note(
            "sysfs: a fresh mount is not allowed here (host network in a user namespace): read-only bind of /sys"
        )
        _bind(Path("/sys"), target, read_only=True)


def _mount_dev(dev: Path) -> None:
    _ensure_dir(dev)
    _mount("tmpfs", dev, "tmpfs", c.MS_NOSUID, "mode=755,size=65536k")
    for name in DEVICES:
        node = dev / name
        node.touch(mode=0o666)
        _bind(Path("/dev") / name, node)  # bind, not mknod: works inside a user namespace too
    (dev / "pts").mkdir()
    _mount("devpts", dev / "pts", "devpts", c.MS_NOSUID | c.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    (dev / "ptmx").symlink_to("pts/ptmx")
    (dev / "shm").mkdir(mode=0o1777)
    _mount("shm", dev / "shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
    ):
        (dev / link).symlink_to(target)
    (dev / "stderr").symlink_to("/proc/self/fd/2")


def _mask(rootfs: Path) -> None:
    for path in MASKED:
        target = rootfs / path.lstrip("/")
        if target.is_dir():
            _mount("tmpfs", target, "tmpfs", c.MS_RDONLY | NOSUID_NODEV_NOEXEC, "size=0")
        elif target.exists():
            _bind(rootfs / "dev/null", target)
    for path in READ_ONLY:
        target = rootfs / path.lstrip("/")
        if target.exists():
            _bind(target, target, read_only=True)


def switch_root(rootfs: Path, note: Callable[[str], None]) -> None:
    """pivot_root, or MS_MOVE + chroot where the root is an initramfs (pivot_root gives EINVAL)."""
    os.chdir(rootfs)
    try:
        libc.pivot_root(".", ".")
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        note("pivot_root gave EINVAL (the host's root is an initramfs): using MS_MOVE + chroot")
        _mount(str(rootfs), Path("/"), None, c.MS_MOVE)
        os.chroot(".")
    else:
        # The old root is now stacked under "."; detach it so the host's tree is out of reach.
        libc.umount(".", c.MNT_DETACH)
        note("root switched with pivot_root")
    os.chdir("/")


def make_workdir(path: str) -> None:
    with contextlib.suppress(FileExistsError):
        os.makedirs(path, mode=0o755)
