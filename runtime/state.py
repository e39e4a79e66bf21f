"""Running containers' state under /run/runtime: one directory per container, a name index, and
the garbage collection of what a runtime killed with SIGKILL left behind.

Plain "key=value" lines rather than JSON: this is on the start path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from runtime.errors import Failure

STATE_ROOT = Path("/run/runtime")
EXIT_RUNTIME = 125


@dataclass(frozen=True)
class State:
    container_id: str
    name: str
    command: str
    runtime_pid: int
    runtime_start: str  # /proc/<pid>/stat start time: tells a reused PID apart
    created: float
    init_pid: int = 0
    cgroups: tuple[str, ...] = field(default=())

    @property
    def directory(self) -> Path:
        return STATE_ROOT / "containers" / self.container_id

    def save(self) -> None:
        lines = [
            f"id={self.container_id}",
            f"name={self.name}",
            f"command={self.command}",
            f"runtime_pid={self.runtime_pid}",
            f"runtime_start={self.runtime_start}",
            f"created={self.created}",
            f"init_pid={self.init_pid}",
            f"cgroups={':'.join(self.cgroups)}",
        ]
        temporary = self.directory / "state.tmp"
        temporary.write_text("\n".join(lines) + "\n")
        temporary.replace(self.directory / "state")

    def runtime_alive(self) -> bool:
        return start_time(self.runtime_pid) == self.runtime_start


def start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def claim(container_id: str, name: str, command: str, cgroups: tuple[str, ...]) -> State:
    """Register a new container; a live container of the same name is refused (exit 125)."""
    names = STATE_ROOT / "names"
    names.mkdir(parents=True, exist_ok=True)
    link = names / name
    try:
        link.symlink_to(container_id)
    except FileExistsError:
        owner = load(STATE_ROOT / "containers" / os.readlink(link))
        if owner is not None and owner.runtime_alive():
            raise Failure(
                f"the name {name!r} is taken by container {owner.container_id}",
                "pick another --name",
                EXIT_RUNTIME,
            ) from None
        link.unlink()
        link.symlink_to(container_id)
    me = os.getpid()
    state = State(container_id, name, command, me, start_time(me), time.time(), cgroups=cgroups)
    state.directory.mkdir(parents=True)
    state.save()
    return state


def record_init(state: State, pid: int) -> State:
    updated = replace(state, init_pid=pid)
    updated.save()
    return updated


def release(state: State) -> None:
    shutil.rmtree(state.directory, ignore_errors=True)
    link = STATE_ROOT / "names" / state.name
    with contextlib.suppress(OSError):
        if os.readlink(link) == state.container_id:
            link.unlink()


def load(directory: Path) -> State | None:
    try:
        text = (directory / "state").read_text()
    except OSError:
        return None
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        return State(
            container_id=values["id"],
            name=values["name"],
            command=values["command"],
            runtime_pid=int(values["runtime_pid"]),
            runtime_start=values["runtime_start"],
            created=float(values["created"]),
            init_pid=int(values["init_pid"]),
            cgroups=tuple(path for path in values["cgroups"].split(":") if path),
        )
    except (KeyError, ValueError):
        return None


def load_all() -> list[State]:
    containers = STATE_ROOT / "containers"
    if not containers.is_dir():
        return []
    found = (load(directory) for directory in sorted(containers.iterdir()))
    return sorted((state for state in found if state is not None), key=lambda s: s.created)
