"""Kernel console text to typed kernel faults, in the spirit of syzkaller's crash reports.

A report starts at a line such as "WARNING: CPU: 0 PID: 1 at ..." or "Kernel panic - not syncing: ...",
and runs to its end marker, the end of its stack trace, the next report, or MAX_EXCERPT_LINES. Its title
names the fault and the first function of the trace that is not a generic helper, so that the same bug
gets the same title in every cell and run ("WARNING in cgroup_apply_control"). A panic that follows
an oops (or a WARNING with panic_on_warn) is one crash whose primary report is the first one.

Watcher reads a console file that grows and returns each fault once, when its report is complete.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MAX_EXCERPT_LINES = 60
# A panic this many lines after an oops's excerpt ends is that oops's panic ("Fatal exception"): an oops
# prints its registers and code again after its trace, and may run past MAX_EXCERPT_LINES.
PANIC_FOLLOWS_WITHIN = 60


class FaultType(enum.StrEnum):
    PANIC = "panic"
    BUG = "BUG"
    OOPS = "Oops"
    GPF = "general protection fault"
    WARNING = "WARNING"
    KASAN = "KASAN"
    UBSAN = "UBSAN"
    KFENCE = "KFENCE"
    HUNG_TASK = "hung task"
    SOFT_LOCKUP = "soft lockup"
    HARD_LOCKUP = "hard lockup"
    RCU_STALL = "RCU stall"
    LOCKDEP = "lockdep"
    OOM = "kernel OOM"

    @property
    def is_stall(self) -> bool:
        """A task or a CPU that stopped making progress: a hang, not a crash."""
        return self in (
            FaultType.HUNG_TASK,
            FaultType.SOFT_LOCKUP,
            FaultType.HARD_LOCKUP,
            FaultType.RCU_STALL,
        )

    @property
    def kills_the_task(self) -> bool:
        """An oops-class fault: the kernel kills the current task (and panics with oops=panic)."""
        return self in (FaultType.BUG, FaultType.OOPS, FaultType.GPF)


@dataclass(frozen=True)
class Fault:
    """One kernel fault: its type, a title that dedups across cells and runs, the function the trace
    names (None when it names none), the report's lines, and the byte offset of its first line."""

    type: FaultType
    title: str
    function: str | None
    excerpt: str
    offset: int
    crashed: bool = False  # the kernel went down: a panic, alone or after this report
    panic: str | None = None  # the panic's own message, when one followed (or is) the report

    @property
    def summary(self) -> str:
        if self.panic is not None and self.type is not FaultType.PANIC:
            return f"{self.title} (then kernel panic: {self.panic})"
        return self.title


# Frames that say how the report was printed, not where the fault is.
GENERIC_FRAMES = frozenset(
    {
        "dump_stack", "dump_stack_lvl", "show_stack", "panic", "__warn", "warn_slowpath_fmt",
        "warn_slowpath_null", "report_bug", "handle_bug", "exc_invalid_op", "asm_exc_invalid_op",
        "do_error_trap", "do_trap", "die", "oops_end", "__die", "__die_body", "no_context",
        "page_fault_oops", "kernelmode_fixup_or_oops", "__bad_area_nosemaphore", "bad_area_nosemaphore",
        "do_user_addr_fault", "exc_page_fault", "asm_exc_page_fault", "exc_general_protection",
        "asm_exc_general_protection", "print_report", "kasan_report", "__asan_load8", "__asan_store8",
        "check_panic_on_warn", "ubsan_epilogue", "lockdep_rcu_suspicious", "_printk", "printk",
        "vpanic", "nmi_cpu_backtrace", "nmi_trigger_cpumask_backtrace", "arch_trigger_cpumask_backtrace",
        "watchdog_timer_fn", "rcu_dump_cpu_stacks", "print_cpu_stall", "rcu_sched_clock_irq",
        "__schedule", "schedule", "schedule_timeout", "schedule_preempt_disabled", "io_schedule",
        "__mutex_lock", "mutex_lock", "__mutex_lock_slowpath", "mutex_lock_nested", "rwsem_down_read_slowpath",
        "rwsem_down_write_slowpath", "down_read", "down_write", "percpu_rwsem_wait", "__percpu_down_read",
        "percpu_down_read", "wait_for_completion", "__wait_for_common", "wait_for_common",
        "bit_wait_io", "__wait_on_bit", "out_of_line_wait_on_bit", "out_of_memory", "oom_kill_process",
        "dump_header", "__oom_kill_process",
    }
)  # fmt: skip

