"""The setup process is born in the container's cgroups (clone3 CLONE_INTO_CGROUP, and "0" written to
the v1 tasks files by the setup itself), and the fallbacks to fork-and-move where it cannot be."""

from __future__ import annotations

import _imp
import ctypes
import errno
import os
from pathlib import Path
from typing import Any

import pytest

from runtime import child
from runtime import launch as launcher
from runtime.cgroups.manager import Manager, NoCgroups
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup
from runtime.errors import Failure
from runtime.linux import constants as c
from runtime.linux import libc
from runtime.linux.release import kernel_version
from runtime.seccomp import bpf, install, profile


class FakeClone:
    """Stands in for the clone3 binding; raises as its errcheck does, or returns a pid."""

    def __init__(self, result: int = 4242, errno_number: int = 0) -> None:
        self.result = result
        self.errno_number = errno_number
        self.calls: list[Any] = []

    def __call__(self, _number: int, args: Any, _size: int) -> int:
        passed = ctypes.cast(args, ctypes.POINTER(libc._CloneArgs)).contents
        self.calls.append(libc._CloneArgs.from_buffer_copy(passed))  # a copy: the caller's is a local
        if self.errno_number:
            raise OSError(self.errno_number, f"clone3: {os.strerror(self.errno_number)}")
        return self.result


def thread_self_holding(monkeypatch: pytest.MonkeyPatch, value: int) -> ctypes.c_int:
    """A fake pthread_self() whose TID field holds value."""
    field = ctypes.c_int(value)
    monkeypatch.setattr(libc, "_pthread_self", lambda: ctypes.addressof(field) - libc.GLIBC_TID_OFFSET)
    return field


def test_glibc_keeps_the_main_threads_tid_where_it_is_looked_for() -> None:
    assert libc.glibc_tid_field() is not None  # else every run here would fall back


def test_a_tid_field_not_holding_the_pid_means_no_clone(monkeypatch: pytest.MonkeyPatch) -> None:
    clone = FakeClone()
    monkeypatch.setattr(libc, "_clone3", clone)
    thread_self_holding(monkeypatch, os.getpid() + 1)
    assert libc.fork_into_cgroup(7) is None
    assert clone.calls == []


def test_the_child_gets_its_tid_written_to_glibcs_field(monkeypatch: pytest.MonkeyPatch) -> None:
    clone = FakeClone(result=4242)
    monkeypatch.setattr(libc, "_clone3", clone)
    field = thread_self_holding(monkeypatch, os.getpid())
    assert libc.fork_into_cgroup(7) == 4242
    (args,) = clone.calls
    assert args.child_tid == ctypes.addressof(field)
    assert args.flags == c.CLONE_INTO_CGROUP | c.CLONE_CHILD_SETTID
    assert (args.cgroup, args.exit_signal) == (7, 17)
    assert not _imp.lock_held()  # PyOS_AfterFork_Parent ran


@pytest.mark.parametrize("number", [errno.ENOSYS, errno.E2BIG, errno.EINVAL])
def test_a_kernel_without_clone3_or_clone_into_cgroup_means_fork(
    monkeypatch: pytest.MonkeyPatch, number: int
) -> None:
    monkeypatch.setattr(libc, "_clone3", FakeClone(errno_number=number))
    assert libc.fork_into_cgroup(7) is None
    assert not _imp.lock_held()


def test_other_clone3_errors_are_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libc, "_clone3", FakeClone(errno_number=errno.EAGAIN))
    with pytest.raises(OSError, match="clone3") as raised:
        libc.fork_into_cgroup(7)
    assert raised.value.errno == errno.EAGAIN
    assert not _imp.lock_held()


def test_clone3_refused_by_dockers_seccomp_profile_means_fork() -> None:
    """The real ENOSYS: Docker's profile answers it for clone3 (a runtime run inside a container)."""
    program = bpf.build(profile.default(), set(c.DEFAULT_CAPABILITIES.values()))
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            libc.prctl(c.PR_SET_NO_NEW_PRIVS, 1)
            install.install(program)
            code = 0 if libc.fork_into_cgroup(0) is None else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


