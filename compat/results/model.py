"""The run as data: frozen records for the run, its cells, their tests and infra errors.

Nothing here reads or writes a file; compat/results/schema.py turns these into the results JSON and back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from compat.errors import CompatError
from compat.faults import FaultType

FeatureValue: TypeAlias = str | bool | None


class ReportError(CompatError):
    """A results document that cannot be used; the message names the field."""


class Outcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"
    EXPECTED_ABSENT = "expected-absent"  # the test confirmed that the feature is absent, as the cell expects
    NOT_RUN = "not-run"  # the kernel had crashed before this test's turn


FAILING = frozenset({Outcome.FAILED, Outcome.ERROR})


class InfraKind(enum.StrEnum):
    """What went wrong in the harness or the host. A fault of the kernel under test is never one of
    these: it is a KernelFault, the kernel's failure."""

    BOOT_TIMEOUT = "boot timeout"
    SSH = "ssh failure"
    QEMU_EXITED = "qemu exited"
    GUEST_INIT = "guest init failed"


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
class KernelFault:
    """A fault of the kernel under test, from its console: where it happened and how often it came back.

    during is "boot", a test's key ("group::name"), or "" (between tests, or after the last). seen of
    tries: the boots of this cell that showed the same title (the first one, and the confirmation)."""

    type: FaultType
    title: str
    function: str | None
    excerpt: str
    crashed: bool
    during: str
    seen: int = 1
    tries: int = 1

    @property
    def where(self) -> str:
        if self.during == "boot":
            return "at boot"
        return f"during {self.during}" if self.during else "between tests"

    @property
    def what(self) -> str:
        """ "kernel panic" for a crash (oops=panic makes every oops one), "kernel hang" for a stall that
        ended the cell, else the fault's type."""
        if not self.crashed:
            return f"kernel {self.type.value}"
        return "kernel hang" if self.type.is_stall else "kernel panic"

    @property
    def headline(self) -> str:
        """`kernel panic during overlay::test_x: kernel panic: sysrq triggered crash`."""
        return f"{self.what} {self.where}: {self.title}"

    @property
    def confirmation(self) -> str:
        if self.tries <= 1:
            return "seen once, not confirmed"
        if self.seen == self.tries:
            return f"reproduced {self.seen}/{self.tries}"
        return f"seen {self.seen}/{self.tries}, flaky"


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
    faults: tuple[KernelFault, ...] = ()
    retried: InfraError | None = None  # the first boot's infra error, when a second boot was tried

    @property
    def crash(self) -> KernelFault | None:
        """The fault that brought the kernel down and ended the cell, if one did."""
        return next((fault for fault in self.faults if fault.crashed), None)


@dataclass(frozen=True)
class Results:
    """One run. The schema number is not kept: schema.load() accepts only SCHEMA and dump() writes it."""

    suite_version: str
    started: str
    duration_seconds: float
    accel: str
    cells: tuple[Cell, ...]


def present(value: FeatureValue) -> bool:
    """A feature value that says "there": true or a layout word; false, null, "" and "none" do not.

    The one definition of absent: the status, `compat qualify`'s lost and gained, and the compat tests use it."""
    return value is not None and value is not False and value not in ("", "none")
