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
    """A cell as its worker saw it: the model cell (no tests yet), and the accelerator its VM used."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.accel = ""
        self.result = model.Cell(
            id=cell.id, kernel=cell.kernel, release="", package="", flavour=cell.flavour.name,
            boot_seconds=None, console_log="", infra_error=None, features={}, expected={}, tests=(),
        )  # fmt: skip

    def _console(self, console: Path, reports: Path) -> str:
        kept = reports / "consoles" / f"{self.cell.id}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if console.exists():
            shutil.copyfile(console, kept)
        return str(kept.relative_to(reports))

    def infra_error(self, failure: BootError, console: Path, reports: Path) -> None:
        message = failure.message.split("\n--- console", 1)[0]
        self.result = dataclasses.replace(
            self.result,
            console_log=self._console(console, reports),
            infra_error=model.InfraError(failure.kind, message, failure.console_tail),
        )

    def booted(self, guest: Any, reports: Path) -> None:
        self.result = dataclasses.replace(
            self.result, console_log=self._console(guest.console_log, reports), release=guest.release,
            package=guest.package, boot_seconds=round(guest.boot_seconds, 2), features=dict(guest.features),
            expected=expected(self.cell, guest.config),
        )  # fmt: skip

    def write(self, reports: Path) -> None:
        document = {**schema.cell_document(self.result), "accel": self.accel}
        (reports / "cells" / f"{self.cell.id}.json").write_text(json.dumps(document, indent=2))


def test_entry(report: pytest.TestReport, cell_property: str, absent_property: str) -> Reported:
    properties = dict(report.user_properties)
    outcome: str = report.outcome
    if report.when != "call" and report.failed:
        outcome = "error"  # a failing fixture: the VM did not come up, or the harness broke
    elif report.when == "call" and report.passed and properties.get(absent_property):
        outcome = "expected-absent"
    path, _, name = report.nodeid.partition("::")
    cell = properties.get(cell_property)
    case = model.Case(
        name=_test_name(name, str(cell or "")),
        group=Path(path).stem.removeprefix("test_"),
        outcome=model.Outcome(outcome),
        duration_seconds=round(report.duration, 3),
        message=report.longreprtext.strip().splitlines()[-1][:500]
        if report.failed and report.longreprtext
        else "",
    )
    return Reported(None if cell is None else str(cell), report.when, case)


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
        # One entry per test: the call's outcome, or a setup's skip or error, or a teardown's error.
        if entry.when == "call" or entry.case.outcome in (model.Outcome.ERROR, model.Outcome.SKIPPED):
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
