"""What the user asked `runtime run` for, parsed and checked. Bad input raises Failure (exit 125)."""

from __future__ import annotations

import enum
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from runtime.cgroups.base import Limits
from runtime.errors import Failure

EXIT_RUNTIME = 125
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([bkmg]?)b?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class UsernsMode(enum.StrEnum):
    AUTO = "auto"
    HOST = "host"
    PRIVATE = "private"


class Network(enum.StrEnum):
    NONE = "none"
    HOST = "host"


@dataclass(frozen=True)
class User:
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True)
class ContainerSpec:
    container_id: str
    name: str
    rootfs: Path
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/"
    user: User = field(default_factory=User)
    hostname: str = ""
    limits: Limits = field(default_factory=Limits)
    network: Network = Network.NONE
    userns: UsernsMode = UsernsMode.AUTO
    read_only: bool = False

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
    match = _SIZE.match(text.strip())
    if not match:
        raise bad(f"--memory {text!r} is not a size", "use a number with an optional unit: 64m, 1g, 524288k")
    value = int(float(match[1]) * _UNITS[match[2].lower()])
    if value < 6 * 1024**2:
        raise bad(f"--memory {text} is below the 6 MiB a container needs to start", "use --memory 6m or more")
    return value


def parse_cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise bad(f"--cpus {text!r} is not a number", "for example --cpus 0.5") from None
    if not 0.01 <= value <= (os.cpu_count() or 1):
        raise bad(f"--cpus {text} is out of range", f"use a value from 0.01 to {os.cpu_count()}")
    return value


def parse_pids(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise bad(f"--pids-limit {text!r} is not a positive whole number")
    return int(text)


def parse_env(items: list[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not key or "\0" in item:
            raise bad(f"-e {item!r} is not KEY=VALUE")
        pairs.append((key, value if sep else os.environ.get(key, "")))
    return tuple(pairs)


def parse_user(text: str, rootfs: Path) -> User:
    name, _, group = text.partition(":")
    uid = _lookup(name, rootfs / "etc/passwd", 2, "user")
    gid = _lookup(group, rootfs / "etc/group", 2, "group") if group else _primary_gid(name, uid, rootfs)
    return User(uid, gid)


def _lookup(name: str, table: Path, column: int, what: str) -> int:
    if name.isdigit():
        return int(name)
    try:
        for line in table.read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name and len(fields) > column:
                return int(fields[column])
    except OSError:
        pass
    raise bad(f"{what} {name!r} is not in the container's {table.name}", "use a numeric id: -u 1000:1000")


def _primary_gid(name: str, uid: int, rootfs: Path) -> int:
    try:
        for line in (rootfs / "etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 3 and (fields[0] == name or fields[2] == str(uid)):
                return int(fields[3])
    except OSError:
        pass
    return uid


def check_rootfs(path: str) -> Path:
    rootfs = Path(path).resolve()
    if not rootfs.is_dir():
        raise bad(f"--rootfs {path}: not a directory")
    if rootfs == Path("/"):
        raise bad(
            "--rootfs / would run the container on the host's own root",
            "give a directory with a root filesystem",
        )
    return rootfs


def check_hostname(text: str) -> str:
    if not _HOSTNAME.match(text):
        raise bad(
            f"--hostname {text!r} is not a valid host name", "letters, digits and '-', at most 63 characters"
        )
    return text


def check_name(text: str) -> str:
    if not _NAME.match(text):
        raise bad(
            f"--name {text!r} is not valid", "letters, digits, '_', '.', '-'; starting with a letter or digit"
        )
    return text
