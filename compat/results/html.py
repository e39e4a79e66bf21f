"""The matrix as a standalone HTML page (matrix.html), every text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from compat.results.model import Cell, Results
from compat.results.status import (
    Problem,
    Status,
    cell_status,
    columns,
    entry,
    problems,
    retry_note,
    summary_line,
)
from compat.results.text import boot_text, console_href, printable, run_line, short_json

_CSS = """\
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; white-space: nowrap; }
thead th { background: #f0f0f0; }
td.pass { background: #d9f2d9; }
td.fail { background: #f7c6c6; font-weight: bold; }
td.expected-absent { background: #ececec; color: #555; }
td.infra-error { background: #ffdca8; font-weight: bold; }
td.kernel-crash { background: #d62d2d; color: #fff; font-weight: bold; }
td.not-run { background: #f3e3e3; color: #7a4a4a; }
td.skipped { color: #999; }
td.cell-status { font-weight: bold; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; }
"""


def render(results: Results, *, link_base: str = "") -> str:
    """The matrix as a standalone HTML page, every text escaped."""
    header = ["cell", "release", "flavour", "boot", "status", *columns(results)]
    rows = [_row(cell, columns(results), link_base) for cell in results.cells]
    found = [problem for cell in results.cells for problem in problems(cell)]
    items = "\n".join(_problem(problem) for problem in found)
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
        f"<p>{_h(run_line(results))}</p>",
        f'<p class="summary"><strong>{_h(summary_line(results))}</strong></p>',
        "<table>",
        "<thead><tr>" + "".join(f'<th scope="col">{_h(name)}</th>' for name in header) + "</tr></thead>",
        "<tbody>",
        *rows,
        "</tbody>",
        "</table>",
        "<h2>Failures, kernel faults and infra errors</h2>",
        f"<ul>\n{items}\n</ul>" if found else "<p>None.</p>",
        *_retries(results),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _row(cell: Cell, names: Sequence[str], link_base: str) -> str:
    status = cell_status(cell)
    name = (
        f'<a href="{_h(console_href(cell, link_base))}">{_h(cell.id)}</a>'
        if cell.console_log
        else _h(cell.id)
    )
    head = (
        f'<th scope="row">{name}</th>'
        f'<td title="{_h(cell.package)}">{_h(cell.release)}</td><td>{_h(cell.flavour)}</td>'
        f"<td>{_h(boot_text(cell))}</td>"
        f'<td class="{status.value} cell-status">{_h(status.word)}</td>'
    )
    entries = []
    for column in names:
        shown = entry(cell, column)
        title = ""
        if column in cell.expected and shown not in (Status.INFRA_ERROR, Status.CRASH):
            expected, got = short_json(cell.expected[column]), short_json(cell.features.get(column))
            title = f' title="expected {_h(expected)}, got {_h(got)}"'
        entries.append(f'<td class="{shown.value}"{title}>{_h(shown.word)}</td>')
    return f"<tr>{head}{''.join(entries)}</tr>"


def _retries(results: Results) -> list[str]:
    notes = [
        f"<li><strong>{_h(cell.id)}</strong> {_h(retry_note(cell))}</li>"
        for cell in results.cells
        if cell.retried
    ]
    return ["<h2>Retried boots</h2>", "<ul>", *notes, "</ul>"] if notes else []


def _problem(problem: Problem) -> str:
    if problem.fault:
        head = f"<strong>{_h(problem.cell)}</strong> kernel fault"
    elif problem.item == "boot":
        head = f"<strong>{_h(problem.cell)}</strong> infra error ({_h(problem.what)})"
    else:
        head = f"<strong>{_h(problem.cell)}</strong> <code>{_h(problem.item)}</code> {_h(problem.what)}"
    message = printable(problem.message)
    body = f"<pre>{_h(message)}</pre>" if "\n" in message.strip() else f" {_h(message)}"
    if problem.console_tail:
        label = "console excerpt" if problem.fault else "console tail"
        body += f"\n<p>{label}:</p>\n<pre>{_h(problem.console_tail)}</pre>"
    return f"<li>{head}:{body}</li>"


def _h(text: str) -> str:
    return escape(printable(text), quote=True)
