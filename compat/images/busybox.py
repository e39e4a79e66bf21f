"""A busybox root filesystem for real containers, from the host's static busybox (Debian's
busybox-static). The compat guests run containers in it; the project's integration tests and the
benchmarks use it too (through tests/busybox.py)."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from compat import proc
from compat.errors import CompatError

BUSYBOX = "/bin/busybox"
PT_INTERP = 3
INSTALL_HINT = "install busybox-static"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
app:x:1000:
nogroup:x:65534:
"""


class BusyboxMissing(CompatError):
    """No static busybox here; the hint says what to install."""


def is_static_elf(path: str) -> bool:
    """An ELF executable without a PT_INTERP program header needs no dynamic loader."""
    try:
        with open(path, "rb") as file:
            header = file.read(64)
            if len(header) < 52 or header[:4] != b"\x7fELF":
                return False
            is_64 = header[4] == 2
            order = "<" if header[5] == 1 else ">"
            if is_64:
                phoff, phentsize, phnum = (
                    struct.unpack_from(order + "Q", header, 32)[0],
                    *struct.unpack_from(order + "HH", header, 54),
                )
            else:
                phoff, phentsize, phnum = (
                    struct.unpack_from(order + "I", header, 28)[0],
                    *struct.unpack_from(order + "HH", header, 42),
                )
            file.seek(phoff)
            table = file.read(phentsize * phnum)
    except OSError:
        return False
    types = [struct.unpack_from(order + "I", table, i * phentsize)[0] for i in range(phnum)]
    return bool(types) and PT_INTERP not in types


def static_busybox(busybox: str = BUSYBOX) -> Path:
    """The busybox at `busybox`, refused unless it is there and static: a container has no loader."""
    if not Path(busybox).exists():
        raise BusyboxMissing(f"{busybox} is missing", INSTALL_HINT)
    if not is_static_elf(busybox):
        raise BusyboxMissing(f"{busybox} is not a static executable (it has PT_INTERP)", INSTALL_HINT)
    return Path(busybox)


def build_rootfs(root: Path, busybox: str = BUSYBOX) -> Path:
    """bin/busybox with a relative symlink per applet, etc/passwd and group, tmp, root, mnt."""
    static_busybox(busybox)
    applets = proc.run([busybox, "--list"], capture=True).stdout.split()
    for name in ("bin", "etc", "root", "mnt", "proc", "sys", "dev", "home/app"):
        (root / name).mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)  # mkdir's mode is masked by the umask
    shutil.copy2(busybox, root / "bin/busybox")
    for applet in applets:
        if applet != "busybox":
            (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    return root
