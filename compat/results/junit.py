"""JUnit XML: one <testsuite> per cell, for CI systems that show test results."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from compat.results.model import Case, Cell, Outcome
from compat.results.status import Status, feature_status, mismatch
from compat.results.text import printable, short_json


def render(cell: Cell) -> str:
    """One <testsuite> named after the cell: a testcase per feature (classname "features") and per
    test (classname = group); an infra error is one testcase "boot" with an <error>."""
    suite = ET.Element("testsuite", name=cell.id)
    properties = ET.SubElement(suite, "properties")
    for name in ("kernel", "release", "package", "flavour"):
        ET.SubElement(properties, "property", name=name, value=printable(getattr(cell, name)))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    total = 0.0
    if cell.infra_error is not None:
        infra = cell.infra_error
        case = _testcase(suite, "boot", "boot", cell.boot_seconds or 0.0)
        error = ET.SubElement(case, "error", type=infra.kind.value, message=printable(infra.message))
        error.text = printable(infra.console_tail)
        counts["tests"], counts["errors"] = 1, 1
        total = cell.boot_seconds or 0.0
    else:
        for key in cell.expected:
            _feature_case(suite, cell, key, counts)
        for test in cell.tests:
            _test_case(suite, test, counts)
            total += test.duration_seconds
    for name, count in counts.items():
        suite.set(name, str(count))
    suite.set("time", f"{total:.3f}")
    ET.indent(suite)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def _testcase(suite: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(
        suite, "testcase", classname=printable(classname), name=printable(name), time=f"{seconds:.3f}"
    )


def _feature_case(suite: ET.Element, cell: Cell, key: str, counts: dict[str, int]) -> None:
    case = _testcase(suite, "features", key, 0.0)
    counts["tests"] += 1
    status = feature_status(cell, key)
    if status is Status.FAIL:
        message = mismatch(cell, key)
        ET.SubElement(case, "failure", message=printable(message)).text = printable(message)
        counts["failures"] += 1
    elif status is Status.EXPECTED_ABSENT:
        ET.SubElement(
            case, "system-out"
        ).text = f"absent ({short_json(cell.features.get(key))}), as this cell expects"


def _test_case(suite: ET.Element, test: Case, counts: dict[str, int]) -> None:
    case = _testcase(suite, test.group, test.name, test.duration_seconds)
    counts["tests"] += 1
    summary = printable(test.message.splitlines()[0] if test.message.strip() else test.outcome.value)
    if test.outcome is Outcome.FAILED:
        ET.SubElement(case, "failure", message=summary).text = printable(test.message)
        counts["failures"] += 1
    elif test.outcome is Outcome.ERROR:
        ET.SubElement(case, "error", message=summary).text = printable(test.message)
        counts["errors"] += 1
    elif test.outcome is Outcome.SKIPPED:
        ET.SubElement(case, "skipped", message=summary)
        counts["skipped"] += 1
    elif test.outcome is Outcome.EXPECTED_ABSENT:
        note = "expected absent: the feature is absent, as this cell expects"
        ET.SubElement(case, "system-out").text = printable(
            f"{note}\n{test.message}" if test.message else note
        )
