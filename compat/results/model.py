"""The run as data: frozen records for the run, its cells, their tests and infra errors.

Nothing here reads or writes a file; compat/results/schema.py turns these into the results JSON and back.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from compat.errors import CompatError

FeatureValue: TypeAlias = str | bool | None


class ReportError(CompatError):
    """A results document that cannot be used; the message names the field."""


class Outcome(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"
    ERROR = "error"
    EXPECTED_ABSENT = "expected-absent"  # the test confirmed that the feature is absent, as the cell expects


FAILING = frozenset({Outcome.FAILED, Outcome.ERROR})


class InfraKind(enum.StrEnum):
    BOOT_TIMEOUT = "boot timeout"
    PANIC = "kernel panic or oops"
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
