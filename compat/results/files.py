"""The reports directory: results.json, junit/<cell>.xml, matrix.md and matrix.html."""

from __future__ import annotations

import os
from pathlib import Path

from compat.results import html, junit, markdown
from compat.results.model import Results
from compat.results.schema import dump


def write_all(results: Results, directory: Path | str, *, run_dir: Path | str | None = None) -> list[Path]:
    """Write results.json, junit/<cell>.xml, matrix.md and matrix.html into directory (made if need be).

    Console links are relative to run_dir, the directory the console_log paths are relative to
    (default: directory itself). Returns the paths written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "results.json"
    target.write_text(dump(results), encoding="utf-8")
    return [target, *write_renderings(results, directory, run_dir)]


def write_renderings(results: Results, directory: Path, run_dir: Path | str | None) -> list[Path]:
    """Everything but results.json: what rendering a run again rewrites."""
    directory.mkdir(parents=True, exist_ok=True)
    link_base = "" if run_dir is None else Path(os.path.relpath(run_dir, directory)).as_posix()
    link_base = "" if link_base == "." else link_base
    junit_dir = directory / "junit"
    junit_dir.mkdir(exist_ok=True)
    written: list[Path] = []
    for cell in results.cells:
        path = junit_dir / f"{cell.id}.xml"
        path.write_text(junit.render(cell), encoding="utf-8")
        written.append(path)
    for name, text in (
        ("matrix.md", markdown.render(results, link_base=link_base)),
        ("matrix.html", html.render(results, link_base=link_base)),
    ):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
