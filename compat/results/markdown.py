"""The matrix as Markdown (matrix.md): a row per cell, a column per feature and test group, then
every failure and infra error."""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

from compat.results.model import Results
from compat.results.status import Problem, cell_status, columns, entry, problems, retry_note, summary_line
from compat.results.text import boot_text, console_href, printable, run_line


def render(results: Results, *, link_base: str = "") -> str:
    """The matrix as Markdown; console links are `link_base` joined with each cell's console_log."""
    header = ["cell", "release", "flavour", "boot", "status", *columns(results)]
    lines = [
        "# Kernel qualification matrix",
        "",
        _text(run_line(results)),
        "",
        f"**{summary_line(results)}**",
        "",
        _row([_text(name) for name in header]),
        _row(["---"] * len(header)),
    ]
    for cell in results.cells:
        row = [
            f"[{_text(cell.id)}]({console_href(cell, link_base)})" if cell.console_log else _text(cell.id),
            _text(cell.release),
            _text(cell.flavour),
            boot_text(cell),
            f"**{cell_status(cell).word}**",
            *(entry(cell, column).word for column in columns(results)),
        ]
        lines.append(_row(row))
    lines += ["", "## Failures, kernel faults and infra errors", ""]
    found = [problem for cell in results.cells for problem in problems(cell)]
    lines += [line for problem in found for line in _problem(problem)] or ["None."]
    retried = [f"- **{_text(cell.id)}** {_text(retry_note(cell))}" for cell in results.cells if cell.retried]
    lines += ["", "## Retried boots", "", *retried] if retried else []
    return "\n".join(lines) + "\n"


def _problem(problem: Problem) -> list[str]:
    head = f"- **{_text(problem.cell)}** {_code(problem.item)} {_text(problem.what)}"
    if problem.fault:
        head = f"- **{_text(problem.cell)}** kernel fault"
    elif problem.item == "boot":
        head = f"- **{_text(problem.cell)}** infra error ({_text(problem.what)})"
    message = printable(problem.message)
    multiline = "\n" in message.strip()
    lines = [f"{head}:", *_block(message)] if multiline else [f"{head}: {_text(message)}"]
    if problem.console_tail:
        label = "console excerpt" if problem.fault else "console tail"
        lines += ["", f"  {label}:", *_block(printable(problem.console_tail))]
    return lines


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _text(text: str) -> str:
    """Inline Markdown text on one line: HTML-escaped, and the punctuation that could make a link, code,
    emphasis or a table cell backslash-escaped (not `_`: within words it is plain in GitHub's Markdown)."""
    text = escape(printable(text), quote=False)
    return re.sub(r"([\\`*\[\]|])", r"\\\1", " ".join(text.split()))


def _code(text: str) -> str:
    text = " ".join(printable(text).split())
    ticks = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _block(text: str) -> list[str]:
    """A fenced block indented under a list item; the fence is longer than any backtick run inside."""
    fence = "`" * max(3, max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return [f"  {fence}", *(f"  {line}" for line in text.rstrip("\n").splitlines()), f"  {fence}"]
