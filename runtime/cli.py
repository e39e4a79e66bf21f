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
    run = verbs.add_parser(
        "run",
        help="run a command in a container",
        description="Run COMMAND in new namespaces and cgroups, adapted to what this host's kernel offers. "
        "Exit code: the command's; 128+N if killed by signal N; 125 if the runtime failed; 126 if the "
        "command cannot be executed; 127 if it is not found.",
    )
    run.add_argument("--rootfs", required=True, metavar="DIR", help="the container's root filesystem")
    run.add_argument("-m", "--memory", help="memory limit, e.g. 64m")
    run.add_argument("--cpus", help="CPU limit in CPUs, e.g. 0.5")
    run.add_argument("--pids-limit", help="most processes at once")
    run.add_argument("--hostname", help="host name (default: the container id)")
    run.add_argument(
        "-e", "--env", action="append", default=[], metavar="KEY=VAL", help="set an environment variable"
    )
    run.add_argument("-w", "--workdir", default="/", metavar="DIR", help="working directory in the container")
    run.add_argument(
        "-u", "--user", default="0:0", metavar="UID[:GID]", help="user (ids, or names in the image)"
    )
    run.add_argument(
        "--network", choices=["none", "host"], default="none", help="none: only lo, up (default)"
    )
    run.add_argument("--userns", choices=["auto", "host", "private"], default="auto", help="user namespace")
    run.add_argument("--read-only", action="store_true", help="mount the root filesystem read-only")
    run.add_argument("--name", help="a name for `runtime ps` (default: the container id)")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")
    run.set_defaults(func=cmd_run)


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


def cmd_run(args: argparse.Namespace) -> int:
    import os

    from runtime import container, spec
    from runtime.cgroups import Limits

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise spec.bad("no command to run", "runtime run --rootfs DIR COMMAND [ARG...]")
    rootfs = spec.check_rootfs(args.rootfs)
    container_id = os.urandom(6).hex()
    limits = Limits(
        memory=spec.parse_memory(args.memory) if args.memory else None,
        cpus=spec.parse_cpus(args.cpus) if args.cpus else None,
        pids=spec.parse_pids(args.pids_limit) if args.pids_limit else None,
    )
    request = spec.ContainerSpec(
        container_id=container_id,
        name=spec.check_name(args.name) if args.name else container_id,
        rootfs=rootfs,
        argv=tuple(command),
        env=spec.parse_env(args.env),
        workdir=args.workdir if args.workdir.startswith("/") else f"/{args.workdir}",
        user=spec.parse_user(args.user, rootfs),
        hostname=spec.check_hostname(args.hostname) if args.hostname else container_id,
        limits=limits,
        network=spec.Network(args.network),
        userns=spec.UsernsMode(args.userns),
        read_only=args.read_only,
    )
    return container.run(request)


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
