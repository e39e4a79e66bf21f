"""`runtime gc` where a container root it removes still has a mount under it: needs root, to mount."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import gc
from runtime.linux import constants, libc
from runtime.storage.store import Store

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: bind-mounts under a container root")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    made = Store(str(tmp_path / "store"))
    made.ensure()
    monkeypatch.setenv("RUNTIME_STORE", made.path)
    return made


def root_of(store: Store, container_id: str) -> Path:
    root = Path(store.sub("containers", container_id))
    (root / "rootfs/bin").mkdir(parents=True)
    return root


@pytest.mark.usefixtures("state_root")
def test_a_mount_under_an_orphan_root_is_detached_before_removal(store: Store, tmp_path: Path) -> None:
    merged = root_of(store, "mounted1") / "merged"
    merged.mkdir()
    outside = tmp_path / "must-survive"
    outside.mkdir()
    (outside / "file").write_text("kept\n")
    libc.mount(str(outside), str(merged), None, constants.MS_BIND)
    try:
        removed = gc.collect()
    finally:
        with open("/proc/self/mountinfo") as file:
            if str(merged) in file.read():
                libc.umount(str(merged), constants.MNT_DETACH)
    assert removed == [
        "containers/mounted1: a container root no live container owns (0.0 MiB, 1 mount(s) detached)"
    ]
    assert (outside / "file").read_text() == "kept\n"  # removed the root, not through the mount
    assert os.listdir(store.sub("containers")) == []
