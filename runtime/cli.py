"""The `runtime` command. Imports stay inside the verbs: start-up time matters."""

from __future__ import annotations

import os
import sys

from runtime.errors import Failure, die

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog="runtime", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="say what was decided and why")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    _add_check(verbs)
    _add_run(verbs)
    verbs.add_parser("ps", help="list running containers").set_defaults(func=cmd_ps)
    verbs.add_parser("gc", help="remove what runtimes killed with SIGKILL left behind").set_defaults(
        func=cmd_gc
    )
    return parser


def _add_check(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pathlib import Path

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


def _add_run(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # Only for `runtime --help`: main() hands `run` to runcli before argparse is imported.
    verbs.add_parser("run", help="run a command in a container (runtime run --help)", add_help=False)


def cmd_check(args: argparse.Namespace) -> int:
    from runtime.features import report

    if args.config is not None:
        from runtime.features import fromconfig, kconfig

        try:
            features = fromconfig.features(kconfig.load(args.config))
        except kconfig.ConfigError as exc:
            die(str(exc), exc.hint)
    else:
        from runtime.features.host import detect

        features = detect()
    checks = report.build_checks(features)
    if args.json:
        import json

        print(json.dumps(report.to_json(features, checks), indent=2))
    else:
        print(report.render_text(features, checks, verbose=args.verbose))
    return 0 if report.can_run_containers(checks) else 1


def cmd_ps(args: argparse.Namespace) -> int:
    import time

    from runtime import state

    print(f"{'NAME':<20} {'ID':<12} {'PID':>7}  {'UP':>8}  COMMAND")
    for found in state.load_all():
        if found.runtime_alive():
            up = f"{time.time() - found.created:.0f}s"
            print(f"{found.name:<20} {found.container_id:<12} {found.init_pid:>7}  {up:>8}  {found.command}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from runtime import gc

    removed = gc.collect()
    for line in removed:
        print(line)
    print(f"runtime gc: removed {len(removed)} leftover container(s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    verbose = words[:1] in (["-v"], ["--verbose"])
    if words[verbose : verbose + 1] == ["run"]:
        from runtime import output, runcli

        output.verbose = verbose
        code = runcli.main(words[verbose + 1 :])
        if argv is None:  # the command itself, not a caller in Python: skip the interpreter's teardown
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    return _main_with_argparse(words)


def _main_with_argparse(words: list[str]) -> int:
    import logging

    args = build_parser().parse_args(words)
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
