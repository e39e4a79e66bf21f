"""The results JSON (docs/compat-results.md): reading it with every field checked, and writing it.

SCHEMA and SUITE_VERSION live here and nowhere else: the harness stamps SUITE_VERSION on every run
it writes, and `compat qualify` keys its cached baselines by it.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from compat.faults import FaultType
from compat.results.model import (
    Case,
    Cell,
    FeatureValue,
    InfraError,
    InfraKind,
    KernelFault,
    Outcome,
    ReportError,
    Results,
)
from compat.results.text import short_json
from runtime.jsonfields import NUMBER, Field, Wording

SCHEMA = 2  # 2: kernel faults (faults, the not-run outcome) apart from infra errors; retried boots
SUITE_VERSION = "0.2.0"
# A cell id names its JUnit file, so it stays a plain file name.
_CELL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_E = TypeVar("_E", bound=enum.StrEnum)


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
    """Check a decoded document against SCHEMA. Keys the schema does not name are ignored."""
    top = Field(data, _WORDING, "the document")
    schema = top.member("schema").value
    if type(schema) is not int or schema != SCHEMA:
        raise ReportError(f"schema: {short_json(schema)} is not supported; this reads schema {SCHEMA}")
    started = top.member("started").string(empty_ok=False)
    try:
        datetime.fromisoformat(started)
    except ValueError:
        raise ReportError(f"started: {started!r} is not an ISO 8601 time") from None
    return Results(
        suite_version=top.member("suite_version").string(empty_ok=False),
        started=started,
        duration_seconds=top.member("duration_seconds").number(),
        accel=top.member("accel").string(empty_ok=False),
        cells=_cells(top.member("cells")),
    )


def dump(results: Results) -> str:
    """The results JSON in the documented key order."""
    document = {
        "schema": SCHEMA,
        "suite_version": results.suite_version,
        "started": results.started,
        "duration_seconds": results.duration_seconds,
        "accel": results.accel,
        "cells": [cell_document(cell) for cell in results.cells],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def cell_document(cell: Cell) -> dict[str, object]:
    """One cell as the schema writes it."""
    return {
        "id": cell.id,
        "kernel": cell.kernel,
        "release": cell.release,
        "package": cell.package,
        "flavour": cell.flavour,
        "boot_seconds": cell.boot_seconds,
        "console_log": cell.console_log,
        "infra_error": _infra_document(cell.infra_error),
        "retried": _infra_document(cell.retried),
        "faults": [fault_document(fault) for fault in cell.faults],
        "features": dict(cell.features),
        "expected": dict(cell.expected),
        "tests": [case_document(case) for case in cell.tests],
    }


def _infra_document(infra: InfraError | None) -> dict[str, object] | None:
    if infra is None:
        return None
    return {"kind": infra.kind.value, "message": infra.message, "console_tail": infra.console_tail}


def fault_document(fault: KernelFault) -> dict[str, object]:
    return {
        "type": fault.type.value,
        "title": fault.title,
        "function": fault.function,
        "crashed": fault.crashed,
        "during": fault.during,
        "seen": fault.seen,
        "tries": fault.tries,
        "excerpt": fault.excerpt,
    }


def case_document(case: Case) -> dict[str, object]:
    return {
        "name": case.name,
        "group": case.group,
        "outcome": case.outcome.value,
        "duration_seconds": case.duration_seconds,
        "message": case.message,
    }


def _cells(found: Field) -> tuple[Cell, ...]:
    cells: list[Cell] = []
    seen: set[str] = set()
    for item in found.items():
        cell = _labelled(item)
        if cell.id in seen:
            raise ReportError(f"{item.path}.id: {cell.id!r} is used by an earlier cell")
        seen.add(cell.id)
        cells.append(cell)
    return tuple(cells)


def parse_cell(value: object, where: str) -> Cell:
    """Check one cell document; a ReportError names the field and, when it has one, the cell's id."""
    return _labelled(Field(value, _WORDING, path=where))


def _labelled(found: Field) -> Cell:
    label = found.mapping().get("id")
    try:
        return _cell(found)
    except ReportError as exc:
        raise ReportError(f"{exc} (cell {label})" if isinstance(label, str) else str(exc)) from None


