"""The table printed at the end of a run: a line per cell, then the summary line."""

from __future__ import annotations

from compat.results.model import Results
from compat.results.status import cell_status, problems, retry_note, summary_line
from compat.results.text import boot_text, printable

EXCERPT_LINES = 4  # the report's first lines: what and where; the whole excerpt is in the other formats


def render(results: Results) -> str:
    """One line per cell: id, release, boot seconds, status, what fails; then the summary line."""
    rows = [("cell", "release", "boot", "status", "failing")]
    for cell in results.cells:
        status = cell_status(cell)
        found = problems(cell)
        if cell.infra_error is not None:
            failing = f"{found[0].what}: {found[0].message}"
        elif cell.crash is not None:
            failing = next(
                problem.message
                for problem in found
                if problem.fault and problem.item == (cell.crash.during or "between tests")
            )
        else:
            failing = ", ".join(problem.item for problem in found)
        rows.append(
            (cell.id, cell.release, boot_text(cell), status.word, " ".join(printable(failing).split()))
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join([*(value.ljust(width) for value, width in zip(row, widths, strict=False)), row[4]]).rstrip()
        for row in rows
    ]
    notes = [f"{cell.id}: {retry_note(cell)}" for cell in results.cells if cell.retried is not None]
    return "\n".join([*lines, *notes, *_faults(results), summary_line(results)]) + "\n"


def _faults(results: Results) -> list[str]:
    """Each kernel fault under the table: its headline, then the head of its console excerpt."""
    lines = []
    for cell in results.cells:
        for problem in problems(cell):
            if problem.fault:
                excerpt = printable(problem.console_tail).splitlines()[:EXCERPT_LINES]
                said = cell.crash is not None and problem.item == (cell.crash.during or "between tests")
                head = f"{cell.id}: console excerpt ({cell.console_log or 'no console kept'})"
                lines += [
                    head if said else f"{cell.id}: {printable(problem.message)}",
                    *(f"    {line}" for line in excerpt),
                ]
    return lines
