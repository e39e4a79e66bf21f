"""Qualification results: the run's results JSON is the source of truth, everything else is made from it.

The harness writes one results JSON per run (docs/compat-results.md, schema 1). From it come the JUnit
XML of each cell, the Markdown and HTML matrices, the terminal table, the changes between two runs and
the exit code, so a run can be rendered again later:

    python3 -m compat.report RESULTS.json [--out DIR]
    python3 -m compat.report --diff BASELINE.json CANDIDATE.json
"""

from __future__ import annotations

import argparse
import enum
import json
import math
import os
import posixpath
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import NoReturn, TypeAlias, TypeVar
from urllib.parse import quote

SCHEMA = 1
# A cell id names its JUnit file, so it stays a plain file name.
_CELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# Characters XML 1.0 cannot carry (and that a terminal or a browser should not get raw): consoles
# hold escape sequences, and a log read with surrogateescape can hold lone surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

FeatureValue: TypeAlias = str | bool | None
_E = TypeVar("_E", bound=enum.StrEnum)


class ReportError(ValueError):
    """A results document that cannot be used; the message names the field."""


class Outcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"
    EXPECTED_ABSENT = "expected-absent"  # the test confirmed that the feature is absent, as the cell expects


class InfraKind(enum.StrEnum):
    BOOT_TIMEOUT = "boot timeout"
    PANIC = "kernel panic or oops"
    SSH = "ssh failure"
    QEMU_EXITED = "qemu exited"
    GUEST_INIT = "guest init failed"


class Status(enum.StrEnum):
    """What a matrix entry, or a whole cell, shows."""

    PASS = "pass"
    FAIL = "fail"
    EXPECTED_ABSENT = "expected-absent"
    INFRA_ERROR = "infra-error"
    SKIPPED = "skipped"

    @property
    def word(self) -> str:
        return _WORDS[self]


_WORDS = {
    Status.PASS: "pass",
    Status.FAIL: "FAIL",
    Status.EXPECTED_ABSENT: "absent (expected)",
    Status.INFRA_ERROR: "INFRA",
    Status.SKIPPED: "skipped",
}
_FAILING = frozenset({Outcome.FAILED, Outcome.ERROR})


@dataclass(frozen=True)
class Case:
    """One test's result in one cell."""

    name: str
    group: str
    outcome: Outcome
    duration_seconds: float
    message: str = ""

    @property
    def key(self) -> str:
        return f"{self.group}::{self.name}"


@dataclass(frozen=True)
class InfraError:
    """The cell's VM did not come up (or went away): no feature or test result can be trusted."""

    kind: InfraKind
    message: str
    console_tail: str


@dataclass(frozen=True)
class Cell:
    """One kernel booted as one host flavour."""

    id: str
    kernel: str
    release: str
    package: str
    flavour: str
    boot_seconds: float | None
    console_log: str  # relative to the directory of the results JSON; empty when none was kept
    infra_error: InfraError | None
    features: Mapping[str, FeatureValue]
    expected: Mapping[str, FeatureValue]
    tests: tuple[Case, ...]


@dataclass(frozen=True)
class Results:
    """One run. `schema` is not kept: load() accepts only SCHEMA and dump() writes it."""

    suite_version: str
    started: str
    duration_seconds: float
    accel: str
    cells: tuple[Cell, ...]


# --- reading and writing the JSON -------------------------------------------------------------------


