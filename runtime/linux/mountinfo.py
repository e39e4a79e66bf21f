"""Parse /proc/self/mountinfo (proc_pid_mountinfo(5)).

Plain classes, no dataclasses or re: this module is on `runtime run`'s start path, where every
imported module costs milliseconds.
"""

from __future__ import annotations


class Mount:
    __slots__ = ("fstype", "mount_id", "mount_point", "parent_id", "root", "source", "super_options")

    def __init__(
        self,
        mount_id: int,
        parent_id: int,
        root: str,
        mount_point: str,
        fstype: str,
        source: str,
        super_options: tuple[str, ...],
    ) -> None:
        self.mount_id = mount_id
        self.parent_id = parent_id
        self.root = root
        self.mount_point = mount_point
        self.fstype = fstype
        self.source = source
        self.super_options = super_options

    def has_option(self, name: str) -> bool:
        return name in self.super_options

    def __repr__(self) -> str:
        return f"Mount({self.mount_point!r}, {self.fstype!r}, {self.super_options!r})"


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash as \\ooo (octal)."""
    if "\\" not in field:
        return field
    out, index = [], 0
    while index < len(field):
        digits = field[index + 1 : index + 4]
        if field[index] == "\\" and len(digits) == 3 and all(d in "01234567" for d in digits):
            out.append(chr(int(digits, 8)))
            index += 4
        else:
            out.append(field[index])
            index += 1
    return "".join(out)


def parse(text: str) -> list[Mount]:
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        if sep < 5 or len(fields) < sep + 4:
            continue
        mounts.append(
            Mount(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                root=_unescape(fields[3]),
                mount_point=_unescape(fields[4]),
                fstype=fields[sep + 1],
                source=_unescape(fields[sep + 2]),
                super_options=tuple(fields[sep + 3].split(",")),
            )
        )
    return mounts


def containing(mounts: list[Mount], path: str) -> Mount | None:
    """The mount that holds path: the last mounted among the longest matching mount points."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.mount_point.rstrip("/") or "/"
        inside = point == "/" or path == point or path.startswith(point + "/")
        if inside and (best is None or len(point) >= len(best.mount_point.rstrip("/") or "/")):
            best = mount
    return best
