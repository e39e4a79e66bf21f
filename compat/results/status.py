"""Statuses, and the one verdict: what every matrix entry, cell and run comes to, and its exit code.

The rule, for `python3 -m compat.results`, the compat suite and `compat qualify` alike: a failure (a
failing test, a feature not as expected, a fault or crash of the kernel under test, a regression)
anywhere gives EXIT_FAIL, even beside an infra error elsewhere, so that a known failure is never hidden
by a VM that did not come up; an infra error with no failure gives EXIT_UNDECIDED; anything else
EXIT_PASS. A kernel crash is the kernel's failure, never an infra error.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from compat.results.model import FAILING, Cell, KernelFault, Outcome, Results, present
from compat.results.text import plural, short_json, unique

EXIT_PASS = 0  # every cell passed; `compat qualify`: qualified
EXIT_FAIL = 1  # a failure or a regression, whatever else happened
EXIT_UNDECIDED = 2  # an infra error and no failure: could not decide
EXIT_UNUSABLE = 3  # an unusable file or a usage error (argparse's own 2 would read as undecided)


class Status(enum.StrEnum):
    """What a matrix entry, or a whole cell, shows."""

    PASS = "pass"
    FAIL = "fail"
    EXPECTED_ABSENT = "expected-absent"
    INFRA_ERROR = "infra-error"
    CRASH = "kernel-crash"  # the kernel under test went down: the cell ended there
    NOT_RUN = "not-run"  # nothing here ran: the kernel had crashed
    SKIPPED = "skipped"

    @property
    def word(self) -> str:
        return _WORDS[self]


_WORDS = {
    Status.PASS: "pass",
    Status.FAIL: "FAIL",
    Status.EXPECTED_ABSENT: "absent (expected)",
    Status.INFRA_ERROR: "INFRA",
    Status.CRASH: "CRASH",
    Status.NOT_RUN: "not run",
    Status.SKIPPED: "skipped",
}
FAILED_STATUSES = frozenset({Status.FAIL, Status.CRASH})


def reduce(statuses: Iterable[Status]) -> int:
    """The exit code of a set of statuses: FAIL and CRASH win over INFRA_ERROR, which wins over the rest."""
    seen = set(statuses)
    if seen & FAILED_STATUSES:
        return EXIT_FAIL
    if Status.INFRA_ERROR in seen:
        return EXIT_UNDECIDED
    return EXIT_PASS


def exit_code(results: Results) -> int:
    """The run's exit code: reduce() over its cells."""
    return reduce(cell_status(cell) for cell in results.cells)


def feature_status(cell: Cell, key: str) -> Status:
    """Measured against expected: equal and present → PASS, equal and absent → EXPECTED_ABSENT."""
    if key not in cell.expected:
        return Status.SKIPPED
    measured, wanted = cell.features.get(key), cell.expected[key]
    if measured != wanted:
        return Status.FAIL
    return Status.PASS if present(measured) else Status.EXPECTED_ABSENT


def group_status(cell: Cell, group: str) -> Status:
    """A test group: any failed or error → FAIL; all expected-absent → EXPECTED_ABSENT; none ran → SKIPPED,
    or NOT_RUN when the kernel's crash stopped them."""
    outcomes = [
        case.outcome for case in cell.tests if case.group == group and case.outcome is not Outcome.SKIPPED
    ]
    ran = [outcome for outcome in outcomes if outcome is not Outcome.NOT_RUN]
    if not ran:
        return Status.NOT_RUN if outcomes else Status.SKIPPED
    if any(outcome in FAILING for outcome in ran):
        return Status.FAIL
    if all(outcome is Outcome.EXPECTED_ABSENT for outcome in ran):
        return Status.EXPECTED_ABSENT
    return Status.PASS


def entry(cell: Cell, column: str) -> Status:
    """A matrix entry: column is a feature key or a test group (feature keys win)."""
    if cell.infra_error is not None:
        return Status.INFRA_ERROR
    if column in cell.expected:
        crash = cell.crash
        if crash is not None and crash.during == "boot":
            return Status.CRASH  # nothing was measured
        return feature_status(cell, column)
    return group_status(cell, column)