def load(path: Path | str) -> Results:
    """Read and check a results JSON; a ReportError names the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from exc
    try:
        return loads(text)
    except ReportError as exc:
        raise ReportError(f"{path}: {exc}") from None


def loads(text: str) -> Results:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"not JSON: {exc}") from None
    return parse(data)


def parse(data: object) -> Results:
    """Check a decoded document against schema 1. Keys the schema does not name are ignored."""
    top = _object(data, "the document")
    schema = _get(top, "schema", "")
    if type(schema) is not int or schema != SCHEMA:
        raise ReportError(f"schema: {_json(schema)} is not supported; this reads schema {SCHEMA}")
    started = _string(top, "started", "")
    try:
        datetime.fromisoformat(started)
    except ValueError:
        raise ReportError(f"started: {started!r} is not an ISO 8601 time") from None
    return Results(
        suite_version=_string(top, "suite_version", ""),
        started=started,
        duration_seconds=_seconds(top, "duration_seconds", ""),
        accel=_string(top, "accel", ""),
        cells=_cells(_get(top, "cells", "")),
    )


def dump(results: Results) -> str:
    """The results JSON, schema 1, in the documented key order."""
    document = {
        "schema": SCHEMA,
        "suite_version": results.suite_version,
        "started": results.started,
        "duration_seconds": results.duration_seconds,
        "accel": results.accel,
        "cells": [_cell_json(cell) for cell in results.cells],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _cell_json(cell: Cell) -> dict[str, object]:
    infra = cell.infra_error
    return {
        "id": cell.id,
        "kernel": cell.kernel,
        "release": cell.release,
        "package": cell.package,
        "flavour": cell.flavour,
        "boot_seconds": cell.boot_seconds,
        "console_log": cell.console_log,
        "infra_error": None
        if infra is None
        else {"kind": infra.kind.value, "message": infra.message, "console_tail": infra.console_tail},
        "features": dict(cell.features),
        "expected": dict(cell.expected),
        "tests": [
            {
                "name": case.name,
                "group": case.group,
                "outcome": case.outcome.value,
                "duration_seconds": case.duration_seconds,
                "message": case.message,
            }
            for case in cell.tests
        ],
    }


def _cells(value: object) -> tuple[Cell, ...]:
    cells: list[Cell] = []
    seen: set[str] = set()
    for index, item in enumerate(_list(value, "cells")):
        where = f"cells[{index}]"
        obj = _object(item, where)
        label = obj.get("id")
        try:
            cell = _cell(obj, where)
        except ReportError as exc:
            raise ReportError(f"{exc} (cell {label})" if isinstance(label, str) else str(exc)) from None
        if cell.id in seen:
            raise ReportError(f"{where}.id: {cell.id!r} is used by an earlier cell")
        seen.add(cell.id)
        cells.append(cell)
    return tuple(cells)


def _cell(obj: Mapping[str, object], where: str) -> Cell:
    cell_id = _string(obj, "id", where)
    if not _CELL_ID.fullmatch(cell_id):
        raise ReportError(f"{where}.id: {cell_id!r} cannot name a file (letters, digits and . _ + -)")
    console_log = _string(obj, "console_log", where, empty_ok=True)
    if console_log.startswith("/") or ".." in console_log.split("/"):
        raise ReportError(f"{where}.console_log: {console_log!r} is not relative to the results directory")
    infra_value = _get(obj, "infra_error", where)
    infra = None if infra_value is None else _infra(infra_value, f"{where}.infra_error")
    boot_value = _get(obj, "boot_seconds", where)
    features = _features(obj, "features", where)
    expected = _features(obj, "expected", where)
    # A cell whose VM never came up has measured nothing: its features may be empty.
    if not (infra is not None and not features):
        for key in features:
            if key not in expected:
                raise ReportError(f'{where}.expected["{key}"]: missing (features has it)')
        for key in expected:
            if key not in features:
                raise ReportError(f'{where}.features["{key}"]: missing (null when unknown)')
    tests = tuple(
        _case(item, f"{where}.tests[{i}]")
        for i, item in enumerate(_list(_get(obj, "tests", where), f"{where}.tests"))
    )
    keys: set[str] = set()
    for index, case in enumerate(tests):
        if case.key in keys:
            raise ReportError(f"{where}.tests[{index}]: {case.key} appears twice")
        if case.group in expected:
            raise ReportError(f"{where}.tests[{index}].group: {case.group!r} is also a feature key")
        keys.add(case.key)
    return Cell(
        id=cell_id,
        kernel=_string(obj, "kernel", where),
        # Empty when the VM never came up far enough to tell.
        release=_string(obj, "release", where, empty_ok=True),
        package=_string(obj, "package", where, empty_ok=True),
        flavour=_string(obj, "flavour", where),
        boot_seconds=None if boot_value is None else _seconds(obj, "boot_seconds", where),
        console_log=console_log,
        infra_error=infra,
        features=features,
        expected=expected,
        tests=tests,
    )


def _infra(value: object, where: str) -> InfraError:
    obj = _object(value, where)
    return InfraError(
        kind=_choice(InfraKind, obj, "kind", where),
        message=_string(obj, "message", where),
        console_tail=_string(obj, "console_tail", where, empty_ok=True),
    )


def _case(value: object, where: str) -> Case:
    obj = _object(value, where)
    return Case(
        name=_string(obj, "name", where),
        group=_string(obj, "group", where),
        outcome=_choice(Outcome, obj, "outcome", where),
        duration_seconds=_seconds(obj, "duration_seconds", where),
        message=_string(obj, "message", where, empty_ok=True) if "message" in obj else "",
    )


def _features(obj: Mapping[str, object], key: str, where: str) -> dict[str, FeatureValue]:
    path = _path(where, key)
    values: dict[str, FeatureValue] = {}
    for name, value in _object(_get(obj, key, where), path).items():
        if not name:
            raise ReportError(f"{path}: an empty feature key")
        if value is None or isinstance(value, str | bool):
            values[name] = value
            continue
        raise ReportError(f'{path}["{name}"]: expected a string, a boolean or null, got {_json(value)}')
    return values


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(obj: Mapping[str, object], key: str, where: str) -> object:
    if key not in obj:
        raise ReportError(f"{_path(where, key)}: missing")
    return obj[key]


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected an object, got {_json(value)}")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise ReportError(f"{where}: expected a list, got {_json(value)}")
    return value


def _string(obj: Mapping[str, object], key: str, where: str, *, empty_ok: bool = False) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str):
        raise ReportError(f"{_path(where, key)}: expected a string, got {_json(value)}")
    if not value and not empty_ok:
        raise ReportError(f"{_path(where, key)}: empty")
    return value


def _seconds(obj: Mapping[str, object], key: str, where: str) -> float:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ReportError(f"{_path(where, key)}: expected seconds (a number >= 0), got {_json(value)}")
    return float(value)


def _choice(kind: type[_E], obj: Mapping[str, object], key: str, where: str) -> _E:
    value = _string(obj, key, where)
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(repr(member.value) for member in kind)
        raise ReportError(f"{_path(where, key)}: {value!r} is not one of {known}") from None


def _json(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- statuses ---------------------------------------------------------------------------------------


def present(value: FeatureValue) -> bool:
    """A feature value that says "there": true or a layout word; false, null, "" and "none" do not."""
    return value is not None and value is not False and value not in ("", "none")


def feature_status(cell: Cell, key: str) -> Status:
    """Measured against expected: equal and present → PASS, equal and absent → EXPECTED_ABSENT."""
    if key not in cell.expected:
        return Status.SKIPPED
    measured, wanted = cell.features.get(key), cell.expected[key]
    if measured != wanted:
        return Status.FAIL
    return Status.PASS if present(measured) else Status.EXPECTED_ABSENT


def group_status(cell: Cell, group: str) -> Status:
    """A test group: any failed or error → FAIL; all expected-absent → EXPECTED_ABSENT; none ran → SKIPPED."""
    ran = [case.outcome for case in cell.tests if case.group == group and case.outcome is not Outcome.SKIPPED]
    if not ran:
        return Status.SKIPPED
    if any(outcome in _FAILING for outcome in ran):
        return Status.FAIL
    if all(outcome is Outcome.EXPECTED_ABSENT for outcome in ran):
        return Status.EXPECTED_ABSENT
    return Status.PASS


def entry(cell: Cell, column: str) -> Status:
    """A matrix entry: column is a feature key or a test group (feature keys win)."""
    if cell.infra_error is not None:
        return Status.INFRA_ERROR
    if column in cell.expected:
        return feature_status(cell, column)
    return group_status(cell, column)


def cell_status(cell: Cell) -> Status:
    """INFRA_ERROR, FAIL (a test failed or errored, or a feature is not as expected) or PASS."""
    if cell.infra_error is not None:
        return Status.INFRA_ERROR
    if any(case.outcome in _FAILING for case in cell.tests):
        return Status.FAIL
    if any(feature_status(cell, key) is Status.FAIL for key in cell.expected):
        return Status.FAIL
    return Status.PASS


def feature_columns(results: Results) -> list[str]:
    """Feature keys in the order they first appear."""
    return _unique(key for cell in results.cells for key in cell.expected)


def group_columns(results: Results) -> list[str]:
    """Test groups in the order they first appear."""
    return _unique(case.group for cell in results.cells for case in cell.tests)


def columns(results: Results) -> list[str]:
    return feature_columns(results) + group_columns(results)


def exit_code(results: Results) -> int:
    """1 if any cell fails, else 2 if any cell has an infra error, else 0."""
    statuses = {cell_status(cell) for cell in results.cells}
    if Status.FAIL in statuses:
        return 1
    if Status.INFRA_ERROR in statuses:
        return 2
    return 0


@dataclass(frozen=True)
class Problem:
    """Why a cell is not PASS: one failing feature or test, or the infra error."""

    cell: str
    item: str  # a feature key, "group::test", or "boot"
    what: str  # "feature", "failed", "error", or the infra error's kind
    message: str
    console_tail: str = ""


def problems(cell: Cell) -> list[Problem]:
    if cell.infra_error is not None:
        infra = cell.infra_error
        # The harness's message may start with the kind (str() of its BootError): say it once.
        message = infra.message.removeprefix(f"{infra.kind.value}: ") or infra.message
        return [Problem(cell.id, "boot", infra.kind.value, message, infra.console_tail)]
    found = [
        Problem(
            cell.id,
            key,
            "feature",
            f"expected {_json(cell.expected[key])}, got {_json(cell.features.get(key))}",
        )
        for key in cell.expected
        if feature_status(cell, key) is Status.FAIL
    ]
    found += [
        Problem(cell.id, case.key, case.outcome.value, case.message or "(no message)")
        for case in cell.tests
        if case.outcome in _FAILING
    ]
    return found


def summary_line(results: Results) -> str:
    """`N cells: X pass, Y fail, Z infra errors`."""
    statuses = [cell_status(cell) for cell in results.cells]
    return (
        f"{_plural(len(statuses), 'cell')}: {statuses.count(Status.PASS)} pass, "
        f"{statuses.count(Status.FAIL)} fail, {_plural(statuses.count(Status.INFRA_ERROR), 'infra error')}"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def printable(text: str) -> str:
    """Text safe for XML 1.0, HTML and a terminal: control characters become `\\xNN` escapes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNPRINTABLE.sub(
        lambda match: (
            f"\\x{ord(match.group()):02x}" if ord(match.group()) < 0x100 else f"\\u{ord(match.group()):04x}"
        ),
        text,
    )


