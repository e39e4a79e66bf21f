"""What the v1 and v2 managers write, on a directory standing in for the hierarchies."""

from __future__ import annotations

from pathlib import Path

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
