"""`runtime gc` on a state directory standing in for /run/runtime."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from runtime import gc, state
from runtime.storage import importer, overlay
from runtime.storage.store import Store


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


# --- the image store's leftovers ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    made = Store(str(tmp_path / "store"))
    made.ensure()
    monkeypatch.setenv("RUNTIME_STORE", made.path)
    return made


def live_state(container_id: str) -> state.State:
    me = os.getpid()
    found = state.State(container_id, f"n-{container_id}", "true", me, state.start_time(me), created=0.0)
    os.makedirs(found.directory)
    found.save()
    return found


def root_of(store: Store, container_id: str, megabytes: int = 0) -> Path:
    root = Path(store.sub("containers", container_id))
    (root / "rootfs/bin").mkdir(parents=True)
    (root / "rootfs/bin/data").write_bytes(b"x" * (megabytes << 20))
    return root


@pytest.mark.usefixtures("state_root")
def test_a_container_root_nobody_owns_is_removed(store: Store) -> None:
    root_of(store, "orphan1", megabytes=2)
    assert gc.collect() == ["containers/orphan1: a container root no live container owns (2.0 MiB)"]
    assert os.listdir(store.sub("containers")) == []


@pytest.mark.usefixtures("state_root")
def test_a_dead_runtime_s_container_root_goes_with_its_state(store: Store) -> None:
    dead = state.State("dead1", "job", "true", runtime_pid=2**22 + 7, runtime_start="1", created=0.0)
    os.makedirs(dead.directory)
    dead.save()
    root_of(store, "dead1")
    assert gc.collect() == [
        "job (dead1): killed, 0 cgroup(s) removed",
        "containers/dead1: a container root no live container owns (0.0 MiB)",
    ]
    assert os.listdir(store.sub("containers")) == []


@pytest.mark.usefixtures("state_root")
def test_a_live_container_s_root_is_left_alone(store: Store) -> None:
    live_state("live1")
    root_of(store, "live1")
    assert gc.collect() == []
    assert os.listdir(store.sub("containers")) == ["live1"]


@pytest.mark.usefixtures("state_root")
def test_a_run_starting_while_gc_reads_the_states_keeps_its_root(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run claims its state, then makes its root: here both happen just after gc has read the states.
    gc listed the roots before, so it never sees this one."""
    real = state.load_all
    started: list[str] = []

    def racing() -> list[state.State]:
        found = real()
        if not started:
            started.append("new1")
            live_state("new1")
            root_of(store, "new1")
        return found

    monkeypatch.setattr(state, "load_all", racing)
    assert gc.collect() == []
    assert os.listdir(store.sub("containers")) == ["new1"]


@pytest.mark.usefixtures("state_root")
def test_a_running_import_s_directory_is_left_alone_and_a_dead_one_s_removed(store: Store) -> None:
    work, owner = importer.claim_work_dir(store)
    assert os.path.basename(work).startswith("import-")
    (Path(work) / "layer").mkdir()
    try:
        assert gc.collect() == []
        assert os.path.isdir(work)
    finally:
        os.close(owner)  # as the kernel does when the importer dies
    assert gc.collect() == [f"tmp/{os.path.basename(work)}: an import that is no longer running (0.0 MiB)"]
    assert os.listdir(store.sub("tmp")) == []


@pytest.mark.usefixtures("state_root")
def test_an_import_of_another_process_counts_as_running(store: Store) -> None:
    ready, go = os.pipe()
    pid = os.fork()
    if pid == 0:  # never back into pytest, whatever happens
        try:
            importer.claim_work_dir(store)
            os.write(go, b"x")
            time.sleep(30)
        finally:
            os._exit(0)
    try:
        assert os.read(ready, 1) == b"x"
        assert gc.collect() == []
        assert len(os.listdir(store.sub("tmp"))) == 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    [line] = gc.collect()
    assert "an import that is no longer running" in line


@pytest.mark.usefixtures("state_root")
def test_ownerless_import_directories_are_removed_once_stale(store: Store) -> None:
    tmp = Path(store.sub("tmp"))
    for name in ("import-old", ".new-old", "import-young", ".new-young", "unrelated"):
        (tmp / name).mkdir()
    for name in ("import-old", ".new-old", "unrelated"):
        age(tmp / name, 120)
    assert sorted(gc.collect()) == [
        "tmp/.new-old: an import that is no longer running (0.0 MiB)",
        "tmp/import-old: an import that is no longer running (0.0 MiB)",
    ]
    assert sorted(os.listdir(tmp)) == [".new-young", "import-young", "unrelated"]


@pytest.mark.usefixtures("state_root")
def test_gc_gives_a_loose_store_its_modes(store: Store) -> None:
    for part in ("", "layers", "images", "tmp"):
        os.chmod(store.sub(part) if part else store.path, 0o755)
    gc.collect()
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(store.sub("layers")).st_mode) == 0o700


@pytest.mark.usefixtures("state_root")
def test_gc_without_a_store_makes_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNTIME_STORE", str(tmp_path / "absent"))
    assert gc.collect() == []
    assert not os.path.exists(tmp_path / "absent")


def orphan_layer(store: Store, diff_id: str) -> None:
    """A layer moved into the store by an import killed before it wrote the image that names it."""
    os.makedirs(store.sub("layers", diff_id, "diff"))
    (Path(store.sub("layers", diff_id)) / "size").write_text("0")
    overlay.make_short_link(store, diff_id)


@pytest.mark.usefixtures("state_root")
def test_layers_no_image_names_are_removed(store: Store) -> None:
    orphan_layer(store, "ab" * 32)
    os.symlink("../layers/gone/diff", store.sub("l", "DANGLING"))  # its layer's link file never written
    assert gc.collect() == ["layers: 1 layer(s) that no image names"]
    assert os.listdir(store.sub("layers")) == []
    assert os.listdir(store.sub("l")) == []


@pytest.mark.usefixtures("state_root")
def test_layers_are_left_while_an_import_or_rm_holds_the_store(store: Store) -> None:
    orphan_layer(store, "cd" * 32)
    lock = store.lock(exclusive=True)  # an import in progress: its layers may be on their way in
    try:
        assert gc.collect() == []
    finally:
        os.close(lock)
    assert os.listdir(store.sub("layers")) == ["cd" * 32]