_TIMESTAMP = re.compile(r"\[\s*\d+\.\d+\]\s?")
_CALLER = re.compile(r"^\[\s*[TC]\d+\]\s?")  # CONFIG_PRINTK_CALLER's "[  T123]"
_GUEST_LINE = re.compile(r"^(kcompat:|KCOMPAT-|kc[: ])")
_FRAME = re.compile(r"^\s*(?:\[<[0-9a-f]+>\]\s*)?(\? )?([A-Za-z_][\w.]*)\+0x[0-9a-f]+/0x[0-9a-f]+")
_RIP = re.compile(r"^RIP: [0-9a-f]{4}:([A-Za-z_][\w.]*)\+0x")
_CONTINUATION = re.compile(
    r"^(RIP|Code|RSP|RAX|RDX|RBP|R\d+|FS|CS|CR2|DR\d|PKRU|---\[ end|Kernel Offset|Rebooting|Modules linked in"
    r"|CPU: |Hardware name|</?TASK>|</?IRQ>|</?NMI>|<EOI>|Call Trace:|Dumping ftrace|Tainted:|Tainted )"
)
_TRACE_MARKUP = re.compile(r"^\s*(</?TASK>|</?IRQ>|</?NMI>|<EOI>|</?SOFTIRQ>)\s*$")

_CUT_HERE = "------------[ cut here ]------------"  # WARN()'s first line, and BUG()'s
# (pattern on the cleaned line, type); the first that matches names the report.
_LOCKDEP = (
    r"possible circular locking dependency detected|possible recursive locking detected|inconsistent lock state"
    r"|suspicious RCU usage|bad unlock balance detected|held lock freed|possible irq lock inversion dependency"
    r"|lock held when returning to user space|Nested lock was not taken|possible deadlock"
)
_STARTS: tuple[tuple[re.Pattern[str], FaultType], ...] = tuple(
    (re.compile(pattern), kind)
    for pattern, kind in (
        (r"^Kernel panic - not syncing: ", FaultType.PANIC),
        (r"^BUG: KASAN: ", FaultType.KASAN),
        (r"^BUG: KFENCE: ", FaultType.KFENCE),
        (r"^(UBSAN: |={10,}\s*$)", FaultType.UBSAN),  # a "=====" line only when UBSAN: follows
        (r"(watchdog: )?BUG: soft lockup", FaultType.SOFT_LOCKUP),
        (r"(watchdog: )?Watchdog detected hard LOCKUP|NMI watchdog: .*hard LOCKUP", FaultType.HARD_LOCKUP),
        (r"^(rcu: )?INFO: rcu_\w+ (self-)?detected stall", FaultType.RCU_STALL),
        (r"^(rcu: )?INFO: rcu_\w+ detected expedited stalls", FaultType.RCU_STALL),
        (r"^INFO: task .+ blocked for more than \d+ seconds", FaultType.HUNG_TASK),
        (rf"^WARNING: ({_LOCKDEP})", FaultType.LOCKDEP),
        (r"^WARNING: ", FaultType.WARNING),
        (rf"^{re.escape(_CUT_HERE)}$", FaultType.WARNING),
        (r"^general protection fault", FaultType.GPF),
        (r"^kernel BUG at ", FaultType.BUG),
        (r"^BUG: ", FaultType.BUG),
        (r"^Oops: ", FaultType.OOPS),
        (r" invoked oom-killer: ", FaultType.OOM),
    )
)


@dataclass(frozen=True)
class Line:
    offset: int  # of the raw line's first byte in the console
    text: str  # without timestamp, caller id and line ending


def clean(raw: str) -> str | None:
    """The kernel's words on one console line; None for the guest's own lines."""
    text = raw.rstrip("\r\n")
    stamp = _TIMESTAMP.search(text)
    if stamp is not None and stamp.start() > 0 and _GUEST_LINE.match(text):
        text = text[stamp.start() :]  # a kernel line written into the middle of a guest line
    if _GUEST_LINE.match(text):
        return None
    text = _TIMESTAMP.sub("", text, count=1) if text.startswith("[") else text
    return _CALLER.sub("", text, count=1)


