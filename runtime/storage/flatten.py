"""Copy mode: a container's root as a flat copy of its layers, bottom first.

The layers are in overlayfs' format (see extract.py), and this reads it the way overlayfs does: a 0/0
character device deletes what lower layers had at that name, an opaque directory hides their whole
directory. Nothing is followed: a symlink from a lower layer is replaced, never written through.
"""

from __future__ import annotations

import os
import shutil
import stat

from runtime.storage.extract import OPAQUE_XATTR


def flatten(layers: list[str], dest: str) -> None:
    os.mkdir(dest, 0o755)
    for layer in layers:
        _Copier().merge(layer, dest)


def _is_whiteout(info: os.stat_result) -> bool:
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _remove(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _empty(directory: str) -> None:
    for name in os.listdir(directory):
        _remove(os.path.join(directory, name))


class _Copier:
    """One layer onto the tree below it. Hard links inside the layer stay hard links."""

    def __init__(self) -> None:
        self.inodes: dict[tuple[int, int], str] = {}

    def merge(self, source: str, dest: str) -> None:
        for entry in os.scandir(source):
            info = entry.stat(follow_symlinks=False)
            target = os.path.join(dest, entry.name)
            if _is_whiteout(info):
                _remove(target)
            elif stat.S_ISDIR(info.st_mode):
                self._directory(entry.path, target, info)
            else:
                _remove(target)
                self._leaf(entry.path, target, info)

    def _directory(self, source: str, target: str, info: os.stat_result) -> None:
        try:
            existing = os.lstat(target)
        except FileNotFoundError:
            existing = None
        if existing is not None and not stat.S_ISDIR(existing.st_mode):
            os.unlink(target)  # a file or symlink below is replaced, never followed
            existing = None
        if existing is None:
            os.mkdir(target, 0o700)
        elif _is_opaque(source):
            _empty(target)
        self.merge(source, target)
        _copy_attributes(target, info)

    def _leaf(self, source: str, target: str, info: os.stat_result) -> None:
        key = (info.st_dev, info.st_ino)
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1 and key in self.inodes:
            os.link(self.inodes[key], target)
            return
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(source), target)
        elif stat.S_ISREG(info.st_mode):
            _copy_file(source, target)
            self.inodes[key] = target
        elif stat.S_ISFIFO(info.st_mode):
            os.mkfifo(target, 0o600)
        else:
            os.mknod(target, info.st_mode, info.st_rdev)
        _copy_attributes(target, info)


def _copy_file(source: str, target: str) -> None:
    with open(source, "rb") as src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


def _copy_attributes(target: str, info: os.stat_result) -> None:
    os.lchown(target, info.st_uid, info.st_gid)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(target, stat.S_IMODE(info.st_mode))
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
