"""Soak: many containers through the installed `runtime`, with random SIGKILLs, then `runtime gc`
and a count of everything left behind.

    python3 benchmarks/soak.py [--containers 1000] [--parallel 4] [--seed 1] [--runtime CMD]

Each run is a mix of: the root (a busybox --rootfs, or an imported image with --storage overlay or
copy), the user namespace (the default or --userns host), limits (none, --memory 32m, --pids-limit 20,
--cpus 0.5, or all three) and a kill: none, the workload (SIGKILL from the host), the container's init
(PID 1 of its PID namespace), or the runtime itself, 0-60 ms after it was spawned or once its
workload runs. A run that was not killed must exit with its command's code. Every so often, and at
the end, `runtime gc` runs; then the leaks are counted against a snapshot taken before: mounts,
cgroups, state, store directories, processes, namespaces and disk. Each should be 0.

Exit 0 when every leak count is 0 and no run failed unexpectedly, 1 otherwise, 2 on bad input, 130
when interrupted (the soak still stops its containers, runs gc and reports). Needs root and a static
busybox (Debian's busybox-static).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import busybox, images  # noqa: E402 - after the path is set

STATE_ROOT = "/run/runtime"
DEFAULT_STORE = "/var/lib/runtime"
# What gc waits for before it removes a claim that has no state file yet (runtime/gc.py STALE_SECONDS).
GC_GRACE_SECONDS = 60
RUN_TIMEOUT = 30.0
POLL = 0.002
STARTUP_KILL_WINDOW = 0.060
NAMESPACES = ("mnt", "pid", "net", "uts", "ipc", "cgroup", "user")
SHOWN = 5  # examples per leak kind and unexpected failures

SOURCES = ("rootfs", "overlay", "copy")
USERNS = ("default", "host")
LIMITS = {
    "none": (),
    "memory": ("--memory", "32m"),
    "pids": ("--pids-limit", "20"),
    "cpus": ("--cpus", "0.5"),
    "all": ("--memory", "32m", "--pids-limit", "20", "--cpus", "0.5"),
}
KILLS = {"none": 40, "workload": 12, "init": 12, "runtime-startup": 24, "runtime-running": 12}
# Killed runs run a command that never ends by itself: whatever outlives the soak is a leak, not a
# command that had not finished yet. Absolute paths: the soak is about leaks, not PATH lookup.
ENDLESS = ("/bin/sleep", "1800")
EXIT_KILLED = 128 + signal.SIGKILL
EXIT_RUNTIME = 125


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
IMAGE_COMMAND = Command((), 0, "app: hi from /app")  # the image's Cmd, /app/run.sh (tests/images.py)


class SoakError(Exception):
    """The soak cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class Plan:
    index: int
    source: str
    userns: str
    limits: str
    kill: str
    delay: float  # when the kill lands: after the spawn (runtime-startup), after the target appears
    command: Command

    def describe(self) -> str:
        when = f" at {self.delay * 1000:.0f} ms" if self.kill == "runtime-startup" else ""
        return f"#{self.index} {self.source} userns={self.userns} limits={self.limits} kill={self.kill}{when}"


@dataclass
class Result:
    plan: Plan
    code: int | None = None
    landed: bool = False  # the kill was sent
    seconds: float = 0.0
    problem: str = ""  # empty when the run did what it should
    stderr: str = ""
    stopped: bool = False  # stopped by the soak's own interruption: neither judged nor counted


def make_plans(count: int, rng: random.Random) -> list[Plan]:
    kinds, weights = list(KILLS), list(KILLS.values())
    plans = []
    for index in range(count):
        source = rng.choice(SOURCES)
        kill = rng.choices(kinds, weights)[0]
        if kill == "none":
            pool = COMMANDS if source == "rootfs" else (*COMMANDS, IMAGE_COMMAND)
            command = rng.choice(pool)
        else:
            command = Command(ENDLESS, EXIT_KILLED)
        delay = rng.uniform(0, STARTUP_KILL_WINDOW) if kill == "runtime-startup" else rng.uniform(0, 0.05)
        plans.append(Plan(index, source, rng.choice(USERNS), rng.choice(list(LIMITS)), kill, delay, command))
    return plans


