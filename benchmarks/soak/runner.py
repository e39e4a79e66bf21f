"""The runs, `parallel` at a time, each with its kill; `runtime gc` beside them; on Ctrl-C every
runtime started is stopped."""

from __future__ import annotations

import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from signal import SIGTERM
from typing import IO

from benchmarks.soak.plan import Kill, Plan, Source, Userns, judge
from benchmarks.soak.procfs import children, cmdline, descendants, is_init, pids, sigkill

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 30.0
POLL = 0.002
STOP_GRACE = 5.0  # after the SIGTERM of the soak's own stop, before the SIGKILL
HUNG = f"hung: still running after {RUN_TIMEOUT:.0f} s (SIGKILLed)"


@dataclass(frozen=True)
class Setup:
    runtime: tuple[str, ...]
    rootfs: str
    image: str
    marker: str  # in every container's name, so in the runtime's and the init's cmdline
    store: str


@dataclass(frozen=True)
class Result:
    plan: Plan
    code: int
    landed: bool  # the kill was sent
    seconds: float
    problem: str  # empty when the run did what it should
    stderr: str
    stopped: bool  # stopped by the soak's own interruption: neither judged nor counted


@dataclass(frozen=True)
class Strike:
    """How the kill went, before the runtime's exit."""

    landed: bool = False
    problem: str = ""
    stopped: bool = False


class Ending(Enum):
    EXITED = "exited"
    STOPPED = "stopped"  # by the soak's own stop
    HUNG = "hung"  # past RUN_TIMEOUT, SIGKILLed


def call_runtime(runtime: tuple[str, ...], *words: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*runtime, *words], capture_output=True, text=True, cwd=REPO, check=False, timeout=timeout
    )


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
        if plan.userns is Userns.HOST:
            words += ["--userns", "host"]
        words += plan.limits.options()
        if plan.source is Source.ROOTFS:
            words += ["--rootfs", self.setup.rootfs]
        else:
            words += ["--storage", plan.source.value, self.setup.image]
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
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.monotonic()
            deadline = started + RUN_TIMEOUT
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
            strike = self._strike(process, plan, started, deadline)
            code, ending = self._finish(process, deadline)
            seconds = time.monotonic() - started
            stopped = strike.stopped or ending is Ending.STOPPED
            problem = strike.problem or (HUNG if ending is Ending.HUNG else "")
            if not problem and not stopped:
                problem = judge(plan, code, _read(out))
            return Result(plan, code, strike.landed, seconds, problem, _read(err), stopped)

    def _strike(
        self, process: subprocess.Popen[bytes], plan: Plan, started: float, deadline: float
    ) -> Strike:
        if plan.kill is Kill.NONE:
            return Strike()
        if plan.kill is Kill.RUNTIME_STARTUP:
            _sleep_until(started + plan.delay)
            return Strike(landed=process.poll() is None and sigkill(process.pid))
        target = self._await_target(process, plan, deadline)
        if target:
            time.sleep(plan.delay)
            return Strike(landed=sigkill(process.pid if plan.kill is Kill.RUNTIME_RUNNING else target))
        if self.stopping.is_set():
            return Strike(stopped=True)
        if process.poll() is None:
            return Strike(problem=f"no {_target_name(plan)} after {RUN_TIMEOUT:.0f} s")
        return Strike(problem=f"exited {process.returncode} before its {_target_name(plan)} appeared")

    def _finish(self, process: subprocess.Popen[bytes], deadline: float) -> tuple[int, Ending]:
        """Its exit code. Past the deadline it is SIGKILLed as hung; when the soak stops, SIGTERMed first
        (the runtime forwards it to its container and cleans up), SIGKILLed STOP_GRACE later."""
        terminated = 0.0
        while (code := process.poll()) is None:
            now = time.monotonic()
            if self.stopping.is_set() and not terminated:
                process.send_signal(SIGTERM)
                terminated = now
            elif (terminated and now > terminated + STOP_GRACE) or (not terminated and now > deadline):
                sigkill(process.pid)
                return process.wait(), Ending.STOPPED if terminated else Ending.HUNG
            time.sleep(0.01)
        return code, Ending.STOPPED if terminated else Ending.EXITED

    def _await_target(self, process: subprocess.Popen[bytes], plan: Plan, deadline: float) -> int:
        polls = 0
        while time.monotonic() < deadline and process.poll() is None and not self.stopping.is_set():
            polls += 1
            init = find_init(process.pid, self.name(plan), everywhere=polls % 25 == 0)
            target = init if plan.kill is Kill.INIT or not init else find_workload(init, plan.command.argv[0])
            if target:
                return target
            time.sleep(POLL)
        return 0

    def gc(self) -> str:
        done = call_runtime(self.setup.runtime, "gc", timeout=120)
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


def find_init(runtime_pid: int, name: str, everywhere: bool) -> int:
    """The container's init: below the runtime, or (everywhere) any process with the container's name
    in its cmdline, should a runtime leave its init elsewhere than among its descendants."""
    for pid in descendants(runtime_pid):
        if is_init(pid):
            return pid
    word = b"\0" + name.encode() + b"\0"
    for pid in pids() if everywhere else ():
        if word in cmdline(pid) and is_init(pid):
            return pid
    return 0


def find_workload(init: int, argv0: str) -> int:
    """The command, once it has been executed: a child of the init whose cmdline is the command's."""
    prefix = argv0.encode() + b"\0"
    for pid in children(init):
        if cmdline(pid).startswith(prefix):
            return pid
    return 0


def _target_name(plan: Plan) -> str:
    return "init" if plan.kill is Kill.INIT else "workload"


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def _sleep_until(moment: float) -> None:
    left = moment - time.monotonic()
    if left > 0:
        time.sleep(left)
