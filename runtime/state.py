"""Running containers' state under /run/runtime: one directory per container and a name index.

Plain "key=value" lines rather than JSON, and os rather than pathlib: this is on the start path.
"""

from __future__ import annotations

import os
import time

from runtime.errors import EXIT_RUNTIME, Failure

STATE_ROOT = "/run/runtime"
FIELDS = (
    "id",
    "name",
    "command",
    "runtime_pid",
    "runtime_start",
    "created",
    "init_pid",
    "init_start",
    "cgroups",
    "image",
)


class State:
    __slots__ = (
        "cgroups",
        "command",
        "container_id",
        "created",
        "image",
        "init_pid",
        "init_start",
        "name",
        "runtime_pid",
        "runtime_start",
    )

    def __init__(
        self,
        container_id: str,
        name: str,
        command: str,
        runtime_pid: int,
        runtime_start: str,
        created: float,
        init_pid: int = 0,
        init_start: str = "",
        cgroups: tuple[str, ...] = (),
        image: str = "",
    ) -> None:
        self.container_id = container_id
        self.name = name
        self.command = command
        self.runtime_pid = runtime_pid
        self.runtime_start = runtime_start  # /proc/<pid>/stat start time: tells a reused PID apart
        self.created = created
        self.init_pid = init_pid
        self.init_start = init_start
        self.cgroups = cgroups
        self.image = image  # the image id, when run from one

    @property
    def directory(self) -> str:
        return os.path.join(STATE_ROOT, "containers", self.container_id)

    def save(self) -> None:
        values = (
            self.container_id, self.name, self.command.replace("\n", " "), self.runtime_pid, self.runtime_start,
            self.created, self.init_pid, self.init_start, ":".join(self.cgroups), self.image,
        )  # fmt: skip
        text = "".join(f"{key}={value}\n" for key, value in zip(FIELDS, values, strict=True))
        temporary = os.path.join(self.directory, "state.tmp")
        with open(temporary, "w") as file:
            file.write(text)
        os.replace(temporary, os.path.join(self.directory, "state"))

    def runtime_alive(self) -> bool:
        return start_time(self.runtime_pid) == self.runtime_start

    def init_alive(self) -> bool:
        return bool(self.init_pid) and start_time(self.init_pid) == self.init_start


def start_time(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as file:
            stat = file.read()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def claim(container_id: str, name: str, command: str, cgroups: tuple[str, ...], image: str = "") -> State:
    """Register a new container; a live container of the same name is refused (exit 125)."""
    names = os.path.join(STATE_ROOT, "names")
    os.makedirs(names, exist_ok=True)
    link = os.path.join(names, name)
    try:
        os.symlink(container_id, link)
    except FileExistsError:
        owner = load(os.path.join(STATE_ROOT, "containers", os.readlink(link)))
        if owner is not None and owner.runtime_alive():
            raise Failure(
                f"the name {name!r} is taken by container {owner.container_id}",
                "pick another --name",
                EXIT_RUNTIME,
            ) from None
        os.unlink(link)
        os.symlink(container_id, link)
    me = os.getpid()
    state = State(container_id, name, command, me, start_time(me), time.time(), cgroups=cgroups, image=image)
    os.makedirs(state.directory)
    state.save()
    return state


def record_init(state: State, pid: int) -> None:
    state.init_pid = pid
    state.init_start = start_time(pid)
    state.save()


def release(state: State) -> None:
    for name in ("state", "state.tmp"):
        try:
            os.unlink(os.path.join(state.directory, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(state.directory)
    except OSError:
        pass
    link = os.path.join(STATE_ROOT, "names", state.name)
    try:
        if os.readlink(link) == state.container_id:
            os.unlink(link)
    except OSError:
        pass


def load(directory: str) -> State | None:
    try:
        with open(os.path.join(directory, "state")) as file:
            text = file.read()
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
            init_start=values.get("init_start", ""),
            cgroups=tuple(path for path in values["cgroups"].split(":") if path),
            image=values.get("image", ""),
        )
    except (KeyError, ValueError):
        return None


def load_all() -> list[State]:
    containers = os.path.join(STATE_ROOT, "containers")
    try:
        names = sorted(os.listdir(containers))
    except OSError:
        return []
    found = (load(os.path.join(containers, name)) for name in names)
    return sorted((state for state in found if state is not None), key=lambda s: s.created)
