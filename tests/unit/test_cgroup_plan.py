"""plan() on recorded layouts: a cgroup in every hierarchy, limits where their controller lives, and the
devices mechanism each host flavour gets."""

from __future__ import annotations

import dataclasses
import errno
from pathlib import Path

import pytest

from runtime import decide, spec
from runtime.cgroups import layout
from runtime.cgroups.base import Limits
from runtime.cgroups.manager import DevicesUnrestricted, Manager, NoCgroups, Unavailable, plan
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux import bpf
from tests import hosts

RECORDED_HERE = Path(__file__).parents[1] / "data" / "hosts" / "debian12-6.18-hybrid"
MIB = 1024**2


def read(host: hosts.HostSpec, tmp_path: Path) -> layout.Layout:
    root, _, _ = hosts.build(host, tmp_path)
    return layout.read(root)


def hierarchy_of(directory: str) -> str:
    """/sys/fs/cgroup/cpu,cpuacct/runtime/c0ffee -> cpu,cpuacct"""
    parts = directory.split("/")
    assert parts[-2:] == ["runtime", "c0ffee"], directory
    return "/".join(parts[4:-2]) or "(root)"


def hierarchies(manager: Manager) -> list[str]:
    return sorted(hierarchy_of(directory) for directory in manager.directories())


V1_6_1 = sorted(("systemd", *hosts.V1_GROUPS_6_1))
V1_6_12 = sorted(("systemd", *hosts.V1_GROUPS_6_12))


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (hosts.v1_only_6_1, V1_6_1),
        (hosts.hybrid_6_1, sorted((*V1_6_1, "unified"))),
        (hosts.hybrid_6_12, sorted((*V1_6_12, "unified"))),
        (hosts.v1_only_6_12, V1_6_12),
        (hosts.v2_only_6_12, ["(root)"]),
        (hosts.v2_only_5_10, ["(root)"]),
    ],
)
def test_without_limits_a_cgroup_in_every_hierarchy(
    make: object, expected: list[str], tmp_path: Path
) -> None:
    # so that the cgroup namespace the init unshares is rooted at the container's own cgroup everywhere
    manager = plan(read(make(), tmp_path), "c0ffee", Limits())  # type: ignore[operator]
    assert hierarchies(manager) == expected


def test_this_hosts_recording_every_hierarchy_including_name_systemd() -> None:
    root, _, _ = hosts.load_recording(RECORDED_HERE)
    manager = plan(layout.read(root), "c0ffee", Limits())
    expected = [
        "blkio",
        "cpu",
        "cpuacct",
        "cpuset",
        "devices",
        "freezer",
        "memory",
        "pids",
        "systemd",
        "unified",
    ]
    assert hierarchies(manager) == expected
    assert manager.devices == layout.DEVICES_V1


def test_a_hierarchy_mounted_twice_gets_one_directory(tmp_path: Path) -> None:
    host = hosts.hybrid_6_1()
    again = "90 30 0:31 / /mnt/pids rw,nosuid,nodev,noexec,relatime - cgroup cgroup ro,pids"
    host = dataclasses.replace(host, mountinfo=host.mountinfo + again + "\n")
    directories = plan(read(host, tmp_path), "c0ffee", Limits()).directories()
    assert len(directories) == len(set(directories)) == len(V1_6_1) + 1
    assert not any(d.startswith("/mnt/") for d in directories)


@pytest.mark.parametrize(
    ("make", "memory_in"),
    [(hosts.hybrid_6_1, V1Cgroup), (hosts.hybrid_6_12, V2Cgroup), (hosts.v2_only_6_12, V2Cgroup)],
)
def test_limits_go_where_their_controller_lives(make: object, memory_in: type, tmp_path: Path) -> None:
    manager = plan(read(make(), tmp_path), "c0ffee", Limits(memory=64 * MIB, pids=10))  # type: ignore[operator]
    (v2,) = [part for part in manager.parts if isinstance(part, V2Cgroup)]
    assert ("memory" in v2.controllers) == (memory_in is V2Cgroup)  # only what is limited there is enabled
    assert "pids" not in v2.controllers or make is hosts.v2_only_6_12