# --- JUnit XML --------------------------------------------------------------------------------------


def junit_xml(cell: Cell) -> str:
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
        message = f"expected {_json(cell.expected[key])}, got {_json(cell.features.get(key))}"
        ET.SubElement(case, "failure", message=printable(message)).text = printable(message)
        counts["failures"] += 1
    elif status is Status.EXPECTED_ABSENT:
        ET.SubElement(
            case, "system-out"
        ).text = f"absent ({_json(cell.features.get(key))}), as this cell expects"


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


# --- Markdown ---------------------------------------------------------------------------------------


def markdown(results: Results, *, link_base: str = "") -> str:
    """The matrix as Markdown; console links are `link_base` joined with each cell's console_log."""
    header = ["cell", "release", "flavour", "boot", *columns(results)]
    lines = [
        "# Kernel qualification matrix",
        "",
        _md_text(_run_line(results)),
        "",
        f"**{summary_line(results)}**",
        "",
        _md_row([_md_text(name) for name in header]),
        _md_row(["---"] * len(header)),
    ]
    for cell in results.cells:
        row = [
            f"[{_md_text(cell.id)}]({_href(cell, link_base)})" if cell.console_log else _md_text(cell.id),
            _md_text(cell.release),
            _md_text(cell.flavour),
            _boot(cell),
            *(entry(cell, column).word for column in columns(results)),
        ]
        lines.append(_md_row(row))
    lines += ["", "## Failures and infra errors", ""]
    found = [problem for cell in results.cells for problem in problems(cell)]
    lines += [line for problem in found for line in _md_problem(problem)] or ["None."]
    return "\n".join(lines) + "\n"


