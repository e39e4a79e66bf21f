"""What the user asked `runtime run` for, parsed and checked. Bad input raises Failure (exit 125).

Plain classes and hand-written checks instead of dataclasses, enum and re: this is the start path.
"""

from __future__ import annotations

import os

from runtime.cgroups import cpulist
from runtime.cgroups.base import Limits
from runtime.errors import EXIT_RUNTIME, Failure

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from runtime.storage.store import ImageRecord, Store

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
USERNS_MODES = ("auto", "host", "private")
STORAGE_MODES = ("auto", "overlay", "copy")
NETWORKS = ("none", "host")
MIN_MEMORY = 6 * 1024**2


class User:
    __slots__ = ("gid", "uid")

    def __init__(self, uid: int = 0, gid: int = 0) -> None:
        self.uid = uid
        self.gid = gid


class ImageUse:
    """A container from an image: which image, from which store, in which storage mode."""

    __slots__ = ("record", "storage", "store")

    def __init__(self, store: Store, record: ImageRecord, storage: str) -> None:
        self.store = store
        self.record = record
        self.storage = storage


class ContainerSpec:
    __slots__ = (
        "argv", "container_id", "env", "hostname", "image", "limits", "name", "network", "preserve_fds",
        "read_only", "rootfs", "seccomp", "user", "userns", "workdir",
    )  # fmt: skip

    def __init__(
        self,
        container_id: str,
        name: str,
        rootfs: str,
        argv: tuple[str, ...],
        env: tuple[tuple[str, str], ...] = (),
        workdir: str = "/",
        user: User | None = None,
        hostname: str = "",
        limits: Limits | None = None,
        network: str = "none",
        userns: str = "auto",
        read_only: bool = False,
        image: ImageUse | None = None,
        preserve_fds: int = 0,
        seccomp: str = "default",
    ) -> None:
        self.container_id = container_id
        self.name = name
        self.rootfs = rootfs
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.user = user or User()
        self.hostname = hostname or container_id
        self.limits = limits or Limits()
        self.network = network
        self.userns = userns
        self.read_only = read_only
        self.image = image
        self.preserve_fds = preserve_fds  # fds 3 .. 3+N-1 cross into the container, as runc's --preserve-fds
        self.seccomp = seccomp  # "default" (Docker's profile), "unconfined" or a profile's path

    def environment(self) -> dict[str, str]:
        env = {
            "PATH": DEFAULT_PATH,
            "HOSTNAME": self.hostname,
            "HOME": "/root" if self.user.uid == 0 else "/",
        }
        env.update(self.env)
        return env


def bad(message: str, hint: str = "") -> Failure:
    return Failure(message, hint, EXIT_RUNTIME)


def parse_memory(text: str) -> int:
    """Docker's spelling: a number with an optional b, k, m or g (powers of 1024)."""
    lowered = text.strip().lower()
    if lowered.endswith(("kb", "mb", "gb")):
        lowered = lowered[:-1]
    unit = lowered[-1:] if lowered[-1:] in UNITS else "b"
    digits = lowered[:-1] if unit != "b" or lowered.endswith("b") else lowered
    try:
        value = int(float(digits) * UNITS[unit])
    except ValueError:
        raise bad(
            f"--memory {text!r} is not a size", "use a number with an optional unit: 64m, 1g, 524288k"
        ) from None
    if value < MIN_MEMORY:
        raise bad(f"--memory {text} is below the 6 MiB a container needs to start", "use --memory 6m or more")
    return value


def parse_cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise bad(f"--cpus {text!r} is not a number", "for example --cpus 0.5") from None
    most = os.cpu_count() or 1
    if not 0.01 <= value <= most:
        raise bad(f"--cpus {text} is out of range", f"use a value from 0.01 to {most}")
    return value


