"""Soak: many containers through the installed `runtime`, with random SIGKILLs, then `runtime gc`
and a count of everything left behind.

    python3 -m benchmarks.soak [--containers 1000] [--parallel 4] [--seed 1] [--runtime CMD]

Each run is a mix of: the root (a busybox --rootfs, or an imported image with --storage overlay or
copy), the user namespace (the default or --userns host), limits (none, --memory 32m, --pids-limit 20,
--cpus 0.5, or all three) and a kill: none, the workload (SIGKILL from the host), the container's init
(PID 1 of its PID namespace), or the runtime itself, 0-60 ms after it was spawned or once its
workload runs. A run that was not killed must exit with its command's code. Every so often, and at
the end, `runtime gc` runs; then the leaks are counted against a snapshot taken before: mounts,
cgroups, state, store directories, processes, namespaces and disk. Each should be 0.

Exit 0 when every leak count is 0 and no run failed unexpectedly, 1 otherwise, 2 on bad input, 130
when interrupted (the soak still stops its containers, runs gc and reports). Needs root and a static
busybox (Debian's busybox-static). Run it from the checkout's root.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.soak import leaks, report, sweep
from benchmarks.soak.plan import make_plans
from benchmarks.soak.prepare import SoakError, prepare, remove_image, runtime_command
from benchmarks.soak.procfs import ns_inode
from benchmarks.soak.report import say
from benchmarks.soak.runner import Runner, Setup

DEFAULT_STORE = "/var/lib/runtime"
PROG = "python3 -m benchmarks.soak"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=1000, help="how many containers (default 1000)")
    parser.add_argument("--parallel", type=int, default=4, help="how many at a time (default 4)")
    parser.add_argument(
        "--seed", type=int, default=1, help="the random seed of the mix and the kills (default 1)"
    )
    parser.add_argument(
        "--runtime", default="runtime", metavar="CMD",
        help="the command to test (default: `runtime` on PATH; from a checkout: 'python3 -m runtime')",
    )  # fmt: skip
    parser.add_argument(
        "--gc-every", type=int, default=100, metavar="N",
        help="also run `runtime gc` after every N runs, beside the running containers (0: only at the end)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-leaks",
        action="store_true",
        help="leave what the runtime leaked in place (default: removed after the count)",
    )
    args = parser.parse_args(argv)
    if args.containers < 1 or args.parallel < 1 or args.gc_every < 0:
        parser.error("--containers and --parallel must be at least 1, --gc-every at least 0")
    return args


def soak(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise SoakError("the soak runs containers and needs root: run it with sudo")
    runtime = runtime_command(args.runtime)
    store = os.environ.get("RUNTIME_STORE") or DEFAULT_STORE
    marker = f"soak-{os.getpid()}-"
    say(f"soak: {args.containers} containers, {args.parallel} at a time, seed {args.seed}")
    say(f"  runtime: {shlex.join(runtime)}; store {store}; container names {marker}N")
    directory = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
    setup: Setup | None = None
    try:
        setup = prepare(directory, runtime, marker, store)
        return run_and_count(setup, args)
    finally:
        if setup is not None:
            remove_image(setup, say)
        shutil.rmtree(directory, ignore_errors=True)


def run_and_count(setup: Setup, args: argparse.Namespace) -> int:
    host_pidns = ns_inode("self", "pid")
    runner = Runner(setup, args.gc_every)
    plans = make_plans(args.containers, random.Random(args.seed))
    before = leaks.snapshot(setup.store)
    step = max(1, args.containers // 10)
    started = time.monotonic()

    def progress(done: int) -> None:
        if done % step == 0:
            say(f"  {done}/{args.containers} runs, {time.monotonic() - started:.1f} s")

    interrupted = False
    try:
        runner.run_all(plans, args.parallel, progress)
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: the running containers were stopped")
    failed = report.report_runs(runner.results, len(plans), time.monotonic() - started, say)
    say(f"gc: {runner.gc_runs} run(s) beside the containers removed {runner.gc_removed} leftover(s)")
    sweep.collect(runner.gc, before, setup.marker, say)
    leaks.settle(before, setup.marker, host_pidns)
    left = leaks.measure(before, setup.marker, setup.store, host_pidns)
    report.report_leaks(left, say)
    for line in report.leaked_runs(left, plans, setup.marker):
        say(f"  still running: {line}")
    if not args.keep_leaks:
        sweep.clean_up_leaks(left, say)
    verdict = report.Verdict(tuple(left.kinds()), failed, interrupted)
    say(verdict.line(args.seed))
    return verdict.exit_code()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)

    def terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    try:
        return soak(args)
    except SoakError as error:
        print(f"soak: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