def cell_status(cell: Cell) -> Status:
    """INFRA_ERROR; CRASH (the kernel went down); FAIL (a kernel fault, a test failed or errored, or a
    feature is not as expected); or PASS."""
    if cell.infra_error is not None:
        return Status.INFRA_ERROR
    if cell.crash is not None:
        return Status.CRASH
    if cell.faults or any(case.outcome in FAILING for case in cell.tests):
        return Status.FAIL
    if any(feature_status(cell, key) is Status.FAIL for key in cell.expected):
        return Status.FAIL
    return Status.PASS


def feature_columns(results: Results) -> list[str]:
    """Feature keys in the order they first appear."""
    return unique(key for cell in results.cells for key in cell.expected)


def group_columns(results: Results) -> list[str]:
    """Test groups in the order they first appear."""
    return unique(case.group for cell in results.cells for case in cell.tests)


def columns(results: Results) -> list[str]:
    return feature_columns(results) + group_columns(results)


@dataclass(frozen=True)
class Problem:
    """Why a cell is not PASS: one failing feature or test, or the infra error."""

    cell: str
    item: str  # a feature key, "group::test", or "boot"
    what: str  # "feature", "failed", "error", "kernel panic", "kernel WARNING" …, or the infra error's kind
    message: str
    console_tail: str = ""  # the infra error's console tail, or the kernel fault's excerpt
    fault: bool = False  # a fault of the kernel under test: the message says what, where, how often

    @property
    def heading(self) -> str:
        """What the problem is, before its message: `6.1-v2 infra error (ssh failure)`, `6.1-v2 kernel
        fault`, `6.1-v2 overlay::test_x failed`."""
        if self.fault:
            return f"{self.cell} kernel fault"
        if self.item == "boot":
            return f"{self.cell} infra error ({self.what})"
        return f"{self.cell} {self.item} {self.what}"


def problems(cell: Cell) -> list[Problem]:
    if cell.infra_error is not None:
        infra = cell.infra_error
        # The harness's message may start with the kind (str() of its BootError): say it once.
        message = infra.message.removeprefix(f"{infra.kind.value}: ") or infra.message
        return [Problem(cell.id, "boot", infra.kind.value, message, infra.console_tail)]
    found = [_fault_problem(cell, fault) for fault in cell.faults]
    said = {fault.during for fault in cell.faults}
    found += [
        Problem(cell.id, key, "feature", mismatch(cell, key))
        for key in cell.expected
        if feature_status(cell, key) is Status.FAIL
    ]
    found += [
        Problem(cell.id, case.key, case.outcome.value, case.message or "(no message)")
        for case in cell.tests
        if case.outcome in FAILING and case.key not in said
    ]
    return found


def _fault_problem(cell: Cell, fault: KernelFault) -> Problem:
    """`kernel panic during overlay::test_x: <title> (reproduced 2/2; 12 tests not run)`."""
    notes = [fault.confirmation]
    if fault.crashed:
        stopped = sum(case.outcome is Outcome.NOT_RUN for case in cell.tests)
        notes += [f"{plural(stopped, 'test')} not run"] if stopped else []
    item = fault.during or "between tests"
    return Problem(
        cell.id, item, fault.what, f"{fault.headline} ({'; '.join(notes)})", fault.excerpt, fault=True
    )


def retry_note(cell: Cell) -> str:
    """`retried after ssh failure: ...`, or "" when the first boot was the only one."""
    if cell.retried is None:
        return ""
    return (
        f"booted twice: the first boot had an infra error ({cell.retried.kind.value}: {cell.retried.message})"
    )


def mismatch(cell: Cell, key: str) -> str:
    """`expected X, got Y` for a feature."""
    return f"expected {short_json(cell.expected[key])}, got {short_json(cell.features.get(key))}"


def summary_line(results: Results) -> str:
    """`N cells: X pass, Y fail, Z kernel crashes, W infra errors`."""
    statuses = [cell_status(cell) for cell in results.cells]
    return (
        f"{plural(len(statuses), 'cell')}: {statuses.count(Status.PASS)} pass, "
        f"{statuses.count(Status.FAIL)} fail, {plural(statuses.count(Status.CRASH), 'kernel crash', 'kernel crashes')}, "
        f"{plural(statuses.count(Status.INFRA_ERROR), 'infra error')}"
    )
