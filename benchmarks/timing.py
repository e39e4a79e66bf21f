"""What the benchmarks share: timing a callable repeatedly, and one line of figures."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(action: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return samples


def line(label: str, samples: list[float], megabytes: float | None = None) -> str:
    """label, median, min and max in milliseconds; a rate where a size is given."""
    ms = sorted(s * 1000 for s in samples)
    median = statistics.median(ms)
    rate = f"   {megabytes / (median / 1000):6.0f} MB/s" if megabytes else ""
    return f"{label:<36} median {median:7.1f} ms   min {ms[0]:7.1f}   max {ms[-1]:7.1f}{rate}   (n={len(ms)})"