def _md_problem(problem: Problem) -> list[str]:
    head = f"- **{_md_text(problem.cell)}** {_md_code(problem.item)} {_md_text(problem.what)}"
    if problem.item == "boot":
        head = f"- **{_md_text(problem.cell)}** infra error ({_md_text(problem.what)})"
    message = printable(problem.message)
    multiline = "\n" in message.strip()
    lines = [f"{head}:", *_md_block(message)] if multiline else [f"{head}: {_md_text(message)}"]
    if problem.console_tail:
        lines += ["", "  console tail:", *_md_block(printable(problem.console_tail))]
    return lines


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _md_text(text: str) -> str:
    """Inline Markdown text on one line: HTML-escaped, and the punctuation that could make a link, code,
    emphasis or a table cell backslash-escaped (not `_`: within words it is plain in GitHub's Markdown)."""
    text = escape(printable(text), quote=False)
    return re.sub(r"([\\`*\[\]|])", r"\\\1", " ".join(text.split()))


def _md_code(text: str) -> str:
    text = " ".join(printable(text).split())
    ticks = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _md_block(text: str) -> list[str]:
    """A fenced block indented under a list item; the fence is longer than any backtick run inside."""
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return [f"  {fence}", *(f"  {line}" for line in text.rstrip("\n").splitlines()), f"  {fence}"]


