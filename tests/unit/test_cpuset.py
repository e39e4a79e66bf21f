"""--cpuset-cpus: the CPU list parser, the refusals before anything exists, and what each cgroup
version writes, on recorded hosts and directories standing in for the hierarchies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime import decide, runcli, spec
from runtime.cgroups import cpulist, layout
from runtime.cgroups.base import Limits
from runtime.cgroups.manager import plan
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux.sysroot import Sysroot
from tests import hosts

KCONFIG = Path(__file__).parents[1] / "data" / "kconfig"
ONLINE = "sys/devices/system/cpu/online"


def pinned(cpus: str) -> spec.ContainerSpec:
    return spec.ContainerSpec("c0ffee", "c0ffee", "/nonexistent", ("true",), limits=Limits(cpuset_cpus=cpus))


def recorded(host: hosts.HostSpec, tmp_path: Path, files: dict[str, str] | None = None) -> Sysroot:
    root, _, _ = hosts.build(hosts.with_files(host, files or {}), tmp_path)
    return root


def cgroup_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("sys/fs/cgroup/**/runtime"))


# --- the list ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ranges", "spelled"),
    [
        ("1", [(1, 1)], "1"),
        ("0-1", [(0, 1)], "0-1"),
        ("0,2-3", [(0, 0), (2, 3)], "0,2-3"),
        ("3,0-1", [(0, 1), (3, 3)], "0-1,3"),  # sorted
        ("0,1,2", [(0, 2)], "0-2"),  # adjacent CPUs merge
        ("0-2,1-4", [(0, 4)], "0-4"),  # overlapping ranges merge
        ("2-2", [(2, 2)], "2"),
        ("07", [(7, 7)], "7"),
        ("0-4000000000", [(0, 4000000000)], "0-4000000000"),  # kept as a range, never expanded
    ],
)
def test_cpu_lists_parse_to_sorted_merged_ranges(text: str, ranges: cpulist.Ranges, spelled: str) -> None:
    assert cpulist.parse(text) == ranges
    assert cpulist.spell(ranges) == spelled


@pytest.mark.parametrize(
    "text",
    ["", "1-x", "x", "-1", "1-", "3-1", "1,,2", ",1", "1,", " 1", "1 ", "+1", "1-2-3", "1.0", "²", "0x1"],
)
def test_what_is_not_a_cpu_list(text: str) -> None:
    assert cpulist.parse(text) is None


@pytest.mark.parametrize(
    ("wanted", "offered", "missing"),
    [
        ("1", "0-1", None),
        ("0-1", "0-1", None),
        ("5", "0-1", 5),
        ("0-3", "0-1", 2),
        ("0,2", "0-1,3", 2),
        ("1,3", "0-1,3", None),
        ("0-3", "0,1-3", None),
    ],
)
def test_first_missing_cpu(wanted: str, offered: str, missing: int | None) -> None:
    wanted_ranges, offered_ranges = cpulist.parse(wanted), cpulist.parse(offered)
    assert wanted_ranges is not None
    assert offered_ranges is not None
    assert cpulist.first_missing(wanted_ranges, offered_ranges) == missing


def test_a_bad_list_is_refused_in_one_line() -> None:
    with pytest.raises(Failure) as refusal:
        spec.parse_cpuset_cpus("1-x")
    assert str(refusal.value) == "--cpuset-cpus 1-x: not a CPU list (e.g. 0-1,3)"
    assert refusal.value.code == EXIT_RUNTIME


def test_the_command_line_refuses_a_bad_list_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runcli.main(["--cpuset-cpus", "1-x", "--rootfs", str(tmp_path), "true"]) == EXIT_RUNTIME
    assert capsys.readouterr().err == "runtime: error: --cpuset-cpus 1-x: not a CPU list (e.g. 0-1,3)\n"


def test_the_command_line_keeps_the_kernels_spelling(tmp_path: Path) -> None:
    options, command = runcli.parse(["--cpuset-cpus", "3,0,1", "--rootfs", str(tmp_path), "true"])
    assert runcli.build_spec(options, command).limits.cpuset_cpus == "0-1,3"
    options, command = runcli.parse(["--rootfs", str(tmp_path), "true"])
    assert runcli.build_spec(options, command).limits.cpuset_cpus is None


def test_help_shows_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert runcli.main(["--help"]) == 0
    assert "--cpuset-cpus LIST" in capsys.readouterr().out


# --- refused before anything exists -----------------------------------------------------------------------


def test_an_offline_cpu_is_refused_naming_the_online_ones(tmp_path: Path) -> None:
    root = recorded(hosts.hybrid_6_1(), tmp_path, {ONLINE: "0-1\n"})
    with pytest.raises(Failure) as refusal:
        decide.choose_cgroups(pinned("5"), root)
    assert str(refusal.value) == "--cpuset-cpus 5: CPU 5 is not online here (online: 0-1)"
    assert refusal.value.code == EXIT_RUNTIME
    assert cgroup_dirs(tmp_path) == []


def test_a_cpu_the_runtimes_cgroup_lacks_is_refused(tmp_path: Path) -> None:
    # v1 keeps the CPUs a cpuset was given: after CPU 1 went offline and came back, runtime/ lacks it
    files = {ONLINE: "0-1\n", "sys/fs/cgroup/cpuset/runtime/cpuset.effective_cpus": "0\n"}
    root = recorded(hosts.hybrid_6_1(), tmp_path, files)
    with pytest.raises(Failure) as refusal:
        decide.choose_cgroups(pinned("1"), root)
    assert "--cpuset-cpus 1: CPU 1 is not one the runtime's cgroups may use" in refusal.value.message
    assert "/sys/fs/cgroup/cpuset/runtime/cpuset.effective_cpus: 0" in refusal.value.message


def test_the_v2_roots_effective_cpus_count_when_the_runtime_has_no_cpuset_yet(tmp_path: Path) -> None:
    files = {ONLINE: "0-3\n", "sys/fs/cgroup/cpuset.cpus.effective": "0-1\n"}
    root = recorded(hosts.v2_only_6_12(), tmp_path, files)
    with pytest.raises(Failure, match=r"CPU 2 is not one .* \(/sys/fs/cgroup/cpuset.cpus.effective: 0-1\)"):
        decide.choose_cgroups(pinned("1-2"), root)
    assert decide.choose_cgroups(pinned("0-1"), root).directories() == ["/sys/fs/cgroup/runtime/c0ffee"]


def test_online_cpus_are_accepted(tmp_path: Path) -> None:
    root = recorded(hosts.hybrid_6_1(), tmp_path, {ONLINE: "0-1\n"})
    manager = decide.choose_cgroups(pinned("1"), root)
    assert "/sys/fs/cgroup/cpuset/runtime/c0ffee" in manager.directories()


def test_no_cpuset_controller_is_refused_naming_the_cause(tmp_path: Path) -> None:
    config = (KCONFIG / "debian-6.12.config").read_text()
    host = hosts.v1_only_6_12()
    root = recorded(host, tmp_path, {f"boot/config-{host.osrelease}": config, ONLINE: "0-1\n"})
    with pytest.raises(Failure) as refusal:
        decide.choose_cgroups(pinned("1"), root)
    assert refusal.value.code == EXIT_RUNTIME
    assert (
        "--cpuset-cpus needs the cpuset controller, which this host does not offer" in refusal.value.message
    )
    assert "CONFIG_CPUSETS_V1" in refusal.value.message
    assert cgroup_dirs(tmp_path) == []


def test_no_cgroups_at_all_is_refused(tmp_path: Path) -> None:
    host = hosts.v1_only_6_1()
    bare = hosts.HostSpec(
        osrelease=host.osrelease,
        mountinfo=hosts.mountinfo(),
        proc_cgroups=host.proc_cgroups,
        filesystems=host.filesystems,
        cmdline=host.cmdline,
    )
    root = recorded(bare, tmp_path)
    assert layout.read(root).mode == layout.NONE
    with pytest.raises(Failure, match="limits need cgroups, and none are mounted here"):
        decide.choose_cgroups(pinned("0"), root)


@pytest.mark.parametrize(
    ("make", "where"),
    [(hosts.hybrid_6_1, V1Cgroup), (hosts.hybrid_6_12, V2Cgroup), (hosts.v2_only_6_12, V2Cgroup)],
)
def test_the_cpuset_goes_where_the_layout_has_it(make: object, where: type, tmp_path: Path) -> None:
    root = recorded(make(), tmp_path)  # type: ignore[operator]
    manager = plan(layout.read(root), "c0ffee", Limits(cpuset_cpus="1"))
    v2 = next((part for part in manager.parts if isinstance(part, V2Cgroup)), None)
    assert (v2 is not None and "cpuset" in v2.controllers) == (where is V2Cgroup)
    v1 = next((part for part in manager.parts if isinstance(part, V1Cgroup)), None)
    assert (v1 is not None and "cpuset" in v1.dirs) == (where is V1Cgroup)


# --- what each version writes -----------------------------------------------------------------------------


def test_v2_enables_cpuset_on_the_way_down_and_writes_the_cpus(tmp_path: Path) -> None:
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory pids\n")
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime/cgroup.subtree_control").write_text("memory\n")
    group = V2Cgroup("c0ffee", ("cpuset",), str(tmp_path))
    group.create()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+cpuset"
    assert (tmp_path / "runtime/cgroup.subtree_control").read_text() == "+cpuset"
    leaf = tmp_path / "runtime/c0ffee"
    for name in ("cpuset.cpus", "cpuset.mems"):
        (leaf / name).write_text("\n")
    group.apply(Limits(cpuset_cpus="1"))
    assert (leaf / "cpuset.cpus").read_text() == "1"
    assert (leaf / "cpuset.mems").read_text() == "\n"  # empty: the parent's


def test_v2_without_the_cpuset_controller_writes_no_cpus(tmp_path: Path) -> None:
    group = V2Cgroup("c0ffee", (), str(tmp_path))
    (tmp_path / "runtime/c0ffee").mkdir(parents=True)
    group.apply(Limits(cpuset_cpus="1"))  # the layout put the cpuset in v1
    assert not (tmp_path / "runtime/c0ffee/cpuset.cpus").exists()


def test_v1_writes_the_cpus_after_inheriting_the_parents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = tmp_path / "cpuset"
    mount.mkdir()
    (mount / "cpuset.cpus").write_text("0-1\n")
    (mount / "cpuset.mems").write_text("0\n")
    real_makedirs = os.makedirs

    def makedirs(name: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        real_makedirs(name, mode, exist_ok)
        for directory in (Path(name).parent, Path(name)):  # a new v1 cpuset's empty files
            for file in ("cpuset.cpus", "cpuset.mems"):
                if not (directory / file).exists():
                    (directory / file).write_text("\n")

    group = V1Cgroup("c0ffee", {"cpuset": str(mount), "pids": str(tmp_path / "pids")})
    monkeypatch.setattr(os, "makedirs", makedirs)
    group.create()
    group.apply(Limits(cpuset_cpus="1"))
    leaf = mount / "runtime/c0ffee"
    assert (leaf / "cpuset.cpus").read_text() == "1"
    assert (leaf / "cpuset.mems").read_text() == "0"
    assert (mount / "runtime/cpuset.cpus").read_text() == "0-1"  # the runtime's own keeps them all
