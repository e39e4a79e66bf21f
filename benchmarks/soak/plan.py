"""The seeded mix of runs: each run's root, user namespace, limits, kill and command, and what the run
must give. The same seed gives the same mix."""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass
from enum import StrEnum

STARTUP_KILL_WINDOW = 0.060  # a runtime-startup kill lands 0-60 ms after the spawn
TARGET_KILL_WINDOW = 0.05  # the other kills land 0-50 ms after their target appears
EXIT_KILLED = 128 + signal.SIGKILL
EXIT_RUNTIME = 125


class Source(StrEnum):
    """The container's root: a busybox --rootfs, or the imported image with --storage overlay or copy."""

    ROOTFS = "rootfs"
    OVERLAY = "overlay"
    COPY = "copy"


class Userns(StrEnum):
    DEFAULT = "default"
    HOST = "host"


class Limits(StrEnum):
    NONE = "none"
    MEMORY = "memory"
    PIDS = "pids"
    CPUS = "cpus"
    ALL = "all"

    def options(self) -> tuple[str, ...]:
        return LIMIT_OPTIONS[self]


LIMIT_OPTIONS = {
    Limits.NONE: (),
    Limits.MEMORY: ("--memory", "32m"),
    Limits.PIDS: ("--pids-limit", "20"),
    Limits.CPUS: ("--cpus", "0.5"),
    Limits.ALL: ("--memory", "32m", "--pids-limit", "20", "--cpus", "0.5"),
}


class Kill(StrEnum):
    """What gets the SIGKILL: nothing, the workload (from the host), the container's init (PID 1 of
    its PID namespace), or the runtime itself, during start-up or once the workload runs."""

    NONE = "none"
    WORKLOAD = "workload"
    INIT = "init"
    RUNTIME_STARTUP = "runtime-startup"
    RUNTIME_RUNNING = "runtime-running"

    def of_runtime(self) -> bool:
        return self in (Kill.RUNTIME_STARTUP, Kill.RUNTIME_RUNNING)


# How often each kill is drawn. In the order of Kill: the draw picks by position.
KILL_WEIGHTS = {
    Kill.NONE: 40,
    Kill.WORKLOAD: 12,
    Kill.INIT: 12,
    Kill.RUNTIME_STARTUP: 24,
    Kill.RUNTIME_RUNNING: 12,
}


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]  # empty: the image's own Cmd
    code: int
    stdout: str = ""  # a line it must print


# Commands of runs that are not killed, with what they must give.
COMMANDS = (
    Command(("/bin/true",), 0),
    Command(("/bin/false",), 1),
    Command(("/bin/sh", "-c", "echo soak-out; echo soak-err >&2; exit 3"), 3, "soak-out"),
    Command(("/bin/sh", "-c", "sleep 0.1; exit 7"), 7),
    Command(("/bin/sh", "-c", "test -r /proc/self/cgroup && echo cgroup-ok"), 0, "cgroup-ok"),
)
# The image's Cmd, /app/run.sh (compat/images/testimage.py).
IMAGE_COMMAND = Command((), 0, "app: hi from /app")
# Killed runs run a command that never ends by itself: whatever outlives the soak is a leak, not a
# command that had not finished yet. Absolute paths: the soak is about leaks, not PATH lookup.
ENDLESS = ("/bin/sleep", "1800")
KILLED_COMMAND = Command(ENDLESS, EXIT_KILLED)


@dataclass(frozen=True)
class Plan:
    index: int
    source: Source
    userns: Userns
    limits: Limits
    kill: Kill
    delay: float  # when the kill lands: after the spawn (runtime-startup), after the target appears
    command: Command

    def describe(self) -> str:
        when = f" at {self.delay * 1000:.0f} ms" if self.kill is Kill.RUNTIME_STARTUP else ""
        return f"#{self.index} {self.source} userns={self.userns} limits={self.limits} kill={self.kill}{when}"


def make_plans(count: int, rng: random.Random) -> list[Plan]:
    return [make_plan(index, rng) for index in range(count)]


def make_plan(index: int, rng: random.Random) -> Plan:
    # The order of the draws is what a seed means: another order gives every seed another mix.
    source = rng.choice(list(Source))
    kill = rng.choices(list(KILL_WEIGHTS), list(KILL_WEIGHTS.values()))[0]
    if kill is Kill.NONE:
        pool = COMMANDS if source is Source.ROOTFS else (*COMMANDS, IMAGE_COMMAND)
        command = rng.choice(pool)
    else:
        command = KILLED_COMMAND
    window = STARTUP_KILL_WINDOW if kill is Kill.RUNTIME_STARTUP else TARGET_KILL_WINDOW
    delay = rng.uniform(0, window)
    userns = rng.choice(list(Userns))
    limits = rng.choice(list(Limits))
    return Plan(index, source, userns, limits, kill, delay, command)


def judge(plan: Plan, code: int, stdout: str) -> str:
    """Empty when the run gave what it should; else what went wrong."""
    if plan.kill.of_runtime():
        if code == -signal.SIGKILL:
            return ""  # what it left is for the leak counts
        return f"runtime exited {code} before the SIGKILL"
    if plan.kill is Kill.WORKLOAD:
        return "" if code == EXIT_KILLED else f"exit {code}, expected {EXIT_KILLED}"
    if plan.kill is Kill.INIT:
        # Killed before the runtime moved it into its cgroups, the init is gone for the move: 125.
        return "" if code in (EXIT_KILLED, EXIT_RUNTIME) else f"exit {code}, expected 137 or 125"
    expected = plan.command
    if code != expected.code:
        return f"exit {code}, expected {expected.code}"
    if expected.stdout and expected.stdout not in stdout.splitlines():
        return f"stdout {stdout.strip()[:80]!r}, expected a line {expected.stdout!r}"
    return ""
