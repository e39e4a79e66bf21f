"""Real kernel faults on request, for the qualification self-check: `--inject-fault KIND@TEST`.

When TEST (a test function's name) starts in a cell, the guest's kernel is made to fault for real:
`panic` through the kernel's own sysrq crash, the others through kcompat_fault.ko, a test module built
against the kernel's linux-headers package (compat/images/faultmod.py) that warns, BUGs, oopses, hangs
a task or locks up a CPU when told. What the console then shows is what the classifier must name.
"""

from __future__ import annotations

import enum
import re
import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compat.errors import CompatError
from compat.faults import Fault, FaultType

if TYPE_CHECKING:
    from compat.harness.guest import Guest

WAIT_SECONDS = 60.0  # a hang or a lockup is reported by a watchdog, seconds after it starts
MODULE_IN_GUEST = "/tmp/kcompat_fault.ko"
CONTROL = "/proc/kcompat_fault"


class InjectionError(CompatError):
    """An --inject-fault that names no known fault, or a fault that could not be set off."""


class Kind(enum.Enum):
    PANIC = "panic"
    WARN = "warn"
    HANG = "hang"
    LOCKUP = "lockup"
    BUG = "bug"
    OOPS = "oops"

    @property
    def expected(self) -> FaultType:
        """The fault type the classifier must give."""
        return _EXPECTED[self]


_EXPECTED = {
    Kind.PANIC: FaultType.PANIC,
    Kind.WARN: FaultType.WARNING,
    Kind.HANG: FaultType.HUNG_TASK,
    Kind.LOCKUP: FaultType.SOFT_LOCKUP,
    Kind.BUG: FaultType.BUG,
    Kind.OOPS: FaultType.OOPS,
}

# Shell run in the guest, after the module is loaded where one is needed. The crashing and the slow ones
# are left running in the background, so that the test itself is what the fault interrupts.
_DETACHED = "setsid sh -c {script} </dev/null >/dev/null 2>&1 &"
_SCRIPTS = {
    Kind.PANIC: _DETACHED.format(script=shlex.quote("sleep 1; echo c > /proc/sysrq-trigger")),
    Kind.WARN: f"echo warn > {CONTROL}",
    Kind.HANG: "echo 2 > /proc/sys/kernel/hung_task_timeout_secs && "
    + _DETACHED.format(script=shlex.quote(f"echo hang 12 > {CONTROL}")),
    Kind.LOCKUP: "echo 1 > /proc/sys/kernel/watchdog_thresh && "
    + _DETACHED.format(script=shlex.quote(f"echo lockup 8 > {CONTROL}")),
    Kind.BUG: _DETACHED.format(script=shlex.quote(f"sleep 1; echo bug > {CONTROL}")),
    Kind.OOPS: _DETACHED.format(script=shlex.quote(f"sleep 1; echo oops > {CONTROL}")),
}


@dataclass(frozen=True)
class Injection:
    kind: Kind
    test: str  # a test function's name: its every parametrisation is a target

    def targets(self, test_key: str) -> bool:
        """test_key is "group::name[params]" or "name[params]"."""
        name = test_key.rpartition("::")[2].partition("[")[0]
        return name == self.test

    def trigger(self, guest: Guest) -> None:
        if self.kind is not Kind.PANIC:
            _load_module(guest)
        done = guest.run(_SCRIPTS[self.kind])
        if done.rc != 0:
            raise InjectionError(f"--inject-fault {self.kind.value}: the guest said {done.stderr.strip()!r}")

    def wait(self, guest: Guest) -> list[Fault]:
        """The faults the console shows within WAIT_SECONDS: a watchdog reports late."""
        end = time.monotonic() + WAIT_SECONDS
        found: list[Fault] = []
        while not found and time.monotonic() < end:
            time.sleep(0.5)
            found = guest.watch.take() if guest.watch.alive() else guest.watch.finish()
        return found


def parse(text: str) -> Injection | None:
    """KIND@TEST, e.g. panic@test_pids_limit_stops_forks; "" is none."""
    if not text:
        return None
    kind, sep, test = text.partition("@")
    known = ", ".join(member.value for member in Kind)
    if not sep or not test.startswith("test_"):
        raise InjectionError(f"--inject-fault {text!r}: expected KIND@TEST_NAME", f"KIND is one of {known}")
    try:
        injection = Injection(Kind(kind), test)
    except ValueError:
        raise InjectionError(
            f"--inject-fault {text!r}: no fault {kind!r}", f"KIND is one of {known}"
        ) from None
    if test not in suite_tests():
        raise InjectionError(
            f"--inject-fault {text!r}: the compat suite has no test {test!r}",
            "name a function of compat/tests",
        )
    return injection


def suite_tests() -> set[str]:
    """The compat suite's test functions, by name: a fault set off at a test that never runs is none."""
    from compat.paths import REPO

    found: set[str] = set()
    for path in (REPO / "compat" / "tests").glob("test_*.py"):
        found.update(re.findall(r"^def (test_\w+)\(", path.read_text(), re.MULTILINE))
    return found


def _load_module(guest: Guest) -> None:
    """kcompat_fault.ko, built for this kernel, copied in and loaded once per VM."""
    if "kcompat_fault" in guest.prepared:
        return
    from compat.images import faultmod

    module = faultmod.build(guest.cell.kernel)
    with guest.host.backend.client.open_sftp() as sftp:
        sftp.put(str(module), MODULE_IN_GUEST)
    done = guest.run(f"insmod {MODULE_IN_GUEST}")
    if done.rc != 0:
        raise InjectionError(
            f"insmod kcompat_fault.ko: {done.stderr.strip()}", "is the module built for this kernel?"
        )
    guest.prepared.add("kcompat_fault")