# --- HTML -------------------------------------------------------------------------------------------

_CSS = """\
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; white-space: nowrap; }
thead th { background: #f0f0f0; }
td.pass { background: #d9f2d9; }
td.fail { background: #f7c6c6; font-weight: bold; }
td.expected-absent { background: #ececec; color: #555; }
td.infra-error { background: #ffdca8; font-weight: bold; }
td.skipped { color: #999; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
"""


def html(results: Results, *, link_base: str = "") -> str:
    """The matrix as a standalone HTML page, every text escaped."""
    header = ["cell", "release", "flavour", "boot", *columns(results)]
    rows = [_html_row(cell, columns(results), link_base) for cell in results.cells]
    found = [problem for cell in results.cells for problem in problems(cell)]
    items = "\n".join(_html_problem(problem) for problem in found)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        "<title>Kernel qualification matrix</title>",
        f"<style>\n{_CSS}</style>",
        "</head>",
        "<body>",
        "<h1>Kernel qualification matrix</h1>",
        f"<p>{_h(_run_line(results))}</p>",
        f'<p class="summary"><strong>{_h(summary_line(results))}</strong></p>',
        "<table>",
        "<thead><tr>" + "".join(f'<th scope="col">{_h(name)}</th>' for name in header) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        "<h2>Failures and infra errors</h2>",
        f"<ul>\n{items}\n</ul>" if found else "<p>None.</p>",
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _html_row(cell: Cell, names: Sequence[str], link_base: str) -> str:
    name = f'<a href="{_h(_href(cell, link_base))}">{_h(cell.id)}</a>' if cell.console_log else _h(cell.id)
    head = (
        f'<th scope="row">{name}</th>'
        f'<td title="{_h(cell.package)}">{_h(cell.release)}</td><td>{_h(cell.flavour)}</td><td>{_h(_boot(cell))}</td>'
    )
    entries = []
    for column in names:
        status = entry(cell, column)
        title = ""
        if column in cell.expected and status is not Status.INFRA_ERROR:
            title = f' title="expected {_h(_json(cell.expected[column]))}, got {_h(_json(cell.features.get(column)))}"'
        entries.append(f'<td class="{status.value}"{title}>{_h(status.word)}</td>')
    return f"<tr>{head}{''.join(entries)}</tr>"


