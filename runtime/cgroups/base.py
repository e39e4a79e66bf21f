"""The interface every cgroup implementation offers, and the filesystem helpers they share."""

from __future__ import annotations

import abc
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

SUBTREE = "runtime"  # every container's cgroup lives under <hierarchy>/runtime/<id>
RMDIR_DEADLINE = 2.0


class CgroupError(OSError):
    """A cgroup operation failed; the message names the file."""


@dataclass(frozen=True)
class Limits:
    memory: int | None = None  # bytes
    cpus: float | None = None
    pids: int | None = None

    def controllers(self) -> list[str]:
        wanted = {"memory": self.memory, "cpu": self.cpus, "pids": self.pids}
        return [name for name, value in wanted.items() if value is not None]


def write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def read_keyed(path: Path) -> dict[str, int]:
    """Files such as memory.events: lines of "key value"."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[key] = int(value)
    return values


def procs(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def kill_procs(directory: Path) -> None:
    for pid in procs(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove(directory: Path) -> None:
    """rmdir, waiting for killed processes to leave (they leave the cgroup a moment after dying)."""
    deadline = time.monotonic() + RMDIR_DEADLINE
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise CgroupError(exc.errno, f"cannot remove {directory}: {exc.strerror}") from exc
            kill_procs(directory)
            time.sleep(0.01)


class Cgroup(abc.ABC):
    """One container's cgroup in one hierarchy, for the controllers it owns there."""

    def __init__(self, container_id: str, controllers: tuple[str, ...]) -> None:
        self.container_id = container_id
        self.controllers = controllers

    @abc.abstractmethod
    def directories(self) -> list[Path]: ...

    @abc.abstractmethod
    def create(self) -> None: ...

    def add(self, pid: int) -> None:
        for directory in self.directories():
            write(directory / "cgroup.procs", str(pid))

    @abc.abstractmethod
    def apply(self, limits: Limits) -> None: ...

    @abc.abstractmethod
    def oom_kills(self) -> int: ...

    def kill_all(self) -> None:
        for directory in self.directories():
            kill_procs(directory)

    def destroy(self) -> None:
        self.kill_all()
        for directory in self.directories():
            remove(directory)
