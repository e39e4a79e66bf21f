"""The `runtime` command. Imports stay inside the verbs: start-up time matters."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from runtime.errors import Failure, die


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runtime", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="say more, and log what is done")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    check = verbs.add_parser(
        "check",
        help="what this kernel can do for containers",
        description="Detect the kernel features of this host (or of a kernel config file) and say whether "
        "containers can run. Exit 0 when they can for the calling user, 1 when they cannot.",
    )
    check.add_argument("--json", action="store_true", help="print the versioned JSON document instead")
    check.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="judge a kernel that is not running: a /boot/config-* file, a gzipped config, or a kernel .deb",
    )
    check.set_defaults(func=cmd_check)
    return parser


def cmd_check(args: argparse.Namespace) -> int:
    from runtime.features import detect, report

    if args.config is not None:
        from runtime.features import fromconfig, kconfig

        try:
            features = fromconfig.features(kconfig.load(args.config))
        except kconfig.ConfigError as exc:
            die(str(exc), exc.hint)
    else:
        features = detect()
    checks = report.build_checks(features)
    if args.json:
        import json

        print(json.dumps(report.to_json(features, checks), indent=2))
    else:
        print(report.render_text(features, checks, verbose=args.verbose))
    return 0 if report.can_run_containers(checks) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="runtime: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.func(args)
    except Failure as failure:
        print(f"runtime: error: {failure}", file=sys.stderr)
        return failure.code
    return code
