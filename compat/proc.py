"""The one place that starts subprocesses, so every command is logged and fails the same way.

run(argv)    a command that completes: its exit status checked, stderr kept for the error
spawn(argv)  a long-lived process (a VM): in its own process group, killed with it when the
             handle stops or the harness dies, even by SIGKILL (a parent-death signal)
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from compat.errors import CompatError

log = logging.getLogger(__name__)

# Enough of stderr to show the cause without flooding a one-line error.
_TAIL_LINES = 4
_TAIL_CHARS = 600

Arg = str | os.PathLike[str]


class CommandError(CompatError):
    """A command exited non-zero or could not be started."""

    def __init__(self, argv: Sequence[Arg], returncode: int, stderr_tail: str) -> None:
        self.argv: tuple[str, ...] = tuple(os.fspath(a) for a in argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        super().__init__(str(self))

    def __str__(self) -> str:
        msg = f"command failed (exit {self.returncode}): {shlex.join(self.argv)}"
        return f"{msg}: {self.stderr_tail}" if self.stderr_tail else msg


def tail(text: str, lines: int = _TAIL_LINES, chars: int = _TAIL_CHARS) -> str:
    """Last non-empty lines of text joined on one line, so errors stay single-line."""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    joined = " | ".join(kept)
    return joined if len(joined) <= chars else "..." + joined[-chars:]


def run(
    argv: Sequence[Arg],
    *,
    check: bool = True,
    capture: bool = False,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (never through a shell).

    stdout is captured only when capture is true; stderr is always captured so a
    failure can say why. env entries are laid over the current environment, since
    callers almost always want to add a variable rather than start from nothing.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("$ %s", shlex.join(args))
    full_env = {**os.environ, **env} if env is not None else None
    try:
        proc = subprocess.run(  # noqa: S603 - argv list, no shell; callers build it from fixed words
            args,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            check=False,
        )
    except FileNotFoundError as exc:
        raise CommandError(args, 127, f"cannot start: {exc.strerror}: {exc.filename}") from exc
    if proc.stderr:
        log.debug("stderr of %s: %s", args[0], tail(proc.stderr))
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, tail(proc.stderr or ""))
    return proc


# --- long-lived processes ---------------------------------------------------------------------

# What a spawned process's stdin, stdout or stderr is: subprocess.DEVNULL, subprocess.PIPE, or a file.
Stream = int | IO[bytes]


class Spawned:
    """A process started by spawn(): the leader of its own process group. stop(), or leaving a
    with-block, kills the whole group, so nothing it started outlives it."""

    def __init__(self, process: subprocess.Popen[bytes], argv: Sequence[str]) -> None:
        self.process = process
        self.argv = tuple(argv)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def poll(self) -> int | None:
        return self.process.poll()

    def communicate(self, timeout: float) -> bytes:
        """stdout (a pipe) until the process exits; at timeout the group is killed, and what it had
        printed is still returned."""
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            output, _ = self.process.communicate()
        return output or b""

    def stop(self, timeout: float = 10.0) -> None:
        """Kill the process group (SIGKILL: a VM has nothing to save), reap the leader, close pipes.
        Safe to call twice."""
        self._kill_group()
        self.process.wait(timeout=timeout)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def _kill_group(self) -> None:
        # Even when the leader has exited: its children may still be in the group. The group's id
        # cannot have been reused while any member is alive (the kernel holds a pid used as a pgid).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> Spawned:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def _die_with_parent() -> Callable[[], None]:
    """What the child runs before exec: SIGKILL when the parent dies (PR_SET_PDEATHSIG)."""
    # Imported here, in the parent: an import between fork and exec could wait on a lock forever.
    from runtime.linux import constants as c
    from runtime.linux import libc

    parent = os.getpid()

    def in_child() -> None:
        libc.prctl(c.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: nobody would send the signal
            os._exit(1)

    return in_child


def spawn(
    argv: Sequence[Arg],
    *,
    stdin: Stream = subprocess.DEVNULL,
    stdout: Stream = subprocess.DEVNULL,
    stderr: Stream = subprocess.DEVNULL,
    cwd: Path | str | None = None,
) -> Spawned:
    """Start argv (never through a shell) as a long-lived process; see Spawned."""
    args = [os.fspath(a) for a in argv]
    log.debug("$ %s &", shlex.join(args))
    try:
        process = subprocess.Popen(  # noqa: S603 - argv list, no shell; callers build it from fixed words
            args,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            process_group=0,
            preexec_fn=_die_with_parent(),  # prctl must run in the child, between fork and exec
        )
    except FileNotFoundError as exc:
        raise CommandError(args, 127, f"cannot start: {exc.strerror}: {exc.filename}") from exc
    return Spawned(process, args)