def split_lines(data: bytes, base: int = 0) -> tuple[list[Line], bytes]:
    """Complete lines of data (offsets from base), and the partial last line left over."""
    lines: list[Line] = []
    start = 0
    while (end := data.find(b"\n", start)) != -1:
        text = clean(data[start:end].decode(errors="replace"))
        if text is not None:
            lines.append(Line(base + start, text))
        start = end + 1
    return lines, data[start:]


def _start_type(text: str) -> FaultType | None:
    for pattern, kind in _STARTS:
        if pattern.search(text):
            if kind is FaultType.OOM:
                return None  # decided on the oom-kill line, below
            return kind
    return None


@dataclass
class _Report:
    type: FaultType
    start: int  # index in lines
    end: int  # exclusive
    panic: str | None = None
    panic_line: int | None = None  # index of the "Kernel panic - not syncing" line that ended it
    closed: bool = False  # a line after it shows it is complete


def _is_oom_outside_limits(lines: list[Line], start: int) -> bool:
    for line in lines[start : start + MAX_EXCERPT_LINES * 2]:
        if line.text.startswith("oom-kill:constraint="):
            return line.text.startswith("oom-kill:constraint=CONSTRAINT_NONE")
    return False


def _absorbs(report: _Report, kind: FaultType, index: int) -> bool:
    """Whether a start line inside a report belongs to it (one oops prints BUG: then Oops:)."""
    near_start = index - report.start <= 4
    if kind is FaultType.PANIC:
        return True
    if report.type is FaultType.BUG and kind in (FaultType.OOPS, FaultType.BUG) and near_start:
        return True
    if report.type is FaultType.WARNING and near_start and kind in (FaultType.WARNING, FaultType.LOCKDEP):
        return True  # after "cut here"
    return report.type is FaultType.GPF and kind in (FaultType.KASAN, FaultType.OOPS) and near_start


def _preamble_of_another(lines: list[Line], index: int) -> bool:
    following = _start_type(lines[index + 1].text) if index + 1 < len(lines) else None
    return following is not None and following not in (FaultType.WARNING, FaultType.LOCKDEP)


def _scan(lines: list[Line]) -> list[_Report]:
    reports: list[_Report] = []
    index = 0
    while index < len(lines):
        text = lines[index].text
        kind = _start_type(text)
        if kind is None and " invoked oom-killer: " in text and _is_oom_outside_limits(lines, index):
            kind = FaultType.OOM
        if kind is FaultType.WARNING and text == _CUT_HERE and _preamble_of_another(lines, index):
            index += 1  # BUG() prints "cut here" too: the report is the one that follows
            continue
        if kind is FaultType.UBSAN and not text.startswith("UBSAN: "):
            following = lines[index + 1].text if index + 1 < len(lines) else ""
            kind = FaultType.UBSAN if following.startswith("UBSAN: ") else None
        if kind is None:
            index += 1
            continue
        report = _extent(lines, index, kind)
        reports.append(report)
        index = report.end
    return _merge_panics(reports, lines)


def _extent(lines: list[Line], start: int, kind: FaultType) -> _Report:
    report = _Report(kind, start, start + 1)
    if kind is FaultType.PANIC:
        report.panic = lines[start].text.removeprefix("Kernel panic - not syncing: ")
    ended = False  # an end marker or the end of the trace was seen: only continuation lines follow
    framed = False
    sectioned = kind in (FaultType.KASAN, FaultType.KFENCE, FaultType.UBSAN, FaultType.LOCKDEP)
    index = start + 1
    while index < len(lines) and index - start < MAX_EXCERPT_LINES:
        text = lines[index].text
        other = _start_type(text)
        if other is not None and not _absorbs(report, other, index):
            report.closed = True
            break
        if other is FaultType.PANIC:
            report.panic = report.panic or text.removeprefix("Kernel panic - not syncing: ")
        frame = _FRAME.match(text) is not None or _TRACE_MARKUP.match(text) is not None
        if ended and not (frame or _CONTINUATION.match(text) or other is FaultType.PANIC):
            report.closed = True
            break
        if text.startswith("---[ end "):
            ended = True
            report.closed = report.closed or text.startswith("---[ end Kernel panic")
        elif sectioned and text.startswith("====") and index > start + 1:
            index += 1
            ended = True
            report.closed = True
            break
        elif framed and not frame and not sectioned and not _CONTINUATION.match(text) and other is None:
            report.closed = True  # the trace is over: this line is someone else's
            break
        if frame and not _TRACE_MARKUP.match(text):
            framed = True
        index += 1
    report.end = index
    report.closed = report.closed or index - start >= MAX_EXCERPT_LINES
    return report


