"""The collector: what a compat run found, gathered into the results model (compat/results/).

Workers write one file per cell (how it booted, what `runtime check` saw, what was expected) in the
schema's cell form; the controller collects every test report, joins them into one Results at the end
and writes results.json (docs/compat-results.md) and its renderings.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from compat.harness.qemu import BootError
from compat.matrix import Cell, expected
from compat.results import model, schema, terminal
from compat.results.files import write_renderings


@dataclass(frozen=True)
class Reported:
    """One pytest report of one test: its cell, its phase, and what it says as a result case."""

    cell: str | None
    when: str
    case: model.Case


STARTED = pytest.StashKey[float]()
REPORTS = pytest.StashKey[list[Reported]]()
SUMMARY = pytest.StashKey[str]()


class CellRecord:
    """A cell as its worker saw it: the model cell (no tests yet), the accelerator its VM used, and the
    kernel's faults, in the order they happened."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.accel = ""
        self.result = model.Cell(
            id=cell.id, kernel=cell.kernel, release="", package="", flavour=cell.flavour.name,
            boot_seconds=None, console_log="", infra_error=None, features={}, expected={}, tests=(),
        )  # fmt: skip

    def keep_console(self, console: Path, reports: Path, boot: int = 1) -> None:
        """consoles/<cell>.log for the cell's first boot, consoles/<cell>.<n>.log for a later one."""
        name = f"{self.cell.id}.log" if boot == 1 else f"{self.cell.id}.{boot}.log"
        kept = reports / "consoles" / name
        kept.parent.mkdir(parents=True, exist_ok=True)
        if console.exists():
            shutil.copyfile(console, kept)
        if boot == 1:
            self.result = dataclasses.replace(self.result, console_log=str(kept.relative_to(reports)))

    def infra_error(self, failure: BootError) -> None:
        self.result = dataclasses.replace(self.result, infra_error=_infra(failure))

    def retried(self, failure: BootError) -> None:
        """The first boot's infra error: a second boot follows."""
        self.result = dataclasses.replace(self.result, retried=_infra(failure))

    def booted(self, guest: Any) -> None:
        self.result = dataclasses.replace(
            self.result, release=guest.release, package=guest.package, boot_seconds=round(guest.boot_seconds, 2),
            features=dict(guest.features), expected=expected(self.cell, guest.config),
        )  # fmt: skip

    def add_fault(self, fault: model.KernelFault) -> None:
        """Each title once per cell, where it first appeared: a hung task is reported again every
        interval while it stays blocked, a WARN in a loop each time round."""
        if any(kept.title == fault.title for kept in self.result.faults):
            return
        self.result = dataclasses.replace(self.result, faults=(*self.result.faults, fault))

    @property
    def crash(self) -> model.KernelFault | None:
        return self.result.crash

    def write(self, reports: Path) -> None:
        document = {**schema.cell_document(self.result), "accel": self.accel}
        (reports / "cells" / f"{self.cell.id}.json").write_text(json.dumps(document, indent=2))


def _infra(failure: BootError) -> model.InfraError:
    message = failure.message.split("\n--- console", 1)[0]
    return model.InfraError(failure.kind, message, failure.console_tail)


FAULT_PROPERTY = "kcompat_kernel_fault"  # the headline of the kernel fault that failed the test
NOT_RUN_PROPERTY = "kcompat_not_run"  # why the test could not run: the kernel had crashed


def test_entry(report: pytest.TestReport, cell_property: str, absent_property: str) -> Reported:
    properties = dict(report.user_properties)
    outcome: str = report.outcome
    message = (
        report.longreprtext.strip().splitlines()[-1][:500] if report.failed and report.longreprtext else ""
    )
    if properties.get(NOT_RUN_PROPERTY):
        outcome, message = "not-run", str(properties[NOT_RUN_PROPERTY])
    elif report.when == "call" and properties.get(FAULT_PROPERTY):
        outcome, message = "failed", str(properties[FAULT_PROPERTY])
    elif report.when != "call" and report.failed:
        outcome = "error"  # a failing fixture: the VM did not come up, or the harness broke
    elif report.when == "call" and report.passed and properties.get(absent_property):
        outcome = "expected-absent"
    cell = properties.get(cell_property)
    group, name = _group_and_name(report.nodeid, str(cell or ""))
    case = model.Case(
        name=name,
        group=group,
        outcome=model.Outcome(outcome),
        duration_seconds=round(report.duration, 3),
        message=message,
    )
    return Reported(None if cell is None else str(cell), report.when, case)


def case_key(nodeid: str, cell_id: str) -> str:
    """compat/tests/test_overlay.py::test_x[6.1-v2-copy] -> overlay::test_x[copy], as in the results."""
    return "::".join(_group_and_name(nodeid, cell_id))


def _group_and_name(nodeid: str, cell_id: str) -> tuple[str, str]:
    path, _, name = nodeid.partition("::")
    return Path(path).stem.removeprefix("test_"), _test_name(name, cell_id)


def _test_name(name: str, cell_id: str | None) -> str:
    """test_x[6.1-v2-copy] -> test_x[copy]: the cell is said elsewhere, other parameters stay."""
    function, _, parameters = name.partition("[")
    rest = parameters.rstrip("]")
    if cell_id and rest.startswith(cell_id):
        rest = rest[len(cell_id) :].lstrip("-")
    return f"{function}[{rest}]" if rest else function


def _tests_for(cell_id: str, reports: list[Reported]) -> tuple[model.Case, ...]:
    chosen: dict[str, model.Case] = {}
    for entry in reports:
        if entry.cell != cell_id:
            continue
        # One entry per test: the call's outcome, or a setup's skip, not-run or error, or a teardown's error.
        if entry.when == "call" or entry.case.outcome in (
            model.Outcome.ERROR,
            model.Outcome.SKIPPED,
            model.Outcome.NOT_RUN,
        ):
            chosen[entry.case.name] = entry.case
    return tuple(chosen.values())


def assemble(config: pytest.Config, reports_dir: Path, cells: list[Cell]) -> str | None:
    """results.json and its renderings; returns the summary table for the terminal."""
    reports = config.stash.get(REPORTS, [])
    started = config.stash.get(STARTED, time.time())
    found: list[model.Cell] = []
    accels: list[object] = []
    for cell in cells:
        path = reports_dir / "cells" / f"{cell.id}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        accels.append(data.get("accel"))
        record = schema.parse_cell(data, str(path.relative_to(reports_dir)))
        found.append(dataclasses.replace(record, tests=_tests_for(cell.id, reports)))
    if not found:
        return None
    results = model.Results(
        suite_version=schema.SUITE_VERSION,
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        duration_seconds=round(time.time() - started, 1),
        accel="kvm" if "kvm" in accels else "tcg",  # what the VMs used (Vagrant's driver too)
        cells=tuple(found),
    )
    target = reports_dir / "results.json"
    target.write_text(schema.dump(results), encoding="utf-8")
    # Read back as any reader would: a harness bug gives a ReportError naming the field, not a bad file.
    loaded = schema.load(target)
    write_renderings(loaded, reports_dir, None)
    return terminal.render(loaded)
