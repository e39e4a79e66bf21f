"""eBPF from Python: instructions as bytes, and bpf(2) to load a program and attach it to a cgroup.

Only what a cgroup device program needs. Imported when one is loaded (cgroup v2 hosts), never at
`runtime run`'s start. The instruction set and the attr layouts are the kernel's UAPI
(include/uapi/linux/bpf.h, Documentation/bpf/standardization/instruction-set.rst).
"""

from __future__ import annotations

import ctypes
import os

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from typing import Any

SYS_BPF = 321  # x86_64

# commands
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
# program and attach types
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2  # other programs on the cgroup and its ancestors keep running: all must allow

# instruction classes, sizes, modes, operations, sources
BPF_LDX, BPF_ALU, BPF_JMP, BPF_ALU64 = 0x01, 0x04, 0x05, 0x07
BPF_W, BPF_MEM = 0x00, 0x60
BPF_K, BPF_X = 0x00, 0x08
BPF_AND, BPF_RSH, BPF_MOV = 0x50, 0x70, 0xB0
BPF_JEQ, BPF_JNE, BPF_EXIT = 0x10, 0x50, 0x90
INSN_SIZE = 8

ATTR_SIZE = (
    144  # sizeof(union bpf_attr) in Debian 12's headers; the kernel takes any size, zero beyond what it knows
)
LOG_SIZE = 1 << 16
LOG_SHOWN = 2000
OBJ_NAME_LEN = 16


class BpfError(OSError):
    """bpf(2) failed; for a load the message ends with the verifier's log."""


# --- instructions: struct bpf_insn {u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm} -------------------


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One instruction; bit-fields are little-endian here, so dst is the low nibble."""
    return (
        bytes((code, (src << 4) | dst))
        + off.to_bytes(2, "little", signed=True)
        + imm.to_bytes(4, "little", signed=True)
    )


def load_word(dst: int, src: int, off: int) -> bytes:
    """dst = *(u32 *)(src + off), zero-extended."""
    return insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off)


def mov32_reg(dst: int, src: int) -> bytes:
    return insn(BPF_ALU | BPF_MOV | BPF_X, dst, src)


def alu32_imm(operation: int, dst: int, imm: int) -> bytes:
    return insn(BPF_ALU | operation | BPF_K, dst, imm=imm)


def mov64_imm(dst: int, imm: int) -> bytes:
    return insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, imm=imm)


def jump_imm(operation: int, dst: int, imm: int, off: int) -> bytes:
    """if dst <operation> imm: skip off instructions."""
    return insn(BPF_JMP | operation | BPF_K, dst, off=off, imm=imm)


def exit_insn() -> bytes:
    return insn(BPF_JMP | BPF_EXIT)


# --- bpf(2) -----------------------------------------------------------------------------------------------


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * OBJ_NAME_LEN),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
        ("_pad", ctypes.c_uint8 * (ATTR_SIZE - 72)),
    ]


class _ProgAttachAttr(ctypes.Structure):
    _fields_ = [
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("_pad", ctypes.c_uint8 * (ATTR_SIZE - 16)),
    ]


def _errcheck(result: int, _func: Any, _args: tuple[Any, ...]) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise BpfError(err, f"bpf: {os.strerror(err)}")
    return result


# Its own function object: libc.py's syscall is variadic (argtypes None); this one has fixed ones.
_syscall: Any = ctypes.CDLL("libc.so.6", use_errno=True)["syscall"]
_syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
_syscall.restype = ctypes.c_long
_syscall.errcheck = _errcheck


def _bpf(command: int, attr: ctypes.Structure) -> int:
    return int(_syscall(SYS_BPF, command, ctypes.addressof(attr), ctypes.sizeof(attr)))


def load(prog_type: int, code: bytes, name: str = "", license: str = "Apache-2.0") -> int:
    """Load a program; returns its fd (close-on-exec). On failure the load is repeated with the
    verifier's log on (log_level 1), which goes into the error: the first try goes without, as a
    log that outgrows its buffer fails the load (ENOSPC) on recent kernels."""
    if len(code) % INSN_SIZE or not code:
        raise ValueError(
            f"a program is a whole number of {INSN_SIZE}-byte instructions, not {len(code)} bytes"
        )
    instructions = ctypes.create_string_buffer(code, len(code))
    license_text = ctypes.create_string_buffer(license.encode())
    attr = _ProgLoadAttr()
    attr.prog_type = prog_type
    attr.insn_cnt = len(code) // INSN_SIZE
    attr.insns = ctypes.addressof(instructions)
    attr.license = ctypes.addressof(license_text)
    attr.prog_name = name.encode()[: OBJ_NAME_LEN - 1]
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except BpfError as first:
        log = ctypes.create_string_buffer(LOG_SIZE)
        attr.log_level, attr.log_size, attr.log_buf = 1, LOG_SIZE, ctypes.addressof(log)
        try:
            return _bpf(BPF_PROG_LOAD, attr)  # the first failure was not the program's (EAGAIN)
        except BpfError as again:
            raise BpfError(again.errno, f"bpf(BPF_PROG_LOAD): {again.strerror}{_verifier(log)}") from first


def _verifier(log: ctypes.Array[ctypes.c_char]) -> str:
    """The log on one line, its end when long: the verifier's verdict is last."""
    text = log.value.decode(errors="replace").strip().replace("\n", "; ")
    if len(text) > LOG_SHOWN:
        text = "..." + text[-LOG_SHOWN:]
    return f"; verifier: {text}" if text else ""


def attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach a loaded program to target_fd (for cgroup programs: the cgroup2 directory's fd)."""
    attr = _ProgAttachAttr()
    attr.target_fd, attr.attach_bpf_fd, attr.attach_type, attr.attach_flags = (
        target_fd,
        prog_fd,
        attach_type,
        flags,
    )
    try:
        _bpf(BPF_PROG_ATTACH, attr)
    except BpfError as exc:
        raise BpfError(exc.errno, f"bpf(BPF_PROG_ATTACH): {exc.strerror}") from None


def attach_to_cgroup(directory: str, prog_type: int, code: bytes, attach_type: int, name: str = "") -> None:
    """Load code and attach it to the cgroup2 directory, next to programs already there. The program's
    fd is closed here: the cgroup holds the program, and it goes with the cgroup's rmdir."""
    cgroup = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        program = load(prog_type, code, name)
        try:
            attach(cgroup, program, attach_type, BPF_F_ALLOW_MULTI)
        finally:
            os.close(program)
    finally:
        os.close(cgroup)
