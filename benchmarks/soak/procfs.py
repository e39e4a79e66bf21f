"""What /proc says of processes: their children, their pids by PID namespace, their start times,
their namespaces; and the SIGKILL."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children(pid: int) -> list[int]:
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        found += [int(word) for word in read_bytes(f"/proc/{pid}/task/{task}/children").split()]
    return found


def descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        for child in children(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


def cmdline(pid: int) -> bytes:
    return read_bytes(f"/proc/{pid}/cmdline")


def ns_pids(pid: int) -> list[int]:
    """The pid in each PID namespace, outermost first: [host pid, ..., pid in its own]."""
    for line in read_bytes(f"/proc/{pid}/status").decode(errors="replace").splitlines():
        if line.startswith("NSpid:"):
            return [int(word) for word in line.split()[1:]]
    return []


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command's name: the state first, then the parent, ..."""
    return read_bytes(f"/proc/{pid}/stat").decode(errors="replace").rsplit(")", 1)[-1].split()


def start_time(pid: int) -> str:
    return _start_time(stat_fields(pid))


def _start_time(fields: list[str]) -> str:
    return fields[19] if len(fields) > 19 else ""


def ns_inode(pid: int | str, kind: str) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return 0


def is_init(pid: int) -> bool:
    return inits_its_own(ns_pids(pid))


def inits_its_own(numbers: tuple[int, ...] | list[int]) -> bool:
    """PID 1 of a PID namespace of its own, by its pids by namespace."""
    return len(numbers) > 1 and numbers[-1] == 1


def sigkill(pid: int) -> bool:
    """False when the process is gone already."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str
    pidns: int
    cmdline: str
    nspids: tuple[int, ...]
    state: str  # R, S, Z, ...
    ppid: int

    def describe(self) -> str:
        inner = "/".join(map(str, self.nspids))
        return (
            f"pid {self.pid} (pid {inner} by namespace, pidns {self.pidns}, parent {self.ppid}, "
            f"{self.state}): {self.cmdline[:100] or '(no cmdline)'}"
        )

    def exiting(self) -> bool:
        """A zombie, or on its way: its memory, so its cmdline, is gone."""
        return self.state in ("Z", "X") or not self.cmdline

    def is_init(self) -> bool:
        return inits_its_own(self.nspids)


def processes() -> list[Proc]:
    found = []
    for pid in pids():
        pidns = ns_inode(pid, "pid")
        if not pidns:
            continue  # gone meanwhile
        words = cmdline(pid).replace(b"\0", b" ").decode(errors="replace").strip()
        stat = stat_fields(pid)
        state, ppid = (stat[0], int(stat[1])) if len(stat) > 1 else ("?", 0)
        found.append(Proc(pid, _start_time(stat), pidns, words, tuple(ns_pids(pid)), state, ppid))
    return found
