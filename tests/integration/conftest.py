"""Fixtures for running real containers on this host: a busybox root filesystem, a `runtime run`
helper, and a check that nothing (cgroup, state, mount) is left behind."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import busybox

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = "/run/runtime"
CGROUP_ROOT = "/sys/fs/cgroup"


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A busybox root filesystem (see tests/busybox.py).

    Not under tmp_path_factory's directory: pytest makes /tmp/pytest-of-root mode 0700, which the
    container's root (host uid 100000 in a private user namespace) cannot traverse. tmp_path_factory
    only names the build here."""
    if os.geteuid() != 0:
        pytest.skip("running containers needs root")
    base = Path(tempfile.mkdtemp(prefix=f"{tmp_path_factory.getbasetemp().name}-busybox-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield busybox.build_rootfs(base / "rootfs")
    except busybox.BusyboxMissing as missing:
        pytest.skip(str(missing))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def runtime(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m runtime ARGS` from the repository's root."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """A helper: run("--rootfs", DIR, "sh", "-c", "...") is `runtime run ...`, finished."""
    if os.geteuid() != 0:
        pytest.skip("runtime run needs root")

    def run_container(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return runtime("run", *args, timeout=timeout)

    return run_container


def host_mounts() -> Counter[str]:
    """The host's mounts as "mount point, fstype, source" (mount ids left out: they are reused)."""
    mounts: Counter[str] = Counter()
    with open("/proc/self/mountinfo") as file:
        for line in file:
            fields = line.split()
            separator = fields.index("-")
            mounts[f"{fields[4]} {fields[separator + 1]} {fields[separator + 2]}"] += 1
    return mounts


def container_cgroups() -> list[str]:
    """Directories <hierarchy>/runtime/<id> in every cgroup hierarchy (v1, unified, or v2 at the root)."""
    patterns = (f"{CGROUP_ROOT}/*/runtime/*/", f"{CGROUP_ROOT}/runtime/*/")
    return sorted(path.rstrip("/") for pattern in patterns for path in glob.glob(pattern))


def leftovers(mounts_before: Counter[str] | None = None) -> list[str]:
    """What containers left: cgroup directories, state entries and, against a snapshot taken with
    host_mounts(), the host's added mounts and a changed mount count."""
    found = [f"cgroup {path}" for path in container_cgroups()]
    for kind in ("containers", "names"):
        directory = os.path.join(STATE_ROOT, kind)
        try:
            found += [f"state {directory}/{entry}" for entry in sorted(os.listdir(directory))]
        except FileNotFoundError:
            pass
    if mounts_before is not None:
        now = host_mounts()
        found += [f"mount {mount}" for mount in sorted((now - mounts_before).elements())]
        if sum(now.values()) != sum(mounts_before.values()):
            found.append(f"mount count {sum(mounts_before.values())} -> {sum(now.values())}")
    return found


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    """Fails the test when it left anything behind that was not there before it."""
    before = set(leftovers())
    mounts = host_mounts()
    yield
    new = [item for item in leftovers(mounts) if item not in before]
    assert new == [], f"left behind: {new}"
