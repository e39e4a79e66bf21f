"""Where detection reads from: the live system, or a recorded /proc and /sys tree in the tests.

A plain class with os.path, no pathlib or dataclasses: `runtime run` reads its cgroup layout
through it on the start path.
"""

from __future__ import annotations

import os

from runtime.linux import mountinfo


class Sysroot:
    __slots__ = ("_cmdline", "_mounts", "base", "live")

    def __init__(self, base: str | os.PathLike[str] = "/", live: bool = True) -> None:
        self.base = os.fspath(base)
        self.live = live
        self._mounts: list[mountinfo.Mount] | None = None
        self._cmdline: dict[str, str] | None = None

    def path(self, path: str) -> str:
        return os.path.join(self.base, path.lstrip("/"))

    def read(self, path: str) -> str | None:
        try:
            with open(self.path(path)) as file:
                return file.read()
        except (OSError, UnicodeDecodeError):
            return None

    def read_int(self, path: str) -> int | None:
        text = self.read(path)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    def words(self, path: str) -> list[str]:
        return (self.read(path) or "").split()

    def exists(self, path: str) -> bool:
        return os.path.lexists(self.path(path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self.path(path))

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    @property
    def mounts(self) -> list[mountinfo.Mount]:
        if self._mounts is None:
            self._mounts = mountinfo.parse(self.read("/proc/self/mountinfo") or "")
        return self._mounts

    def fs_type(self, path: str) -> str | None:
        """The type of the filesystem that holds path: statfs on a live system, else mountinfo."""
        if self.live:
            from runtime.linux import constants as c
            from runtime.linux import libc

            try:
                magic = libc.statfs_magic(path)
            except OSError:
                return None
            return c.FS_MAGIC_NAMES.get(magic, hex(magic))
        mount = mountinfo.containing(self.mounts, path)
        return mount.fstype if mount else None

    @property
    def cmdline(self) -> dict[str, str]:
        """Kernel parameters; a bare word maps to "", a repeated one to its values joined by commas.
        What follows "--" belongs to init, not to the kernel."""
        if self._cmdline is None:
            params: dict[str, str] = {}
            for word in self.words("/proc/cmdline"):
                if word == "--":
                    break
                key, _, value = word.partition("=")
                params[key] = f"{params[key]},{value}" if params.get(key) else value
            self._cmdline = params
        return self._cmdline


LIVE = Sysroot()
