"""Probes that find out by doing: create a namespace, mount, pivot, call a syscall.

Anything with a side effect runs in a forked child that exits when done, so the namespaces and
mounts it made die with it. Detection turns the outcomes into findings (see the sibling modules);
recorded hosts in the tests replay outcomes captured elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.linux import constants as c
from runtime.linux import libc

UNPRIVILEGED_UID = 65534  # the overflow uid ("nobody"): exists on every Linux system
CHILD_DEADLINE = 5.0

# The steps an Outcome names when it failed, as detection (userns, namespaces, overlay, pivot) reads them.
DROP_STEP = "setresuid"  # becoming UNPRIVILEGED_UID, before a probe as an unprivileged user
UNSHARE_USERNS_STEP = "unshare-userns"
SETGROUPS_STEP, UID_MAP_STEP, GID_MAP_STEP = "setgroups", "uid_map", "gid_map"  # mapping ourselves in
MAP_STEPS = frozenset({SETGROUPS_STEP, UID_MAP_STEP, GID_MAP_STEP})
ENTER_USERNS_STEPS = MAP_STEPS | {UNSHARE_USERNS_STEP}  # a failure here: user namespaces are unusable
USE_STEP = "use"  # the userns probe's last step: a mount inside the new namespace
MAKE_PRIVATE_STEP, MOUNT_TMPFS_STEP = "make-private", "mount-tmpfs"  # a private scratch tmpfs


@dataclass(frozen=True)
class Outcome:
    ok: bool
    errno: str = ""  # symbolic, e.g. "EINVAL"
    step: str = ""  # which step failed
    value: int | None = None

    def encode(self) -> str:
        if self.ok:
            return "ok" if self.value is None else f"ok {self.value}"
        return f"err {self.errno} {self.step}".rstrip()

    @classmethod
    def decode(cls, text: str) -> Outcome:
        words = text.split()
        if words and words[0] == "ok":
            return cls(True, value=int(words[1]) if len(words) > 1 else None)
        if len(words) >= 2 and words[0] == "err":
            return cls(False, errno=words[1], step=words[2] if len(words) > 2 else "")
        return cls(False, errno="ECHILD", step=f"probe died without an answer ({text!r})")


Outcomes = Mapping[str, Outcome]


class StepFailed(Exception):
    def __init__(self, step: str, err: int) -> None:
        super().__init__(step, err)
        self.step = step
        self.errno = err


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StepFailed(name, exc.errno or 0) from exc


def errno_name(number: int) -> str:
    return errno.errorcode.get(number, str(number))


def in_child(probe: Callable[[], int | None]) -> Outcome:
    """Run probe in a forked child; its namespaces and mounts vanish when it exits."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: only os._exit leaves this branch
        answer = "err ECHILD probe raised"
        try:
            os.close(read_end)
            value = probe()
            answer = Outcome(True, value=value).encode()
        except StepFailed as exc:
            answer = Outcome(False, errno_name(exc.errno), exc.step).encode()
        finally:
            os.write(write_end, answer.encode())
            os._exit(0)
    os.close(write_end)
    try:
        return Outcome.decode(_read_answer(read_end, pid))
    finally:
        os.close(read_end)
        _reap(pid)


def _read_answer(fd: int, pid: int) -> str:
    ready, _, _ = select.select([fd], [], [], CHILD_DEADLINE)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        return "err ETIMEDOUT deadline"
    return os.read(fd, 512).decode(errors="replace")


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# --- building blocks used inside children -------------------------------------------------------


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _drop_to(uid: int) -> None:
    with step(DROP_STEP):
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)


def _enter_userns(extra_flags: int = 0) -> None:
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    # A uid change from root clears "dumpable", which makes /proc/self/uid_map unwritable.
    libc.prctl(c.PR_SET_DUMPABLE, 1)
    with step(UNSHARE_USERNS_STEP):
        libc.unshare(c.CLONE_NEWUSER | extra_flags)
    with step(SETGROUPS_STEP):
        _write("/proc/self/setgroups", "deny")
    with step(UID_MAP_STEP):
        _write("/proc/self/uid_map", f"0 {outer_uid} 1")
    with step(GID_MAP_STEP):
        _write("/proc/self/gid_map", f"0 {outer_gid} 1")


def _private_mounts(in_userns: bool = False) -> None:
    """A mount namespace of our own (in a new user namespace if asked), with private propagation."""
    if in_userns:
        _enter_userns(c.CLONE_NEWNS)
    else:
        with step("unshare-mnt"):
            libc.unshare(c.CLONE_NEWNS)
    with step(MAKE_PRIVATE_STEP):
        libc.mount(None, "/", None, c.MS_REC | c.MS_PRIVATE)


def _scratch_tmpfs(where: str) -> Path:
    with step(MOUNT_TMPFS_STEP):
        libc.mount("probe", where, "tmpfs", 0, "mode=0755")
    base = Path(where)
    for name in ("lower", "upper", "work", "merged"):
        (base / name).mkdir()
    return base


