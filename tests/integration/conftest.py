"""Fixtures for running real containers on this host: a busybox root filesystem, a `runtime run`
helper, containers started in the background, and a check that nothing (cgroup, state, mount) is left
behind."""

from __future__ import annotations

import glob
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import busybox

REPO = Path(__file__).resolve().parents[2]
STATE_ROOT = "/run/runtime"
CGROUP_ROOT = "/sys/fs/cgroup"
DEADLINE = 10.0


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A busybox root filesystem (see compat/images/busybox.py).

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


class Background:
    """A `runtime run` started with Popen, named so that its state can be found."""

    def __init__(self, rootfs: Path, *args: str) -> None:
        self.name = f"it-{uuid.uuid4().hex[:10]}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "run", "--name", self.name, "--rootfs", str(rootfs), *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.output = b""

    def _read_until(self, wanted: bytes, timeout: float) -> None:
        """Read stdout into self.output until it holds wanted. Unbuffered reads of the pipe's fd: a
        buffered reader could hold what select() then no longer sees."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while wanted not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"no {wanted!r} within {timeout} s; stdout so far: {self.output!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"stdout closed before {wanted!r}: {self.output!r}; {self.finish()}"
                self.output += chunk

    def wait_for_output(self, text: str, timeout: float = DEADLINE) -> str:
        """Read stdout until it holds text; returns what was read so far."""
        self._read_until(text.encode(), timeout)
        return self.output.decode()

    def first_line(self, timeout: float = DEADLINE) -> str:
        """The first line of stdout, with its newline."""
        self._read_until(b"\n", timeout)
        return self.output.decode().split("\n", 1)[0] + "\n"

    def state(self) -> dict[str, str]:
        """The container's state file, once its init is recorded."""
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                container_id = os.readlink(f"{STATE_ROOT}/names/{self.name}")
                text = Path(f"{STATE_ROOT}/containers/{container_id}/state").read_text()
                values = dict(line.split("=", 1) for line in text.splitlines())
                if values["init_pid"] != "0":
                    return values
            except (OSError, KeyError):
                pass
            assert time.monotonic() < deadline, f"no state with an init for {self.name}"
            time.sleep(0.02)

    def finish(self, timeout: float = DEADLINE) -> tuple[int, str, str]:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, (self.output + stdout).decode(), stderr.decode()

    def kill_runtime(self) -> int:
        """SIGKILL the runtime alone. Its container keeps our pipes open: wait, do not read to the end."""
        self.proc.kill()
        code = self.proc.wait(timeout=DEADLINE)
        self.close()
        return code

    def close(self) -> None:
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def start(busybox_rootfs: Path) -> Iterator[Callable[..., Background]]:
    """start(OPTION..., COMMAND...) -> Background; whatever still runs at the end is stopped."""
    started: list[Background] = []

    def start_container(*args: str) -> Background:
        started.append(Background(busybox_rootfs, *args))
        return started[-1]

    yield start_container
    for container in started:
        if container.proc.poll() is None:
            container.proc.terminate()
            try:
                container.proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                container.proc.kill()
                container.proc.wait()
        container.close()
        if container.proc.returncode == -signal.SIGKILL and os.path.lexists(
            f"{STATE_ROOT}/names/{container.name}"
        ):
            runtime("gc")  # the test failed before its own gc


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def forked_workload(init: int) -> int:
    """The init's one child: the state names the init before the init has forked the workload."""
    deadline = time.monotonic() + DEADLINE
    while not (found := children(init)):
        assert time.monotonic() < deadline, f"the init {init} forked no workload"
        time.sleep(0.01)
    (workload,) = found
    return workload


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