def _merge_panics(reports: list[_Report], lines: list[Line]) -> list[_Report]:
    merged: list[_Report] = []
    for report in reports:
        previous = merged[-1] if merged else None
        if (
            report.type is FaultType.PANIC
            and previous is not None
            and previous.panic is None
            and report.start - previous.end <= PANIC_FOLLOWS_WITHIN
        ):
            previous.panic = report.panic
            previous.panic_line = report.start
            previous.end = min(report.end, previous.start + MAX_EXCERPT_LINES)
            previous.closed = report.closed
            continue
        if previous is not None and previous.type.kills_the_task and previous.panic is None:
            # a panic may still follow; only lines enough after the oops tell it will not
            previous.closed = report.start - previous.end > PANIC_FOLLOWS_WITHIN
        merged.append(report)
    last = merged[-1] if merged else None
    if last is not None and last.type.kills_the_task and last.panic is None:
        last.closed = len(lines) - last.end > PANIC_FOLLOWS_WITHIN
    return merged


def _frames(lines: Iterable[Line]) -> list[str]:
    """Functions of the report's trace, RIP first, reliable frames only ("? " ones are guesses)."""
    found: list[str] = []
    for line in lines:
        rip = _RIP.match(line.text)
        if rip is not None:
            found.append(rip.group(1))
            continue
        frame = _FRAME.match(line.text)
        if frame is not None and frame.group(1) is None:
            found.append(frame.group(2))
    return found


def _base_name(function: str) -> str:
    """Drop the compiler's clone suffixes: "__handle_sysrq.cold" is __handle_sysrq."""
    return re.sub(r"\.(cold|isra|constprop|part|llvm)(\.\d+)*.*$", "", function)


def culprit(lines: Iterable[Line]) -> str | None:
    for function in _frames(lines):
        name = _base_name(function)
        if name not in GENERIC_FRAMES and not name.startswith(("asm_", "entry_SYSCALL")):
            return name
    return None


_WARNING_AT = re.compile(r"^WARNING: CPU: \d+ PID: \d+ at \S+ ([A-Za-z_][\w.]*)\+0x")
_KASAN = re.compile(r"^BUG: KASAN: ([\w-]+) in ([A-Za-z_][\w.]*)")
_KFENCE = re.compile(r"^BUG: KFENCE: ([\w-]+(?: (?:read|write))?)")
_UBSAN = re.compile(r"^UBSAN: ([\w-]+)")
_NULL = re.compile(
    r"^BUG: (kernel NULL pointer dereference|unable to handle kernel NULL pointer dereference)"
)
_PAGING = re.compile(r"^BUG: (unable to handle page fault|unable to handle kernel paging request)")


def _with(prefix: str, function: str | None) -> str:
    return f"{prefix} in {function}" if function else prefix


def _title(kind: FaultType, body: list[Line], function: str | None) -> tuple[str, str | None]:
    first = body[0].text
    if kind is FaultType.PANIC:
        return "kernel panic: " + _normalise(first.removeprefix("Kernel panic - not syncing: ")), function
    if kind is FaultType.WARNING:
        header = next((line.text for line in body if _WARNING_AT.match(line.text)), first)
        at = _WARNING_AT.match(header)
        function = _base_name(at.group(1)) if at else function
        return _with("WARNING", function), function
    if kind is FaultType.LOCKDEP:
        what = first.removeprefix("WARNING: ").rstrip(" !")
        what = "possible deadlock" if "locking" in what or "deadlock" in what else what
        return _with(what, function), function
    if kind is FaultType.KASAN and (match := _KASAN.match(first)):
        function = _base_name(match.group(2))
        access = next((w for w in ("Read", "Write") if f"{w} of size" in "\n".join(x.text for x in body)), "")
        return f"KASAN: {match.group(1)} {access} in {function}".replace("  ", " "), function
    if kind is FaultType.KFENCE and (match := _KFENCE.match(first)):
        return _with(f"KFENCE: {match.group(1)}", function), function
    if kind is FaultType.UBSAN:
        header = next((line.text for line in body if line.text.startswith("UBSAN: ")), first)
        match = _UBSAN.match(header)
        return _with(f"UBSAN: {match.group(1) if match else 'undefined behaviour'}", function), function
    return _other_title(kind, first, function), function


