"""The launch of `runtime run`: the setup process, the cgroups it joins at birth, its reports, the wait.

The setup process is born in the container's cgroup2 cgroup where clone3 allows, and writes itself
into the v1 `tasks` files where that takes no global lock; the runtime moves the init into whatever
is left. It follows the setup's messages (id maps, the init's pid, notes, errors), then forwards
signals to the init and waits for it. Part of the start path: plain classes and os.
"""

from __future__ import annotations

import _signal
import os

from runtime import channel, child, output, state
from runtime.cgroups.base import Cgroup
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup
from runtime.decide import id_range, userns_failure
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux import constants as c
from runtime.linux import libc
from runtime.linux.release import kernel_version

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from runtime.cgroups.manager import Manager
    from runtime.spec import ContainerSpec

LOCKLESS_SELF_MOVE = (6, 0)  # a thread writing "0" to a v1 `tasks` file takes no global lock from 6.0


class _Setup:
    """What the setup processes reported."""

    __slots__ = ("errors", "init_pid", "userns_errno")

    def __init__(self) -> None:
        self.init_pid = 0
        self.errors: list[str] = []
        self.userns_errno = 0


def start_and_wait(
    spec: ContainerSpec,
    manager: Manager,
    record: state.State,
    userns: str,
    overlay: tuple[str, str, str] | None,
    seccomp: tuple[bytes, int] | None,
    nodev: bool,
) -> int:
    libc.prctl(c.PR_SET_CHILD_SUBREAPER, 1)
    up_read, up_write = os.pipe2(os.O_CLOEXEC)
    down_read, down_write = os.pipe2(os.O_CLOEXEC)
    with open("/proc/sys/kernel/cap_last_cap") as file:
        last_cap = int(file.read())
    launch = child.Launch(
        userns, os.path.exists("/proc/self/ns/cgroup"), last_cap, up_write, down_read, overlay, seccomp, nodev
    )
    moved = _open_cgroups_for_birth(manager, launch)
    # Blocked until the container runs; the children unblock them once they have handlers.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, child.FORWARDED)
    setup_pid = _fork_setup(launch, moved)
    if setup_pid == 0:
        os.close(up_read)
        os.close(down_write)
        child.forked(child.setup, spec, launch)
    os.close(up_write)
    os.close(down_read)
    try:
        report = _follow_setup(setup_pid, moved, record, down_write, up_read)
    finally:
        os.close(down_write)
        os.close(up_read)
        _reap(setup_pid)
    _say_userns(spec, report)
    if report.init_pid and report.errors:
        _kill_and_reap(report.init_pid)
    if not report.init_pid or report.errors:
        raise Failure("; ".join(report.errors) or "the container's setup process died", "", EXIT_RUNTIME)
    return _wait(report.init_pid, manager, spec)


class _Moved:
    """The container's cgroups the runtime moves the init into, and the cgroup2 one the setup process
    may be born in instead (the fd for clone3)."""

    __slots__ = ("cgroup2", "cgroup2_fd", "parts")

    def __init__(self, parts: list[Cgroup], cgroup2: V2Cgroup | None = None, cgroup2_fd: int = -1) -> None:
        self.parts = parts
        self.cgroup2 = cgroup2
        self.cgroup2_fd = cgroup2_fd


