"""compat.proc: run() for commands that complete, spawn() for long-lived processes (real children)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compat.proc import CommandError, run, spawn


def alive(pid: int) -> bool:
    """Running, not a zombie: a zombie left for init to reap answers kill(pid, 0) too."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def wait_gone(pid: int, deadline: float = 5.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


def group_alive(pgid: int) -> bool:
    members = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return any(alive(pid) and os.getpgid(pid) == pgid for pid in members if pid_exists(pid))


def pid_exists(pid: int) -> bool:
    try:
        os.getpgid(pid)
    except ProcessLookupError:
        return False
    return True


def test_run_names_the_command_that_failed() -> None:
    with pytest.raises(CommandError, match=r"exit 3\): sh -c 'echo why >&2; exit 3': why"):
        run(["sh", "-c", "echo why >&2; exit 3"])


def test_spawn_logs_the_argv(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="compat.proc"), spawn(["sleep", "30"]):
        pass
    assert "$ sleep 30 &" in caplog.messages


def test_spawn_leads_its_own_group_and_stop_kills_it() -> None:
    child = spawn(["sleep", "30"])
    assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
    assert alive(child.pid)
    child.stop()
    assert child.returncode == -9
    assert not pid_exists(child.pid)


def test_leaving_the_block_kills_what_the_child_started() -> None:
    with spawn(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE) as child:
        assert child.process.stdout is not None
        grandchild = int(child.process.stdout.readline())
        assert os.getpgid(grandchild) == child.pid
    assert wait_gone(grandchild)
    assert not group_alive(child.pid)


def test_a_spawned_process_dies_with_its_parent() -> None:
    """The parent is SIGKILLed, so no cleanup of its own runs: only PR_SET_PDEATHSIG kills the child."""
    script = "from compat.proc import spawn; c = spawn(['sleep', '30']); print(c.pid, flush=True); input()"
    repo = Path(__file__).parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    parent.kill()
    parent.wait()
    assert wait_gone(child), "the child outlived its parent"


def test_communicate_kills_at_the_deadline_and_keeps_the_output() -> None:
    started = time.monotonic()
    with spawn(["sh", "-c", "echo early; exec sleep 30"], stdout=subprocess.PIPE) as child:
        assert child.communicate(timeout=0.5) == b"early\n"
    assert time.monotonic() - started < 5
    assert child.returncode == -9


def test_spawn_of_a_missing_program() -> None:
    with pytest.raises(CommandError, match="exit 127"):
        spawn(["kcompat-no-such-program"])
