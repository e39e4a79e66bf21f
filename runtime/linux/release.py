"""The running kernel's (major, minor), for the start path's version checks (seccomp's minKernel, the
lockless cgroup self-move). Plain str work: runtime.features.kernel's KernelVersion is a dataclass."""

from __future__ import annotations

import os


def kernel_version(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of a release such as "6.1.0-18-cloud-amd64" (default: the running kernel's);
    a part without leading digits counts as 0."""
    text = os.uname().release if release is None else release
    numbers = [0, 0]
    for position, part in enumerate(text.split(".", 2)[:2]):
        digits = ""
        for character in part:
            if not character.isdigit():
                break
            digits += character
        numbers[position] = int(digits or 0)
    return numbers[0], numbers[1]
