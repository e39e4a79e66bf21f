"""CPU lists as the kernel and Docker's --cpuset-cpus spell them: "1", "0-1", "0,2-3".

Kept as ranges, never expanded: "0-4000000000" is a valid list, just not one a host can honour.
Part of the start path: plain functions, nothing imported.
"""

from __future__ import annotations

Ranges = list[tuple[int, int]]  # (first, last), both included


def parse(text: str) -> Ranges | None:
    """The ranges of a CPU list, sorted and merged; None where text is not one. Docker's rule: CPU
    numbers and FIRST-LAST ranges (FIRST <= LAST), separated by commas, with nothing else."""
    ranges: Ranges = []
    for part in text.split(","):
        first, dash, last = part.partition("-")
        if not _is_number(first) or (dash and not _is_number(last)):
            return None
        low, high = int(first), int(last) if dash else int(first)
        if low > high:
            return None
        ranges.append((low, high))
    return _merged(ranges)


def spell(ranges: Ranges) -> str:
    """The kernel's spelling of a list: "0-1,3"."""
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in ranges)


def first_missing(wanted: Ranges, offered: Ranges) -> int | None:
    """The lowest CPU of wanted that offered lacks, or None when offered has them all."""
    for low, high in wanted:
        cpu = low
        while cpu <= high:
            cover = next((last for first, last in offered if first <= cpu <= last), None)
            if cover is None:
                return cpu
            cpu = cover + 1
    return None


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # isdigit alone takes "²" and other Unicode digits


def _merged(ranges: Ranges) -> Ranges:
    merged: Ranges = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
        else:
            merged.append((low, high))
    return merged
