"""Compile a seccomp profile to a classic BPF program for the x86_64 ABI.

The program, in order:

1. seccomp_data.arch must be AUDIT_ARCH_X86_64, else the process is killed. i386 system calls
   (int 0x80) use other numbers, so no rule of ours can judge them, and an error for each call would
   leave a 32-bit program stumbling on (even its exit fails); a kill is libseccomp's default for a
   foreign architecture too. Docker also allows i386 calls; we do not (no 32-bit workloads).
2. x32 system calls (bit 30 of the number) get ENOSYS: what a kernel with x32 disabled (Debian's
   default, syscall.x32=n) answers, so nothing can tell, and none of them runs.
3. Numbers above the highest syscall the profile names get ENOSYS rather than the default error,
   when the default denies: a newer libc then falls back to the older call, as under runc (patchbpf).
4. A binary search over ranges of syscall numbers that share a decision; a number with argument
   rules leads to its own block of comparisons. Its rules with conditions are tried in profile
   order and the first that matches decides; else its first rule without conditions, else the
   profile's default action. (So a narrower rule can carve an exception out of a broad one.)

Arguments are unsigned 64-bit values compared as a high and a low 32-bit word (little endian:
low word at 16 + 8*i, high word at +4).
"""

from __future__ import annotations

import struct

from runtime.linux.release import kernel_version
from runtime.seccomp import profile as p
from runtime.seccomp.syscalls_x86_64 import NUMBERS

# struct sock_filter codes (linux/filter.h, linux/bpf_common.h)
LD_W_ABS = 0x20
JA = 0x05
JEQ = 0x15
JGT = 0x25
JGE = 0x35
JSET = 0x45
RET = 0x06
AND = 0x54

OFFSET_NR = 0
OFFSET_ARCH = 4
OFFSET_ARGS = 16

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
BPF_MAXINSNS = 4096
MAX_JUMP = 255  # jt and jf are 8-bit
WORD = 0xFFFFFFFF

S_IFMT = 0o170000
S_IFCHR = 0o020000
S_IFBLK = 0o060000
# mknod(path, mode, dev) and mknodat(dirfd, path, mode, dev): the index of mode.
MKNOD_MODE_ARG = {NUMBERS["mknod"]: 1, NUMBERS["mknodat"]: 2}

_SOCK_FILTER = struct.Struct("=HBBI")

Insn = tuple[int, int, int, int]  # code, jt, jf, k
# Jump targets inside a condition, resolved when its rule is assembled.
_PASS = -1  # the condition holds: go on to the next one
_FAIL = -2  # it does not: go to the next rule


def build(
    profile: p.Profile,
    capabilities: set[int] | frozenset[int],
    kernel: tuple[int, int] | None = None,
    deny_device_mknod: bool = False,
) -> bytes:
    """The filter for a container that keeps `capabilities` (bounding set, capability numbers) on
    `kernel` (major, minor; default: this one), as struct sock_filter[] bytes for install().

    deny_device_mknod: mknod/mknodat of a character or block device gets EPERM (FIFOs, sockets and
    regular files stay allowed), for hosts where no cgroup can restrict devices.
    """
    return pack(instructions(profile, capabilities, kernel, deny_device_mknod))


def instructions(
    profile: p.Profile,
    capabilities: set[int] | frozenset[int],
    kernel: tuple[int, int] | None = None,
    deny_device_mknod: bool = False,
) -> list[Insn]:
    release = kernel_version() if kernel is None else kernel
    default = profile.default_action
    known = [NUMBERS[name] for name in profile.names() if name in NUMBERS]
    enosys_above = max(known) if known and default not in p.PERMISSIVE else None
    rules = _rules_by_number(profile, capabilities, release)
    if deny_device_mknod:
        for number, arg in MKNOD_MODE_ARG.items():
            rules[number] = _device_rules(arg) + rules.get(number, [])
    leaves = {number: _leaf(chain, default, profile.source) for number, chain in rules.items()}
    if enosys_above is not None:
        leaves = {number: leaf for number, leaf in leaves.items() if number <= enosys_above}
    program = _head(enosys_above) + _tree(_ranges(leaves, default, enosys_above))
    if len(program) > BPF_MAXINSNS:
        raise p.ProfileError(
            f"{profile.source}: the filter needs {len(program)} BPF instructions, over the kernel's {BPF_MAXINSNS}",
            "use fewer argument rules",
        )
    return program


