"""Device nodes and the cgroup root, in real containers: Docker's default devices and nothing else, on
the cgroup v1 devices controller (this host's choice) and on an eBPF program in the cgroup2 hierarchy
(forced with RUNTIME_DEVICES=ebpf: this hybrid host's empty /sys/fs/cgroup/unified holds one too);
and a cgroup namespace rooted at the container's own cgroup in every hierarchy.

Needs root and busybox-static; skipped otherwise."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.cgroups import devices
from runtime.linux import bpf
from tests.integration.conftest import DEADLINE, REPO, Background

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leftovers")]

Result = subprocess.CompletedProcess[str]
EPERM_TEXT = "Operation not permitted"
USERNS = ("host", "private", "auto")

# Prints "<path> ok" or "<path> <error>" for each device it opens; busybox's head opens for reading,
# `exec 3<>` for reading and writing.
PROBE = r"""
for node in "$@"; do
  if err=$(head -c 1 "$node" 2>&1 >/dev/null); then echo "$node ok"; else echo "$node $err"; fi
done
if exec 3<>/dev/ptmx; then echo "ptmx ok $(ls /dev/pts | tr '\n' ' ')"; else echo "ptmx failed"; fi
if err=$(head -c 1 /dev/pts/0 2>&1 >/dev/null); then echo "pts0 ok"; else echo "pts0 $err"; fi
"""


@pytest.fixture(scope="module")
def rootfs_with_a_block_node(busybox_rootfs: Path) -> Iterator[Path]:
    """A copy of the busybox rootfs with /blk, a 7:0 block device node (a host loop device) mode 0666,
    as an image layer could carry it."""
    base = Path(tempfile.mkdtemp(prefix="devices-", dir="/tmp"))
    base.chmod(0o755)  # container root may be an unprivileged host uid
    root = base / "rootfs"
    try:
        shutil.copytree(busybox_rootfs, root, symlinks=True)
        os.mknod(root / "blk", stat.S_IFBLK | 0o666, os.makedev(7, 0))
        (root / "blk").chmod(0o666)
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["default", "ebpf"])
def mechanism(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The host's choice (v1 here), and the cgroup v2 eBPF program forced on the unified hierarchy."""
    if request.param == "ebpf":
        monkeypatch.setenv("RUNTIME_DEVICES", "ebpf")
    else:
        monkeypatch.delenv("RUNTIME_DEVICES", raising=False)
    return str(request.param)


def probe(run: Callable[..., Result], rootfs: Path, userns: str, *nodes: str) -> dict[str, str]:
    done = run("--verbose", "--rootfs", str(rootfs), "--userns", userns, "sh", "-c", PROBE, "sh", *nodes)
    assert done.returncode == 0, done.stderr
    results = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    results["stderr"] = done.stderr
    return results


def said_mechanism(stderr: str, mechanism: str) -> None:
    if mechanism == "ebpf":
        assert "runtime: devices: eBPF device program on /sys/fs/cgroup/unified/runtime/" in stderr, stderr
    else:
        assert "runtime: devices: cgroup v1 devices allowlist at /sys/fs/cgroup/devices/runtime/" in stderr, (
            stderr
        )


@pytest.mark.parametrize("userns", USERNS)
def test_an_images_block_node_cannot_be_opened(
    run: Callable[..., Result], rootfs_with_a_block_node: Path, userns: str, mechanism: str
) -> None:
    results = probe(run, rootfs_with_a_block_node, userns, "/blk")
    assert results["/blk"].endswith(EPERM_TEXT), results
    said_mechanism(results["stderr"], mechanism)


@pytest.mark.usefixtures("mechanism")
@pytest.mark.parametrize("userns", USERNS)
def test_the_default_devices_open(
    run: Callable[..., Result], rootfs_with_a_block_node: Path, userns: str
) -> None:
    results = probe(run, rootfs_with_a_block_node, userns, "/dev/null", "/dev/zero", "/dev/urandom",
                    "/dev/random", "/dev/full", "/dev/tty")  # fmt: skip
    for node in ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random", "/dev/full"):
        assert results[node] == "ok", results
    assert EPERM_TEXT not in results["/dev/tty"], results  # ENXIO without a controlling terminal is fine
    assert results["ptmx"].startswith("ok "), results
    assert "0" in results["ptmx"].split(), results  # the pty's slave appeared in the container's devpts
    assert EPERM_TEXT not in results["pts0"], results  # allowed (136:*), only locked (EIO)