def _open_cgroups_for_birth(manager: Manager, launch: child.Launch) -> _Moved:
    """Nothing moves where it can be helped (a move waits for an RCU grace period, 20 ms here): the
    setup process is born in the cgroup2 cgroup (clone3, 5.7+), writes "0" to the v1 `tasks` files
    itself (lockless for a thread moving itself from 6.0, see child.join_v1), and the init inherits
    both; the runtime moves it into whatever is left. The files are opened here, as host root.

    RUNTIME_CLONE3=0 does as on a kernel without clone3 (before 5.3): fork, then move the init into
    every cgroup (tests)."""
    if os.environ.get("RUNTIME_CLONE3") == "0":
        return _Moved(list(manager.parts))
    moved = _Moved([])
    tasks: list[tuple[int, str]] = []
    try:
        for part in manager.parts:
            if isinstance(part, V2Cgroup):
                moved.cgroup2_fd = os.open(part.leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                moved.cgroup2 = part
            elif isinstance(part, V1Cgroup) and kernel_version() >= LOCKLESS_SELF_MOVE:
                for directory in part.directories():
                    tasks.append(
                        (os.open(os.path.join(directory, "tasks"), os.O_WRONLY | os.O_CLOEXEC), directory)
                    )
            else:
                moved.parts.append(part)
    except OSError as exc:
        for fd in (moved.cgroup2_fd, *(fd for fd, _ in tasks)):
            if fd >= 0:
                os.close(fd)
        raise Failure(f"cannot join the container's cgroups: {exc}", "", EXIT_RUNTIME) from exc
    launch.tasks = tuple(tasks)
    return moved


def _fork_setup(launch: child.Launch, moved: _Moved) -> int:
    """os.fork(), or clone3 into the cgroup2 cgroup where it can."""
    pid: int | None = -1
    try:
        pid = _clone_into_cgroup2(moved) if moved.cgroup2_fd >= 0 else None
        if pid is None:
            pid = os.fork()
    finally:
        if pid != 0:  # the runtime's copies: the setup process writes and closes its own
            for fd, _ in launch.tasks:
                os.close(fd)
    if pid:
        _say_joined(launch, moved)
    return pid


def _clone_into_cgroup2(moved: _Moved) -> int | None:
    """The pid (0 in the child), or None where clone3 cannot: the init is then moved in (moved.parts)."""
    try:
        pid = libc.fork_into_cgroup(moved.cgroup2_fd)
    except OSError as exc:
        raise Failure(f"cannot create the container's setup process: {exc}", "", EXIT_RUNTIME) from exc
    finally:
        os.close(moved.cgroup2_fd)  # in the child too, before anything: it is a way out of the root
    if pid is None and moved.cgroup2 is not None:
        moved.parts.append(moved.cgroup2)
    return pid


def _say_joined(launch: child.Launch, moved: _Moved) -> None:
    joined = ["v1 (the setup process writes its tasks files)"] if launch.tasks else []
    if moved.cgroup2 is not None and moved.cgroup2 not in moved.parts:
        joined.insert(0, "cgroup2 (born in it by clone3)")
    left = ["cgroup2" if isinstance(part, V2Cgroup) else "v1" for part in moved.parts]
    output.note(
        f"cgroups: joined without a move: {', '.join(joined) or 'none'}; moved: {', '.join(left) or 'none'}"
    )


def _follow_setup(setup_pid: int, moved: _Moved, record: state.State, down: int, up: int) -> _Setup:
    report = _Setup()
    for kind, text in channel.receive(up):
        if kind == "userns":
            _write_id_maps(setup_pid)
            _go_ahead(down, b"m")
        elif kind == "userns-failed":
            report.userns_errno = int(text)
        elif kind == "pid":
            report.init_pid = int(text)
            # Recorded before the go-ahead: until then the init gives up by itself if we die (the pipe
            # closes), after it `runtime gc` can find and kill it.
            state.record_init(record, report.init_pid)
            # It exits after this message, and counts against --pids-limit until reaped (it may be in
            # the container's cgroups): `--pids-limit 2` is the init and the workload.
            _reap(setup_pid)
            _join_cgroups(moved, report, down)
        elif kind == "note":
            output.note(text)
        elif kind == "error":
            report.errors.append(text)
    return report


def _join_cgroups(moved: _Moved, report: _Setup, down: int) -> None:
    """Move the init into the cgroups it was not born in, while it mounts; it waits for the go-ahead
    before it forks the workload."""
    try:
        for part in moved.parts:
            part.add(report.init_pid)
    except OSError as exc:
        report.errors.append(f"cannot join the container's cgroups: {exc}")
        return  # no go-ahead: the init sees the pipe close and gives up
    _go_ahead(down, b"g")


def _go_ahead(down: int, word: bytes) -> None:
    """A child that already failed has closed its end; its error message is still on the way."""
    try:
        os.write(down, word)
    except BrokenPipeError:
        pass


def _write_id_maps(pid: int) -> None:
    start, count = id_range()
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as file:
            file.write(f"0 {start} {count}")
    output.note(f"userns: private: container root is host uid {start} ({count} ids)")


def _say_userns(spec: ContainerSpec, report: _Setup) -> None:
    if not report.userns_errno:
        return
    cause = userns_failure(report.userns_errno)
    if spec.userns == "private":
        report.errors.append(f"--userns private: user namespaces are unusable here: {cause}")
    else:
        output.note(f"userns: host, because user namespaces are unusable here: {cause}")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _wait(init_pid: int, manager: Manager, spec: ContainerSpec) -> int:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(init_pid, signum)
        except ProcessLookupError:
            pass

    for signum in child.FORWARDED:
        _signal.signal(signum, forward)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, child.FORWARDED)
    _, status = os.waitpid(init_pid, 0)
    code = child.exit_code(status)
    if code == 128 + _signal.SIGKILL and manager.oom_kills():
        limit = spec.limits.memory
        shown = f"the --memory limit of {limit // 1024**2} MiB" if limit else "its memory limit"
        output.warn(f"the container ran out of memory: the kernel's OOM killer ended it at {shown}")
    return code
