"""Safe extraction of one layer tar into a directory, in overlayfs' own format.

Nothing may land outside the directory: absolute names, "..", a relative symlink that climbs out,
a hard link to a path outside, and any write through a symlink are refused. Whiteouts become what
overlayfs understands: `.wh.NAME` a 0/0 character device NAME, `.wh..wh..opq` the opaque xattr on its
directory. Copy mode reads the same format (see flatten.py), so both modes delete the same files.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import tarfile
from collections.abc import Callable
from typing import Protocol

from runtime.errors import Failure


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
EXIT_REFUSED = 1


class Refused(Failure):
    def __init__(self, layer: str, message: str, hint: str = "") -> None:
        super().__init__(f"layer {layer}: {message}", hint, EXIT_REFUSED)


class HashingReader:
    """Reads through to a stream and hashes what passes: a digest computed while the layer unpacks.
    peek() looks ahead (for a compression magic) without losing the bytes."""

    def __init__(self, stream: Readable, meter: Callable[[int], None] | None = None) -> None:
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.ahead = b""
        self.meter = meter  # told each read's size: may raise to stop the read

    def _pull(self, size: int) -> bytes:
        data = self.stream.read(size)
        if self.meter:
            self.meter(len(data))
        self.sha256.update(data)
        self.size += len(data)
        return data

    def peek(self, size: int) -> bytes:
        if len(self.ahead) < size:
            self.ahead += self._pull(size - len(self.ahead))
        return self.ahead[:size]

    def read(self, size: int = -1) -> bytes:
        ahead, self.ahead = self.ahead, b""
        if size < 0:
            return ahead + self._pull(-1)
        if len(ahead) >= size:
            self.ahead = ahead[size:]
            return ahead[:size]
        return ahead + self._pull(size - len(ahead))

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def member_path(name: str, layer: str) -> str:
    """A tar name made relative and checked: no absolute paths, no "..", nothing empty."""
    if name.startswith("/"):
        raise Refused(layer, f"{name!r} is an absolute path", "a layer's paths are relative to its root")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused(layer, f"{name!r} climbs out with '..'")
    return "/".join(parts)


class Extractor:
    def __init__(
        self, dest: str, layer: str, may_mknod: bool, meter: Callable[[int], None] | None = None
    ) -> None:
        self.dest = dest
        self.layer = layer
        self.may_mknod = may_mknod
        self.chown = os.geteuid() == 0
        self.meter = meter  # told the size of the uncompressed tar as it streams (see storage/space.py)

    def extract(self, stream: Readable) -> tuple[str, int]:
        """Unpack the tar read from stream; return the sha256 hex and size of the uncompressed tar."""
        reader = HashingReader(stream, self.meter)
        try:
            with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    self._unpacked(tar, member)
        except tarfile.TarError as exc:
            raise Refused(self.layer, f"not a readable tar: {exc}") from exc
        reader.drain()
        return reader.sha256.hexdigest(), reader.size

    def _unpacked(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """One member; what the file system refuses (a name too long, a full disk) names the member."""
        if "\0" in member.name or "\0" in member.linkname:
            raise Refused(self.layer, f"{member.name!r} has a NUL byte in its name or link")
        try:
            self._member(tar, member)
        except OSError as exc:
            if exc.errno is None:  # not the file system's: a stream error (gzip's), for the caller
                raise
            raise Refused(self.layer, f"cannot unpack {member.name!r}: {exc.strerror}") from exc

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        relative = member_path(member.name, self.layer)
        if not relative:
            return
        parent, base = posixpath.split(relative)
        directory = self._parent(parent, relative)
        if base == OPAQUE:
            os.setxattr(directory, OPAQUE_XATTR, b"y")
            return
        if base.startswith(WHITEOUT):
            self._device(os.path.join(directory, base[len(WHITEOUT) :]), stat.S_IFCHR, 0, relative)
            return
        target = os.path.join(directory, base)
        if member.isdir():
            self._directory(target)
        else:
            self._clear(target)
            self._non_directory(tar, member, target, relative)
        self._attributes(target, member)

    def _parent(self, parent: str, relative: str) -> str:
        """Make the parent directories, refusing to go through a symlink (or a non-directory)."""
        path = self.dest
        for part in parent.split("/") if parent else []:
            path = os.path.join(path, part)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
                continue
            if stat.S_ISLNK(info.st_mode):
                raise Refused(self.layer, f"{relative!r} would be written through the symlink {part!r}")
            if not stat.S_ISDIR(info.st_mode):
                raise Refused(self.layer, f"{relative!r} has a non-directory {part!r} on its path")
        return path

    def _directory(self, target: str) -> None:
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            os.mkdir(target, 0o755)
            return
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(target)
            os.mkdir(target, 0o755)

    def _clear(self, target: str) -> None:
        """A later entry of the same name replaces an earlier one."""
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise Refused(self.layer, f"{target!r} is a directory and a file in the same layer")
        os.unlink(target)

    def _non_directory(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str, relative: str
    ) -> None:
        if member.isreg():
            self._file(tar, member, target)
        elif member.issym():
            self._symlink(member.linkname, target, relative)
        elif member.islnk():
            self._hardlink(member.linkname, target, relative)
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            self._device(target, kind, os.makedev(member.devmajor, member.devminor), relative)
        elif member.isfifo():
            os.mkfifo(target, 0o600)
        else:
            raise Refused(
                self.layer, f"{relative!r} has a tar type this runtime does not unpack ({member.type!r})"
            )

    def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: str) -> None:
        source = tar.extractfile(member)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while source is not None and (chunk := source.read(1 << 20)):
                out.write(chunk)

    def _symlink(self, link: str, target: str, relative: str) -> None:
        # An absolute target resolves inside the container's root; a relative one must stay in the layer.
        if not link.startswith("/"):
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(relative), link))
            if resolved == ".." or resolved.startswith("../"):
                raise Refused(self.layer, f"the symlink {relative!r} -> {link!r} points outside the layer")
        os.symlink(link, target)

    def _hardlink(self, link: str, target: str, relative: str) -> None:
        if link.startswith("/") or ".." in link.split("/"):
            raise Refused(self.layer, f"the hard link {relative!r} -> {link!r} points outside the layer")
        inside = member_path(link, self.layer)
        source = os.path.join(self._parent(posixpath.dirname(inside), relative), posixpath.basename(inside))
        try:
            kind = os.lstat(source).st_mode
        except FileNotFoundError:
            raise Refused(
                self.layer, f"the hard link {relative!r} -> {link!r} names nothing earlier in the layer"
            ) from None
        if stat.S_ISDIR(kind):
            raise Refused(self.layer, f"the hard link {relative!r} -> {link!r} names a directory")
        os.link(source, target, follow_symlinks=False)

    def _device(self, target: str, kind: int, device: int, relative: str) -> None:
        if not self.may_mknod:
            raise Refused(
                self.layer, f"{relative!r} is a device node, and only root may import those", "import as root"
            )
        self._clear(target)
        os.mknod(target, kind | 0o600, device)

    def _attributes(self, target: str, member: tarfile.TarInfo) -> None:
        if member.islnk():
            return  # shares the inode of what it links to
        if self.chown:
            os.lchown(target, member.uid, member.gid)
        if not member.issym():
            os.chmod(target, member.mode & 0o7777)
        os.utime(target, (member.mtime, member.mtime), follow_symlinks=False)