def test_mknod_of_a_host_block_device_is_refused(
    run: Callable[..., Result], rootfs_with_a_block_node: Path, mechanism: str
) -> None:
    script = "mknod /tmp/loop b 7 0; echo block=$?; mknod /tmp/null c 1 3 && echo x > /tmp/null; echo null=$?"
    done = run("--verbose", "--rootfs", str(rootfs_with_a_block_node), "--userns", "host", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert "block=1" in done.stdout, done
    assert f"mknod: /tmp/loop: {EPERM_TEXT}" in done.stderr, done
    assert "null=0" in done.stdout, done  # c 1:3 rwm: the allowlist lets mknod of /dev/null's numbers by
    assert not (rootfs_with_a_block_node / "tmp/loop").exists()
    (rootfs_with_a_block_node / "tmp/null").unlink()
    said_mechanism(done.stderr, mechanism)


def host_hierarchies() -> list[str]:
    """The hierarchies of this process's /proc/self/cgroup: "4:memory", "0:"."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    return sorted(line.rsplit(":", 1)[0] for line in lines)


@pytest.mark.parametrize("userns", USERNS)
def test_the_cgroup_namespace_is_rooted_at_the_containers_cgroup(
    start: Callable[..., Background], userns: str
) -> None:
    container = start("--userns", userns, "sh", "-c", "tr '\\n' ' ' < /proc/self/cgroup; echo; exec sleep 30")
    inside = container.first_line().split()
    state = container.state()
    seen = {line.rsplit(":", 1)[0]: line.rsplit(":", 1)[1] for line in inside}
    assert sorted(seen) == host_hierarchies()  # a line for each hierarchy mounted here
    assert set(seen.values()) == {"/"}, inside
    on_host = Path(f"/proc/{state['init_pid']}/cgroup").read_text().splitlines()
    for line in on_host:
        assert line.endswith(f"/runtime/{state['id']}"), on_host
    container.proc.terminate()
    container.finish()


def test_forced_ebpf_leaves_the_v1_devices_cgroup_open(
    start: Callable[..., Background], monkeypatch: pytest.MonkeyPatch
) -> None:
    # so that the EPERMs above, under "ebpf", are the eBPF program's doing
    monkeypatch.setenv("RUNTIME_DEVICES", "ebpf")
    container = start("--userns", "host", "sh", "-c", "echo up; exec sleep 30")
    assert container.first_line() == "up\n"
    state = container.state()
    (v1,) = [d for d in state["cgroups"].split(":") if d.startswith("/sys/fs/cgroup/devices/")]
    assert Path(v1, "devices.list").read_text() == "a *:* rwm\n"
    container.proc.terminate()
    container.finish()


def test_v1_devices_list_is_dockers(
    start: Callable[..., Background], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RUNTIME_DEVICES", raising=False)
    container = start("sh", "-c", "echo up; exec sleep 30")
    assert container.first_line() == "up\n"
    (v1,) = [d for d in container.state()["cgroups"].split(":") if d.startswith("/sys/fs/cgroup/devices/")]
    listed = Path(v1, "devices.list").read_text().splitlines()
    assert sorted(listed) == sorted(rule.v1_line() for rule in devices.DEFAULT_RULES)
    container.proc.terminate()
    container.finish()


def test_gc_removes_every_cgroup_of_a_container_whose_runtime_was_killed(
    start: Callable[..., Background], monkeypatch: pytest.MonkeyPatch
) -> None:
    # no limits, and an eBPF program on the cgroup2 directory: gc kills and removes all of them
    monkeypatch.setenv("RUNTIME_DEVICES", "ebpf")
    subprocess.run([sys.executable, "-m", "runtime", "gc"], cwd=REPO, capture_output=True, check=False)
    container = start("--userns", "host", "sh", "-c", "echo up; exec sleep 30")
    assert container.first_line() == "up\n"
    state = container.state()
    directories = state["cgroups"].split(":")
    assert len(directories) == len(host_hierarchies())  # one in every hierarchy
    container.kill_runtime()
    collected = subprocess.run(
        [sys.executable, "-m", "runtime", "gc"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert collected.returncode == 0, collected.stderr
    assert f"({state['id']})" in collected.stdout, collected.stdout
    assert not any(os.path.exists(directory) for directory in directories)
    deadline = time.monotonic() + DEADLINE
    while _running(state["init_pid"]):
        assert time.monotonic() < deadline, "the init outlived gc"
        time.sleep(0.02)


def _running(pid: str) -> bool:
    """Neither gone nor a zombie (reaped by whoever it was reparented to)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_forced_mechanism_the_host_lacks_is_refused(
    run: Callable[..., Result], busybox_rootfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_DEVICES", "bogus")
    done = run("--rootfs", str(busybox_rootfs), "true")
    assert done.returncode == 125
    assert "RUNTIME_DEVICES=bogus" in done.stderr
    assert "Traceback" not in done.stderr


# --- the kernel's verdict on the programs ---------------------------------------------------------------


def test_the_kernel_verifier_accepts_the_device_program() -> None:
    if os.geteuid() != 0:
        pytest.skip("loading a cgroup device program needs root")
    fd = bpf.load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, devices.program(devices.DEFAULT_RULES), "test_devices")
    os.close(fd)


def test_a_refused_program_carries_the_verifier_log() -> None:
    if os.geteuid() != 0:
        pytest.skip("loading a cgroup device program needs root")
    with pytest.raises(bpf.BpfError) as refused:
        bpf.load(bpf.BPF_PROG_TYPE_CGROUP_DEVICE, bpf.exit_insn(), "test_bad")  # r0 never set
    assert refused.value.errno == errno.EACCES
    assert "BPF_PROG_LOAD" in str(refused.value)
    assert "verifier:" in str(refused.value), str(refused.value)
    assert "R0" in str(refused.value), str(refused.value)
