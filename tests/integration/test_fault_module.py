"""Real kernel faults from kcompat_fault.ko in a 6.1 guest, and the console classifier naming them.

The module is built against Debian's linux-headers of the 6.1 kernel (compat/images/faultmod.py). One
guest takes the faults it survives (WARNING, hung task, soft lockup); BUG() and the NULL dereference
each get a fresh guest, which panics (oops=panic) and whose QEMU then exits (-no-reboot). Needs root,
qemu-system-x86_64, gcc-12 and make, and the network to Debian's archive on the first build. About a
minute under TCG.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compat import faults, matrix
from compat.faults import Fault, FaultType
from compat.harness import guest as guests
from compat.harness.qemu import Vm
from compat.images import faultmod

pytestmark = pytest.mark.integration
TOOLS = ("qemu-system-x86_64", "debootstrap", "mkfs.ext4", "depmod", "make")
CELL = "6.1-v2"
GUEST_MODULE = "/tmp/kcompat_fault.ko"
REPORT_DEADLINE = 30.0  # seconds for a report to reach the console once its fault has happened
CRASH_DEADLINE = 60.0  # seconds for a panicking guest's QEMU to exit


@pytest.fixture(scope="module")
def module() -> Path:
    if os.geteuid() != 0:
        pytest.skip("building the guest images and booting them needs root")
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: install qemu-system-x86 debootstrap e2fsprogs kmod make")
    try:
        return faultmod.build("6.1")
    except (faultmod.HeadersUnavailable, faultmod.CompilerMismatch) as exc:
        pytest.skip(f"cannot build the fault module: {exc}")


def boot_with_module(module: Path, workdir: Path) -> guests.Guest:
    guest = guests.boot(matrix.parse_cell(CELL), workdir, "tcg", 180.0)
    try:
        with guest.host.backend.client.open_sftp() as sftp:
            sftp.put(str(module), GUEST_MODULE)
        guest.host.check_output(f"insmod {GUEST_MODULE}")
    except BaseException:
        guest.vm.stop()
        raise
    return guest


@pytest.fixture(scope="module")
def survivor(module: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[guests.Guest]:
    """One guest for the faults it lives through, at the harness's own console loglevel: a WARNING
    (KERN_WARNING) and a hung task's stack (KERN_INFO) must reach the console as the harness boots."""
    guest = boot_with_module(module, tmp_path_factory.mktemp("survivor"))
    try:
        yield guest
    finally:
        guest.vm.stop()


def inject(guest: guests.Guest, command: str) -> None:
    guest.host.check_output(f"echo '{command}' > {faultmod.PROC_FILE}")


def new_faults(console: Path, since: int, kind: FaultType, deadline: float = REPORT_DEADLINE) -> list[Fault]:
    """The faults of kind reported at or after byte offset since, once there is one."""
    end = time.monotonic() + deadline
    while True:
        found = [f for f in faults.classify(console.read_bytes()) if f.offset >= since and f.type is kind]
        if found or time.monotonic() > end:
            return found
        time.sleep(0.5)


def console_size(guest: guests.Guest) -> int:
    return guest.console_log.stat().st_size


def test_warning_is_reported_and_the_guest_lives_on(survivor: guests.Guest) -> None:
    since = console_size(survivor)
    inject(survivor, "warn")
    [warning] = new_faults(survivor.console_log, since, FaultType.WARNING)
    assert warning.title == "WARNING in kcompat_fault_warn"
    assert warning.function == "kcompat_fault_warn"
    assert not warning.crashed
    assert "kcompat_fault: injected warning" in warning.excerpt
    assert survivor.host.check_output("cat /proc/sys/kernel/tainted") != "0"  # W and O, E: still up


def test_hung_task_is_reported(survivor: guests.Guest) -> None:
    since = console_size(survivor)
    # khungtaskd checks every hung_task_timeout_secs: a task asleep in D state for 8 s is seen.
    survivor.host.check_output("sysctl -qw kernel.hung_task_timeout_secs=2")
    try:
        inject(survivor, "hang 8")
    finally:
        survivor.host.check_output("sysctl -qw kernel.hung_task_timeout_secs=120")
    hung = new_faults(survivor.console_log, since, FaultType.HUNG_TASK)
    assert hung, "no hung task report after 8 s in D state with hung_task_timeout_secs=2"
    assert {fault.title for fault in hung} == {"INFO: task hung in kcompat_fault_hang"}
    assert not any(fault.crashed for fault in hung)


def test_soft_lockup_is_reported(survivor: guests.Guest) -> None:
    since = console_size(survivor)
    # watchdog_thresh=1: a CPU that does not schedule for 2 s is a soft lockup (the minimum is 1).
    survivor.host.check_output("sysctl -qw kernel.watchdog_thresh=1")
    try:
        inject(survivor, "lockup 6")
    finally:
        survivor.host.check_output("sysctl -qw kernel.watchdog_thresh=10")
    locked = new_faults(survivor.console_log, since, FaultType.SOFT_LOCKUP)
    assert locked, "no soft lockup report after 6 s with preemption off and watchdog_thresh=1"
    assert {fault.title for fault in locked} == {"watchdog: BUG: soft lockup in kcompat_fault_lockup"}
    assert locked[0].function == "kcompat_fault_lockup"


def test_bad_commands_are_refused(survivor: guests.Guest) -> None:
    for command in ("nonsense", "hang", "hang 0", "lockup many", "warn now"):
        written = survivor.host.run(f"echo '{command}' > {faultmod.PROC_FILE}")
        assert written.rc != 0, command
    assert survivor.host.check_output("echo ok") == "ok"


def wait_for_exit(vm: Any) -> int | None:
    assert isinstance(vm, Vm)
    assert vm.process is not None
    end = time.monotonic() + CRASH_DEADLINE
    while vm.process.poll() is None and time.monotonic() < end:
        time.sleep(0.5)
    return vm.process.poll()


@pytest.mark.parametrize(
    ("command", "kind", "title"),
    [
        ("bug", FaultType.BUG, "kernel BUG in kcompat_fault_bug"),
        (
            "oops",
            FaultType.BUG,  # its report opens with "BUG: kernel NULL pointer dereference", then "Oops:"
            "BUG: unable to handle kernel NULL pointer dereference in kcompat_fault_oops",
        ),
    ],
)
def test_oops_panics_the_guest(
    module: Path, tmp_path: Path, command: str, kind: FaultType, title: str
) -> None:
    guest = boot_with_module(module, tmp_path)
    try:
        # In the background: the SSH session dies with the kernel.
        guest.host.check_output(
            f"nohup sh -c 'sleep 1; echo {command} > {faultmod.PROC_FILE}' >/dev/null 2>&1 &"
        )
        assert wait_for_exit(guest.vm) is not None, (
            f"QEMU still running {CRASH_DEADLINE:.0f} s after {command}"
        )
    finally:
        guest.vm.stop()
    found = faults.classify(guest.console_log.read_bytes())
    crash = faults.crash(found)
    assert crash is not None, f"no crash in {guest.console_log}: {[f.title for f in found]}"
    assert (crash.type, crash.title, crash.crashed) == (kind, title, True)
    assert crash.panic == "Fatal exception"
    assert crash.summary == f"{title} (then kernel panic: Fatal exception)"
