"""The eBPF device program, run on a tiny interpreter of the instructions it uses, against Docker's list;
and the cgroup v1 lines for the same list."""

from __future__ import annotations

import itertools
import struct

import pytest

from runtime.cgroups import devices
from runtime.linux import bpf

BLOCK, CHAR = 1, 2  # BPF_DEVCG_DEV_*
MKNOD, READ, WRITE = 1, 2, 4  # BPF_DEVCG_ACC_*
MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
CTX = 1 << 40  # where the interpreter pretends the context sits


class Insn:
    def __init__(self, raw: bytes) -> None:
        self.code, regs, self.off, self.imm = struct.unpack("<BBhi", raw)
        self.dst, self.src = regs & 0x0F, regs >> 4

    def __repr__(self) -> str:
        return f"Insn({self.code:#04x}, r{self.dst}, r{self.src}, off={self.off}, imm={self.imm})"


def decode(code: bytes) -> list[Insn]:
    assert len(code) % 8 == 0
    return [Insn(code[index : index + 8]) for index in range(0, len(code), 8)]


def run(program: list[Insn], access_type: int, major: int, minor: int) -> int:
    """The instructions the device program may use, as the kernel's interpreter runs them; anything
    else fails the test. r1 points at struct bpf_cgroup_dev_ctx {u32 access_type, major, minor}."""
    ctx = struct.pack("<III", access_type, major, minor)
    regs: list[int | None] = [None] * 11
    regs[1] = CTX
    pc, steps = 0, 0
    while True:
        steps += 1
        assert steps < 10_000, f"ran off at {pc}"
        assert 0 <= pc < len(program), f"ran off at {pc}"
        insn = program[pc]
        pc += 1
        if insn.code == 0x61:  # ldx word [src + off]
            assert regs[insn.src] == CTX, insn
            assert insn.off in (0, 4, 8), insn
            regs[insn.dst] = struct.unpack_from("<I", ctx, insn.off)[0]
        elif insn.code == 0xBC:  # mov32 dst, src
            regs[insn.dst] = _value(regs, insn.src) & MASK32
        elif insn.code == 0x54:  # and32 dst, imm
            regs[insn.dst] = _value(regs, insn.dst) & insn.imm & MASK32
        elif insn.code == 0x74:  # rsh32 dst, imm
            assert 0 <= insn.imm < 32
            regs[insn.dst] = (_value(regs, insn.dst) & MASK32) >> insn.imm
        elif insn.code == 0xB7:  # mov64 dst, imm (sign-extended)
            regs[insn.dst] = insn.imm & MASK64
        elif insn.code in (0x55, 0x15):  # jne / jeq dst, imm, +off (64-bit compare, imm sign-extended)
            assert insn.off >= 0, "no back-edges"
            equal = _value(regs, insn.dst) == insn.imm & MASK64
            if equal == (insn.code == 0x15):
                pc += insn.off
        elif insn.code == 0x95:  # exit
            result = _value(regs, 0)
            assert result in (0, 1), "a device program returns 0 or 1"
            return result
        else:
            raise AssertionError(f"instruction the interpreter does not know: {insn}")


def _value(regs: list[int | None], index: int) -> int:
    value = regs[index]
    assert value is not None, f"r{index} read before it was set"
    assert value != CTX, f"r{index} read before it was set"
    return value


def docker_allows(kind: int, major: int, minor: int) -> bool:
    """Docker's default list, from the brief: c 1:3 1:5 1:7 1:8 1:9 5:0 5:2 136:*, all rwm."""
    if kind != CHAR:
        return False
    return (major, minor) in {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)} or major == 136


MAJORS = (0, 1, 2, 4, 5, 7, 8, 10, 136, 137, 202, 254, 259, 4095)
MINORS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 229, 255, 256, 1 << 19)
ACCESSES = tuple(range(1, 8))  # every non-empty combination of mknod, read, write