def _html_problem(problem: Problem) -> str:
    if problem.item == "boot":
        head = f"<strong>{_h(problem.cell)}</strong> infra error ({_h(problem.what)})"
    else:
        head = f"<strong>{_h(problem.cell)}</strong> <code>{_h(problem.item)}</code> {_h(problem.what)}"
    message = printable(problem.message)
    body = f"<pre>{_h(message)}</pre>" if "\n" in message.strip() else f" {_h(message)}"
    if problem.console_tail:
        body += f"\n<p>console tail:</p>\n<pre>{_h(problem.console_tail)}</pre>"
    return f"<li>{head}:{body}</li>"


def _h(text: str) -> str:
    return escape(printable(text), quote=True)


# --- shared by the renderers ------------------------------------------------------------------------


def _run_line(results: Results) -> str:
    return (
        f"suite {results.suite_version}, started {results.started}, "
        f"{results.duration_seconds:.1f} s, accel {results.accel}"
    )


def _href(cell: Cell, link_base: str) -> str:
    path = posixpath.join(link_base, cell.console_log) if link_base else cell.console_log
    return quote(path)


def _boot(cell: Cell) -> str:
    return "-" if cell.boot_seconds is None else f"{cell.boot_seconds:.1f} s"


# --- the terminal -----------------------------------------------------------------------------------


def summary_table(results: Results) -> str:
    """One line per cell: id, release, boot seconds, status, what fails; then the summary line."""
    rows = [("cell", "release", "boot", "status", "failing")]
    for cell in results.cells:
        status = cell_status(cell)
        found = problems(cell)
        if cell.infra_error is not None:
            failing = f"{found[0].what}: {found[0].message}"
        else:
            failing = ", ".join(problem.item for problem in found)
        rows.append((cell.id, cell.release, _boot(cell), status.word, " ".join(printable(failing).split())))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join([*(value.ljust(width) for value, width in zip(row, widths, strict=False)), row[4]]).rstrip()
        for row in rows
    ]
    return "\n".join([*lines, summary_line(results)]) + "\n"


# --- changes between two runs -----------------------------------------------------------------------


class ChangeKind(enum.StrEnum):
    FEATURE = "feature"
    TEST = "test"
    INFRA = "infra"  # the infra error appeared, went away or changed kind
    CELL = "cell"  # the flavour has a cell in only one of the runs


@dataclass(frozen=True)
class Change:
    """One difference for one flavour. before/after: a feature value, a test outcome, an infra error
    kind or a cell id; None where the run has none (for a feature: null, unknown)."""

    flavour: str
    kind: ChangeKind
    key: str
    before: FeatureValue
    after: FeatureValue

    def __str__(self) -> str:
        if self.kind is ChangeKind.CELL:
            side = "baseline" if self.after is None else "candidate"
            return f"{self.flavour}: only in the {side} ({self.before or self.after})"
        if self.kind is ChangeKind.FEATURE:
            before, after = _json(self.before), _json(self.after)
        else:
            before, after = _or_none(self.before), _or_none(self.after)
        return f"{self.flavour}: {self.kind} {self.key}: {before} -> {after}"


def _or_none(value: FeatureValue) -> str:
    return "(none)" if value is None else str(value)


def diff(baseline: Results, candidate: Results) -> list[Change]:
    """What changed between two runs, cells matched by flavour (the kernels differ).

    A flavour must have one cell per run. When either cell of a pair has an infra error, only that is
    compared: a VM that did not come up has measured nothing.
    """
    before, after = _by_flavour(baseline, "baseline"), _by_flavour(candidate, "candidate")
    changes: list[Change] = []
    for flavour in _unique([*before, *after]):
        old, new = before.get(flavour), after.get(flavour)
        if old is None or new is None:
            old_id, new_id = (None if old is None else old.id), (None if new is None else new.id)
            changes.append(Change(flavour, ChangeKind.CELL, "cell", old_id, new_id))
        else:
            changes.extend(_cell_changes(flavour, old, new))
    return changes


def _by_flavour(results: Results, label: str) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for cell in results.cells:
        if cell.flavour in cells:
            raise ReportError(
                f"{label}: cells {cells[cell.flavour].id} and {cell.id} are both flavour {cell.flavour!r};"
                " diff matches cells by flavour"
            )
        cells[cell.flavour] = cell
    return cells


