"""What changed between two runs: cells paired (by flavour, or by id), then every infra error, kernel
fault (by title), feature and test outcome compared. `python3 -m compat.results --diff` prints it; `compat qualify` sorts and
explains the same changes."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from compat.results.model import Cell, FeatureValue, Outcome, ReportError, Results
from compat.results.text import short_json, unique

PairBy = Literal["flavour", "id"]


class ChangeKind(enum.StrEnum):
    FEATURE = "feature"
    TEST = "test"
    INFRA = "infra"  # the infra error appeared, went away or changed kind
    FAULT = "fault"  # a kernel fault (by its title) in one run only
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
            before, after = short_json(self.before), short_json(self.after)
        else:
            before, after = _or_none(self.before), _or_none(self.after)
        return f"{self.flavour}: {self.kind} {self.key}: {before} -> {after}"


@dataclass(frozen=True)
class Pair:
    """The cells of one flavour (or one cell id) in the two runs; None where a run has none."""

    key: str
    baseline: Cell | None
    candidate: Cell | None


def _or_none(value: FeatureValue) -> str:
    return "(none)" if value is None else str(value)


def diff(baseline: Results, candidate: Results) -> list[Change]:
    """What changed between two runs, cells matched by flavour (the kernels differ).

    A flavour must have one cell per run. When either cell of a pair has an infra error, only that is
    compared: a VM that did not come up has measured nothing.
    """
    changes: list[Change] = []
    for pair in pairs(baseline, candidate):
        old, new = pair.baseline, pair.candidate
        if old is None or new is None:
            old_id, new_id = (None if old is None else old.id), (None if new is None else new.id)
            changes.append(Change(pair.key, ChangeKind.CELL, "cell", old_id, new_id))
        else:
            changes.extend(cell_changes(pair.key, old, new))
    return changes


def pairs(baseline: Results, candidate: Results, by: PairBy = "flavour") -> list[Pair]:
    """The cells of both runs paired by flavour or by cell id, in the order they first appear."""
    before, after = _index(baseline, "baseline", by), _index(candidate, "candidate", by)
    return [Pair(key, before.get(key), after.get(key)) for key in unique([*before, *after])]


def _index(results: Results, label: str, by: PairBy) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for cell in results.cells:
        key: str = getattr(cell, by)
        if key in cells:
            raise ReportError(
                f"{label}: cells {cells[key].id} and {cell.id} are both {by} {key!r}; diff matches cells by {by}"
            )
        cells[key] = cell
    return cells


def cell_changes(flavour: str, old: Cell, new: Cell) -> Iterator[Change]:
    """The changes between two cells: their infra errors, and when neither has one, the kernel faults
    one has and the other has not (before/after: the fault's headline), every feature (in either cell)
    and every test outcome (in either cell; None where a cell has no such test). A cell whose kernel
    crashed at boot measured nothing, and a test that a crash stopped did not run: neither is compared."""
    old_infra = old.infra_error.kind.value if old.infra_error else None
    new_infra = new.infra_error.kind.value if new.infra_error else None
    if old_infra != new_infra:
        yield Change(flavour, ChangeKind.INFRA, "boot", old_infra, new_infra)
    if old.infra_error is not None or new.infra_error is not None:
        return
    old_faults = {fault.title: fault.headline for fault in old.faults}
    new_faults = {fault.title: fault.headline for fault in new.faults}
    for title in unique([*new_faults, *old_faults]):
        if (title in old_faults) != (title in new_faults):
            yield Change(flavour, ChangeKind.FAULT, title, old_faults.get(title), new_faults.get(title))
    if _crashed_at_boot(old) or _crashed_at_boot(new):
        return
    for key in unique([*old.features, *new.features]):
        if old.features.get(key) != new.features.get(key):
            yield Change(flavour, ChangeKind.FEATURE, key, old.features.get(key), new.features.get(key))
    old_tests = {case.key: case.outcome.value for case in old.tests}
    new_tests = {case.key: case.outcome.value for case in new.tests}
    for key in unique([*old_tests, *new_tests]):
        before, after = old_tests.get(key), new_tests.get(key)
        if before != after and Outcome.NOT_RUN.value not in (before, after):
            yield Change(flavour, ChangeKind.TEST, key, before, after)


def _crashed_at_boot(cell: Cell) -> bool:
    return cell.crash is not None and cell.crash.during == "boot"
