"""The kernel under test as the harness watches it: its console read for the whole life of each VM.

A fault of the kernel under test (a panic, an oops, a WARNING, a hang) is the kernel's failure, never an
infrastructure error: KernelCrashed is what a boot raises when the kernel itself ended it, and
KernelWatch is how the harness learns, before and after every test, what the kernel printed meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from compat import faults
from compat.errors import CompatError
from compat.faults import Fault
from compat.results.model import KernelFault

# A report that has started but not ended (a WARNING before its "end trace" line) gets this long to
# close; a kernel that has gone down gets this long to finish printing its panic.
SETTLE_SECONDS = 2.0
CRASH_SECONDS = 10.0
QUIET_SECONDS = 1.0  # a console this long quiet has finished the report it was printing


class KernelCrashed(CompatError):
    """The kernel under test went down, or hung, while booting: the kernel's failure, with its faults."""

    def __init__(self, found: Sequence[Fault]) -> None:
        ending = faults.crash(found) or found[-1]
        super().__init__(f"kernel crashed at boot: {ending.summary}")
        self.faults = list(found)


class KernelWatch:
    """One VM's console, from its first byte: each fault once, in order, as its report completes."""

    def __init__(self, console: Path, alive: Callable[[], bool]) -> None:
        self.watcher = faults.Watcher(console)
        self.alive = alive
        self.seen: list[Fault] = []

    def take(self, settle: float = SETTLE_SECONDS) -> list[Fault]:
        """The faults completed since the last call; an open report is waited for up to settle seconds."""
        found = self.watcher.poll()
        end = time.monotonic() + settle
        grew, size = time.monotonic(), self.watcher.offset
        while self.watcher.pending and time.monotonic() < end:
            time.sleep(0.1)
            found += self.watcher.poll()
            if self.watcher.offset != size:
                grew, size = time.monotonic(), self.watcher.offset
        # Still open, but the console has been quiet for a while (or the VM is gone): the report is
        # whole. A hung task's report has no end line, and the kernel may print nothing after it.
        quiet = settle > 0 and time.monotonic() - grew >= QUIET_SECONDS
        if self.watcher.pending and (quiet or not self.alive()):
            found += self.watcher.finish()
        self.seen += found
        return found

    def after_failure(self, responds: Callable[[], bool] = lambda: False) -> list[Fault]:
        """After a test failed: unless the guest still responds, wait for the kernel's panic (or for QEMU
        to go), up to CRASH_SECONDS."""
        found = self.take()
        if self.crashed is None and self.alive() and responds():
            return found  # an ordinary failure
        end = time.monotonic() + CRASH_SECONDS
        while self.crashed is None and self.alive() and time.monotonic() < end:
            time.sleep(0.2)
            found += self.take(settle=0.0)
        if not self.alive():
            found += self.finish()
        return found

    def finish(self) -> list[Fault]:
        """The VM is gone: whatever the console still holds."""
        found = self.watcher.finish()
        self.seen += found
        return found

    @property
    def crashed(self) -> Fault | None:
        return faults.crash(self.seen)


def ended_boot(found: Sequence[Fault]) -> list[Fault]:
    """The faults of a boot that timed out, with the last stall or oops (a task the boot waits for
    hung or was killed) marked as what ended it: then the timeout is the kernel's failure, not the host's.
    Nothing is marked when there is neither."""
    from dataclasses import replace

    if faults.crash(found) is not None:
        return list(found)
    ending = [index for index, fault in enumerate(found) if fault.type.is_stall or fault.type.kills_the_task]
    return [
        replace(fault, crashed=True) if ending and index == ending[-1] else fault
        for index, fault in enumerate(found)
    ]


def record(fault: Fault, during: str) -> KernelFault:
    """A console fault as the results keep it: where it happened; once, until a second boot confirms it."""
    return KernelFault(
        type=fault.type, title=fault.title, function=fault.function, excerpt=fault.excerpt,
        crashed=fault.crashed, during=during,
    )  # fmt: skip