def pack(program: list[Insn]) -> bytes:
    return b"".join(_SOCK_FILTER.pack(*insn) for insn in program)


def unpack(program: bytes) -> list[Insn]:
    return [_SOCK_FILTER.unpack_from(program, offset) for offset in range(0, len(program), _SOCK_FILTER.size)]


Rules = list[tuple[tuple[p.Condition, ...], int]]


def _rules_by_number(
    profile: p.Profile, capabilities: set[int] | frozenset[int], kernel: tuple[int, int]
) -> dict[int, Rules]:
    rules: dict[int, Rules] = {}
    for rule in profile.rules:
        if not rule.applies(capabilities, kernel):
            continue
        for name in rule.names:
            number = NUMBERS.get(name)
            if number is not None:  # a name this architecture lacks: skipped, as libseccomp does
                rules.setdefault(number, []).append((rule.conditions, rule.action))
    return rules


def _device_rules(arg: int) -> Rules:
    errno = p.RET_ERRNO | p.EPERM
    return [
        ((p.Condition(arg, "SCMP_CMP_MASKED_EQ", S_IFMT, kind, width=32),), errno)
        for kind in (S_IFCHR, S_IFBLK)
    ]


def _leaf(chain: Rules, default: int, source: str) -> int | list[Insn]:
    """A syscall's decision: a SECCOMP_RET_* value, or a block of comparisons ending in returns."""
    conditional: list[tuple[list[list[Insn]], int]] = []
    unconditional = [action for conditions, action in chain if not conditions]
    fallback = unconditional[0] if unconditional else default
    for conditions, action in chain:
        if not conditions:
            continue
        compiled = [_condition(condition) for condition in conditions]
        codes = [code for code in compiled if code is not None]
        if len(codes) == len(compiled):  # else a condition no argument can meet: the rule never applies
            conditional.append((codes, action))
    while conditional and conditional[-1][1] == fallback:
        conditional.pop()  # a last rule deciding what the fallback decides anyway
    if not conditional:
        return fallback
    block: list[Insn] = []
    for rule_codes, action in conditional:
        block += _assemble_rule(rule_codes, action, source)
    block.append((RET, 0, 0, fallback))
    return block


def _assemble_rule(codes: list[list[Insn]], action: int, source: str) -> list[Insn]:
    total = sum(len(code) for code in codes) + 1  # the comparisons, then the rule's return
    if total - 1 > MAX_JUMP:
        raise p.ProfileError(
            f"{source}: a rule has too many argument conditions for one BPF jump ({total - 1} instructions)",
            "split it into several rules",
        )
    out: list[Insn] = []
    for code in codes:
        start, length = len(out), len(code)
        for position, (op, jt, jf, k) in enumerate(code):
            to_pass = length - position - 1
            to_fail = total - (start + position) - 1
            out.append((op, _target(jt, to_pass, to_fail), _target(jf, to_pass, to_fail), k))
    out.append((RET, 0, 0, action))
    return out


def _target(jump: int, to_pass: int, to_fail: int) -> int:
    if jump == _PASS:
        return to_pass
    return to_fail if jump == _FAIL else jump


def _condition(condition: p.Condition) -> list[Insn] | None:
    """Code that falls through (or jumps to _PASS) when the condition holds, else jumps to _FAIL.
    [] when it always holds, None when it never can."""
    low_offset = OFFSET_ARGS + 8 * condition.index
    op, value = condition.op, condition.value
    words = [(low_offset, value & WORD, condition.value_two & WORD)]
    if condition.width == 64:
        words.insert(0, (low_offset + 4, value >> 32, condition.value_two >> 32))
    if op == "SCMP_CMP_MASKED_EQ":
        code: list[Insn] = []
        for offset, mask, expected in words:
            if expected & ~mask:
                return None  # a bit the mask clears can never be set
            if mask == 0:
                continue  # (arg & 0) == 0 always
            code += [(LD_W_ABS, 0, 0, offset), (AND, 0, 0, mask), (JEQ, 0, _FAIL, expected)]
        return code
    if op == "SCMP_CMP_EQ":
        return [
            insn for offset, word, _ in words for insn in ((LD_W_ABS, 0, 0, offset), (JEQ, 0, _FAIL, word))
        ]
    if op == "SCMP_CMP_NE":
        code = []
        for number, (offset, word, _) in enumerate(words):
            last = number == len(words) - 1  # an unequal word decides; equal ones pass on to the next
            code += [(LD_W_ABS, 0, 0, offset), (JEQ, _FAIL if last else 0, _PASS, word)]
        return code
    return _ordering(op, words)