# --- the runtime's choice ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("release", "expected"),
    [("6.0.0", True), ("6.18.44-fc-v669", True), ("6.1.0-18-amd64", True), ("5.15.0-91-generic", False),
     ("5.10.0", False), ("4.19.0-26-amd64", False), ("7", True), ("6", True), ("weird", False)],
)  # fmt: skip
def test_the_lockless_self_move_by_kernel(release: str, expected: bool) -> None:
    assert (kernel_version(release) >= launcher.LOCKLESS_SELF_MOVE) is expected


def hybrid(tmp_path: Path) -> Manager:
    """A manager whose directories are plain ones under tmp_path, with their tasks files."""
    v1 = V1Cgroup("c0ffee", {"pids": str(tmp_path / "pids"), "memory": str(tmp_path / "memory")})
    v2 = V2Cgroup("c0ffee", (), str(tmp_path / "unified"))
    for directory in (*v1.directories(), v2.leaf):
        os.makedirs(directory)
        Path(directory, "tasks").touch()
    return Manager((v1, v2))


def launch() -> child.Launch:
    return child.Launch("", True, 40, -1, -1)


def uname(monkeypatch: pytest.MonkeyPatch, release: str) -> None:
    real = os.uname()
    fake = os.uname_result((real.sysname, real.nodename, release, real.version, real.machine))
    monkeypatch.setattr(os, "uname", lambda: fake)


def opened(moved: launcher._Moved, started: child.Launch) -> list[int]:
    fds = [fd for fd, _ in started.tasks] + ([moved.cgroup2_fd] if moved.cgroup2_fd >= 0 else [])
    for fd in fds:
        os.close(fd)
    return fds


def test_on_6_0_nothing_is_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNTIME_CLONE3", raising=False)
    uname(monkeypatch, "6.1.0-18-amd64")
    manager, started = hybrid(tmp_path), launch()
    moved = launcher._open_cgroups_for_birth(manager, started)
    assert moved.parts == []
    assert moved.cgroup2 is manager.parts[1]
    assert sorted(directory for _, directory in started.tasks) == sorted(manager.parts[0].directories())
    assert len(opened(moved, started)) == 3


def test_before_6_0_the_init_is_moved_into_v1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the setup's own "0" would take the global lock there, and not overlap with the init's mounts
    monkeypatch.delenv("RUNTIME_CLONE3", raising=False)
    uname(monkeypatch, "5.15.0-91-generic")
    manager, started = hybrid(tmp_path), launch()
    moved = launcher._open_cgroups_for_birth(manager, started)
    assert moved.parts == [manager.parts[0]]
    assert started.tasks == ()
    assert len(opened(moved, started)) == 1  # the cgroup2 directory, for clone3


def test_runtime_clone3_0_moves_the_init_into_every_cgroup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_CLONE3", "0")
    manager, started = hybrid(tmp_path), launch()
    moved = launcher._open_cgroups_for_birth(manager, started)
    assert moved.parts == list(manager.parts)
    assert opened(moved, started) == []


@pytest.mark.parametrize("clone3", ["1", "0"])
def test_without_cgroups_there_is_nothing_to_join(clone3: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_CLONE3", clone3)
    started = launch()
    moved = launcher._open_cgroups_for_birth(NoCgroups(), started)
    assert (moved.parts, moved.cgroup2_fd, started.tasks) == ([], -1, ())


def test_where_clone3_cannot_the_init_is_moved_into_cgroup2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(libc, "fork_into_cgroup", lambda _fd: None)
    monkeypatch.delenv("RUNTIME_CLONE3", raising=False)
    uname(monkeypatch, "6.1.0-18-amd64")
    manager, started = hybrid(tmp_path), launch()
    moved = launcher._open_cgroups_for_birth(manager, started)
    fd = moved.cgroup2_fd
    assert launcher._clone_into_cgroup2(moved) is None
    assert moved.parts == [manager.parts[1]]
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed
    for task_fd, _ in started.tasks:
        os.close(task_fd)


def test_a_cgroup_that_cannot_be_opened_is_a_clear_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNTIME_CLONE3", raising=False)
    uname(monkeypatch, "6.1.0-18-amd64")
    manager = hybrid(tmp_path)
    Path(manager.parts[0].directories()[1], "tasks").unlink()
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(Failure, match=r"cannot join the container's cgroups: .*tasks"):
        launcher._open_cgroups_for_birth(manager, launch())
    assert set(os.listdir("/proc/self/fd")) == before  # what it had opened is closed
