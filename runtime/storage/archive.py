"""Reading an image given as a directory or a tar: members by name, never outside the image."""

from __future__ import annotations

import os
import tarfile
from typing import IO

from runtime.errors import Failure
from runtime.storage.extract import EXIT_REFUSED


class BadImage(Failure):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint, EXIT_REFUSED)


def _checked(name: str) -> str:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise BadImage(f"the image names {name!r}, a path outside the image")
    return "/".join(parts)


class DirSource:
    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def open(self, name: str) -> IO[bytes]:
        try:
            return open(self._path(name), "rb")
        except FileNotFoundError:
            raise BadImage(f"{name} is missing from {self.path}") from None

    def _path(self, name: str) -> str:
        path = os.path.realpath(os.path.join(self.path, _checked(name)))
        if not path.startswith(self.path + os.sep):
            raise BadImage(f"{name!r} leads out of {self.path} through a symlink")
        return path

    def close(self) -> None:
        pass


class TarSource:
    def __init__(self, path: str) -> None:
        try:
            self.tar = tarfile.open(path)  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, OSError) as exc:
            raise BadImage(f"{path} is neither a directory nor a readable tar: {exc}") from exc
        # Older docker save writes a layer seen twice as a link to the first copy: tarfile follows it.
        wanted = (m for m in self.tar.getmembers() if m.isfile() or m.issym() or m.islnk())
        self.members = {_normal(m.name): m for m in wanted}
        self.path = path

    def exists(self, name: str) -> bool:
        return _checked(name) in self.members

    def open(self, name: str) -> IO[bytes]:
        member = self.members.get(_checked(name))
        stream = self.tar.extractfile(member) if member else None
        if stream is None:
            raise BadImage(f"{name} is missing from {self.path}")
        return stream

    def close(self) -> None:
        self.tar.close()


def _normal(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def open_source(path: str) -> DirSource | TarSource:
    if os.path.isdir(path):
        return DirSource(path)
    if not os.path.exists(path):
        raise BadImage(f"{path}: no such file or directory")
    return TarSource(path)
