"""The printed summary: the mix of runs, their exit codes, the unexpected failures, the leaks, the
runs whose containers still run; and the verdict with the exit code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from benchmarks.soak.leaks import Leaks
from benchmarks.soak.plan import Kill, Plan
from benchmarks.soak.runner import Result

SHOWN = 5  # examples per leak kind and unexpected failures
EXIT_INTERRUPTED = 130

Say = Callable[[str], None]


def say(text: str) -> None:
    print(text, flush=True)


def report_runs(results: Sequence[Result], planned: int, seconds: float, say: Say) -> int:
    """The mix, the exit codes and the unexpected failures of the runs; returns how many failed."""
    stopped = sum(1 for result in results if result.stopped)
    counted = sorted(
        (result for result in results if not result.stopped), key=lambda result: result.plan.index
    )
    if stopped:
        say(f"stopped by the interruption, not counted: {stopped} run(s)")
    say(
        f"runs: {len(counted)} of {planned} in {seconds:.1f} s ({len(counted) / max(seconds, 1e-9):.1f} per second)"
    )
    _report_mix(counted, say)
    return _report_failures(counted, say)


def _report_mix(results: list[Result], say: Say) -> None:
    for label in ("source", "userns", "limits"):
        counts = Counter(str(getattr(result.plan, label)) for result in results)
        say(f"  {label + ':':<9}" + ", ".join(f"{name} {counts[name]}" for name in sorted(counts)))
    kills = Counter(result.plan.kill for result in results)
    landed = Counter(result.plan.kill for result in results if result.landed)
    say(
        "  killed:  "
        + ", ".join(
            f"{kind} {kills[kind]}" + (f" ({landed[kind]} sent)" if kind is not Kill.NONE else "")
            for kind in Kill
            if kills[kind]
        )
    )
    say("  exit codes, not killed: " + _codes(result for result in results if result.plan.kill is Kill.NONE))
    say(
        "  exit codes, workload or init killed: "
        + _codes(result for result in results if result.plan.kill in (Kill.WORKLOAD, Kill.INIT))
    )
    slow = sorted(result.seconds for result in results if result.plan.kill is Kill.NONE)
    if slow:
        say(
            f"  run time, not killed: median {slow[len(slow) // 2] * 1000:.0f} ms, max {slow[-1] * 1000:.0f} ms"
        )


def _codes(results: Iterable[Result]) -> str:
    codes = Counter(result.code for result in results)
    return ", ".join(f"{code}: {n}" for code, n in sorted(codes.items(), key=str))


def _report_failures(results: list[Result], say: Say) -> int:
    failed = [result for result in results if result.problem]
    say(f"unexpected failures: {len(failed)}")
    for result in failed[:SHOWN]:
        say(f"  {result.plan.describe()}: {result.problem}")
        for line in result.stderr.strip().splitlines()[:3]:
            say(f"      {line}")
    _more(len(failed), "  ", say)
    return len(failed)


def _more(total: int, indent: str, say: Say) -> None:
    if total > SHOWN:
        say(f"{indent}... and {total - SHOWN} more")


def report_leaks(leaks: Leaks, say: Say) -> None:
    say("leaks (expected 0 of each):")
    for leak in leaks.found:
        unit = " bytes" if leak.kind == "disk" else ""
        say(f"  {leak.kind + ':':<18}{leak.count:>10}{unit}")
        for item in leak.items[:SHOWN]:
            say(f"      {item}")
        _more(len(leak.items), "      ", say)
    for note in leaks.notes:
        say(f"  {note}")


def leaked_runs(leaks: Leaks, plans: list[Plan], marker: str) -> list[str]:
    """The runs whose containers are still running: an init's cmdline is its runtime's, with the name."""
    found = []
    for proc in leaks.procs:
        if proc.is_init():
            name = next((word for word in proc.cmdline.split() if word.startswith(marker)), "")
            index = name.removeprefix(marker)
            if index.isdigit() and int(index) < len(plans):
                found.append(f"{name}: {plans[int(index)].describe()}")
    return sorted(found)


@dataclass(frozen=True)
class Verdict:
    leak_kinds: tuple[str, ...]  # the kinds with a leak
    failed: int  # unexpected failures
    interrupted: bool

    def passed(self) -> bool:
        return not self.leak_kinds and not self.failed

    def line(self, seed: int) -> str:
        named = f" ({', '.join(self.leak_kinds)})" if self.leak_kinds else ""
        return (
            f"result: {'PASS' if self.passed() else 'FAIL'}: {len(self.leak_kinds)} kind(s) of leak{named}, "
            f"{self.failed} unexpected failure(s), seed {seed}"
        )

    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 0 if self.passed() else 1