def _mount_overlay(base: Path, options: str = "") -> None:
    data = f"lowerdir={base / 'lower'},upperdir={base / 'upper'},workdir={base / 'work'}{options}"
    libc.mount("overlay", str(base / "merged"), "overlay", 0, data)


# --- the probes -------------------------------------------------------------------------------


def probe_namespace(flag: int, via_userns: bool) -> Callable[[], int | None]:
    def run() -> None:
        if via_userns:
            _enter_userns()
        with step("unshare"):
            libc.unshare(flag)

    return run


def probe_userns(as_uid: int | None) -> Callable[[], int | None]:
    """Create a user namespace, map ourselves, then use the mapping (mount a tmpfs).

    The last step tells Ubuntu's AppArmor restriction apart: there unshare succeeds and what
    follows is denied.
    """

    def run() -> None:
        if as_uid is not None:
            _drop_to(as_uid)
        _enter_userns()
        with step(USE_STEP):
            libc.unshare(c.CLONE_NEWNS)
            libc.mount("probe", "/tmp", "tmpfs", 0)

    return run


def probe_overlay(scratch: str, in_userns: bool) -> Callable[[], int | None]:
    """Mount an overlay on a tmpfs in a private mount namespace. In a user namespace, try
    userxattr first (5.11+); 2 means it only worked without it (Debian's 5.10 module parameter)."""

    def run() -> int:
        _private_mounts(in_userns)
        base = _scratch_tmpfs(scratch)
        if not in_userns:
            with step("mount-overlay"):
                _mount_overlay(base)
            return 1
        try:
            _mount_overlay(base, ",userxattr")
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise StepFailed("mount-overlay", exc.errno or 0) from exc
            with step("mount-overlay"):
                _mount_overlay(base)
            return 2
        return 1

    return run


def probe_pivot_root(scratch: str, via_userns: bool) -> Callable[[], int | None]:
    def run() -> None:
        _private_mounts(via_userns)
        base = _scratch_tmpfs(scratch)
        with step("pivot_root"):
            libc.pivot_root(str(base), str(base / "lower"))

    return run


# --- side-effect-free syscall probes, run in this process ------------------------------------------


def _syscall_outcome(call: Callable[[], int], present: set[int], close_fd: bool = False) -> Outcome:
    try:
        result = call()
    except OSError as exc:
        number = exc.errno or 0
        if number in present:
            return Outcome(True, errno=errno_name(number))
        return Outcome(False, errno=errno_name(number), step="call")
    if close_fd:
        os.close(result)
        return Outcome(True)
    return Outcome(True, value=result)


def syscall_outcomes() -> dict[str, Outcome]:
    sys = libc.syscall
    return {
        "clone3": _syscall_outcome(lambda: sys(c.SYS_CLONE3, None, 0), {errno.EINVAL}),
        "pidfd_open": _syscall_outcome(lambda: sys(c.SYS_PIDFD_OPEN, os.getpid(), 0), set(), close_fd=True),
        "mount_api": _syscall_outcome(lambda: sys(c.SYS_FSOPEN, b"tmpfs", 0), {errno.EPERM}, close_fd=True),
        "mount_setattr": _syscall_outcome(
            lambda: sys(c.SYS_MOUNT_SETATTR, -1, b"", 0, None, 0), {errno.EINVAL, errno.EBADF}
        ),
        "landlock": _syscall_outcome(
            lambda: sys(c.SYS_LANDLOCK_CREATE_RULESET, None, 0, c.LANDLOCK_CREATE_RULESET_VERSION), set()
        ),
        # EFAULT on a NULL program means the kernel understood the request: filters are supported.
        "seccomp_filter": _syscall_outcome(
            lambda: libc.prctl(c.PR_SET_SECCOMP, c.SECCOMP_MODE_FILTER, 0), {errno.EFAULT}
        ),
        "no_new_privs": _syscall_outcome(lambda: libc.prctl(c.PR_GET_NO_NEW_PRIVS), set()),
        "ambient_caps": _syscall_outcome(
            lambda: libc.prctl(c.PR_CAP_AMBIENT, c.PR_CAP_AMBIENT_IS_SET, 0), set()
        ),
    }


# --- the plan ------------------------------------------------------------------------------------


def run_all(euid: int) -> dict[str, Outcome]:
    """Every probe this caller can run. Root also probes as an unprivileged user."""
    root = euid == 0
    outcomes = syscall_outcomes()
    outcomes["userns.self"] = in_child(probe_userns(None))
    if root:
        outcomes["userns.unprivileged"] = in_child(probe_userns(UNPRIVILEGED_UID))
    via_userns = not root
    for name, flag in c.NAMESPACE_FLAGS.items():
        if name != "user":
            outcomes[f"ns.{name}"] = in_child(probe_namespace(flag, via_userns))
    scratch = tempfile.mkdtemp(prefix="runtime-probe-")
    try:
        if root:
            outcomes["overlay.mount"] = in_child(probe_overlay(scratch, in_userns=False))
        outcomes["overlay.userns"] = in_child(probe_overlay(scratch, in_userns=True))
        outcomes["pivot_root"] = in_child(probe_pivot_root(scratch, via_userns))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return outcomes
