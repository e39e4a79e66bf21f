"""compat/harness/cellrun.py without VMs: boots that fail or crash, and faults around tests, on fake
guests whose consoles are recorded ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from compat import faults, matrix
from compat.harness import results
from compat.harness.cellrun import CellRun
from compat.harness.kernel import CRASH_SECONDS, KernelCrashed, KernelWatch
from compat.harness.qemu import BootError
from compat.results.model import InfraKind
from runtime.features import kconfig

DATA = Path(__file__).parents[1] / "data"
CELL = matrix.parse_cell("6.1-v2")
WARNING = (DATA / "consoles" / "6.1-module-warning.log").read_bytes()
CRASH = (DATA / "consoles" / "6.1-sysrq-crash.log").read_bytes()


class FakeGuest(SimpleNamespace):
    def replace_with(self, fresh: Any) -> None:
        self.__dict__.update(fresh.__dict__)


def guest(console: Path) -> Any:
    config = kconfig.load(DATA / "kconfig" / "debian-6.1.config")
    console.write_bytes(b"booted\n")
    stopped: list[bool] = []
    return FakeGuest(
        release="6.1.0-50-cloud-amd64", package="linux-image 6.1", boot_seconds=4.5, config=config,
        features=dict(matrix.expected(CELL, config)), watch=KernelWatch(console, alive=lambda: not stopped),
        vm=SimpleNamespace(stop=lambda: stopped.append(True)), prepared=set(), stopped=stopped,
        responds=lambda: not stopped,
    )  # fmt: skip


def cell_run(tmp_path: Path, boots: list[Callable[[], Any]]) -> CellRun:
    (tmp_path / "cells").mkdir(exist_ok=True)
    (tmp_path / "vm").mkdir(exist_ok=True)
    queue = list(boots)
    return CellRun(lambda: queue.pop(0)(), results.CellRecord(CELL), tmp_path, tmp_path / "vm")


def crashing(console: Path) -> Callable[[], Any]:
    def boot() -> Any:
        console.write_bytes(CRASH)
        raise KernelCrashed(faults.classify(CRASH))

    return boot


def failing(kind: InfraKind) -> Callable[[], Any]:
    def boot() -> Any:
        raise BootError(kind, "no banner", "tail")

    return boot


def test_an_infra_error_is_retried_once_and_the_report_says_so(tmp_path: Path) -> None:
    console = tmp_path / "vm" / "console.log"
    run = cell_run(tmp_path, [failing(InfraKind.SSH), lambda: guest(console)])
    run.start()
    cell = run.record.result
    assert cell.infra_error is None
    assert cell.retried is not None
    assert cell.retried.kind is InfraKind.SSH
    assert run.not_run_because() == ""


def test_an_infra_error_left_after_the_retry_is_the_cells(tmp_path: Path) -> None:
    run = cell_run(tmp_path, [failing(InfraKind.SSH), failing(InfraKind.BOOT_TIMEOUT)])
    with pytest.raises(BootError):
        run.start()
    cell = run.record.result
    assert cell.infra_error is not None
    assert cell.infra_error.kind is InfraKind.BOOT_TIMEOUT
    assert cell.retried is not None
    assert cell.retried.kind is InfraKind.SSH


@pytest.mark.parametrize(
    ("second_crashes", "confirmation"), [(True, "reproduced 2/2"), (False, "seen 1/2, flaky")]
)
def test_a_crash_at_boot_is_confirmed_by_a_second_boot_and_ends_the_cell(
    tmp_path: Path, second_crashes: bool, confirmation: str
) -> None:
    console = tmp_path / "vm" / "console.log"
    run = cell_run(
        tmp_path, [crashing(console), crashing(console) if second_crashes else lambda: guest(console)]
    )
    run.start()
    assert run.crash is not None
    assert (run.crash.during, run.crash.confirmation) == ("boot", confirmation)
    assert run.not_run_because() == "not run: kernel panic at boot: kernel panic: sysrq triggered crash"
    assert run.record.result.infra_error is None
    assert (tmp_path / "consoles" / "6.1-v2.log").read_bytes() == CRASH


def test_a_warning_during_a_test_fails_it_and_is_confirmed_by_the_test_on_a_fresh_boot(
    tmp_path: Path,
) -> None:
    console = tmp_path / "vm" / "console.log"
    run = cell_run(tmp_path, [lambda: guest(console), lambda: guest(console)])
    run.start()
    run.before()
    reruns: list[int] = []

    def rerun() -> None:
        reruns.append(1)
        with console.open("ab") as written:
            written.write(WARNING)

    with console.open("ab") as written:
        written.write(WARNING)  # the kernel warns while the test runs
    (fault,) = run.after("cgroups::test_x", False, rerun)
    assert reruns == [1]
    assert fault.headline == "kernel WARNING during cgroups::test_x: WARNING in kcompat_fault_warn"
    assert fault.confirmation == "reproduced 2/2"
    assert run.crash is None
    assert run.not_run_because() == ""
    assert [f.title for f in run.record.result.faults] == ["WARNING in kcompat_fault_warn"]


def test_a_crash_during_a_test_ends_the_cell_and_stops_the_rest(tmp_path: Path) -> None:
    console = tmp_path / "vm" / "console.log"
    (tmp_path / "vm").mkdir()
    first = guest(console)
    run = cell_run(tmp_path, [lambda: first, lambda: guest(console)])
    run.start()
    run.before()

    def rerun() -> None:
        console.write_bytes(CRASH)
        raise ConnectionResetError("the guest went away")

    with console.open("ab") as written:
        written.write(CRASH)
    first.stopped.append(True)  # QEMU exits after the panic
    (fault,) = run.after("overlay::test_y", True, rerun)
    assert fault.crashed
    assert fault.confirmation == "reproduced 2/2"
    assert run.not_run_because() == (
        "not run: kernel panic during overlay::test_y: kernel panic: sysrq triggered crash"
    )


def test_a_quiet_test_has_no_fault_and_boots_nothing(tmp_path: Path) -> None:
    console = tmp_path / "vm" / "console.log"
    run = cell_run(tmp_path, [lambda: guest(console)])
    run.start()
    run.before()
    assert run.after("cgroups::test_x", False, lambda: None) == []
    assert run.boots == 1


def test_an_ordinary_failure_on_a_guest_that_responds_waits_for_no_crash(tmp_path: Path) -> None:
    console = tmp_path / "vm" / "console.log"
    run = cell_run(tmp_path, [lambda: guest(console)])
    run.start()
    started = time.monotonic()
    assert run.after("cgroups::test_x", True, lambda: None) == []
    assert time.monotonic() - started < CRASH_SECONDS / 2


def test_a_fault_reported_again_and_again_is_one_fault_of_the_cell(tmp_path: Path) -> None:
    """khungtaskd reports a task blocked for as long as it stays blocked."""
    console = tmp_path / "vm" / "console.log"
    hang = (DATA / "consoles" / "6.1-module-hang.log").read_bytes()
    run = cell_run(tmp_path, [lambda: guest(console), lambda: guest(console)])
    run.start()
    run.before()
    with console.open("ab") as written:
        written.write(hang + hang)
    found = run.after("cgroups::test_x", False, lambda: None)
    assert [fault.title for fault in found] == ["INFO: task hung in kcompat_fault_hang"]
    with console.open("ab") as written:
        written.write(hang)
    run.before()
    assert [fault.title for fault in run.record.result.faults] == ["INFO: task hung in kcompat_fault_hang"]


def test_a_crash_while_booting_to_confirm_is_recorded_and_ends_the_cell(tmp_path: Path) -> None:
    console = tmp_path / "vm" / "console.log"
    run = cell_run(tmp_path, [lambda: guest(console), crashing(console)])
    run.start()
    run.before()
    with console.open("ab") as written:
        written.write(WARNING)
    (fault,) = run.after("cgroups::test_x", False, lambda: None)
    assert fault.confirmation == "seen once, not confirmed"
    assert run.crash is not None
    assert run.crash.during == "boot"
    assert run.not_run_because() == "not run: kernel panic at boot: kernel panic: sysrq triggered crash"
