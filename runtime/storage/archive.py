"""Reading an image given as a directory or a tar: members by name, never outside the image.

Only regular files are read. A FIFO would block the import forever (holding the store's lock), a
directory or a device is no blob: each is refused without being opened, by lstat first and by fstat
on a descriptor opened O_NOFOLLOW|O_NONBLOCK (a file swapped in between is caught too). Symlinks and
hard links are followed only where a format writes them (`docker save` links a layer it saw twice to
the first copy), by this module and not by tarfile: every hop stays inside the image, and a loop or a
link to nothing is refused.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zlib
from typing import IO

from runtime.errors import Failure
from runtime.storage.extract import EXIT_REFUSED

MAX_LINK_HOPS = 16
DAMAGED = "the image is damaged or was altered"


class BadImage(Failure):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message, hint, EXIT_REFUSED)


def _checked(name: str) -> str:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        raise BadImage(f"the image names {name!r}, a path outside the image")
    return "/".join(parts)


def kind_of(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((what for test, what in kinds if test(mode)), "not a regular file")


def _not_regular(name: str, where: str, what: str) -> BadImage:
    return BadImage(f"{name} in {where} is {what}, not a regular file", DAMAGED)


class DirSource:
    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)

    def exists(self, name: str) -> bool:
        """Whether name is there at all: open() says what is wrong with it if it is no regular file."""
        return os.path.lexists(self._path(name))

    def open(self, name: str, links: bool = False) -> IO[bytes]:
        path = self._path(name)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise BadImage(f"{name} is missing from {self.path}") from None
        if stat.S_ISLNK(info.st_mode):
            if not links:
                raise _not_regular(name, self.path, "a symlink")
            path = self._inside(os.path.realpath(path), name)
            info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(name, self.path, kind_of(info.st_mode))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise BadImage(f"cannot open {name} in {self.path}: {exc.strerror}") from exc
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise _not_regular(name, self.path, kind_of(mode))
        return os.fdopen(fd, "rb")

    def _path(self, name: str) -> str:
        """name inside the image, its directories resolved (and kept inside), its last part not."""
        parent, base = posixpath.split(_checked(name))
        resolved = os.path.realpath(os.path.join(self.path, parent))
        return os.path.join(self._inside(resolved, name), base)

    def _inside(self, path: str, name: str) -> str:
        if path != self.path and not path.startswith(self.path + os.sep):
            raise BadImage(f"{name!r} leads out of {self.path} through a symlink")
        return path

    def close(self) -> None:
        pass


class TarSource:
    def __init__(self, path: str) -> None:
        try:
            self.tar = tarfile.open(path)  # noqa: SIM115 - closed by close()
            # The last member of a name wins, as when the tar is unpacked.
            self.members = {_normal(m.name): m for m in self.tar.getmembers()}
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise BadImage(f"{path} is neither a directory nor a readable tar: {exc}") from exc
        self.path = path

    def exists(self, name: str) -> bool:
        return _checked(name) in self.members

    def open(self, name: str, links: bool = False) -> IO[bytes]:
        member = self.members.get(_checked(name))
        if member is None:
            raise BadImage(f"{name} is missing from {self.path}")
        if member.issym() or member.islnk():
            if not links:
                raise _not_regular(name, self.path, "a symlink" if member.issym() else "a hard link")
            member = self._follow(member, name)
        if not member.isreg():
            raise _not_regular(name, self.path, _member_kind(member))
        stream = self.tar.extractfile(member)
        if stream is None:
            raise BadImage(f"{name} in {self.path} cannot be read")
        return stream

    def _follow(self, member: tarfile.TarInfo, name: str) -> tarfile.TarInfo:
        for _ in range(MAX_LINK_HOPS):
            if not (member.issym() or member.islnk()):
                return member
            here = posixpath.dirname(_normal(member.name)) if member.issym() else ""
            target = posixpath.normpath(posixpath.join(here, member.linkname))
            if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
                raise BadImage(
                    f"{name} in {self.path} links to {member.linkname!r}, outside the image", DAMAGED
                )
            found = self.members.get(target)
            if found is None:
                raise BadImage(
                    f"{name} in {self.path} is a symlink to {member.linkname!r}, which is missing", DAMAGED
                )
            member = found
        raise BadImage(f"{name} in {self.path} is a symlink in a loop (over {MAX_LINK_HOPS} hops)", DAMAGED)

    def close(self) -> None:
        self.tar.close()


def _member_kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "a directory"
    if member.isfifo():
        return "a FIFO"
    if member.ischr() or member.isblk():
        return "a device"
    return f"a member of tar type {member.type!r}"


def _normal(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def open_source(path: str) -> DirSource | TarSource:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BadImage(f"{path}: no such file or directory") from None
    if stat.S_ISDIR(mode):
        return DirSource(path)
    if not stat.S_ISREG(mode):
        raise BadImage(f"{path} is {kind_of(mode)}: give a tar file or an image layout directory")
    return TarSource(path)
