"""Install a compiled filter on the calling thread: seccomp(SECCOMP_SET_MODE_FILTER) through ctypes.

Import this module before the container's root changes: install() runs as the last step before
exec, inside the new root, where no module of the runtime can be found any more. So everything it
uses is bound here, at import, and install() imports nothing.
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # not typing's: importing typing costs 8 ms on `runtime run`'s start path
if TYPE_CHECKING:
    from typing import Any

SYS_SECCOMP = 317  # x86_64
SECCOMP_SET_MODE_FILTER = 1
SOCK_FILTER_SIZE = 8
BPF_MAXINSNS = 4096


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _errcheck(result: int, _func: Any, _args: tuple[Any, ...]) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SECCOMP_SET_MODE_FILTER): {os.strerror(err)}")
    return result


# syscall(2) with this call's own prototype: indexing the library makes a new function object, so
# runtime.linux.libc's variadic binding of the same symbol keeps its argtypes.
_seccomp: Any = ctypes.CDLL("libc.so.6", use_errno=True)["syscall"]
_seccomp.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.POINTER(SockFprog)]
_seccomp.restype = ctypes.c_long
_seccomp.errcheck = _errcheck


def install(program: bytes, flags: int = 0) -> None:
    """Load `program` (struct sock_filter[] from bpf.build) as a seccomp filter of this thread.

    The thread must have no_new_privs set (or CAP_SYS_ADMIN), else the kernel answers EACCES.
    flags: SECCOMP_FILTER_FLAG_* (Profile.flags). Raises OSError naming the call.
    """
    count, rest = divmod(len(program), SOCK_FILTER_SIZE)
    if rest or not 0 < count <= BPF_MAXINSNS:
        raise ValueError(
            f"a seccomp program is 1 to {BPF_MAXINSNS} instructions of 8 bytes, not {len(program)} bytes"
        )
    code = (ctypes.c_char * len(program)).from_buffer_copy(program)
    fprog = SockFprog(count, ctypes.addressof(code))
    _seccomp(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(fprog))