def test_a_limit_whose_controller_lives_nowhere_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Unavailable) as missing:
        plan(read(hosts.v1_only_6_12(), tmp_path), "c0ffee", Limits(memory=64 * MIB))
    assert missing.value.controller == "memory"


@pytest.mark.parametrize(
    ("make", "mechanism"),
    [
        (hosts.v1_only_6_1, layout.DEVICES_V1),
        (hosts.hybrid_6_1, layout.DEVICES_V1),  # the devices controller is in v1: its allowlist
        (hosts.hybrid_6_12, layout.DEVICES_V1),
        (hosts.v2_only_6_12, layout.DEVICES_EBPF),
        (hosts.v2_only_5_10, layout.DEVICES_EBPF),
    ],
)
def test_devices_mechanism_per_host_flavour(make: object, mechanism: str, tmp_path: Path) -> None:
    found = read(make(), tmp_path)  # type: ignore[operator]
    assert layout.devices_mechanism(found) == mechanism
    assert plan(found, "c0ffee", Limits()).devices == mechanism


def test_hybrid_without_a_v1_devices_controller_uses_ebpf_on_unified(tmp_path: Path) -> None:
    host = hosts.hybrid_6_1()
    host = dataclasses.replace(host, mountinfo=hosts.without_mount(host.mountinfo, "/sys/fs/cgroup/devices"))
    found = read(host, tmp_path)
    assert layout.devices_mechanism(found) == layout.DEVICES_EBPF
    assert found.v2_mount == "/sys/fs/cgroup/unified"


def test_no_cgroups_no_devices_mechanism(tmp_path: Path) -> None:
    host = hosts.v2_only_6_12()
    host = dataclasses.replace(host, mountinfo=hosts.without_mount(host.mountinfo, "/sys/fs/cgroup"))
    found = read(hosts.with_files(host, drop=["sys/fs/cgroup/"]), tmp_path)
    assert found.mode == layout.NONE
    assert layout.devices_mechanism(found) == layout.DEVICES_NONE


@pytest.mark.parametrize(
    ("make", "forced", "chosen"),
    [
        (hosts.hybrid_6_1, layout.DEVICES_EBPF, layout.DEVICES_EBPF),  # unified holds device programs
        (hosts.hybrid_6_1, layout.DEVICES_V1, layout.DEVICES_V1),
        (hosts.v2_only_6_12, layout.DEVICES_V1, None),  # not offered here
        (hosts.v1_only_6_1, layout.DEVICES_EBPF, None),
        (hosts.hybrid_6_1, "bogus", None),
    ],
)
def test_forced_mechanism_only_where_offered(
    make: object, forced: str, chosen: str | None, tmp_path: Path
) -> None:
    assert layout.devices_mechanism(read(make(), tmp_path), forced) == chosen  # type: ignore[operator]


def test_directories_are_what_create_makes(tmp_path: Path) -> None:
    # runtime gc removes what state recorded: directories() must name every directory made
    mounts = {"cpu": str(tmp_path / "cpu,cpuacct"), "cpuacct": str(tmp_path / "cpu,cpuacct"),
              "name=systemd": str(tmp_path / "systemd")}  # fmt: skip
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified/cgroup.subtree_control").write_text("")
    manager = Manager((V1Cgroup("c0ffee", mounts), V2Cgroup("c0ffee", (), str(tmp_path / "unified"))))
    manager.create()
    made = sorted(str(path) for path in tmp_path.glob("*/runtime/*"))
    assert made == sorted(manager.directories())
    manager.destroy()
    assert list(tmp_path.glob("*/runtime/*")) == []


# --- the devices restriction, and what the caller hears when there is none ---------------------------


