"""The results JSON (docs/compat-results.md): reading it with every field checked, and writing it.

SCHEMA and SUITE_VERSION live here and nowhere else: the harness stamps SUITE_VERSION on every run
it writes, and `compat qualify` keys its cached baselines by it.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from compat.results.model import (
    Case,
    Cell,
    FeatureValue,
    InfraError,
    InfraKind,
    Outcome,
    ReportError,
    Results,
)
from compat.results.text import short_json

SCHEMA = 1
SUITE_VERSION = "0.1.0"
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
    top = _object(data, "the document")
    schema = _get(top, "schema", "")
    if type(schema) is not int or schema != SCHEMA:
        raise ReportError(f"schema: {short_json(schema)} is not supported; this reads schema {SCHEMA}")
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
        "tests": [case_document(case) for case in cell.tests],
    }


def case_document(case: Case) -> dict[str, object]:
    return {
        "name": case.name,
        "group": case.group,
        "outcome": case.outcome.value,
        "duration_seconds": case.duration_seconds,
        "message": case.message,
    }


def _cells(value: object) -> tuple[Cell, ...]:
    cells: list[Cell] = []
    seen: set[str] = set()
    for index, item in enumerate(_list(value, "cells")):
        where = f"cells[{index}]"
        cell = parse_cell(item, where)
        if cell.id in seen:
            raise ReportError(f"{where}.id: {cell.id!r} is used by an earlier cell")
        seen.add(cell.id)
        cells.append(cell)
    return tuple(cells)


def parse_cell(value: object, where: str) -> Cell:
    """Check one cell document; a ReportError names the field and, when it has one, the cell's id."""
    obj = _object(value, where)
    label = obj.get("id")
    try:
        return _cell(obj, where)
    except ReportError as exc:
        raise ReportError(f"{exc} (cell {label})" if isinstance(label, str) else str(exc)) from None


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
        _same_keys(features, expected, where)
    tests = tuple(
        _case(item, f"{where}.tests[{i}]")
        for i, item in enumerate(_list(_get(obj, "tests", where), f"{where}.tests"))
    )
    _check_tests(tests, expected, where)
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
        raise ReportError(f'{path}["{name}"]: expected a string, a boolean or null, got {short_json(value)}')
    return values


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(obj: Mapping[str, object], key: str, where: str) -> object:
    if key not in obj:
        raise ReportError(f"{_path(where, key)}: missing")
    return obj[key]


def _object(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise ReportError(f"{where}: expected an object, got {short_json(value)}")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise ReportError(f"{where}: expected a list, got {short_json(value)}")
    return value


def _string(obj: Mapping[str, object], key: str, where: str, *, empty_ok: bool = False) -> str:
    value = _get(obj, key, where)
    if not isinstance(value, str):
        raise ReportError(f"{_path(where, key)}: expected a string, got {short_json(value)}")
    if not value and not empty_ok:
        raise ReportError(f"{_path(where, key)}: empty")
    return value


def _seconds(obj: Mapping[str, object], key: str, where: str) -> float:
    value = _get(obj, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ReportError(f"{_path(where, key)}: expected seconds (a number >= 0), got {short_json(value)}")
    return float(value)


def _choice(kind: type[_E], obj: Mapping[str, object], key: str, where: str) -> _E:
    value = _string(obj, key, where)
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(repr(member.value) for member in kind)
        raise ReportError(f"{_path(where, key)}: {value!r} is not one of {known}") from None
