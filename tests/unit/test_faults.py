"""The console classifier on recorded and documented-format consoles, and the growing-file Watcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from compat import faults
from compat.faults import FaultType

CONSOLES = Path(__file__).parents[1] / "data" / "consoles"


def classified(name: str) -> list[faults.Fault]:
    return faults.classify((CONSOLES / name).read_bytes())


@pytest.mark.parametrize(
    ("recorded", "kind", "title", "function", "crashed"),
    [
        (
            "6.1-sysrq-crash.log",
            FaultType.PANIC,
            "kernel panic: sysrq triggered crash",
            "sysrq_handle_crash",
            True,
        ),
        (
            "6.1-boot-panic.log",
            FaultType.PANIC,
            "kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)",
            "mount_block_root",
            True,
        ),
        (
            "panic.log",
            FaultType.PANIC,
            "kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)",
            None,
            True,
        ),
        ("oops.log", FaultType.BUG, "BUG: unable to handle kernel NULL pointer dereference", None, False),
        ("6.1-hung-task.log", FaultType.HUNG_TASK, "INFO: task hung", None, False),
        (
            "written-warning.log",
            FaultType.WARNING,
            "WARNING in cgroup_apply_control",
            "cgroup_apply_control",
            False,
        ),
        (
            "written-oops-then-panic.log",
            FaultType.BUG,
            "BUG: unable to handle kernel NULL pointer dereference in ovl_dentry_upper",
            "ovl_dentry_upper",
            True,
        ),
    ],
)
def test_the_first_fault_of_each_console(
    recorded: str, kind: FaultType, title: str, function: str | None, crashed: bool
) -> None:
    first = classified(recorded)[0]
    assert (first.type, first.title, first.function, first.crashed) == (kind, title, function, crashed)


def test_a_console_without_faults_has_none() -> None:
    assert classified("silence.log") == []


def test_a_panic_after_an_oops_is_one_crash_titled_by_the_oops() -> None:
    (crash,) = classified("written-oops-then-panic.log")
    assert crash.panic == "Fatal exception"
    assert "Kernel panic - not syncing: Fatal exception" in crash.excerpt
    assert crash.summary.endswith("(then kernel panic: Fatal exception)")


def test_a_warning_that_does_not_crash_is_a_fault_but_not_a_crash() -> None:
    found = classified("written-warning.log")
    assert [fault.type for fault in found] == [FaultType.WARNING]
    assert faults.crash(found) is None
    assert "overlayfs" not in found[0].excerpt
    assert "kcompat:" not in found[0].excerpt


def test_the_offset_is_where_the_report_starts_in_the_file() -> None:
    data = (CONSOLES / "6.1-sysrq-crash.log").read_bytes()
    fault = classified("6.1-sysrq-crash.log")[0]
    assert data[fault.offset :].startswith(
        b"[   10.248164] Kernel panic - not syncing: sysrq triggered crash"
    )


def test_the_excerpt_is_bounded_and_timestamps_are_gone() -> None:
    fault = classified("6.1-sysrq-crash.log")[0]
    lines = fault.excerpt.splitlines()
    assert len(lines) <= faults.MAX_EXCERPT_LINES
    assert lines[0] == "Kernel panic - not syncing: sysrq triggered crash"
    assert (
        lines[-1]
        == "Kernel Offset: 0x13e00000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)"
    )


def test_every_hung_report_has_the_same_title() -> None:
    found = classified("6.1-hung-task.log")
    assert len(found) == 10
    assert {fault.title for fault in found} == {"INFO: task hung"}


def test_lockups_stalls_gpf_and_only_the_global_oom() -> None:
    found = [(fault.type, fault.title, fault.crashed) for fault in classified("written-others.log")]
    assert found == [
        (FaultType.SOFT_LOCKUP, "watchdog: BUG: soft lockup in cpuset_write_resmask", False),
        (FaultType.RCU_STALL, "INFO: rcu detected stall in cpuset_write_resmask", False),
        (
            FaultType.OOM,
            "kernel OOM: out of memory outside any cgroup limit (constraint=CONSTRAINT_NONE)",
            False,
        ),
        (FaultType.GPF, "general protection fault in __list_del_entry_valid", True),
    ]


def test_guest_lines_and_prefixes_are_ignored() -> None:
    text = "kcompat: 3.2 WARNING: not a kernel line\nKCOMPAT-READY release=x\nkc: BUG: also the guest\n"
    assert faults.classify(text) == []


def test_the_watcher_returns_each_fault_once_from_a_file_appended_in_chunks(tmp_path: Path) -> None:
    whole = b"".join(
        (CONSOLES / name).read_bytes() for name in ("written-warning.log", "written-oops-then-panic.log")
    )
    console = tmp_path / "console.log"
    console.write_bytes(b"")
    watcher = faults.Watcher(console)
    seen: list[faults.Fault] = []
    for start in range(0, len(whole), 97):  # chunks that cut lines in the middle
        with console.open("ab") as file:
            file.write(whole[start : start + 97])
        seen += watcher.poll()
    seen += watcher.finish()
    assert [fault.title for fault in seen] == [fault.title for fault in faults.classify(whole)]
    assert [fault.offset for fault in seen] == [fault.offset for fault in faults.classify(whole)]
    assert seen[1].crashed
    assert seen[1].panic == "Fatal exception"


def test_the_watcher_holds_an_oops_until_its_panic_could_have_come(tmp_path: Path) -> None:
    data = (CONSOLES / "written-oops-then-panic.log").read_bytes()
    cut = data.index(b"[   33.128952] PKRU")
    console = tmp_path / "console.log"
    console.write_bytes(data[:cut])
    watcher = faults.Watcher(console)
    assert watcher.poll() == []
    with console.open("ab") as file:
        file.write(data[cut:])
    assert watcher.poll()[0].crashed


def test_a_missing_console_is_no_fault_yet(tmp_path: Path) -> None:
    assert faults.Watcher(tmp_path / "absent.log").poll() == []
