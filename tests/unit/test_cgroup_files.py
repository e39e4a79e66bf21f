"""What the v1 and v2 managers write, on a directory standing in for the hierarchies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.cgroups import devices, v1
from runtime.cgroups.base import Limits
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup

MIB = 1024**2


def test_v2_enables_controllers_on_the_way_down_and_writes_limits(tmp_path: Path) -> None:
    (tmp_path / "cgroup.subtree_control").write_text("cpu\n")
    group = V2Cgroup("c0ffee", ("memory", "cpu", "pids"), str(tmp_path))
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime/cgroup.subtree_control").write_text("")
    group.create()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +pids"  # cpu was on already
    assert (tmp_path / "runtime/cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    leaf = tmp_path / "runtime/c0ffee"
    for name in ("memory.max", "memory.swap.max", "cpu.max", "pids.max"):
        (leaf / name).write_text("max\n")
    group.apply(Limits(memory=32 * MIB, cpus=0.2, pids=20))
    assert (leaf / "memory.max").read_text() == str(32 * MIB)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "cpu.max").read_text() == "20000 100000"
    assert (leaf / "pids.max").read_text() == "20"


def test_v2_reads_oom_kills_from_memory_events(tmp_path: Path) -> None:
    group = V2Cgroup("c0ffee", ("memory",), str(tmp_path))
    leaf = tmp_path / "runtime/c0ffee"
    leaf.mkdir(parents=True)
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert group.oom_kills() == 1


def test_v1_one_directory_per_hierarchy_and_its_files(tmp_path: Path) -> None:
    mounts = {
        "memory": str(tmp_path / "memory"),
        "cpu": str(tmp_path / "cpu,cpuacct"),
        "pids": str(tmp_path / "pids"),
    }
    group = V1Cgroup("c0ffee", mounts)
    group.create()
    dirs = {name: tmp_path / name / "runtime/c0ffee" for name in ("memory", "cpu,cpuacct", "pids")}
    assert all(d.is_dir() for d in dirs.values())
    files = {"memory": ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"],
             "cpu,cpuacct": ["cpu.cfs_quota_us", "cpu.cfs_period_us"], "pids": ["pids.max"]}  # fmt: skip
    for hierarchy, names in files.items():
        for name in names:
            (dirs[hierarchy] / name).write_text("-1\n")
    group.apply(Limits(memory=64 * MIB, cpus=1.5, pids=7))
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == str(64 * MIB)
    assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == str(64 * MIB)
    assert (dirs["cpu,cpuacct"] / "cpu.cfs_quota_us").read_text() == "150000"
    assert (dirs["cpu,cpuacct"] / "cpu.cfs_period_us").read_text() == "100000"
    assert (dirs["pids"] / "pids.max").read_text() == "7"


def test_v1_oom_kills_from_oom_control(tmp_path: Path) -> None:
    group = V1Cgroup("c0ffee", {"memory": str(tmp_path)})
    leaf = tmp_path / "runtime/c0ffee"
    leaf.mkdir(parents=True)
    (leaf / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_kills() == 2
    (leaf / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")  # before 4.13
    (leaf / "memory.failcnt").write_text("5\n")
    assert group.oom_kills() == 1


def test_co_mounted_controllers_share_a_directory(tmp_path: Path) -> None:
    both = str(tmp_path / "cpu,cpuacct")
    assert len(V1Cgroup("c0ffee", {"cpu": both, "cpuacct": both}).directories()) == 1


def test_v1_devices_deny_all_then_allow_each_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[tuple[str, str]] = []
    monkeypatch.setattr(v1, "write", lambda path, value: written.append((path, value)))
    group = V1Cgroup("c0ffee", {"devices": str(tmp_path / "devices"), "pids": str(tmp_path / "pids")})
    said = group.restrict_devices(devices.DEFAULT_RULES)
    leaf = str(tmp_path / "devices/runtime/c0ffee")
    assert written[0] == (f"{leaf}/devices.deny", "a")  # first: nothing is allowed, then the list
    assert written[1:] == [(f"{leaf}/devices.allow", rule.v1_line()) for rule in devices.DEFAULT_RULES]
    assert said == f"devices: cgroup v1 devices allowlist at {leaf}"


def test_v1_without_a_devices_hierarchy_cannot_restrict(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="devices controller"):
        V1Cgroup("c0ffee", {"pids": str(tmp_path / "pids")}).restrict_devices(devices.DEFAULT_RULES)


def test_v1_cpuset_directories_get_the_parents_cpus_and_mems(tmp_path: Path) -> None:
    # an empty cpuset.cpus refuses every process (ENOSPC): the runtime's directory and the container's
    # start with their parent's
    mount = tmp_path / "cpuset"
    mount.mkdir()
    (mount / "cpuset.cpus").write_text("0-1\n")
    (mount / "cpuset.mems").write_text("0\n")
    real_makedirs = os.makedirs

    def makedirs(name: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        real_makedirs(name, mode, exist_ok)
        if not name.startswith(str(mount)):
            return
        for parent in (Path(name).parent, Path(name)):  # what the kernel shows in a new cpuset
            for file in ("cpuset.cpus", "cpuset.mems"):
                if not (parent / file).exists():
                    (parent / file).write_text("\n")

    group = V1Cgroup("c0ffee", {"cpuset": str(mount), "name=systemd": str(tmp_path / "systemd")})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "makedirs", makedirs)
        group.create()
    for directory in (mount / "runtime", mount / "runtime/c0ffee"):
        assert (directory / "cpuset.cpus").read_text() == "0-1"
        assert (directory / "cpuset.mems").read_text() == "0"
    assert (tmp_path / "systemd/runtime/c0ffee").is_dir()
    assert not (tmp_path / "systemd/runtime/c0ffee/cpuset.cpus").exists()
