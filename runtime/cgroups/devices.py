"""The devices a container may use, as cgroup v1 rules and as an eBPF device program for cgroup v2.

Docker's default list (null, zero, full, random, urandom, tty, ptmx and the pts nodes, each rwm) and
nothing else: every other device is refused for read, write and mknod. Plain classes: this is on
`runtime run`'s start path (the program is only built where cgroup v2 takes it).
"""

from __future__ import annotations

ANY = -1  # "*" for a major or minor
KINDS = {"b": 1, "c": 2}  # struct bpf_cgroup_dev_ctx access_type, low 16 bits: BPF_DEVCG_DEV_*
ACCESS = {"m": 1, "r": 2, "w": 4}  # high 16 bits: BPF_DEVCG_ACC_*
ALL_ACCESS = 7


class Rule:
    """An allowed device: kind "c" or "b", major and minor (ANY for all), access a part of "rwm"."""

    __slots__ = ("access", "kind", "major", "minor")

    def __init__(self, kind: str, major: int, minor: int, access: str = "rwm") -> None:
        if kind not in KINDS:
            raise ValueError(f"device kind {kind!r}: one of {', '.join(KINDS)}")
        if not access or any(letter not in ACCESS for letter in access):
            raise ValueError(f"device access {access!r}: letters from 'rwm'")
        for what, number in (("major", major), ("minor", minor)):
            if number != ANY and not 0 <= number < 1 << 31:
                raise ValueError(f"device {what} {number}: 0 to 2^31-1, or ANY")
        self.kind = kind
        self.major = major
        self.minor = minor
        self.access = access

    def v1_line(self) -> str:
        """As devices.allow takes it: "c 1:3 rwm", "c 136:* rwm"."""
        major = "*" if self.major == ANY else str(self.major)
        minor = "*" if self.minor == ANY else str(self.minor)
        return f"{self.kind} {major}:{minor} {self.access}"

    def access_mask(self) -> int:
        return sum(ACCESS[letter] for letter in set(self.access))


DEFAULT_RULES = (
    Rule("c", 1, 3),  # null
    Rule("c", 1, 5),  # zero
    Rule("c", 1, 7),  # full
    Rule("c", 1, 8),  # random
    Rule("c", 1, 9),  # urandom
    Rule("c", 5, 0),  # tty
    Rule("c", 5, 2),  # ptmx
    Rule("c", 136, ANY),  # pts/*
)


# Registers the program keeps: r1 is the context on entry.
_CTX, _ACCESS_TYPE, _KIND, _ACCESS, _MAJOR, _MINOR, _SCRATCH = 1, 2, 3, 4, 5, 6, 7


def program(rules: tuple[Rule, ...]) -> bytes:
    """A BPF_PROG_TYPE_CGROUP_DEVICE program: 1 (allow) when a rule matches, else 0.

    It unpacks struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32 minor} into registers,
    then one block per rule whose tests jump to the next block on a mismatch, and a final deny.
    Jumps only go forward and every block ends in an exit, so the verifier sees no loop and no
    unreachable instruction."""
    from runtime.linux import bpf

    code = [
        bpf.load_word(_ACCESS_TYPE, _CTX, 0),
        bpf.mov32_reg(_KIND, _ACCESS_TYPE),
        bpf.alu32_imm(bpf.BPF_AND, _KIND, 0xFFFF),
        bpf.mov32_reg(_ACCESS, _ACCESS_TYPE),
        bpf.alu32_imm(bpf.BPF_RSH, _ACCESS, 16),
        bpf.load_word(_MAJOR, _CTX, 4),
        bpf.load_word(_MINOR, _CTX, 8),
    ]
    for rule in rules:
        code += _rule_block(rule)
    code += [bpf.mov64_imm(0, 0), bpf.exit_insn()]
    return b"".join(code)


def _rule_block(rule: Rule) -> list[bytes]:
    from runtime.linux import bpf

    tests: list[tuple[int, int]] = [(_KIND, KINDS[rule.kind])]  # (register, value it must hold)
    if rule.major != ANY:
        tests.append((_MAJOR, rule.major))
    if rule.minor != ANY:
        tests.append((_MINOR, rule.minor))
    mask = rule.access_mask()
    # after the tests: [scratch = access & ~mask; if scratch != 0 skip], r0 = 1, exit
    access_check = 3 if mask != ALL_ACCESS else 0
    block: list[bytes] = []
    for index, (register, value) in enumerate(tests):
        remaining = len(tests) - index - 1 + access_check + 2
        block.append(bpf.jump_imm(bpf.BPF_JNE, register, value, remaining))
    if access_check:
        block += [
            bpf.mov32_reg(_SCRATCH, _ACCESS),
            bpf.alu32_imm(bpf.BPF_AND, _SCRATCH, ~mask & 0xFFFF),
            bpf.jump_imm(bpf.BPF_JNE, _SCRATCH, 0, 2),
        ]
    return [*block, bpf.mov64_imm(0, 1), bpf.exit_insn()]
