"""`runtime gc` on a state directory standing in for /run/runtime."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from runtime import gc, state


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(state, "STATE_ROOT", str(tmp_path))
    (tmp_path / "containers").mkdir()
    (tmp_path / "names").mkdir()
    return tmp_path


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_unfinished_claims_are_removed_once_stale(state_root: Path) -> None:
    (state_root / "containers/aaaa").mkdir()
    (state_root / "names/web").symlink_to("bbbb")  # names a container that never got a directory
    (state_root / "containers/cccc").mkdir()  # fresh: a claim may be under way
    age(state_root / "containers/aaaa", 120)
    age(state_root / "names/web", 120)
    removed = gc.collect()
    assert sorted(removed) == ["aaaa: an unfinished container directory", "web: a name without a container"]
    assert sorted(os.listdir(state_root / "containers")) == ["cccc"]
    assert os.listdir(state_root / "names") == []


def test_a_dead_runtime_s_container_is_cleaned(state_root: Path, tmp_path: Path) -> None:
    cgroup = tmp_path / "fake-cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.procs").write_text("")
    dead = state.State(
        "dddd", "job", "sleep 1", runtime_pid=2**22 + 7, runtime_start="1", created=0.0, cgroups=()
    )
    os.makedirs(dead.directory)
    dead.save()
    (state_root / "names/job").symlink_to("dddd")
    assert gc.collect() == ["job (dddd): killed, 0 cgroup(s) removed"]
    assert os.listdir(state_root / "containers") == []
    assert os.listdir(state_root / "names") == []


def test_a_live_runtime_s_container_is_left_alone(state_root: Path) -> None:
    me = os.getpid()
    alive = state.State(
        "eeee", "mine", "true", runtime_pid=me, runtime_start=state.start_time(me), created=0.0
    )
    os.makedirs(alive.directory)
    alive.save()
    assert gc.collect() == []
    assert os.listdir(state_root / "containers") == ["eeee"]
