"""The container's filesystem view, built inside its own mount namespace before the switch of root.

Everything here runs in the container's init, after unshare and before exec; no subprocess. Nothing
mounted here can reach the host: propagation is made private first.
"""

from __future__ import annotations

import errno
import os

from runtime.linux import constants as c
from runtime.linux import libc

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from collections.abc import Callable

# Docker's masked and read-only paths (moby oci/defaults.go)
MASKED = (
    "proc/acpi", "proc/asound", "proc/kcore", "proc/keys", "proc/latency_stats", "proc/timer_list",
    "proc/timer_stats", "proc/sched_debug", "proc/scsi", "sys/firmware", "sys/devices/virtual/powercap",
)  # fmt: skip
READ_ONLY = ("proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))  # fmt: skip
NOSUID_NODEV_NOEXEC = c.MS_NOSUID | c.MS_NODEV | c.MS_NOEXEC
# statvfs flags that a read-only remount of a bind must keep (they are locked in a user namespace)
KEPT_FLAGS = ((os.ST_NOSUID, c.MS_NOSUID), (os.ST_NODEV, c.MS_NODEV), (os.ST_NOEXEC, c.MS_NOEXEC))


class MountFailed(OSError):
    pass


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    try:
        libc.mount(source, target, fstype, flags, data)
    except OSError as exc:
        what = fstype or ("bind" if flags & c.MS_BIND else "remount")
        raise MountFailed(exc.errno, f"mount {what} on {target}: {exc.strerror}") from exc


def _remount_read_only(target: str) -> None:
    _remount(target, c.MS_RDONLY)


def _remount(target: str, added: int) -> None:
    flags = os.statvfs(target).f_flag
    kept = sum(ms for st, ms in KEPT_FLAGS if flags & st)
    if flags & os.ST_RDONLY:
        kept |= c.MS_RDONLY
    _mount(None, target, None, c.MS_BIND | c.MS_REMOUNT | added | kept)


def _bind(source: str, target: str, read_only: bool = False) -> None:
    _mount(source, target, None, c.MS_BIND | c.MS_REC)
    if read_only:
        _remount_read_only(target)


def prepare(rootfs: str, read_only: bool, note: Callable[[str], None], nodev: bool = False) -> None:
    """Mount /proc, /sys, /dev and the masks under rootfs, which becomes a mount point of its own.
    The mount points themselves were made by the runtime (see container.py). `nodev` where no cgroup
    can restrict devices: then a device node in the image, or one made with mknod, cannot be opened."""
    _mount(None, "/", None, c.MS_REC | c.MS_PRIVATE)
    _bind(rootfs, rootfs)
    if nodev:
        _remount(rootfs, c.MS_NODEV)
    _mount("proc", f"{rootfs}/proc", "proc", NOSUID_NODEV_NOEXEC)
    _mount_sys(f"{rootfs}/sys", note)
    _mount_dev(f"{rootfs}/dev")
    _mask(rootfs)
    if read_only:
        _remount_read_only(rootfs)


def _mount_sys(target: str, note: Callable[[str], None]) -> None:
    try:
        _mount("sysfs", target, "sysfs", NOSUID_NODEV_NOEXEC | c.MS_RDONLY)
    except MountFailed as exc:
        if exc.errno != errno.EPERM:
            raise
        # A user namespace that does not own the network namespace may not mount sysfs.
        note(
            "sysfs: a fresh mount is not allowed here (host network in a user namespace): read-only bind of /sys"
        )
        _bind("/sys", target, read_only=True)


def _mount_dev(dev: str) -> None:
    # nodev: the allowed nodes are binds of the host's, which keep their own mount's flags
    _mount("tmpfs", dev, "tmpfs", c.MS_NOSUID | c.MS_NODEV, "mode=755,size=65536k")
    for name in DEVICES:
        node = f"{dev}/{name}"
        os.close(os.open(node, os.O_CREAT | os.O_WRONLY, 0o666))
        _bind(f"/dev/{name}", node)  # bind, not mknod: works inside a user namespace too
    os.mkdir(f"{dev}/pts")
    _mount("devpts", f"{dev}/pts", "devpts", c.MS_NOSUID | c.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
    os.mkdir(f"{dev}/shm")
    _mount("shm", f"{dev}/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "mode=1777,size=65536k")
    for link, target in DEV_LINKS:
        os.symlink(target, f"{dev}/{link}")


def _mask(rootfs: str) -> None:
    for path in MASKED:
        target = f"{rootfs}/{path}"
        if os.path.isdir(target):
            _mount("tmpfs", target, "tmpfs", c.MS_RDONLY | NOSUID_NODEV_NOEXEC, "size=0")
        elif os.path.exists(target):
            _bind(f"{rootfs}/dev/null", target)
    for path in READ_ONLY:
        target = f"{rootfs}/{path}"
        if os.path.exists(target):
            _bind(target, target, read_only=True)


def switch_root(rootfs: str, note: Callable[[str], None]) -> None:
    """pivot_root, or MS_MOVE + chroot where the root is an initramfs (pivot_root gives EINVAL)."""
    os.chdir(rootfs)
    try:
        libc.pivot_root(".", ".")
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        note("pivot_root gave EINVAL (the host's root is an initramfs): using MS_MOVE + chroot")
        _mount(rootfs, "/", None, c.MS_MOVE)
        os.chroot(".")
    else:
        # The old root is now stacked under "."; detach it so the host's tree is out of reach.
        libc.umount(".", c.MNT_DETACH)
        note("root switched with pivot_root")
    os.chdir("/")


def make_workdir(path: str) -> None:
    try:
        os.makedirs(path, mode=0o755)
    except FileExistsError:
        pass