def parse_pids(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise bad(f"--pids-limit {text!r} is not a positive whole number")
    return int(text)


def parse_cpuset_cpus(text: str) -> str:
    """Docker's CPU list, in the kernel's spelling; whether the host has those CPUs is decide's."""
    ranges = cpulist.parse(text)
    if ranges is None:
        raise bad(f"--cpuset-cpus {text}: not a CPU list (e.g. 0-1,3)")
    return cpulist.spell(ranges)


def parse_env(items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or "\0" in item:
            raise bad(f"-e {item!r} is not KEY=VALUE")
        pairs.append((key, value if sep else os.environ.get(key, "")))
    return tuple(pairs)


def parse_user(text: str, passwd: str | None, group_file: str | None) -> User:
    """UID[:GID], or names looked up in the container's /etc/passwd and /etc/group."""
    name, _, group = text.partition(":")
    uid = _lookup(name, passwd, "user")
    gid = _lookup(group, group_file, "group") if group else _primary_gid(name, uid, passwd)
    return User(uid, gid)


def _table(path: str | None) -> list[list[str]]:
    if path is None:
        return []
    try:
        with open(path) as file:
            return [line.split(":") for line in file.read().splitlines()]
    except OSError:
        return []


def _lookup(name: str, table: str | None, what: str) -> int:
    if name.isdigit():
        return int(name)
    for fields in _table(table):
        if fields[0] == name and len(fields) > 2 and fields[2].isdigit():
            return int(fields[2])
    where = "passwd" if what == "user" else "group"
    raise bad(f"{what} {name!r} is not in the container's /etc/{where}", "use a numeric id: -u 1000:1000")


def _primary_gid(name: str, uid: int, passwd: str | None) -> int:
    for fields in _table(passwd):
        if len(fields) > 3 and (fields[0] == name or fields[2] == str(uid)) and fields[3].isdigit():
            return int(fields[3])
    return uid


def check_rootfs(path: str) -> str:
    rootfs = os.path.realpath(path)
    if not os.path.isdir(rootfs):
        raise bad(f"--rootfs {path}: not a directory")
    if rootfs == "/":
        raise bad(
            "--rootfs / would run the container on the host's own root",
            "give a directory with a root filesystem",
        )
    return rootfs


def check_hostname(text: str) -> str:
    allowed = all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in text)
    if not (0 < len(text) <= 63 and allowed and text[0] != "-" and text[-1] != "-"):
        raise bad(
            f"--hostname {text!r} is not a valid host name", "letters, digits and '-', at most 63 characters"
        )
    return text


def check_name(text: str) -> str:
    allowed = all(ch.isascii() and (ch.isalnum() or ch in "_.-") for ch in text)
    if not (0 < len(text) <= 128 and allowed and text[0].isalnum()):
        raise bad(
            f"--name {text!r} is not valid", "letters, digits, '_', '.', '-'; starting with a letter or digit"
        )
    return text


def parse_preserve_fds(text: str) -> int:
    """How many fds after 2 cross into the container; none of them may be a directory, which would be a
    way out of its root (CVE-2024-21626)."""
    if not text.isdigit():
        raise bad(f"--preserve-fds {text!r} is not a whole number")
    count = int(text)
    for fd in range(3, 3 + count):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue  # not open: nothing crosses, as with runc
        if mode & 0o170000 == 0o040000:
            raise bad(
                f"--preserve-fds {count}: fd {fd} is a directory, which would give the container a way out of its root",
                "pass files, pipes or sockets only; close the directory fd or lower the count",
            )
    return count


def parse_security_opt(items: list[str]) -> str:
    """Docker's --security-opt; only seccomp=unconfined|PROFILE.json is understood."""
    seccomp = "default"
    for item in items:
        key, sep, value = item.partition("=")
        if key != "seccomp" or not sep or not value:
            raise bad(
                f"--security-opt {item!r} is not understood", "use seccomp=unconfined or seccomp=PROFILE.json"
            )
        seccomp = value if value == "unconfined" else os.path.abspath(value)
    return seccomp


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise bad(f"{option} {value!r} is not one of: {', '.join(choices)}")
    return value
