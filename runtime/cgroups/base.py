"""The interface every cgroup implementation offers, and the filesystem helpers they share."""

from __future__ import annotations

import abc
import os
import time

SUBTREE = "runtime"  # every container's cgroup lives under <hierarchy>/runtime/<id>
RMDIR_DEADLINE = 2.0
SIGKILL = 9
CPU_PERIOD_US = 100_000  # the CFS period both versions write: --cpus N is a quota of N periods


class CgroupError(OSError):
    """A cgroup operation failed; the message names the file."""


class Limits:
    __slots__ = ("cpus", "cpuset_cpus", "memory", "pids")

    def __init__(
        self,
        memory: int | None = None,
        cpus: float | None = None,
        pids: int | None = None,
        cpuset_cpus: str | None = None,
    ) -> None:
        self.memory = memory  # bytes
        self.cpus = cpus
        self.pids = pids
        self.cpuset_cpus = cpuset_cpus  # a CPU list in the kernel's spelling, checked: "0-1,3"

    def controllers(self) -> list[str]:
        wanted = {"memory": self.memory, "cpu": self.cpus, "pids": self.pids, "cpuset": self.cpuset_cpus}
        return [name for name, value in wanted.items() if value is not None]


def write(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot write {value!r} to {path}: {exc.strerror}") from exc


def read(path: str) -> str:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""


def read_keyed(path: str) -> dict[str, int]:
    """Files such as memory.events: lines of "key value"."""
    values: dict[str, int] = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


def procs(directory: str) -> list[int]:
    return [int(pid) for pid in read(os.path.join(directory, "cgroup.procs")).split()]


def kill_procs(directory: str) -> None:
    for pid in procs(directory):
        try:
            os.kill(pid, SIGKILL)
        except ProcessLookupError:
            pass


def remove(directory: str) -> None:
    """rmdir, waiting for killed processes to leave (they leave the cgroup a moment after dying)."""
    deadline = time.monotonic() + RMDIR_DEADLINE
    while True:
        try:
            os.rmdir(directory)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise CgroupError(exc.errno, f"cannot remove {directory}: {exc.strerror}") from exc
            kill_procs(directory)
            time.sleep(0.005)


class Cgroup(abc.ABC):
    """One container's cgroup in one hierarchy, for the controllers it owns there."""

    def __init__(self, container_id: str, controllers: tuple[str, ...]) -> None:
        self.container_id = container_id
        self.controllers = controllers

    @abc.abstractmethod
    def directories(self) -> list[str]: ...

    @abc.abstractmethod
    def create(self) -> None: ...

    def add(self, pid: int) -> None:
        for directory in self.directories():
            write(os.path.join(directory, "cgroup.procs"), str(pid))

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
