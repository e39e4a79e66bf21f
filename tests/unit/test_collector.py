"""compat/harness/results.py: the collector turns cell records and pytest reports into the results model."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from compat import matrix
from compat.harness import results as collector
from compat.harness.qemu import BootError
from compat.results import schema
from compat.results.model import InfraKind, Outcome
from runtime.features import kconfig

DATA = Path(__file__).parents[1] / "data"


def _report(nodeid: str, when: str, outcome: str, cell: str, *, text: str = "") -> Any:
    return SimpleNamespace(
        user_properties=[("cell", cell)], outcome=outcome, when=when, nodeid=nodeid, duration=0.12345,
        passed=outcome == "passed", failed=outcome == "failed", longreprtext=text,
    )  # fmt: skip


def test_assemble_writes_a_results_json_the_reader_accepts(tmp_path: Path) -> None:
    (tmp_path / "cells").mkdir()
    booted_cell, broken_cell = matrix.parse_cell("6.1-v2"), matrix.parse_cell("7.x-v2")
    config = kconfig.load(DATA / "kconfig" / "debian-6.1.config")
    features = dict(matrix.expected(booted_cell, config))
    (tmp_path / "console.log").write_text("booted\n")
    guest = SimpleNamespace(
        release="6.1.0-50-cloud-amd64", package="linux-image 6.1", boot_seconds=4.567,
        console_log=tmp_path / "console.log", config=config, features=features,
    )  # fmt: skip
    booted = collector.CellRecord(booted_cell)
    booted.accel = "kvm"
    booted.keep_console(guest.console_log, tmp_path)
    booted.booted(guest)
    booted.write(tmp_path)
    broken = collector.CellRecord(broken_cell)
    broken.keep_console(tmp_path / "none.log", tmp_path)
    broken.infra_error(BootError(InfraKind.SSH, "no banner", "tail"))
    broken.write(tmp_path)
    reports = [
        collector.test_entry(_report("compat/tests/test_cgroups.py::test_a[6.1-v2]", "setup", "passed", "6.1-v2"), "cell", "absent"),
        collector.test_entry(_report("compat/tests/test_cgroups.py::test_a[6.1-v2]", "call", "failed", "6.1-v2", text="x\nAssertionError: no"), "cell", "absent"),
        collector.test_entry(_report("compat/tests/test_overlay.py::test_b[7.x-v2]", "setup", "failed", "7.x-v2", text="E no vm"), "cell", "absent"),
    ]  # fmt: skip
    stash = {collector.REPORTS: reports, collector.STARTED: 1_700_000_000.0}
    summary = collector.assemble(SimpleNamespace(stash=stash), tmp_path, [booted_cell, broken_cell])  # type: ignore[arg-type]
    assert summary is not None
    assert summary.endswith("2 cells: 0 pass, 1 fail, 0 kernel crashes, 1 infra error\n")
    loaded = schema.load(tmp_path / "results.json")
    assert (loaded.suite_version, loaded.accel, loaded.started) == (
        schema.SUITE_VERSION,
        "kvm",
        "2023-11-14T22:13:20Z",
    )
    first, second = loaded.cells
    assert (first.boot_seconds, first.console_log, dict(first.features)) == (
        4.57,
        "consoles/6.1-v2.log",
        features,
    )
    assert [(c.key, c.outcome, c.duration_seconds, c.message) for c in first.tests] == [
        ("cgroups::test_a", Outcome.FAILED, 0.123, "AssertionError: no")
    ]
    assert second.infra_error is not None
    assert second.infra_error.kind is InfraKind.SSH
    assert [(c.key, c.outcome) for c in second.tests] == [("overlay::test_b", Outcome.ERROR)]
    assert json.loads((tmp_path / "results.json").read_text())["schema"] == schema.SCHEMA
    assert (tmp_path / "junit" / "7.x-v2.xml").is_file()
    assert (tmp_path / "matrix.html").is_file()


def test_assemble_without_cells_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "cells").mkdir()
    stash: dict[object, object] = {}
    assert collector.assemble(SimpleNamespace(stash=stash), tmp_path, [matrix.parse_cell("6.1-v2")]) is None  # type: ignore[arg-type]
    assert not (tmp_path / "results.json").exists()
