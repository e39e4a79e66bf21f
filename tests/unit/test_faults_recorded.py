"""The console classifier on real faults of kcompat_fault.ko in a 6.1 guest (tests/data/consoles/6.1-module-*).

Recorded by tests/integration/test_fault_module.py's guests (6.1.0-50-cloud-amd64, TCG, 2 vCPUs, the
harness's oops=panic and loglevel=7); each file is the report with the lines before it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compat import faults
from compat.faults import Fault, FaultType

CONSOLES = Path(__file__).parents[1] / "data" / "consoles"


def recorded(event: str) -> tuple[bytes, list[Fault]]:
    console = (CONSOLES / f"6.1-module-{event}.log").read_bytes()
    return console, faults.classify(console)


def first_report_line(console: bytes, start: str) -> str:
    """The kernel's words on the first console line that contains start (timestamp and \\r dropped)."""
    line = next(raw for raw in console.decode().splitlines() if start in raw)
    return line[line.index(start) :].rstrip("\r")


@pytest.mark.parametrize(
    ("event", "kind", "title", "function", "first_line", "crashed"),
    [
        (
            "warning",
            FaultType.WARNING,
            "WARNING in kcompat_fault_warn",
            "kcompat_fault_warn",
            "------------[ cut here ]------------",
            False,
        ),
        (
            "oops",
            FaultType.BUG,  # x86 opens a page-fault oops with "BUG: kernel NULL pointer dereference"
            "BUG: unable to handle kernel NULL pointer dereference in kcompat_fault_oops",
            "kcompat_fault_oops",
            "BUG: kernel NULL pointer dereference, address: 0000000000000000",
            True,
        ),
        (
            "hang",
            FaultType.HUNG_TASK,
            "INFO: task hung in kcompat_fault_hang",
            "kcompat_fault_hang",
            "INFO: task bash:170 blocked for more than 2 seconds.",
            False,
        ),
        (
            "lockup",
            FaultType.SOFT_LOCKUP,
            "watchdog: BUG: soft lockup in kcompat_fault_lockup",
            "kcompat_fault_lockup",
            "watchdog: BUG: soft lockup - CPU#1 stuck for 4s! [bash:173]",
            False,
        ),
    ],
)
def test_each_real_fault_is_named_by_its_type_and_function(
    event: str, kind: FaultType, title: str, function: str, first_line: str, crashed: bool
) -> None:
    console, found = recorded(event)
    [fault] = found
    assert (fault.type, fault.title, fault.function, fault.crashed) == (kind, title, function, crashed)
    assert fault.excerpt.splitlines()[0] == first_report_line(console, first_line)
    assert console[fault.offset :].decode().split("]", 1)[1].lstrip().startswith(first_line)


def test_bug_then_panic_is_one_crash_titled_by_the_bug() -> None:
    console, found = recorded("bug")
    crash = faults.crash(found)
    assert crash is not None
    assert (crash.type, crash.title, crash.function) == (
        FaultType.BUG,
        "kernel BUG in kcompat_fault_bug",
        "kcompat_fault_bug",
    )
    assert crash.panic == "Fatal exception"
    assert "kernel BUG at kcompat_fault.c:38!" in crash.excerpt
    assert b"Kernel panic - not syncing: Fatal exception" in console


def test_bug_is_the_only_fault_of_its_console() -> None:
    _, found = recorded("bug")
    assert [fault.type for fault in found] == [FaultType.BUG]


def test_the_oops_and_its_panic_are_one_crash() -> None:
    _, found = recorded("oops")
    [crash] = found
    assert crash.panic == "Fatal exception"
    assert crash.summary == (
        "BUG: unable to handle kernel NULL pointer dereference in kcompat_fault_oops "
        "(then kernel panic: Fatal exception)"
    )
    assert "Oops: 0000 [#1] PREEMPT SMP NOPTI" in crash.excerpt


def test_the_warning_is_not_a_crash_and_keeps_the_guests_lines_out() -> None:
    _, found = recorded("warning")
    assert faults.crash(found) is None
    [warning] = found
    assert "kcompat_fault: injected warning" in warning.excerpt
    assert "---[ end trace" in warning.excerpt.splitlines()[-1]
    assert "KCOMPAT-READY" not in warning.excerpt


def test_the_watcher_gives_each_real_fault_once(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    watcher = faults.Watcher(console)
    seen: list[Fault] = []
    for event in ("warning", "hang", "lockup", "oops"):
        with console.open("ab") as growing:
            growing.write((CONSOLES / f"6.1-module-{event}.log").read_bytes())
        seen += watcher.poll()
    seen += watcher.finish()
    assert [fault.type for fault in seen] == [
        FaultType.WARNING,
        FaultType.HUNG_TASK,
        FaultType.SOFT_LOCKUP,
        FaultType.BUG,
    ]
    assert faults.crash(seen) is seen[-1]


# --- real faults of multi-threaded TCG (why the harness runs tcg,thread=single) ----------------------


def _tcg(name: str) -> list[faults.Fault]:
    return faults.classify((CONSOLES / name).read_bytes())


def test_the_int3_oops_at_boot_is_one_crash_named_after_its_rip() -> None:
    (fault,) = _tcg("7.x-mttcg-boot-int3-oops.log")
    assert (fault.type, fault.title, fault.crashed) == (
        FaultType.OOPS,
        "Oops in sched_clock_idle_wakeup_event",
        True,
    )
    assert fault.panic == "Fatal exception in interrupt"


def test_a_panic_long_after_its_oops_is_still_that_oops_and_the_excerpt_ends_with_it() -> None:
    (fault,) = _tcg("7.x-mttcg-long-oops-then-panic.log")
    assert (fault.title, fault.crashed) == ("Oops in update_se", True)
    assert fault.excerpt.splitlines()[-1] == "Kernel panic - not syncing: Fatal exception in interrupt"


def test_an_oops_is_named_after_its_rip_even_in_a_helper_a_hang_would_skip() -> None:
    (fault,) = _tcg("7.x-mttcg-oops-at-schedule.log")
    assert fault.title == "Oops in __schedule"
    assert fault.function == "__schedule"


def test_soft_lockups_and_an_rcu_stall_that_do_not_crash() -> None:
    found = _tcg("6.1-mttcg-soft-lockups-rcu-stall.log")
    assert {fault.type for fault in found} == {FaultType.SOFT_LOCKUP, FaultType.RCU_STALL}
    assert {fault.title for fault in found if fault.type is FaultType.SOFT_LOCKUP} == {
        "watchdog: BUG: soft lockup in exit_to_user_mode_prepare",
        "watchdog: BUG: soft lockup in do_task_dead",
    }
    assert not any(fault.crashed for fault in found)