def test_the_default_program_allows_exactly_dockers_list() -> None:
    program = decode(devices.program(devices.DEFAULT_RULES))
    checked = 0
    for kind, major, minor, access in itertools.product((BLOCK, CHAR), MAJORS, MINORS, ACCESSES):
        got = run(program, (access << 16) | kind, major, minor)
        assert got == docker_allows(kind, major, minor), (kind, major, minor, access)
        checked += 1
    assert checked == 2 * len(MAJORS) * len(MINORS) * 7


@pytest.mark.parametrize(
    ("kind", "major", "minor", "access", "allowed"),
    [
        (BLOCK, 7, 0, READ, False),  # the image's loop device
        (BLOCK, 7, 0, MKNOD, False),  # and mknod of it
        (BLOCK, 1, 3, READ, False),  # a block device with /dev/null's numbers
        (CHAR, 1, 3, READ | WRITE, True),
        (CHAR, 1, 3, MKNOD, True),
        (CHAR, 1, 1, READ, False),  # /dev/mem
        (CHAR, 1, 2, READ, False),  # /dev/kmem
        (CHAR, 5, 1, READ, False),  # /dev/console
        (CHAR, 10, 200, READ, False),  # /dev/net/tun (Docker allows it, the brief's list does not)
        (CHAR, 136, 7, READ | WRITE, True),  # /dev/pts/7
        (CHAR, 4, 1, WRITE, False),  # /dev/tty1
    ],
)
def test_named_devices(kind: int, major: int, minor: int, access: int, allowed: bool) -> None:
    program = decode(devices.program(devices.DEFAULT_RULES))
    assert run(program, (access << 16) | kind, major, minor) == allowed


def test_a_rule_with_part_of_rwm_checks_the_access() -> None:
    program = decode(devices.program((devices.Rule("c", 1, 3, "r"), devices.Rule("b", 8, devices.ANY, "rw"))))
    assert run(program, (READ << 16) | CHAR, 1, 3) == 1
    assert run(program, (WRITE << 16) | CHAR, 1, 3) == 0
    assert run(program, ((READ | WRITE) << 16) | CHAR, 1, 3) == 0
    assert run(program, ((READ | WRITE) << 16) | BLOCK, 8, 17) == 1
    assert run(program, (MKNOD << 16) | BLOCK, 8, 17) == 0
    assert run(program, (READ << 16) | CHAR, 8, 17) == 0


def test_every_instruction_is_reachable_and_jumps_stay_inside() -> None:
    # the verifier refuses a program with unreachable instructions or jumps out of it
    program = decode(devices.program(devices.DEFAULT_RULES))
    reachable, todo = set(), [0]
    while todo:
        pc = todo.pop()
        if pc in reachable:
            continue
        assert 0 <= pc < len(program)
        reachable.add(pc)
        insn = program[pc]
        if insn.code == 0x95:
            continue
        todo.append(pc + 1)
        if insn.code in (0x55, 0x15):
            todo.append(pc + 1 + insn.off)
    assert reachable == set(range(len(program)))
    assert program[-1].code == 0x95


def test_an_empty_list_denies_everything() -> None:
    program = decode(devices.program(()))
    for kind, access in itertools.product((BLOCK, CHAR), ACCESSES):
        assert run(program, (access << 16) | kind, 1, 3) == 0


def test_instruction_encoding() -> None:
    # struct bpf_insn {u8 code; u8 dst:4, src:4; s16 off; s32 imm}, little-endian bit-fields: dst low
    assert bpf.insn(0x61, dst=2, src=1, off=4) == bytes([0x61, 0x12, 4, 0, 0, 0, 0, 0])
    assert bpf.insn(0x55, dst=3, off=-1, imm=-2) == bytes([0x55, 0x03, 0xFF, 0xFF, 0xFE, 0xFF, 0xFF, 0xFF])
    assert bpf.exit_insn() == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])


def test_v1_lines_are_dockers_list() -> None:
    assert [rule.v1_line() for rule in devices.DEFAULT_RULES] == [
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
    ]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("a", 1, 3), "kind"),
        (("c", 1, 3, "rx"), "access"),
        (("c", 1, 3, ""), "access"),
        (("c", -5, 3), "major"),
    ],
)
def test_bad_rules_are_refused(args: tuple[str, int, int], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        devices.Rule(*args)
