"""What a compat run found, gathered into the results JSON (schema: docs/compat-results.md).

Workers write one file per cell (how it booted, what `runtime check` saw, what was expected); the
controller collects every test report and joins them at the end. compat/report.py renders the rest.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from compat.harness.qemu import BootError
from compat.matrix import Cell, expected

STARTED = pytest.StashKey[float]()
REPORTS = pytest.StashKey[list[dict[str, Any]]]()
SUMMARY = pytest.StashKey[str]()
SUITE_VERSION = "0.1.0"


class CellRecord:
    def __init__(self, cell: Cell) -> None:
        self.data: dict[str, Any] = {
            "id": cell.id, "kernel": cell.kernel, "flavour": cell.flavour.name, "release": "", "package": "",
            "boot_seconds": None, "console_log": "", "infra_error": None, "features": {}, "expected": {},
        }  # fmt: skip
        self.cell = cell

    def _console(self, console: Path, reports: Path) -> None:
        kept = reports / "consoles" / f"{self.cell.id}.log"
        kept.parent.mkdir(parents=True, exist_ok=True)
        if console.exists():
            shutil.copyfile(console, kept)
        self.data["console_log"] = str(kept.relative_to(reports))

    def infra_error(self, failure: BootError, console: Path, reports: Path) -> None:
        self._console(console, reports)
        message = str(failure).split("\n--- console", 1)[0]
        self.data["infra_error"] = {
            "kind": failure.kind,
            "message": message,
            "console_tail": failure.console_tail,
        }

    def booted(self, guest: Any, reports: Path) -> None:
        self._console(guest.console_log, reports)
        self.data.update(
            release=guest.release, package=guest.package, boot_seconds=round(guest.boot_seconds, 2),
            features=guest.features, expected=expected(self.cell, guest.config),
        )  # fmt: skip

    def write(self, reports: Path) -> None:
        (reports / "cells" / f"{self.cell.id}.json").write_text(json.dumps(self.data, indent=2))


def test_entry(report: pytest.TestReport, cell_property: str, absent_property: str) -> dict[str, Any]:
    properties = dict(report.user_properties)
    outcome: str = report.outcome
    if report.when != "call" and report.failed:
        outcome = "error"  # a failing fixture: the VM did not come up, or the harness broke
    elif report.when == "call" and report.passed and properties.get(absent_property):
        outcome = "expected-absent"
    path, _, name = report.nodeid.partition("::")
    return {
        "cell": properties.get(cell_property),
        "name": _test_name(name, str(properties.get(cell_property) or "")),
        "group": Path(path).stem.removeprefix("test_"),
        "when": report.when,
        "outcome": outcome,
        "duration_seconds": round(report.duration, 3),
        "message": report.longreprtext.strip().splitlines()[-1][:500]
        if report.failed and report.longreprtext
        else "",
    }


def _test_name(name: str, cell_id: str | None) -> str:
    """test_x[6.1-v2-copy] -> test_x[copy]: the cell is said elsewhere, other parameters stay."""
    function, _, parameters = name.partition("[")
    rest = parameters.rstrip("]")
    if cell_id and rest.startswith(cell_id):
        rest = rest[len(cell_id) :].lstrip("-")
    return f"{function}[{rest}]" if rest else function


def _tests_for(cell_id: str, reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    for entry in reports:
        if entry["cell"] != cell_id:
            continue
        # One entry per test: the call's outcome, or a setup's skip or error, or a teardown's error.
        if entry["when"] == "call" or entry["outcome"] in ("error", "skipped"):
            chosen[entry["name"]] = {
                key: value for key, value in entry.items() if key not in ("cell", "when")
            }
    return list(chosen.values())


def assemble(config: pytest.Config, reports_dir: Path, cells: list[Cell]) -> str | None:
    """results.json and its renderings; returns the summary table for the terminal."""
    from compat import report

    reports = config.stash.get(REPORTS, [])
    started = config.stash.get(STARTED, time.time())
    found = []
    for cell in cells:
        path = reports_dir / "cells" / f"{cell.id}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        data["tests"] = _tests_for(cell.id, reports)
        found.append(data)
    if not found:
        return None
    document = {
        "schema": 1, "suite_version": SUITE_VERSION,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_seconds": round(time.time() - started, 1), "accel": _accel(found), "cells": found,
    }  # fmt: skip
    (reports_dir / "results.json").write_text(json.dumps(document, indent=2))
    loaded = report.load(reports_dir / "results.json")
    report.write_all(loaded, reports_dir)
    summary: str = report.summary_table(loaded)
    return summary


def _accel(cells: list[dict[str, Any]]) -> str:
    """What the run's VMs used: the accelerator each cell's fixture chose (Vagrant's driver too)."""
    return "kvm" if any(cell.get("accel") == "kvm" for cell in cells) else "tcg"