def _other_title(kind: FaultType, first: str, function: str | None) -> str:
    if kind is FaultType.HUNG_TASK:
        return _with("INFO: task hung", function)
    if kind is FaultType.SOFT_LOCKUP:
        return _with("watchdog: BUG: soft lockup", function)
    if kind is FaultType.HARD_LOCKUP:
        return _with("watchdog: hard lockup", function)
    if kind is FaultType.RCU_STALL:
        return _with("INFO: rcu detected stall", function)
    if kind is FaultType.OOM:
        return "kernel OOM: out of memory outside any cgroup limit (constraint=CONSTRAINT_NONE)"
    if kind is FaultType.GPF:
        return _with("general protection fault", function)
    if _NULL.match(first):
        return _with("BUG: unable to handle kernel NULL pointer dereference", function)
    if _PAGING.match(first):
        return _with("BUG: unable to handle kernel paging request", function)
    if first.startswith("kernel BUG at "):
        return _with("kernel BUG", function)
    if kind is FaultType.OOPS:
        return _with("Oops", function)
    what = re.split(r"[,:]\s|\s\[", first.removeprefix("BUG: "), maxsplit=1)[0]
    return _with(f"BUG: {_normalise(what)}", function)


def _normalise(text: str) -> str:
    """Numbers that change from run to run (addresses, PIDs, seconds) do not belong in a title."""
    text = re.sub(r"0x[0-9a-f]{6,}|\b[0-9a-f]{12,}\b", "ADDR", text)
    return re.sub(r"\s+", " ", text).strip()


def _fault(report: _Report, lines: list[Line]) -> Fault:
    body = lines[report.start : report.end]
    rip = next((match.group(1) for line in body if (match := _RIP.match(line.text))), None)
    # An oops happened where RIP points, even in a helper that a WARNING's or a hang's trace would skip.
    function = _base_name(rip) if report.type.kills_the_task and rip else culprit(body)
    title, function = _title(report.type, body, function)
    crashed = report.type is FaultType.PANIC or report.panic is not None
    excerpt = [line.text for line in body]
    if report.panic_line is not None and report.panic_line >= report.end:
        excerpt += ["...", lines[report.panic_line].text]  # the excerpt was cut before the panic
    return Fault(
        type=report.type,
        title=title,
        function=function,
        excerpt="\n".join(excerpt),
        offset=body[0].offset,
        crashed=crashed,
        panic=_normalise(report.panic) if report.panic is not None else None,
    )


def classify(console: bytes | str, base: int = 0) -> list[Fault]:
    """Every fault in a whole console (or a chunk of it that starts at byte offset base)."""
    data = console.encode() if isinstance(console, str) else console
    lines, rest = split_lines(data if data.endswith(b"\n") else data + b"\n", base)
    del rest
    return [_fault(report, lines) for report in _scan(lines)]


def crash(faults: Iterable[Fault]) -> Fault | None:
    """The fault that brought the kernel down, if one did."""
    return next((fault for fault in faults if fault.crashed), None)


class Watcher:
    """Reads a growing console file: poll() returns the faults completed since the last call, each once;
    finish() also returns the ones still open (the VM is gone: nothing more will come)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0  # bytes of the file read so far
        self._partial = b""
        self._lines: list[Line] = []  # from the first line that may still belong to an open report
        self.pending = False  # a report has started and not yet ended

    def poll(self) -> list[Fault]:
        self._read()
        return self._take(final=False)

    def finish(self) -> list[Fault]:
        self._read()
        if self._partial:
            self._lines += split_lines(self._partial + b"\n", self.offset - len(self._partial))[0]
            self._partial = b""
        return self._take(final=True)

    def _read(self) -> None:
        try:
            with self.path.open("rb") as console:
                console.seek(self.offset)
                data = console.read()
        except FileNotFoundError:
            return  # QEMU has not created it yet
        base = self.offset - len(self._partial)
        self.offset += len(data)
        lines, self._partial = split_lines(self._partial + data, base)
        self._lines += lines

    def _take(self, final: bool) -> list[Fault]:
        reports = _scan(self._lines)
        done = [report for report in reports if final or report.closed]
        pending = [report for report in reports if not (final or report.closed)]
        faults = [_fault(report, self._lines) for report in done]
        self.pending = bool(pending)
        if pending:
            self._lines = self._lines[pending[0].start :]
        else:
            self._lines = []
        return faults