# --- /proc ------------------------------------------------------------------------------------------


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def children(pid: int) -> list[int]:
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for task in tasks:
        found += [int(word) for word in read_bytes(f"/proc/{pid}/task/{task}/children").split()]
    return found


def descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        for child in children(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


def ns_pids(pid: int) -> list[int]:
    """The pid in each PID namespace, outermost first: [host pid, ..., pid in its own]."""
    for line in read_bytes(f"/proc/{pid}/status").decode(errors="replace").splitlines():
        if line.startswith("NSpid:"):
            return [int(word) for word in line.split()[1:]]
    return []


def start_time(pid: int) -> str:
    stat = read_bytes(f"/proc/{pid}/stat").decode(errors="replace")
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else ""


def ns_inode(pid: int | str, kind: str) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return 0


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def is_init(pid: int) -> bool:
    """PID 1 of a PID namespace of its own."""
    numbers = ns_pids(pid)
    return len(numbers) > 1 and numbers[-1] == 1


def find_init(runtime_pid: int, name: str, everywhere: bool) -> int:
    """The container's init: below the runtime, or (everywhere) any process with the container's name
    in its cmdline, should a runtime leave its init elsewhere than among its descendants."""
    for pid in descendants(runtime_pid):
        if is_init(pid):
            return pid
    word = b"\0" + name.encode() + b"\0"
    for pid in pids() if everywhere else ():
        if word in read_bytes(f"/proc/{pid}/cmdline") and is_init(pid):
            return pid
    return 0


def find_workload(init: int, argv0: str) -> int:
    """The command, once it has been executed: a child of the init whose cmdline is the command's."""
    prefix = argv0.encode() + b"\0"
    for pid in children(init):
        if read_bytes(f"/proc/{pid}/cmdline").startswith(prefix):
            return pid
    return 0


# --- running ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    runtime: tuple[str, ...]
    rootfs: str
    image: str
    marker: str  # in every container's name, so in the runtime's and the init's cmdline
    store: str


class Runner:
    """Runs plans, `parallel` at a time; on Ctrl-C it stops every runtime it started."""

    def __init__(self, setup: Setup, gc_every: int) -> None:
        self.setup = setup
        self.gc_every = gc_every
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.results: list[Result] = []
        self.gc_removed = 0
        self.gc_runs = 0

    def name(self, plan: Plan) -> str:
        return f"{self.setup.marker}{plan.index}"

    def argv(self, plan: Plan) -> list[str]:
        words = [*self.setup.runtime, "run", "--name", self.name(plan)]
        if plan.userns == "host":
            words += ["--userns", "host"]
        words += LIMITS[plan.limits]
        if plan.source == "rootfs":
            words += ["--rootfs", self.setup.rootfs]
        else:
            words += ["--storage", plan.source, self.setup.image]
        return [*words, *plan.command.argv]

    def run_all(self, plans: list[Plan], parallel: int, progress: Callable[[int], None]) -> None:
        pending = iter(plans)
        workers = [
            threading.Thread(target=self._work, args=(pending, progress), daemon=True)
            for _ in range(parallel)
        ]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                while worker.is_alive():
                    worker.join(timeout=0.2)  # a timeout, so that Ctrl-C reaches this thread
        finally:
            self.stop(workers)

    def _work(self, pending: Iterator[Plan], progress: Callable[[int], None]) -> None:
        while not self.stopping.is_set():
            with self.lock:
                plan = next(pending, None)
            if plan is None:
                return
            result = self.run_one(plan)
            with self.lock:
                self.results.append(result)
                done = len(self.results)
            progress(done)
            if self.gc_every and done % self.gc_every == 0 and not self.stopping.is_set():
                self.gc()

    def run_one(self, plan: Plan) -> Result:
        result = Result(plan)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.monotonic()
            # Files, not pipes: a container that outlives a killed runtime keeps them open. A session of
            # its own: Ctrl-C is the soak's to handle, and it stops the runtimes with SIGTERM.
            process = subprocess.Popen(
                self.argv(plan),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=REPO,
                start_new_session=True,
            )
            self._drive(process, plan, result, started)
            result.seconds = time.monotonic() - started
            result.stderr = _read(err)
            if not result.problem and not result.stopped:
                result.problem = judge(plan, result, _read(out))
        return result

    def _drive(self, process: subprocess.Popen[bytes], plan: Plan, result: Result, started: float) -> None:
        deadline = started + RUN_TIMEOUT
        if plan.kill == "runtime-startup":
            _sleep_until(started + plan.delay)
            result.landed = process.poll() is None and _kill(process.pid)
        elif plan.kill != "none":
            target = self._await_target(process, plan, deadline)
            if target:
                time.sleep(plan.delay)
                victim = process.pid if plan.kill == "runtime-running" else target
                result.landed = _kill(victim)
            elif self.stopping.is_set():
                result.stopped = True
            elif process.poll() is None:
                result.problem = f"no {_target_name(plan)} after {RUN_TIMEOUT:.0f} s"
            else:
                result.problem = f"exited {process.returncode} before its {_target_name(plan)} appeared"
        result.code = self._finish(process, deadline, result)

    def _finish(self, process: subprocess.Popen[bytes], deadline: float, result: Result) -> int:
        """Its exit code. Past the deadline it is SIGKILLed as hung; when the soak stops, SIGTERMed first
        (the runtime forwards it to its container and cleans up), SIGKILLed 5 s later."""
        terminated = 0.0
        while (code := process.poll()) is None:
            now = time.monotonic()
            if self.stopping.is_set() and not terminated:
                process.send_signal(signal.SIGTERM)
                terminated = now
                result.stopped = True
            elif (terminated and now > terminated + 5) or (not terminated and now > deadline):
                _kill(process.pid)
                if not terminated and not result.problem:
                    result.problem = f"hung: still running after {RUN_TIMEOUT:.0f} s (SIGKILLed)"
                return process.wait()
            time.sleep(0.01)
        return code

    def _await_target(self, process: subprocess.Popen[bytes], plan: Plan, deadline: float) -> int:
        polls = 0
        while time.monotonic() < deadline and process.poll() is None and not self.stopping.is_set():
            polls += 1
            init = find_init(process.pid, self.name(plan), everywhere=polls % 25 == 0)
            target = init if plan.kill == "init" or not init else find_workload(init, plan.command.argv[0])
            if target:
                return target
            time.sleep(POLL)
        return 0

    def gc(self) -> str:
        done = subprocess.run(
            [*self.setup.runtime, "gc"], capture_output=True, text=True, cwd=REPO, check=False, timeout=120
        )
        lines = done.stdout.strip().splitlines()
        with self.lock:
            self.gc_runs += 1
            self.gc_removed += sum(1 for line in lines if not line.startswith("runtime gc:"))
        if done.returncode != 0:
            return f"runtime gc exited {done.returncode}: {done.stderr.strip()[:300]}"
        return lines[-1] if lines else "runtime gc printed nothing"

    def stop(self, workers: list[threading.Thread]) -> None:
        """Each worker stops its runtime (see _finish) and takes no more plans."""
        self.stopping.set()
        for worker in workers:
            worker.join()


def _target_name(plan: Plan) -> str:
    return "init" if plan.kill == "init" else "workload"


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def _sleep_until(moment: float) -> None:
    left = moment - time.monotonic()
    if left > 0:
        time.sleep(left)


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def judge(plan: Plan, result: Result, stdout: str) -> str:
    """Empty when the run gave what it should; else what went wrong."""
    if plan.kill.startswith("runtime-"):
        if result.code == -signal.SIGKILL:
            return ""  # what it left is for the leak counts
        return f"runtime exited {result.code} before the SIGKILL"
    if plan.kill == "workload":
        return "" if result.code == EXIT_KILLED else f"exit {result.code}, expected {EXIT_KILLED}"
    if plan.kill == "init":
        # Killed before the runtime moved it into its cgroups, the init is gone for the move: 125.
        return (
            "" if result.code in (EXIT_KILLED, EXIT_RUNTIME) else f"exit {result.code}, expected 137 or 125"
        )
    expected = plan.command
    if result.code != expected.code:
        return f"exit {result.code}, expected {expected.code}"
    if expected.stdout and expected.stdout not in stdout.splitlines():
        return f"stdout {stdout.strip()[:80]!r}, expected a line {expected.stdout!r}"
    return ""


# --- leaks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    start: str
    pidns: int
    cmdline: str
    nspids: tuple[int, ...]
    state: str  # R, S, Z, ...
    ppid: int

    def describe(self) -> str:
        inner = "/".join(map(str, self.nspids))
        return (
            f"pid {self.pid} (pid {inner} by namespace, pidns {self.pidns}, parent {self.ppid}, "
            f"{self.state}): {self.cmdline[:100] or '(no cmdline)'}"
        )

    def exiting(self) -> bool:
        """A zombie, or on its way: its memory, so its cmdline, is gone."""
        return self.state in ("Z", "X") or not self.cmdline


def processes() -> list[Proc]:
    found = []
    for pid in pids():
        pidns = ns_inode(pid, "pid")
        if not pidns:
            continue  # gone meanwhile
        cmdline = read_bytes(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        stat = read_bytes(f"/proc/{pid}/stat").decode(errors="replace").rsplit(")", 1)[-1].split()
        state, ppid = (stat[0], int(stat[1])) if len(stat) > 1 else ("?", 0)
        found.append(Proc(pid, start_time(pid), pidns, cmdline, tuple(ns_pids(pid)), state, ppid))
    return found


def soak_processes(marker: str, host_pidns: int, everyone: list[Proc] | None = None) -> list[Proc]:
    """The soak's: a process whose cmdline carries the marker (a runtime, its setup process, a
    container's init, which is a fork of the runtime) or is the soak's endless command in a container,
    and every process in the PID namespace of such a process. Other people's containers on this host
    are not counted."""
    everyone = processes() if everyone is None else everyone
    endless = " ".join(ENDLESS)
    marked = {
        proc.pid
        for proc in everyone
        if marker in proc.cmdline or (proc.cmdline == endless and proc.pidns != host_pidns)
    }
    namespaces = {proc.pidns for proc in everyone if proc.pid in marked and proc.pidns != host_pidns}
    return [proc for proc in everyone if proc.pid in marked or proc.pidns in namespaces]


def namespaces_held() -> dict[str, set[int]]:
    """Each namespace that a process is in ("mnt:[inode]"), with those processes."""
    held: dict[str, set[int]] = {}
    for pid in pids():
        for kind in NAMESPACES:
            inode = ns_inode(pid, kind)
            if inode:
                held.setdefault(f"{kind}:[{inode}]", set()).add(pid)
    return held


def mountinfo() -> list[list[str]]:
    with open("/proc/self/mountinfo") as file:
        return [line.split() for line in file]


def fstype(fields: list[str]) -> str:
    return fields[fields.index("-") + 1]


def host_mounts() -> Counter[str]:
    """The host's mounts as "mount point fstype source" (mount ids left out: they are reused)."""
    mounts: Counter[str] = Counter()
    for fields in mountinfo():
        separator = fields.index("-")
        mounts[f"{fields[4]} {fields[separator + 1]} {fields[separator + 2]}"] += 1
    return mounts


def nsfs_mounts() -> set[str]:
    """Bind-mounted namespaces: the root field of an nsfs mount names it, "net:[4026532...]"."""
    return {fields[3].strip("/") for fields in mountinfo() if fstype(fields) == "nsfs"}


def cgroups() -> set[str]:
    """Every directory under each hierarchy's runtime/ (v1 controllers, the unified one, v2 alone)."""
    roots = {
        os.path.join(fields[4], "runtime")
        for fields in mountinfo()
        if fstype(fields) in ("cgroup", "cgroup2")
    }
    found: set[str] = set()
    for root in roots:
        for directory, subdirectories, _ in os.walk(root):
            found.update(os.path.join(directory, name) for name in subdirectories)
    return found


def listing(directory: str) -> set[str]:
    try:
        return {os.path.join(directory, name) for name in os.listdir(directory)}
    except OSError:
        return set()


def state_entries() -> set[str]:
    return listing(f"{STATE_ROOT}/containers") | listing(f"{STATE_ROOT}/names")


def store_entries(store: str) -> set[str]:
    return listing(f"{store}/containers") | listing(f"{store}/tmp")


def store_bytes(store: str) -> int:
    """Disk used under the store, each inode once. The store's own directories (the root, containers/,
    tmp/, ...) are left out: they appear on first use, and a directory never shrinks."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, subdirectories, files in os.walk(store):
        counted = files if directory == store else files + subdirectories
        for name in counted:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def free_bytes(path: str) -> int:
    usage = os.statvfs(path)
    return usage.f_bavail * usage.f_frsize


def read_state(directory: str) -> dict[str, str]:
    text = read_bytes(os.path.join(directory, "state")).decode(errors="replace")
    return {key: value for key, _, value in (line.partition("=") for line in text.splitlines())}


def live_foreign(marker: str) -> set[str]:
    """Ids of containers that someone else runs right now: their directories are not the soak's."""
    ids = set()
    for directory in listing(f"{STATE_ROOT}/containers"):
        values = read_state(directory)
        pid, start = values.get("runtime_pid", ""), values.get("runtime_start", "")
        if not values.get("name", "").startswith(marker) and pid.isdigit() and start_time(int(pid)) == start:
            ids.add(os.path.basename(directory))
    return ids


def entry_owner(path: str) -> str:
    """The container a state or store entry is for: a name link's target, else the entry's name."""
    if path.startswith(f"{STATE_ROOT}/names/"):
        try:
            return os.path.basename(os.readlink(path))
        except OSError:
            return ""
    return os.path.basename(path)


def cgroup_owner(path: str) -> str:
    """<hierarchy>/runtime/<id>[/...]: the id."""
    parts = path.split("/")
    index = len(parts) - 1 - parts[::-1].index("runtime")
    return parts[index + 1]


def new_and_ours(
    now: set[str], before: frozenset[str], foreign: set[str], owner: Callable[[str], str]
) -> list[str]:
    return sorted(path for path in now - before if owner(path) not in foreign)


@dataclass(frozen=True)
class Snapshot:
    mounts: Counter[str]
    cgroups: frozenset[str]
    state: frozenset[str]
    store: frozenset[str]
    procs: frozenset[tuple[int, str]]
    namespaces: frozenset[str]
    store_bytes: int
    free_bytes: int


def snapshot(store: str) -> Snapshot:
    return Snapshot(
        host_mounts(),
        frozenset(cgroups()),
        frozenset(state_entries()),
        frozenset(store_entries(store)),
        frozenset((proc.pid, proc.start) for proc in processes()),
        frozenset(namespaces_held()) | frozenset(nsfs_mounts()),
        store_bytes(store),
        free_bytes(store),
    )


@dataclass
class Leaks:
    """Each kind: what is left (a few are shown) and how much. Expected: 0 of each."""

    items: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    procs: list[Proc] = dataclasses.field(default_factory=list)

    def add(self, kind: str, items: list[str], count: int | None = None) -> None:
        self.items[kind] = items
        self.counts[kind] = len(items) if count is None else count

    def kinds(self) -> list[str]:
        return [kind for kind, count in self.counts.items() if count]


def measure(before: Snapshot, setup: Setup, host_pidns: int) -> Leaks:
    leaks = Leaks()
    foreign = live_foreign(setup.marker)
    leaks.add("mounts", sorted((host_mounts() - before.mounts).elements()))
    leaks.add("cgroups", new_and_ours(cgroups(), before.cgroups, foreign, cgroup_owner))
    leaks.add("state", new_and_ours(state_entries(), before.state, foreign, entry_owner))
    left = new_and_ours(store_entries(setup.store), before.store, foreign, entry_owner)
    leaks.add("store containers", [path for path in left if path.startswith(f"{setup.store}/containers/")])
    leaks.add("store tmp", [path for path in left if path.startswith(f"{setup.store}/tmp/")])
    _measure_processes(leaks, before, setup.marker, host_pidns)
    grown = store_bytes(setup.store) - before.store_bytes
    leaks.add("disk", [], max(0, grown))
    leaks.notes.append(
        f"disk: the store {_size(before.store_bytes)} -> {_size(before.store_bytes + grown)}; "
        f"free space {_size(before.free_bytes)} -> {_size(free_bytes(setup.store))}"
    )
    return leaks


def _measure_processes(leaks: Leaks, before: Snapshot, marker: str, host_pidns: int) -> None:
    everyone = [proc for proc in processes() if (proc.pid, proc.start) not in before.procs]
    procs = soak_processes(marker, host_pidns, everyone)
    leaks.procs = procs
    others = [proc for proc in everyone if proc.pidns != host_pidns and proc not in procs]
    if others:
        leaks.notes.append(
            f"processes: {len(others)} other new one(s) in other PID namespaces, not the soak's (not counted): "
            + "; ".join(proc.describe() for proc in others[:3])
        )
    leaks.add("processes", [proc.describe() for proc in procs])
    containers = {proc.pidns for proc in procs if proc.pidns != host_pidns}
    runtimes = sum(1 for proc in procs if proc.pidns == host_pidns)
    leaks.notes.append(
        f"processes: {len(containers)} container(s) still running, {runtimes} runtime process(es)"
    )
    ours = {proc.pid for proc in procs}
    new = {name: holders for name, holders in namespaces_held().items() if name not in before.namespaces}
    held = sorted(name for name, holders in new.items() if holders & ours)
    mounted = sorted(f"{name} (bind-mounted)" for name in nsfs_mounts() - before.namespaces)
    leaks.add("namespaces", held + mounted)
    if len(new) > len(held):
        leaks.notes.append(
            f"namespaces: {len(new) - len(held)} new one(s) held by processes that are not the soak's (not counted)"
        )


def _size(count: int) -> str:
    value, unit = float(count), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            break
        value, unit = value / 1024, larger
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def settle(before: Snapshot, marker: str, host_pidns: int) -> None:
    """A killed init takes its PID namespace's processes with it, but not at once: wait (at most 5 s)
    until no new process in a container is on its way out and the count of the soak's stops falling."""
    last, deadline = -1, time.monotonic() + 5
    while time.monotonic() < deadline:
        new = [proc for proc in processes() if (proc.pid, proc.start) not in before.procs]
        exiting = any(proc.exiting() for proc in new if proc.pidns != host_pidns)
        count = len(soak_processes(marker, host_pidns, new))
        if not exiting and count in (0, last):
            return
        last = count
        time.sleep(0.2)


def collect(runner: Runner, before: Snapshot, say: Callable[[str], None]) -> None:
    """`runtime gc`, then again once the claims of runtimes killed during start-up are old enough for
    gc to take them (it leaves a claim alone for a while: it may be in progress)."""
    say(f"gc: {runner.gc()}")
    foreign = live_foreign(runner.setup.marker)
    waiting = [path for path in state_entries() - before.state if entry_owner(path) not in foreign]
    if waiting:
        newest = max(_mtime(path) for path in waiting)
        pause = min(GC_GRACE_SECONDS + 1.0, max(0.0, newest + GC_GRACE_SECONDS + 1.0 - time.time()))
        if pause:
            say(
                f"gc: {len(waiting)} state entries left; waiting {pause:.0f} s, the age at which gc takes a claim"
            )
            try:
                time.sleep(pause)
            except KeyboardInterrupt:
                say("gc: interrupted: no more waiting")
    say(f"gc: {runner.gc()}")


def _mtime(path: str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def clean_up_leaks(leaks: Leaks, say: Callable[[str], None]) -> None:
    """What the runtime left, removed once counted so that the next soak starts clean: the soak's
    processes first, then their cgroups, store directories and state."""
    killed = sum(1 for proc in leaks.procs if start_time(proc.pid) == proc.start and _kill(proc.pid))
    if killed:
        time.sleep(0.5)
    removed = Counter[str]()
    for path in sorted(leaks.items["cgroups"], key=len, reverse=True):  # the deepest first
        try:
            os.rmdir(path)
            removed["cgroup"] += 1
        except OSError:
            pass
    mount_points = [fields[4] for fields in mountinfo()]
    for kind in ("store containers", "store tmp", "state"):
        for path in leaks.items[kind]:
            if any(point == path or point.startswith(path + "/") for point in mount_points):
                continue  # never delete through a mount
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                _unlink(path)
            removed[kind] += 1
    if killed or removed:
        what = ", ".join(f"{count} {kind}" for kind, count in removed.items()) or "nothing else"
        say(f"cleanup (--keep-leaks keeps them): killed {killed} leaked process(es); removed {what}")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- the soak ---------------------------------------------------------------------------------------


def runtime_command(text: str) -> tuple[str, ...]:
    words = tuple(shlex.split(text))
    if not words:
        raise SoakError(
            "--runtime is empty: give the command, e.g. --runtime runtime or --runtime 'python3 -m runtime'"
        )
    found = shutil.which(words[0])
    if found is None:
        raise SoakError(
            f"{words[0]!r} is not on PATH: install the project (pip install .) or pass --runtime 'python3 -m runtime'"
        )
    return (found, *words[1:])


def prepare(directory: Path, runtime: tuple[str, ...], marker: str, store: str) -> Setup:
    """A busybox rootfs, and the test image imported into the store under the soak's own name."""
    directory.chmod(0o755)  # container root may be host uid 100000: it must reach the rootfs
    try:
        rootfs = busybox.build_rootfs(directory / "rootfs")
        image = dataclasses.replace(images.busybox_image(), ref=f"soak-image-{os.getpid()}:1")
    except busybox.BusyboxMissing as missing:
        raise SoakError(f"{missing} (apt-get install busybox-static)") from None
    tarball = images.write_docker_save(image, directory / "image.tar")
    done = subprocess.run(
        [*runtime, "image", "import", str(tarball), "--name", image.ref],
        capture_output=True, text=True, cwd=REPO, check=False, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise SoakError(f"runtime image import failed (exit {done.returncode}): {done.stderr.strip()[:500]}")
    return Setup(runtime, str(rootfs), image.ref, marker, store)


def remove_image(setup: Setup) -> None:
    done = subprocess.run(
        [*setup.runtime, "image", "rm", setup.image],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        say(
            f"cleanup: runtime image rm {setup.image} failed (exit {done.returncode}): {done.stderr.strip()[:300]}"
        )


def report_runs(runner: Runner, plans: list[Plan], seconds: float, say: Callable[[str], None]) -> int:
    stopped = sum(1 for result in runner.results if result.stopped)
    results = sorted(
        (result for result in runner.results if not result.stopped), key=lambda result: result.plan.index
    )
    if stopped:
        say(f"stopped by the interruption, not counted: {stopped} run(s)")
    say(
        f"runs: {len(results)} of {len(plans)} in {seconds:.1f} s ({len(results) / max(seconds, 1e-9):.1f} per second)"
    )
    for label, key in (("source", "source"), ("userns", "userns"), ("limits", "limits")):
        counts = Counter(getattr(result.plan, key) for result in results)
        say(f"  {label + ':':<9}" + ", ".join(f"{name} {counts[name]}" for name in sorted(counts)))
    kills = Counter(result.plan.kill for result in results)
    landed = Counter(result.plan.kill for result in results if result.landed)
    say(
        "  killed:  "
        + ", ".join(
            f"{kind} {kills[kind]}" + (f" ({landed[kind]} sent)" if kind != "none" else "")
            for kind in KILLS
            if kills[kind]
        )
    )
    codes = Counter(result.code for result in results if result.plan.kill == "none")
    say(
        "  exit codes, not killed: " + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items(), key=str))
    )
    codes = Counter(result.code for result in results if result.plan.kill in ("workload", "init"))
    say(
        "  exit codes, workload or init killed: "
        + ", ".join(f"{code}: {n}" for code, n in sorted(codes.items(), key=str))
    )
    slow = sorted(result.seconds for result in results if result.plan.kill == "none")
    if slow:
        say(
            f"  run time, not killed: median {slow[len(slow) // 2] * 1000:.0f} ms, max {slow[-1] * 1000:.0f} ms"
        )
    failed = [result for result in results if result.problem]
    say(f"unexpected failures: {len(failed)}")
    for result in failed[:SHOWN]:
        say(f"  {result.plan.describe()}: {result.problem}")
        for line in result.stderr.strip().splitlines()[:3]:
            say(f"      {line}")
    if len(failed) > SHOWN:
        say(f"  ... and {len(failed) - SHOWN} more")
    return len(failed)


def leaked_runs(leaks: Leaks, plans: list[Plan], marker: str) -> list[str]:
    """The runs whose containers are still running: an init's cmdline is its runtime's, with the name."""
    found = []
    for proc in leaks.procs:
        if len(proc.nspids) > 1 and proc.nspids[-1] == 1:
            name = next((word for word in proc.cmdline.split() if word.startswith(marker)), "")
            index = name.removeprefix(marker)
            if index.isdigit() and int(index) < len(plans):
                found.append(f"{name}: {plans[int(index)].describe()}")
    return sorted(found)


def report_leaks(leaks: Leaks, say: Callable[[str], None]) -> None:
    say("leaks (expected 0 of each):")
    for kind, count in leaks.counts.items():
        unit = " bytes" if kind == "disk" else ""
        say(f"  {kind + ':':<18}{count:>10}{unit}")
        for item in leaks.items[kind][:SHOWN]:
            say(f"      {item}")
        if len(leaks.items[kind]) > SHOWN:
            say(f"      ... and {len(leaks.items[kind]) - SHOWN} more")
    for note in leaks.notes:
        say(f"  {note}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
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


def say(text: str) -> None:
    print(text, flush=True)


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
            remove_image(setup)
        shutil.rmtree(directory, ignore_errors=True)


def run_and_count(setup: Setup, args: argparse.Namespace) -> int:
    host_pidns = ns_inode("self", "pid")
    runner = Runner(setup, args.gc_every)
    plans = make_plans(args.containers, random.Random(args.seed))
    before = snapshot(setup.store)
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
    failed = report_runs(runner, plans, time.monotonic() - started, say)
    say(f"gc: {runner.gc_runs} run(s) beside the containers removed {runner.gc_removed} leftover(s)")
    collect(runner, before, say)
    settle(before, setup.marker, host_pidns)
    leaks = measure(before, setup, host_pidns)
    report_leaks(leaks, say)
    for line in leaked_runs(leaks, plans, setup.marker):
        say(f"  still running: {line}")
    if not args.keep_leaks:
        clean_up_leaks(leaks, say)
    bad = leaks.kinds()
    verdict = "PASS" if not bad and not failed else "FAIL"
    named = f" ({', '.join(bad)})" if bad else ""
    say(
        f"result: {verdict}: {len(bad)} kind(s) of leak{named}, {failed} unexpected failure(s), seed {args.seed}"
    )
    if interrupted:
        return 130
    return 0 if verdict == "PASS" else 1


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