def _ordering(op: str, words: list[tuple[int, int, int]]) -> list[Insn]:
    greater = op in ("SCMP_CMP_GT", "SCMP_CMP_GE")
    code: list[Insn] = []
    if len(words) == 2:
        offset, high, _ = words[0]
        # Decided by the high word unless it equals the value's high word.
        code += [(LD_W_ABS, 0, 0, offset), (JGT, _PASS if greater else _FAIL, 0, high)]
        if high != 0:  # after "not above 0" the word is 0: no need to compare again
            code.append((JEQ, 0, _FAIL if greater else _PASS, high))
    offset, low, _ = words[-1]
    code.append((LD_W_ABS, 0, 0, offset))
    if op == "SCMP_CMP_GT":
        code.append((JGT, _PASS, _FAIL, low))
    elif op == "SCMP_CMP_GE":
        code.append((JGE, _PASS, _FAIL, low))
    elif op == "SCMP_CMP_LT":
        code.append((JGE, _FAIL, _PASS, low))
    else:  # SCMP_CMP_LE
        code.append((JGT, _FAIL, _PASS, low))
    return code


def _head(enosys_above: int | None) -> list[Insn]:
    enosys = p.RET_ERRNO | p.ENOSYS
    head: list[Insn] = [
        (LD_W_ABS, 0, 0, OFFSET_ARCH),
        (JEQ, 1, 0, AUDIT_ARCH_X86_64),
        (RET, 0, 0, p.RET_KILL_PROCESS),
        (LD_W_ABS, 0, 0, OFFSET_NR),
    ]
    if enosys_above is None:
        return [*head, (JSET, 0, 1, X32_SYSCALL_BIT), (RET, 0, 0, enosys)]
    return [*head, (JSET, 1, 0, X32_SYSCALL_BIT), (JGT, 0, 1, enosys_above), (RET, 0, 0, enosys)]


Leaf = int | list[Insn]


def _ranges(leaves: dict[int, Leaf], default: int, enosys_above: int | None) -> list[tuple[int, Leaf]]:
    """(first number, decision) for consecutive ranges covering 0 up to enosys_above (or all)."""
    ranges: list[tuple[int, Leaf]] = []

    def add(start: int, leaf: Leaf) -> None:
        if ranges and isinstance(leaf, int) and ranges[-1][1] == leaf:
            return  # the same return as the range before: one range
        ranges.append((start, leaf))

    covered = 0
    for number in sorted(leaves):
        if number > covered:
            add(covered, default)
        add(number, leaves[number])
        covered = number + 1
    if enosys_above is None or covered <= enosys_above or not ranges:
        add(covered, default)
    return ranges


def _tree(ranges: list[tuple[int, Leaf]]) -> list[Insn]:
    """A binary search over the ranges, with A holding the syscall number at every comparison."""
    if len(ranges) == 1:
        leaf = ranges[0][1]
        return [(RET, 0, 0, leaf)] if isinstance(leaf, int) else leaf
    middle = len(ranges) // 2
    left, right = _tree(ranges[:middle]), _tree(ranges[middle:])
    split = ranges[middle][0]
    if len(left) <= MAX_JUMP:
        return [(JGE, len(left), 0, split), *left, *right]
    # Too far for an 8-bit jump: a JA (32-bit offset) carries it over the left half.
    return [(JGE, 0, 1, split), (JA, 0, 0, len(left)), *left, *right]


def main() -> int:
    """`python3 -m runtime.seccomp.bpf`: size and compile time of the default filter."""
    import time

    from runtime.linux.constants import DEFAULT_CAPABILITIES

    caps = set(DEFAULT_CAPABILITIES.values())
    started = time.perf_counter()
    profile = p.default()
    parsed = time.perf_counter()
    program = build(profile, caps, deny_device_mknod=True)
    done = time.perf_counter()
    print(
        f"default profile: {len(program) // 8} instructions; "
        f"load {1000 * (parsed - started):.2f} ms, compile {1000 * (done - parsed):.2f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
