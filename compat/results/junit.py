"""JUnit XML: one <testsuite> per cell, for CI systems that show test results."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from compat.results.model import Case, Cell, KernelFault, Outcome
from compat.results.status import Status, feature_status, mismatch, retry_note
from compat.results.text import printable, short_json


def render(cell: Cell) -> str:
    """One <testsuite> named after the cell: a testcase per feature (classname "features") and per
    test (classname = group); an infra error is one testcase "boot" with an <error>. A kernel fault is a
    <failure> of the test it happened in (its type names the fault, its text is the console excerpt), or
    of a testcase "kernel" named after where it happened when no test was running; tests the crash
    stopped are <skipped>."""
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
        crash = cell.crash
        if crash is None or crash.during != "boot":  # a crash at boot measured nothing
            for key in cell.expected:
                _feature_case(suite, cell, key, counts)
        faults = {fault.during: fault for fault in cell.faults}
        for test in cell.tests:
            _test_case(suite, test, counts, faults.pop(test.key, None))
            total += test.duration_seconds
        for fault in faults.values():
            _fault_case(suite, fault, counts)
    if cell.retried is not None:
        ET.SubElement(suite, "system-out").text = printable(retry_note(cell))
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


def _fault_case(suite: ET.Element, fault: KernelFault, counts: dict[str, int]) -> None:
    case = _testcase(suite, "kernel", fault.where, 0.0)
    counts["tests"] += 1
    _fault_failure(case, fault)
    counts["failures"] += 1


def _fault_failure(case: ET.Element, fault: KernelFault) -> None:
    message = printable(f"{fault.headline} ({fault.confirmation})")
    failure = ET.SubElement(case, "failure", type=fault.what, message=message)
    failure.text = printable(f"{message}\n\n{fault.excerpt}")


def _test_case(
    suite: ET.Element, test: Case, counts: dict[str, int], fault: KernelFault | None = None
) -> None:
    case = _testcase(suite, test.group, test.name, test.duration_seconds)
    counts["tests"] += 1
    summary = printable(test.message.splitlines()[0] if test.message.strip() else test.outcome.value)
    if fault is not None:
        _fault_failure(case, fault)
        counts["failures"] += 1
    elif test.outcome is Outcome.FAILED:
        ET.SubElement(case, "failure", message=summary).text = printable(test.message)
        counts["failures"] += 1
    elif test.outcome is Outcome.ERROR:
        ET.SubElement(case, "error", message=summary).text = printable(test.message)
        counts["errors"] += 1
    elif test.outcome in (Outcome.SKIPPED, Outcome.NOT_RUN):
        ET.SubElement(case, "skipped", message=summary)
        counts["skipped"] += 1
    elif test.outcome is Outcome.EXPECTED_ABSENT:
        note = "expected absent: the feature is absent, as this cell expects"
        ET.SubElement(case, "system-out").text = printable(
            f"{note}\n{test.message}" if test.message else note
        )
