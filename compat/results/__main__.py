"""`python3 -m compat.results`: render a results JSON again, or show what changed between two runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from compat.results import terminal
from compat.results.diff import diff
from compat.results.files import write_all, write_renderings
from compat.results.model import ReportError
from compat.results.schema import load
from compat.results.status import EXIT_PASS, EXIT_UNUSABLE, exit_code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNUSABLE, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Exit: the run's exit_code() when rendering, EXIT_PASS for --diff, EXIT_UNUSABLE for an unusable
    file or a usage error."""
    parser = _Parser(
        prog="python3 -m compat.results",
        description="Render a results JSON again (results.json, junit/, matrix.md, matrix.html), or show "
        "what changed between two runs. Exit code: 0 all pass, 1 a failure (even beside an infra error), "
        "2 an infra error and no failure, 3 an unusable file; --diff exits 0.",
    )
    parser.add_argument("results", nargs="?", type=Path, metavar="RESULTS.json")
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write (default: next to RESULTS.json)"
    )
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("BASELINE.json", "CANDIDATE.json"))
    args = parser.parse_args(argv)
    if (args.results is None) == (args.diff is None):
        parser.error("give either RESULTS.json or --diff BASELINE.json CANDIDATE.json")
    if args.diff is not None and args.out is not None:
        parser.error("--out renders RESULTS.json; it does not go with --diff")
    try:
        if args.diff is not None:
            changes = diff(load(args.diff[0]), load(args.diff[1]))
            print("\n".join(str(change) for change in changes) if changes else "no changes")
            return EXIT_PASS
        return _render(args.results, args.out)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        print(f"error: cannot write: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE


def _render(source: Path, out: Path | None) -> int:
    results = load(source)
    directory = out if out is not None else source.parent
    target = directory / "results.json"
    # Rendering again never rewrites the source of truth: it may hold keys this version does not know.
    if target.exists() and target.samefile(source):
        paths = write_renderings(results, directory, source.parent)
    else:
        paths = write_all(results, directory, run_dir=source.parent)
    print(terminal.render(results), end="")
    print(f"wrote {len(paths)} files under {directory}")
    return exit_code(results)


if __name__ == "__main__":
    raise SystemExit(main())