def _cell_changes(flavour: str, old: Cell, new: Cell) -> Iterator[Change]:
    old_infra = old.infra_error.kind.value if old.infra_error else None
    new_infra = new.infra_error.kind.value if new.infra_error else None
    if old_infra != new_infra:
        yield Change(flavour, ChangeKind.INFRA, "boot", old_infra, new_infra)
    if old.infra_error is not None or new.infra_error is not None:
        return
    for key in _unique([*old.features, *new.features]):
        if old.features.get(key) != new.features.get(key):
            yield Change(flavour, ChangeKind.FEATURE, key, old.features.get(key), new.features.get(key))
    old_tests = {case.key: case.outcome.value for case in old.tests}
    new_tests = {case.key: case.outcome.value for case in new.tests}
    for key in _unique([*old_tests, *new_tests]):
        if old_tests.get(key) != new_tests.get(key):
            yield Change(flavour, ChangeKind.TEST, key, old_tests.get(key), new_tests.get(key))


# --- files ------------------------------------------------------------------------------------------


def write_all(results: Results, directory: Path | str, *, run_dir: Path | str | None = None) -> list[Path]:
    """Write results.json, junit/<cell>.xml, matrix.md and matrix.html into directory (made if need be).

    Console links are relative to run_dir, the directory the console_log paths are relative to
    (default: directory itself). Returns the paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "results.json"
    target.write_text(dump(results), encoding="utf-8")
    return [target, *_write_renderings(results, directory, run_dir)]


def _write_renderings(results: Results, directory: Path, run_dir: Path | str | None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    link_base = "" if run_dir is None else Path(os.path.relpath(run_dir, directory)).as_posix()
    link_base = "" if link_base == "." else link_base
    junit = directory / "junit"
    junit.mkdir(exist_ok=True)
    written: list[Path] = []
    for cell in results.cells:
        path = junit / f"{cell.id}.xml"
        path.write_text(junit_xml(cell), encoding="utf-8")
        written.append(path)
    for name, text in (
        ("matrix.md", markdown(results, link_base=link_base)),
        ("matrix.html", html(results, link_base=link_base)),
    ):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# --- command line -----------------------------------------------------------------------------------

# Exit codes of the command line: exit_code() of the run (0, 1, 2) when rendering, 0 for --diff,
# and 3 for an unusable file or a usage error (argparse's own 2 would read as an infra error).
EXIT_UNUSABLE = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNUSABLE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="python3 -m compat.report",
        description="Render a results JSON again (results.json, junit/, matrix.md, matrix.html), or show "
        "what changed between two runs. Exit code: 0 all pass, 1 a failure, 2 an infra error and no "
        "failure, 3 an unusable file; --diff exits 0.",
    )
    parser.add_argument("results", nargs="?", type=Path, metavar="RESULTS.json")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write (default: next to RESULTS.json)"
    )
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("BASELINE.json", "CANDIDATE.json"))
    args = parser.parse_args(argv)
    if (args.results is None) == (args.diff is None):
        parser.error("give either RESULTS.json or --diff BASELINE.json CANDIDATE.json")
    if args.diff is not None and args.out is not None:
        parser.error("--out renders RESULTS.json; it does not go with --diff")
    try:
        if args.diff is not None:
            changes = diff(load(args.diff[0]), load(args.diff[1]))
            print("\n".join(str(change) for change in changes) if changes else "no changes")
            return 0
        return _render(args.results, args.out)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        print(f"error: cannot write: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE


def _render(source: Path, out: Path | None) -> int:
    results = load(source)
    directory = out if out is not None else source.parent
    target = directory / "results.json"
    # Rendering again never rewrites the source of truth: it may hold keys this version does not know.
    if target.exists() and target.samefile(source):
        paths = _write_renderings(results, directory, source.parent)
    else:
        paths = write_all(results, directory, run_dir=source.parent)
    print(summary_table(results), end="")
    print(f"wrote {len(paths)} files under {directory}")
    return exit_code(results)


if __name__ == "__main__":
    raise SystemExit(main())
