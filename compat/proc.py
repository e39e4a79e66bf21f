"""The one place that starts subprocesses, so every command is logged and fails the same way."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# Enough of stderr to show the cause without flooding a one-line error.
_TAIL_LINES = 4
_TAIL_CHARS = 600

Arg = str | os.PathLike[str]


class CommandError(RuntimeError):
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