def _cell(obj: Field) -> Cell:
    id_field = obj.member("id")
    cell_id = id_field.string(empty_ok=False)
    if not _CELL_ID.fullmatch(cell_id):
        raise ReportError(f"{id_field.path}: {cell_id!r} cannot name a file (letters, digits and . _ + -)")
    log_field = obj.member("console_log")
    console_log = log_field.string()
    if console_log.startswith("/") or ".." in console_log.split("/"):
        raise ReportError(f"{log_field.path}: {console_log!r} is not relative to the results directory")
    infra_field = obj.member("infra_error")
    infra = None if infra_field.value is None else _infra(infra_field)
    retried_field = obj.member("retried")
    retried = None if retried_field.value is None else _infra(retried_field)
    faults = tuple(_fault(item) for item in obj.member("faults").items())
    boot = obj.member("boot_seconds")
    features = _features(obj.member("features"))
    expected = _features(obj.member("expected"))
    # A cell whose VM never came up has measured nothing: its features may be empty.
    if not (infra is not None and not features):
        _same_keys(features, expected, obj.path)
    tests = tuple(_case(item) for item in obj.member("tests").items())
    _check_tests(tests, expected, obj.path)
    return Cell(
        id=cell_id,
        kernel=obj.member("kernel").string(empty_ok=False),
        # Empty when the VM never came up far enough to tell.
        release=obj.member("release").string(),
        package=obj.member("package").string(),
        flavour=obj.member("flavour").string(empty_ok=False),
        boot_seconds=None if boot.value is None else boot.number(),
        console_log=console_log,
        infra_error=infra,
        features=features,
        expected=expected,
        tests=tests,
        faults=faults,
        retried=retried,
    )


def _fault(obj: Field) -> KernelFault:
    function = obj.member("function")
    seen, tries = obj.member("seen"), obj.member("tries")
    fault = KernelFault(
        type=_choice(FaultType, obj.member("type")),
        title=obj.member("title").string(empty_ok=False),
        function=None if function.value is None else function.string(empty_ok=False),
        excerpt=obj.member("excerpt").string(),
        crashed=obj.member("crashed").boolean(),
        during=obj.member("during").string(),
        seen=_count(seen),
        tries=_count(tries),
    )
    if fault.seen > fault.tries:
        raise ReportError(f"{seen.path}: {fault.seen} is more than tries ({fault.tries})")
    return fault


def _count(found: Field) -> int:
    value = found.integer()
    if value < 1:
        raise ReportError(f"{found.path}: expected a count (an integer >= 1), got {value}")
    return value


def _same_keys(
    features: Mapping[str, FeatureValue], expected: Mapping[str, FeatureValue], where: str
) -> None:
    for key in features:
        if key not in expected:
            raise ReportError(f'{where}.expected["{key}"]: missing (features has it)')
    for key in expected:
        if key not in features:
            raise ReportError(f'{where}.features["{key}"]: missing (null when unknown)')


def _check_tests(tests: tuple[Case, ...], expected: Mapping[str, FeatureValue], where: str) -> None:
    keys: set[str] = set()
    for index, case in enumerate(tests):
        if case.key in keys:
            raise ReportError(f"{where}.tests[{index}]: {case.key} appears twice")
        if case.group in expected:
            raise ReportError(f"{where}.tests[{index}].group: {case.group!r} is also a feature key")
        keys.add(case.key)


def _infra(obj: Field) -> InfraError:
    return InfraError(
        kind=_choice(InfraKind, obj.member("kind")),
        message=obj.member("message").string(empty_ok=False),
        console_tail=obj.member("console_tail").string(),
    )


def _case(obj: Field) -> Case:
    return Case(
        name=obj.member("name").string(empty_ok=False),
        group=obj.member("group").string(empty_ok=False),
        outcome=_choice(Outcome, obj.member("outcome")),
        duration_seconds=obj.member("duration_seconds").number(),
        message=obj.member("message").string() if "message" in obj.mapping() else "",
    )


def _features(found: Field) -> dict[str, FeatureValue]:
    values: dict[str, FeatureValue] = {}
    for name, value in found.mapping().items():
        if not name:
            raise ReportError(f"{found.path}: an empty feature key")
        if value is None or isinstance(value, str | bool):
            values[name] = value
            continue
        raise ReportError(
            f'{found.path}["{name}"]: expected a string, a boolean or null, got {short_json(value)}'
        )
    return values


class _ResultsWording(Wording):
    """`cells[0].tests[1].name: expected a string, got 3`: the field's path, or the document's label."""

    def wrong(self, field: Field, expected: str) -> ReportError:
        said = "seconds (a number >= 0)" if expected == NUMBER else expected
        return ReportError(f"{field.path or field.label}: expected {said}, got {short_json(field.value)}")

    def missing(self, field: Field) -> ReportError:
        return ReportError(f"{field.path or field.label}: missing")

    def empty(self, field: Field) -> ReportError:
        return ReportError(f"{field.path or field.label}: empty")


_WORDING = _ResultsWording()


def _choice(kind: type[_E], found: Field) -> _E:
    value = found.string(empty_ok=False)
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(repr(member.value) for member in kind)
        raise ReportError(f"{found.path}: {value!r} is not one of {known}") from None
