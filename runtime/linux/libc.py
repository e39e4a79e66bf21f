"""ctypes wrappers: each carries argtypes and turns -1 into an OSError that names the call."""

from __future__ import annotations

import _signal
import ctypes
import errno
import os

from runtime.linux import constants as c

TYPE_CHECKING = False  # not typing's: importing typing costs 8 ms on `runtime run`'s start path
if TYPE_CHECKING:
    from typing import Any

# By soname: ctypes.util.find_library imports subprocess and shutil (9 ms on the start path), and
# the runtime targets glibc systems (Debian hosts and guests).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _errcheck(result: int, func: Any, _args: tuple[Any, ...]) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{func.__name__}: {os.strerror(err)}")
    return result


def _bind(name: str, argtypes: list[Any], restype: Any = ctypes.c_int) -> Any:
    func = getattr(_libc, name)
    func.argtypes = argtypes
    func.restype = restype
    func.errcheck = _errcheck
    return func


_unshare = _bind("unshare", [ctypes.c_int])
_setns = _bind("setns", [ctypes.c_int, ctypes.c_int])
_mount = _bind("mount", [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p])
_umount2 = _bind("umount2", [ctypes.c_char_p, ctypes.c_int])
_prctl = _bind("prctl", [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong])
_syscall = _bind("syscall", [ctypes.c_long], ctypes.c_long)
_syscall.argtypes = None  # variadic: arguments are passed as c_long by the callers below


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 112)]


_statfs = _bind("statfs", [ctypes.c_char_p, ctypes.POINTER(_Statfs)])


def _b(path: str | os.PathLike[str] | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    _unshare(flags)


def setns(fd: int, nstype: int = 0) -> None:
    _setns(fd, nstype)


def mount(
    source: str | None,
    target: str | os.PathLike[str],
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    _mount(_b(source), _b(target), _b(fstype), flags, None if data is None else data.encode())


def umount(target: str | os.PathLike[str], flags: int = 0) -> None:
    _umount2(_b(target), flags)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return int(_prctl(option, arg2, arg3, arg4, arg5))


def syscall(number: int, *args: int | bytes | None) -> int:
    converted = [ctypes.c_long(arg) if isinstance(arg, int) else arg for arg in args]
    return int(_syscall(ctypes.c_long(number), *converted))


def pivot_root(new_root: str | os.PathLike[str], put_old: str | os.PathLike[str]) -> None:
    syscall(c.SYS_PIVOT_ROOT, _b(new_root), _b(put_old))


def statfs_magic(path: str | os.PathLike[str]) -> int:
    buf = _Statfs()
    _statfs(_b(path), ctypes.byref(buf))
    return int(buf.f_type) & 0xFFFFFFFF


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    header = _CapHeader(c.LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    syscall(c.SYS_CAPSET, ctypes.addressof(header), ctypes.addressof(data))


_sethostname = _bind("sethostname", [ctypes.c_char_p, ctypes.c_size_t])


def sethostname(name: str) -> None:
    # socket.sethostname would do, but importing socket costs 6 ms on the start path.
    encoded = name.encode()
    _sethostname(encoded, len(encoded))


# --- clone3 into a cgroup -------------------------------------------------------------------------------


class _CloneArgs(ctypes.Structure):
    """struct clone_args up to `cgroup` (CLONE_ARGS_SIZE_VER2, 5.7+)."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size",
                     "tls", "set_tid", "set_tid_size", "cgroup")
    ]  # fmt: skip


# PyDLL: the call keeps the GIL across the clone, as os.fork does; the child must find it held.
_clone3: Any = ctypes.PyDLL("libc.so.6", use_errno=True)["syscall"]
_clone3.__name__ = "clone3"
_clone3.argtypes = [ctypes.c_long, ctypes.POINTER(_CloneArgs), ctypes.c_size_t]
_clone3.restype = ctypes.c_long
_clone3.errcheck = _errcheck
_pthread_self = _bind("pthread_self", [], ctypes.c_void_p)  # cannot fail (the errcheck never fires)


def _python_api(name: str) -> Any:
    func = ctypes.pythonapi[name]  # a new function object: ctypes.pythonapi's cached one stays untouched
    func.argtypes = []
    func.restype = None  # void, and they cannot fail
    return func


# What os.fork does around fork(2): fork handlers (os.register_at_fork), the import lock, and in the
# child the interpreter's thread state.
_before_fork = _python_api("PyOS_BeforeFork")
_after_fork_child = _python_api("PyOS_AfterFork_Child")
_after_fork_parent = _python_api("PyOS_AfterFork_Parent")

GLIBC_TID_OFFSET = 720  # struct pthread's tid on x86_64 glibc (2.36 here); checked before each use
CLONE3_MISSING = (errno.ENOSYS, errno.E2BIG, errno.EINVAL)  # no clone3 (< 5.3), no CLONE_INTO_CGROUP (< 5.7)


def glibc_tid_field() -> int | None:
    """The address where glibc keeps this thread's TID, which raise(), abort() and glibc's mutexes read:
    a raw clone's child must get its own written there, as glibc's fork does with CLONE_CHILD_SETTID.
    None where it is not at the expected offset (another libc, layout or architecture) or this is not
    the main thread (whose TID is the PID: the check)."""
    address = int(_pthread_self()) + GLIBC_TID_OFFSET
    return address if ctypes.c_int.from_address(address).value == os.getpid() else None


def fork_into_cgroup(cgroup_fd: int) -> int | None:
    """os.fork(), with the child born in the cgroup2 directory open as cgroup_fd (clone3 with
    CLONE_INTO_CGROUP): nothing migrates, so no RCU grace period. Call it single-threaded: no other
    thread may hold a libc lock across it (glibc's own fork would take them). Returns None, and no
    child exists, where this cannot be done (the kernel has no clone3 or no CLONE_INTO_CGROUP, or glibc's
    TID field is not found): the caller forks and moves the child instead. Other errors raise OSError."""
    tid_field = glibc_tid_field()
    if tid_field is None:
        return None
    args = _CloneArgs(
        flags=c.CLONE_INTO_CGROUP | c.CLONE_CHILD_SETTID,
        child_tid=tid_field,
        exit_signal=_signal.SIGCHLD,
        cgroup=cgroup_fd,
    )
    _before_fork()
    try:
        pid = int(_clone3(c.SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args)))
    except OSError as exc:
        _after_fork_parent()
        if exc.errno in CLONE3_MISSING:
            return None
        raise
    if pid == 0:
        _after_fork_child()
    else:
        _after_fork_parent()
    return pid
