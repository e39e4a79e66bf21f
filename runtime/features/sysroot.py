"""Where detection reads from: the live system, or a recorded /proc and /sys tree in the tests."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from runtime.linux import constants as c
from runtime.linux import libc, mountinfo


@dataclass(frozen=True)
class Sysroot:
    base: Path = field(default_factory=lambda: Path("/"))
    live: bool = True

    def path(self, path: str) -> Path:
        return self.base / path.lstrip("/")

    def read(self, path: str) -> str | None:
        try:
            return self.path(path).read_text()
        except OSError:
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

    def listdir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(path)))
        except OSError:
            return []

    @cached_property
    def mounts(self) -> list[mountinfo.Mount]:
        return mountinfo.parse(self.read("/proc/self/mountinfo") or "")

    def fs_type(self, path: str) -> str | None:
        """The type of the filesystem that holds path: statfs on a live system, else mountinfo."""
        if self.live:
            try:
                magic = libc.statfs_magic(path)
            except OSError:
                return None
            return c.FS_MAGIC_NAMES.get(magic, hex(magic))
        mount = mountinfo.containing(self.mounts, path)
        return mount.fstype if mount else None

    @cached_property
    def cmdline(self) -> dict[str, str]:
        """Kernel parameters; a bare word maps to "", a repeated one to its values joined by commas.
        What follows "--" belongs to init, not to the kernel."""
        params: dict[str, str] = {}
        for word in self.words("/proc/cmdline"):
            if word == "--":
                break
            key, _, value = word.partition("=")
            params[key] = f"{params[key]},{value}" if params.get(key) else value
        return params


LIVE = Sysroot()