def test_restrict_devices_on_v1_writes_the_allowlist(tmp_path: Path) -> None:
    manager = Manager((V1Cgroup("c0ffee", {"devices": str(tmp_path / "devices")}),), layout.DEVICES_V1)
    manager.create()
    leaf = tmp_path / "devices/runtime/c0ffee"
    for name in ("devices.deny", "devices.allow"):
        (leaf / name).write_text("")  # the kernel's files
    said = manager.restrict_devices()
    assert said == f"devices: cgroup v1 devices allowlist at {leaf}"
    assert (leaf / "devices.deny").read_text() == "a"
    assert (leaf / "devices.allow").read_text() == "c 136:* rwm"  # the last of the writes, one rule each
    assert manager.devices_restricted


def test_no_mechanism_is_reported_for_the_fallback(tmp_path: Path) -> None:
    manager = Manager((V1Cgroup("c0ffee", {"pids": str(tmp_path / "pids")}),), layout.DEVICES_NONE)
    with pytest.raises(DevicesUnrestricted, match="neither a v1 devices controller nor cgroup2"):
        manager.restrict_devices()
    assert not manager.devices_restricted


def test_a_refused_ebpf_program_is_reported_for_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_args: object) -> None:
        raise bpf.BpfError(errno.EINVAL, "bpf(BPF_PROG_LOAD): Invalid argument")  # no CONFIG_CGROUP_BPF

    monkeypatch.setattr(bpf, "attach_to_cgroup", refuse)
    manager = Manager((V2Cgroup("c0ffee", (), str(tmp_path)),), layout.DEVICES_EBPF)
    with pytest.raises(DevicesUnrestricted, match=r"eBPF device program .* failed: .*Invalid argument"):
        manager.restrict_devices()
    assert not manager.devices_restricted


def test_a_failed_v1_write_is_reported_for_the_fallback(tmp_path: Path) -> None:
    manager = Manager((V1Cgroup("c0ffee", {"devices": str(tmp_path / "devices")}),), layout.DEVICES_V1)
    with pytest.raises(DevicesUnrestricted, match=r"devices\.deny"):  # never created: no files to write
        manager.restrict_devices()


def test_choose_cgroups_refuses_a_forced_mechanism_the_host_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _, _ = hosts.build(hosts.v2_only_6_12(), tmp_path)
    monkeypatch.setenv("RUNTIME_DEVICES", layout.DEVICES_V1)
    request = spec.ContainerSpec("c0ffee", "c0ffee", "/nonexistent", ("true",))
    with pytest.raises(Failure, match="RUNTIME_DEVICES=v1") as refusal:
        decide.choose_cgroups(request, root)
    assert refusal.value.code == EXIT_RUNTIME
    monkeypatch.setenv("RUNTIME_DEVICES", layout.DEVICES_EBPF)
    manager = decide.choose_cgroups(request, root)
    assert manager is not None
    assert manager.devices == layout.DEVICES_EBPF


def test_a_host_without_cgroups_gets_the_null_manager(tmp_path: Path) -> None:
    v2 = hosts.v2_only_6_12()
    bare = dataclasses.replace(v2, mountinfo=hosts.without_mount(v2.mountinfo, "/sys/fs/cgroup"))
    root, _, _ = hosts.build(bare, tmp_path)
    request = spec.ContainerSpec("c0ffee", "c0ffee", "/nonexistent", ("true",))
    manager = decide.choose_cgroups(request, root)
    assert isinstance(manager, NoCgroups)
    manager.create()
    manager.add(1)
    manager.apply(Limits())
    assert manager.directories() == []
    assert manager.oom_kills() == 0
    with pytest.raises(DevicesUnrestricted, match="no cgroup hierarchy is mounted"):
        manager.restrict_devices()
    assert not manager.devices_restricted
    manager.destroy()
    assert list(tmp_path.glob("sys/fs/cgroup/**/runtime")) == []
