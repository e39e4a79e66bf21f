"""How long `runtime check` takes on this host. Target: under 0.3 s.

Prints the wall time of whole `runtime check` runs (new interpreter each time), the in-process
detect() time, and an empty interpreter start for scale.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing import line, timed  # noqa: E402 - after the path is set

TARGET_SECONDS = 0.3


def command(*argv: str) -> Callable[[], object]:
    def run() -> object:
        return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, check=False)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    runs = parser.parse_args().runs

    from runtime.features.host import detect

    whole = timed(command("-m", "runtime", "check"), runs)
    print(line("python -I -S -c pass", timed(command("-I", "-S", "-c", "pass"), runs)))
    print(line("runtime check (text)", whole))
    print(line("runtime check --json", timed(command("-m", "runtime", "check", "--json"), runs)))
    print(line("detect() in process", timed(detect, runs)))
    median = statistics.median(whole)
    verdict = "within" if median < TARGET_SECONDS else "OVER"
    print(
        f"runtime check: median {median * 1000:.0f} ms, {verdict} the {TARGET_SECONDS * 1000:.0f} ms target"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
