"""The `compat` command: `compat qualify`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from compat import qualify
from compat.errors import CompatError
from compat.harness import inject
from compat.proc import CommandError
from compat.results.status import EXIT_FAIL, EXIT_PASS, EXIT_UNDECIDED, EXIT_UNUSABLE


class _Parser(argparse.ArgumentParser):
    """argparse's usage errors exit 2, which `compat qualify` defines as "could not decide"."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_UNUSABLE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="compat", description="kernel qualification for containers")
    parser.add_argument("--version", action="version", version=f"compat {_version()}")
    verbs = parser.add_subparsers(dest="verb", required=True)
    check = verbs.add_parser(
        "qualify",
        help="a candidate kernel against a baseline, with a verdict",
        description="Exit 0: qualified; 1: regressions; 2: could not decide (infrastructure errors); "
        "3: bad input.",
    )
    check.add_argument(
        "--kernel", help="the candidate: a catalogue id (6.12), a linux-image .deb or a directory"
    )
    check.add_argument("--baseline", default="6.1", help="a catalogue id (default 6.1)")
    check.add_argument(
        "--flavours", default=",".join(qualify.DEFAULT_FLAVOURS), help="host flavours to compare in"
    )
    check.add_argument("--report", default="reports/qualify", type=Path, help="where the report goes")
    check.add_argument("--self-check", action="store_true", help="inject known regressions into the baseline")
    check.add_argument("--smp", type=int, default=0, help="vCPUs per VM (default: the suite's, 2)")
    check.add_argument(
        "--inject-fault",
        default="",
        metavar="KIND@TEST",
        help="set off a real kernel fault in the candidate's run when TEST starts "
        "(panic, warn, hang, lockup, bug, oops): what a faulting kernel's report looks like",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="compat: %(message)s")
    try:
        if args.self_check:
            detected, lines = qualify.self_check(args.baseline, args.report.absolute())
            print("\n".join(lines))
            return EXIT_PASS if detected == len(qualify.INJECTIONS) else EXIT_FAIL
        if not args.kernel:
            print("compat qualify: --kernel is required (or --self-check)", file=sys.stderr)
            return EXIT_UNUSABLE
        return qualify_kernel(args)
    except CommandError as failure:  # a tool of the harness or the host failed: no verdict
        print(f"compat: error: {failure}", file=sys.stderr)
        return EXIT_UNDECIDED
    except CompatError as failure:
        print(f"compat: error: {failure}", file=sys.stderr)
        return EXIT_UNUSABLE


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("kcompat")
    except metadata.PackageNotFoundError:
        return "(unknown: not installed)"


def qualify_kernel(args: argparse.Namespace) -> int:
    flavours = tuple(flavour for flavour in args.flavours.split(",") if flavour)
    out = args.report.absolute()
    if args.smp < 0:
        raise CompatError("--smp: a VM needs at least one vCPU")
    inject.parse(args.inject_fault)  # a bad KIND@TEST is a usage error before anything boots
    # Both kernels resolved and their configs read before anything boots: a bad id is a usage error.
    candidate_config = qualify.config_of(args.kernel)
    baseline_config = qualify.config_of(args.baseline)
    base = qualify.baseline_run(args.baseline, flavours, out / "baseline", smp=args.smp)
    candidate = qualify.run_suite(
        args.kernel, flavours, out / "candidate", inject=args.inject_fault, smp=args.smp
    )
    findings = qualify.compare(base, candidate, candidate_config)
    findings += qualify.compare_configs(baseline_config, candidate_config)
    code = qualify.verdict(findings, base, candidate)
    qualify.write(out, code, args.kernel, args.baseline, findings, {"candidate": candidate, "baseline": base})
    print((out / "qualify.md").read_text().split("## The candidate matrix", 1)[0])
    print(f"report: {out / 'qualify.md'}")
    return code
