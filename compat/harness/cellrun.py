"""One cell on one worker: its VM booted (an infra error retried once), its kernel watched before and
after every test, a fault confirmed on a fresh boot, and a crash that ends the cell.

The pytest plumbing (compat/tests/conftest.py) calls in at four points: start() when the cell's first
test needs it, before() and after() around every test, and finish() when the session ends. What the
cell came to is in record (compat/harness/results.py), rewritten whenever it changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from compat.faults import Fault
from compat.harness import results
from compat.harness.guest import Guest
from compat.harness.inject import Injection
from compat.harness.kernel import KernelCrashed, record
from compat.harness.qemu import BootError
from compat.results.model import KernelFault

Boot = Callable[[], Guest]  # a fresh VM of this cell; raises BootError or KernelCrashed
Rerun = Callable[[], None]  # the test again, on the current guest


class CellRun:
    def __init__(self, boot: Boot, record_: results.CellRecord, reports: Path, workdir: Path) -> None:
        self.boot = boot
        self.record = record_
        self.reports = reports
        self.workdir = workdir
        self.guest: Guest | None = None
        self.ended: str = ""  # why no more tests run, when the cell ended without a crash of its own
        self.injection: Injection | None = None
        self.boots = 0

    @property
    def crash(self) -> KernelFault | None:
        """What ended the cell: the record's first crash."""
        return self.record.crash

    # --- the boot ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """Boot; an infra error gets one more boot (the report says so), a kernel crash a confirming one.
        A BootError left after the retry is raised: every test of the cell is then an error."""
        try:
            self._booted(self._boot_retrying_infra())
        except KernelCrashed as crashed:
            self._boot_crashed(crashed)
        finally:
            self._write()

    def _boot_retrying_infra(self) -> Guest:
        try:
            return self._attempt()
        except BootError as first:
            self.record.retried(first)
        try:
            return self._attempt()
        except BootError as second:
            self.record.infra_error(second)
            raise

    def _attempt(self) -> Guest:
        """One boot of the cell; its console is kept whatever happens (consoles/<cell>[.n].log)."""
        self.boots += 1
        try:
            return self.boot()
        except (BootError, KernelCrashed):
            self._keep_console()
            raise

    def _stop(self, guest: Guest) -> None:
        guest.vm.stop()
        self._keep_console()

    def _keep_console(self) -> None:
        self.record.keep_console(self.workdir / "console.log", self.reports, self.boots)

    def _booted(self, guest: Guest) -> None:
        self.guest = guest
        self.record.booted(guest)
        for fault in guest.watch.seen:  # a WARNING while booting, say: the kernel's, not a test's
            self.record.add_fault(record(fault, "boot"))

    def _boot_crashed(self, crashed: KernelCrashed) -> None:
        """The kernel went down while booting: boot once more to see whether it does again."""
        again: list[Fault] = []
        try:
            self._stop(self._attempt())
        except KernelCrashed as second:
            again = second.faults
        except BootError as failure:
            self.ended = f"the confirming boot failed: {failure.message.splitlines()[0]}"
        tries = 1 if self.ended else 2
        for fault in crashed.faults:
            self._add(fault, "boot", again, tries)

    # --- around each test ----------------------------------------------------------------------------

    def not_run_because(self) -> str:
        """Why the next test cannot run ("" when it can)."""
        if self.crash is not None:
            return f"not run: {self.crash.headline}"
        return f"not run: {self.ended}" if self.ended else ""

    def before(self) -> None:
        """What the kernel printed since the last test (or since it booted) is nobody's test's."""
        guest = self._current()
        for fault in guest.watch.take(settle=0.0):
            self.record.add_fault(record(fault, ""))
        self._write()

    def inject(self, test: str) -> None:
        if self.injection is not None and self.injection.targets(test):
            self.injection.trigger(self._current())

    def after(self, test: str, failed: bool, rerun: Rerun) -> list[KernelFault]:
        """The faults of the kernel during test (each confirmed, or not, by a fresh boot and the test
        again); a crash among them ends the cell."""
        guest = self._current()
        found = guest.watch.after_failure(guest.responds) if failed else guest.watch.take()
        if self.injection is not None and self.injection.targets(test) and not found:
            found = self.injection.wait(guest)
        if not found:
            return []
        found = _first_of_each_title(found)  # khungtaskd repeats itself
        again, tries = self._confirm(test, rerun)
        added = [self._add(fault, test, again, tries) for fault in found]
        added += [
            self._add(fault, test, [fault], tries, seen=1)  # only the confirming run crashed
            for fault in again
            if fault.crashed and not any(other.title == fault.title for other in found)
        ]
        if self.crash is not None:
            self._stop(guest)
        self._write()
        return added

    def _confirm(self, test: str, rerun: Rerun) -> tuple[list[Fault], int]:
        """A fresh boot of the cell and the test once more: the faults it showed, and how many tries."""
        guest = self._current()
        self._stop(guest)
        try:
            fresh = self._attempt()
        except KernelCrashed as crashed:  # the kernel went down booting again: a fault of its own
            for fault in crashed.faults:
                self.record.add_fault(record(fault, "boot"))
            self.ended = f"the kernel crashed at boot while confirming a kernel fault in {test}"
            return [], 1
        except BootError as failure:
            self.ended = (
                f"the boot to confirm a kernel fault in {test} failed: {failure.message.splitlines()[0]}"
            )
            return [], 1
        guest.replace_with(fresh)
        try:
            self.inject(test)
            rerun()
        # The test's own verdict does not matter here, only what the kernel printed while it ran: any
        # exception a test can raise (an assertion, a lost SSH connection) is expected.
        except Exception:  # noqa: BLE001
            found = guest.watch.after_failure(guest.responds)
        else:
            found = guest.watch.take()
            if not found and self.injection is not None and self.injection.targets(test):
                found = self.injection.wait(guest)
        if guest.watch.crashed is not None:
            self._stop(guest)
        return found, 2

    def _add(self, fault: Fault, during: str, again: list[Fault], tries: int, seen: int = 0) -> KernelFault:
        """The fault, seen on the first run and, when again has its title, on the confirming one."""
        seen = seen or 1 + any(other.title == fault.title for other in again)
        kept = dataclasses.replace(record(fault, during), seen=seen, tries=tries)
        self.record.add_fault(kept)
        return kept

    # --- the end -----------------------------------------------------------------------------------------

    def finish(self) -> None:
        """After the cell's last test: what the kernel printed since, then the VM goes."""
        if self.guest is not None:
            last = self.guest.watch.take() if self.crash is None else []
            self._stop(self.guest)
            last += self.guest.watch.finish()
            for fault in last if self.crash is None else []:
                self.record.add_fault(record(fault, ""))
        self._write()

    def _current(self) -> Guest:
        assert self.guest is not None, "the cell has no VM"
        return self.guest

    def _write(self) -> None:
        self.record.write(self.reports)


def _first_of_each_title(found: list[Fault]) -> list[Fault]:
    first: dict[str, Fault] = {}
    for fault in found:
        first.setdefault(fault.title, fault)
    return list(first.values())
