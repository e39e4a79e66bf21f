"""detect() on recorded /proc and /sys trees (tests/hosts.py), and on one real recording of a host.

Each spec is a Debian guest as the kernel-features reference describes it (sections 1.4, 1.6, 3); the
probe outcomes are the ones that host gave, so nothing here runs a probe or reads the live system.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runtime.cli import main
from runtime.errors import EXIT_USAGE
from runtime.features import host, report
from runtime.features.host import detect
from runtime.features.model import CgroupMode, Features, Status, Where
from runtime.features.probes import Outcome
from runtime.linux import mountinfo
from tests import hosts
from tests.hosts import HostSpec

V2_CHILD = f"/sys/fs/cgroup/{hosts.CHILD}"
UNIFIED = "/sys/fs/cgroup/unified"
KCONFIG = Path(__file__).parents[1] / "data" / "kconfig"
RECORDING = hosts.RECORDINGS / "debian12-6.18-hybrid"
OK, MISSING, DISABLED, UNKNOWN = Status.OK, Status.MISSING, Status.DISABLED, Status.UNKNOWN


def features_of(spec: HostSpec, tmp_path: Path) -> Features:
    return detect(*hosts.build(spec, tmp_path))


def with_debian_config(spec: HostSpec, kernel_id: str) -> HostSpec:
    """spec with the real Debian config of its kernel in /boot, where Debian keeps it."""
    text = (KCONFIG / f"debian-{kernel_id}.config").read_text()
    return hosts.with_files(spec, {f"boot/config-{spec.osrelease}": text})


# --- cgroup layout ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "mode", "v2_mount"),
    [
        (hosts.v1_only_6_1, CgroupMode.V1, None),
        (hosts.v1_only_6_12, CgroupMode.V1, None),
        (hosts.hybrid_6_1, CgroupMode.HYBRID, UNIFIED),
        (hosts.hybrid_6_12, CgroupMode.HYBRID, UNIFIED),
        (hosts.v2_only_6_12, CgroupMode.V2, "/sys/fs/cgroup"),
        (hosts.v2_only_5_10, CgroupMode.V2, "/sys/fs/cgroup"),
        (hosts.initramfs_root, CgroupMode.V2, "/sys/fs/cgroup"),
    ],
)
def test_cgroup_mode(
    make: Callable[[], HostSpec], mode: CgroupMode, v2_mount: str | None, tmp_path: Path
) -> None:
    cgroups = features_of(make(), tmp_path).cgroups
    assert cgroups.mode is mode
    assert cgroups.v2_mount == v2_mount
    assert cgroups.finding.status is Status.OK


@pytest.mark.parametrize(
    ("make", "name", "where", "mount"),
    [
        (hosts.v1_only_6_1, "memory", Where.V1, "/sys/fs/cgroup/memory"),
        (hosts.v1_only_6_1, "cpu", Where.V1, "/sys/fs/cgroup/cpu,cpuacct"),
        (hosts.v1_only_6_1, "cpuacct", Where.V1, "/sys/fs/cgroup/cpu,cpuacct"),
        (hosts.v1_only_6_1, "net_prio", Where.V1, "/sys/fs/cgroup/net_cls,net_prio"),
        (hosts.hybrid_6_1, "memory", Where.V1, "/sys/fs/cgroup/memory"),
        (hosts.hybrid_6_1, "cpuset", Where.V1, "/sys/fs/cgroup/cpuset"),
        (hosts.hybrid_6_1, "perf_event", Where.V1, "/sys/fs/cgroup/perf_event"),  # v1 wins over implicit v2
        (hosts.hybrid_6_12, "memory", Where.V2, UNIFIED),
        (hosts.hybrid_6_12, "cpuset", Where.V2, UNIFIED),
        (hosts.hybrid_6_12, "cpu", Where.V1, "/sys/fs/cgroup/cpu,cpuacct"),
        (hosts.hybrid_6_12, "pids", Where.V1, "/sys/fs/cgroup/pids"),
        (hosts.v2_only_6_12, "memory", Where.V2, "/sys/fs/cgroup"),
        (hosts.v2_only_6_12, "io", Where.V2, "/sys/fs/cgroup"),
        (hosts.v2_only_6_12, "misc", Where.V2, "/sys/fs/cgroup"),
        (hosts.v2_only_6_12, "perf_event", Where.V2, "/sys/fs/cgroup"),  # implicit, never listed
        (hosts.v2_only_5_10, "misc", Where.NONE, None),  # 5.13
        (hosts.v1_only_6_12, "memory", Where.NONE, None),  # no MEMCG_V1 and no v2 mounted
    ],
)
def test_where_each_controller_is(
    make: Callable[[], HostSpec], name: str, where: Where, mount: str | None, tmp_path: Path
) -> None:
    controller = features_of(make(), tmp_path).cgroups.controllers[name]
    assert (controller.where, controller.mount) == (where, mount)
    assert (controller.finding.status is Status.OK) == (where is not Where.NONE)


def test_hybrid_6_1_has_an_empty_unified_hierarchy(tmp_path: Path) -> None:
    cgroups = features_of(hosts.hybrid_6_1(), tmp_path).cgroups
    assert [c.name for c in cgroups.controllers.values() if c.where is Where.V2] == []
    assert "controllers in v2: none (empty)" in cgroups.finding.detail


def test_hybrid_6_12_is_half_v2(tmp_path: Path) -> None:
    cgroups = features_of(hosts.hybrid_6_12(), tmp_path).cgroups
    assert "controllers in v2: cpuset, memory" in cgroups.finding.detail
    assert "no v1 hierarchy is mounted with it" in cgroups.controllers["memory"].finding.detail


def test_v2_host_leaves_out_v1_only_controllers(tmp_path: Path) -> None:
    # /proc/cgroups lists them (hierarchy 0), but on a v2 host they only restate the v1/v2 difference.
    names = set(features_of(hosts.v2_only_6_12(), tmp_path).cgroups.controllers)
    assert names == {"cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc", "perf_event"}


def test_v1_host_leaves_out_io_and_keeps_blkio(tmp_path: Path) -> None:
    controllers = features_of(hosts.v1_only_6_1(), tmp_path).cgroups.controllers
    assert "io" not in controllers
    assert controllers["blkio"].where is Where.V1


def test_missing_controller_names_the_kernel(tmp_path: Path) -> None:
    misc = features_of(hosts.v2_only_5_10(), tmp_path).cgroups.controllers["misc"]
    assert misc.finding.status is Status.MISSING
    assert "does not have this controller" in misc.finding.cause


def test_v1_only_6_12_without_config_suspects_the_missing_v1_controller(tmp_path: Path) -> None:
    memory = features_of(hosts.v1_only_6_12(), tmp_path).cgroups.controllers["memory"].finding
    assert memory.status is Status.DISABLED
    assert "CONFIG_MEMCG_V1" in memory.cause
    assert "unified_cgroup_hierarchy=1" in memory.hint


def test_v1_only_6_12_with_its_config_knows_there_is_no_v1_memory(tmp_path: Path) -> None:
    features = features_of(with_debian_config(hosts.v1_only_6_12(), "6.12"), tmp_path)
    memory = features.cgroups.controllers["memory"].finding
    cpuset = features.cgroups.controllers["cpuset"].finding
    assert (memory.status, cpuset.status) == (Status.MISSING, Status.MISSING)
    assert "kernel built without CONFIG_MEMCG_V1" in memory.cause
    assert "kernel built without CONFIG_CPUSETS_V1" in cpuset.cause
    assert features.notes == (f"kernel config read from {tmp_path}/boot/config-{hosts.DEBIAN_6_12}",)


def test_hybrid_6_12_with_its_config_says_why_memory_is_in_v2(tmp_path: Path) -> None:
    features = features_of(with_debian_config(hosts.hybrid_6_12(), "6.12"), tmp_path)
    memory = features.cgroups.controllers["memory"]
    assert memory.where is Where.V2
    assert "kernel built without CONFIG_MEMCG_V1, so v1 cannot have it" in memory.finding.detail


# --- v2 extras -------------------------------------------------------------------------------------------


EXTRAS = ("cgroup.kill", "cgroup.freeze", "memory.peak", "memory.oom.group")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (hosts.v2_only_6_12, (OK, OK, OK, OK)),
        (hosts.v2_only_5_10, (MISSING, OK, MISSING, OK)),  # cgroup.kill 5.14, memory.peak 5.19
        (hosts.hybrid_6_1, (OK, OK, DISABLED, DISABLED)),  # memory is in v1
        # memory is in unified, but systemd enables no controller there: the child has no memory files.
        (hosts.hybrid_6_12, (OK, OK, UNKNOWN, UNKNOWN)),
        (hosts.v1_only_6_1, (DISABLED, DISABLED, DISABLED, DISABLED)),  # no v2 at all
    ],
)
def test_v2_extras(make: Callable[[], HostSpec], expected: tuple[Status, ...], tmp_path: Path) -> None:
    extras = features_of(make(), tmp_path).cgroups.extras
    assert tuple(extras[name].status for name in EXTRAS) == expected


def test_cgroup_kill_missing_on_5_10_names_5_14(tmp_path: Path) -> None:
    kill = features_of(hosts.v2_only_5_10(), tmp_path).cgroups.extras["cgroup.kill"]
    assert f"no cgroup.kill in {V2_CHILD}" in kill.cause
    assert "5.14" in kill.cause
    assert hosts.DEBIAN_5_10 in kill.cause


def test_memory_peak_missing_on_5_10_names_5_19(tmp_path: Path) -> None:
    peak = features_of(hosts.v2_only_5_10(), tmp_path).cgroups.extras["memory.peak"]
    assert "5.19" in peak.hint


def test_memory_peak_on_hybrid_6_1_is_disabled_because_memory_is_in_v1(tmp_path: Path) -> None:
    peak = features_of(hosts.hybrid_6_1(), tmp_path).cgroups.extras["memory.peak"]
    assert "the memory controller is in v1" in peak.cause


def test_memory_files_unknown_when_the_parent_does_not_enable_memory(tmp_path: Path) -> None:
    spec = hosts.with_files(hosts.v2_only_6_12(), {"sys/fs/cgroup/cgroup.subtree_control": "cpu pids\n"})
    peak = features_of(spec, tmp_path).cgroups.extras["memory.peak"]
    assert peak.status is Status.UNKNOWN
    assert "/sys/fs/cgroup/cgroup.subtree_control" in peak.cause


def test_without_a_non_root_cgroup_a_recording_cannot_tell(tmp_path: Path) -> None:
    spec = hosts.with_files(
        hosts.v2_only_6_12(), {"proc/self/cgroup": "0::/\n"}, drop=[f"sys/fs/cgroup/{hosts.CHILD}/"]
    )
    extras = features_of(spec, tmp_path).cgroups.extras
    assert extras["cgroup.kill"].status is Status.UNKNOWN
    assert "only root may make one" in extras["cgroup.kill"].cause


def test_an_existing_child_is_used_when_we_sit_in_the_root(tmp_path: Path) -> None:
    spec = hosts.with_files(hosts.v2_only_5_10(), {"proc/self/cgroup": "0::/\n"})
    kill = features_of(spec, tmp_path).cgroups.extras["cgroup.kill"]
    assert f"no cgroup.kill in {V2_CHILD}" in kill.cause


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (hosts.v2_only_6_12, Status.OK),  # rw,nsdelegate,memory_recursiveprot
        (hosts.hybrid_6_1, Status.OK),  # unified mounted rw,nsdelegate
        (hosts.v1_only_6_1, Status.DISABLED),  # offered by the kernel, no cgroup2 mounted
    ],
)
def test_nsdelegate(make: Callable[[], HostSpec], status: Status, tmp_path: Path) -> None:
    assert features_of(make(), tmp_path).cgroups.extras["nsdelegate"].status is status


def test_nsdelegate_is_a_superblock_option(tmp_path: Path) -> None:
    spec = hosts.v2_only_6_12()
    spec = dataclasses.replace(
        spec, mountinfo=spec.mountinfo.replace("rw,nsdelegate,memory_recursiveprot", "rw")
    )
    nsdelegate = features_of(spec, tmp_path).cgroups.extras["nsdelegate"]
    assert nsdelegate.status is Status.DISABLED
    assert nsdelegate.hint == "mount -o remount,nsdelegate /sys/fs/cgroup"


# --- boot parameters: psi=0, cgroup_disable=memory -------------------------------------------------------


def test_psi_off_names_psi_0(tmp_path: Path) -> None:
    psi = features_of(hosts.psi_off(), tmp_path).cgroups.extras["psi"]
    assert psi.status is Status.DISABLED
    assert "psi=0" in psi.cause


def test_no_pressure_without_psi_0_is_missing(tmp_path: Path) -> None:
    spec = hosts.with_files(hosts.v2_only_6_12(), drop=["proc/pressure/cpu"])
    psi = features_of(spec, tmp_path).cgroups.extras["psi"]
    assert psi.status is Status.MISSING
    assert "CONFIG_PSI" in psi.cause


@pytest.mark.parametrize("make", [hosts.v2_only_6_12, hosts.hybrid_6_1, hosts.v1_only_6_1])
def test_cgroup_disable_memory(make: Callable[[], HostSpec], tmp_path: Path) -> None:
    memory = features_of(hosts.memory_disabled(make()), tmp_path).cgroups.controllers["memory"]
    assert (memory.where, memory.mount) == (Where.NONE, None)
    assert memory.finding.status is Status.DISABLED
    assert "cgroup_disable=memory" in memory.finding.cause
    assert "cgroup_disable=memory" in memory.finding.hint


def test_cgroup_disable_memory_leaves_no_memory_files(tmp_path: Path) -> None:
    extras = features_of(hosts.memory_disabled(), tmp_path).cgroups.extras
    assert extras["memory.peak"].status is Status.DISABLED
    assert "the memory controller is not available" in extras["memory.peak"].cause
    assert extras["cgroup.kill"].status is Status.OK


def test_disabled_in_proc_cgroups_without_the_boot_parameter(tmp_path: Path) -> None:
    spec = hosts.memory_disabled()
    spec = dataclasses.replace(spec, cmdline=spec.cmdline.replace(" cgroup_disable=memory", ""))
    memory = features_of(spec, tmp_path).cgroups.controllers["memory"].finding
    assert memory.status is Status.DISABLED
    assert memory.cause == "listed as disabled in /proc/cgroups"


# --- user namespaces ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "root", "unprivileged", "knob"),
    [
        (hosts.userns_max_zero, Status.DISABLED, Status.DISABLED, "user.max_user_namespaces=0"),
        (hosts.userns_debian_off, Status.OK, Status.DISABLED, "kernel.unprivileged_userns_clone=0"),
        (hosts.userns_not_built, Status.MISSING, Status.MISSING, "CONFIG_USER_NS"),
        (lambda: hosts.userns_apparmor("uid_map"), Status.OK, Status.DISABLED, "AppArmor"),
        (lambda: hosts.userns_apparmor("use"), Status.OK, Status.DISABLED, "AppArmor"),
    ],
    ids=[
        "max_user_namespaces=0",
        "debian-unprivileged_userns_clone=0",
        "not-built",
        "apparmor-uid_map",
        "apparmor-use",
    ],
)
def test_userns_knobs(
    make: Callable[[], HostSpec], root: Status, unprivileged: Status, knob: str, tmp_path: Path
) -> None:
    userns = features_of(make(), tmp_path).userns
    assert (userns.root.status, userns.unprivileged.status) == (root, unprivileged)
    assert knob in userns.unprivileged.cause
    assert knob in userns.reason


def test_userns_knob_values_are_read(tmp_path: Path) -> None:
    assert features_of(hosts.userns_max_zero(), tmp_path / "a").userns.max_user_namespaces == 0
    debian = features_of(hosts.userns_debian_off(), tmp_path / "b").userns
    assert (debian.max_user_namespaces, debian.unprivileged_userns_clone) == (31503, 0)


def test_apparmor_cause_names_the_failing_step(tmp_path: Path) -> None:
    cause = features_of(hosts.userns_apparmor("use"), tmp_path).userns.unprivileged.cause
    assert "then use gave EPERM" in cause
    assert "kernel.apparmor_restrict_unprivileged_userns=1" in cause


def test_eperm_without_a_known_knob_blames_a_filter(tmp_path: Path) -> None:
    spec = hosts.with_outcomes(hosts.v2_only_6_12(), userns__unprivileged="err EPERM unshare-userns")
    cause = features_of(spec, tmp_path).userns.unprivileged.cause
    assert "seccomp filter or a security module" in cause


def test_enospc_with_a_nonzero_limit_is_a_used_up_limit(tmp_path: Path) -> None:
    spec = hosts.with_outcomes(hosts.v2_only_6_12(), userns__unprivileged="err ENOSPC unshare-userns")
    cause = features_of(spec, tmp_path).userns.unprivileged.cause
    assert cause == "the limit user.max_user_namespaces=31503 is used up (ENOSPC)"


def test_user_namespace_type_follows_the_callers_userns_verdict(tmp_path: Path) -> None:
    features = features_of(hosts.userns_not_built(), tmp_path)
    assert features.namespaces["user"] == features.userns.root
    assert features.namespaces["mnt"].status is Status.OK


# --- overlayfs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "registered", "loadable", "mountable", "in_userns"),
    [
        (hosts.v2_only_6_12, OK, OK, OK, OK),
        (hosts.v2_only_5_10, OK, OK, OK, MISSING),  # no overlay in a userns before 5.11
        (hosts.overlay_not_loaded, MISSING, OK, OK, OK),  # the trial mount loads the module
        (hosts.overlay_blacklisted, MISSING, DISABLED, DISABLED, DISABLED),
        (hosts.overlay_not_built, MISSING, MISSING, MISSING, MISSING),
        (hosts.userns_max_zero, OK, OK, OK, UNKNOWN),  # no user namespace to try it in
    ],
)
def test_overlay(
    make: Callable[[], HostSpec],
    registered: Status,
    loadable: Status,
    mountable: Status,
    in_userns: Status,
    tmp_path: Path,
) -> None:
    overlay = features_of(make(), tmp_path).overlay
    found = (overlay.registered, overlay.loadable, overlay.mountable, overlay.in_userns)
    assert tuple(f.status for f in found) == (registered, loadable, mountable, in_userns)


def test_overlay_blacklist_hints_at_module_blacklist(tmp_path: Path) -> None:
    overlay = features_of(hosts.overlay_blacklisted(), tmp_path).overlay
    for finding in (overlay.loadable, overlay.mountable, overlay.in_userns):
        assert "module_blacklist=overlay" in finding.hint
    assert "module_blacklist=overlay" in overlay.loadable.cause


def test_overlay_not_built_says_so(tmp_path: Path) -> None:
    overlay = features_of(hosts.overlay_not_built(), tmp_path).overlay
    assert overlay.loadable.cause == f"no overlay module in /lib/modules/{hosts.DEBIAN_6_12}"
    assert "could not be loaded" in overlay.mountable.cause


def test_overlay_module_name_comes_from_modules_dep(tmp_path: Path) -> None:
    overlay = features_of(hosts.v2_only_6_12(), tmp_path).overlay
    assert overlay.loadable.detail == f"module overlay.ko.xz for {hosts.DEBIAN_6_12}"


def test_overlay_built_in(tmp_path: Path) -> None:
    builtin = f"lib/modules/{hosts.DEBIAN_6_12}/modules.builtin"
    spec = hosts.with_files(hosts.overlay_not_built(), {builtin: "kernel/fs/overlayfs/overlay.ko\n"})
    assert features_of(spec, tmp_path).overlay.loadable.detail == "built into the kernel"


def test_overlay_loadable_unknown_without_a_module_tree(tmp_path: Path) -> None:
    spec = hosts.with_files(hosts.overlay_not_loaded(), drop=[f"lib/modules/{hosts.DEBIAN_6_12}/"])
    loadable = features_of(spec, tmp_path).overlay.loadable
    assert loadable.status is Status.UNKNOWN
    assert "modules.dep" in loadable.cause


def test_overlay_in_userns_without_userxattr(tmp_path: Path) -> None:
    # Debian 5.10 with overlay.permit_mounts_in_userns=1: only the mount without userxattr works.
    spec = hosts.with_outcomes(hosts.v2_only_5_10(), overlay__userns="ok 2")
    in_userns = features_of(spec, tmp_path).overlay.in_userns
    assert in_userns.status is Status.OK
    assert "permit_mounts_in_userns" in in_userns.detail


def test_overlay_in_userns_eperm_names_5_11(tmp_path: Path) -> None:
    in_userns = features_of(hosts.v2_only_5_10(), tmp_path).overlay.in_userns
    assert "5.11" in in_userns.cause


# --- pivot_root --------------------------------------------------------------------------------------------


def test_pivot_root_from_initramfs_is_disabled(tmp_path: Path) -> None:
    pivot = features_of(hosts.initramfs_root(), tmp_path).pivot_root
    assert pivot.root_fstype == "rootfs"
    assert pivot.usable.status is Status.DISABLED
    assert "initramfs" in pivot.usable.cause
    assert "MS_MOVE + chroot" in pivot.usable.cause


def test_pivot_root_einval_on_a_disk_root_is_not_blamed_on_initramfs(tmp_path: Path) -> None:
    spec = hosts.with_outcomes(hosts.v2_only_6_12(), pivot_root="err EINVAL pivot_root")
    pivot = features_of(spec, tmp_path).pivot_root
    assert pivot.root_fstype == "ext4"
    assert pivot.usable.status is Status.DISABLED
    assert "initramfs" not in pivot.usable.cause


def test_pivot_root_ok(tmp_path: Path) -> None:
    pivot = features_of(hosts.v2_only_6_12(), tmp_path).pivot_root
    assert (pivot.usable.status, pivot.root_fstype) == (Status.OK, "ext4")


# --- a non-root caller -------------------------------------------------------------------------------------


def test_non_root_cannot_tell_root_only_things(tmp_path: Path) -> None:
    features = features_of(hosts.as_user(hosts.v2_only_6_12()), tmp_path)
    assert features.euid == 1000
    assert features.overlay.mountable.status is Status.UNKNOWN
    assert features.userns.root.status is Status.UNKNOWN
    assert features.userns.unprivileged.status is Status.OK
    assert features.overlay.in_userns.status is Status.OK


def test_rootless_verdict_needs_unprivileged_userns(tmp_path: Path) -> None:
    features = features_of(hosts.as_user(hosts.v2_only_6_12()), tmp_path)
    checks = report.build_checks(features)
    required = {c.name for c in checks if c.group is report.Group.REQUIRED}
    assert "user namespaces (unprivileged)" in required
    assert "cgroups" not in required  # a rootless container manages without
    assert report.can_run_containers(checks) is True


def test_rootless_cannot_run_when_unprivileged_userns_fails(tmp_path: Path) -> None:
    features = features_of(hosts.as_user(hosts.userns_debian_off()), tmp_path)
    checks = report.build_checks(features)
    failed = [
        c.name for c in checks if c.group is report.Group.REQUIRED and c.finding.status is not Status.OK
    ]
    assert failed[0] == "user namespaces (unprivileged)"
    assert report.can_run_containers(checks) is False


def test_root_can_run_on_the_same_host(tmp_path: Path) -> None:
    features = features_of(hosts.userns_debian_off(), tmp_path)
    checks = report.build_checks(features)
    unprivileged = [c for c in checks if c.name == "user namespaces (unprivileged)"]
    assert [c.group for c in unprivileged] == [report.Group.OPTIONAL]
    assert report.can_run_containers(checks) is True


# --- JSON ----------------------------------------------------------------------------------------------------


def to_json(spec: HostSpec, tmp_path: Path) -> dict[str, Any]:
    features = features_of(spec, tmp_path)
    document = report.to_json(features, report.build_checks(features))
    assert json.loads(json.dumps(document)) == document
    return document


def test_json_documented_keys(tmp_path: Path) -> None:
    j = to_json(hosts.hybrid_6_12(), tmp_path)
    assert j["schema"] == 1
    assert j["kernel"]["release"] == hosts.DEBIAN_6_12
    assert j["kernel"]["version"] == [6, 12, 117]
    assert j["cgroup"]["mode"] == "hybrid"
    controllers = j["cgroup"]["controllers"]
    assert controllers["memory"]["where"] == "v2"
    assert controllers["cpu"]["where"] == "v1"
    assert controllers["cpu"]["mount"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert j["userns"]["root"] is True
    assert j["userns"]["unprivileged"] is True
    assert j["userns"]["reason"] is None
    assert j["overlay"]["mountable"] is True
    assert j["overlay"]["in_userns"] is True
    assert j["pivot_root"]["usable"] is True
    assert j["can_run_containers"] is True


def test_json_false_and_reasons(tmp_path: Path) -> None:
    j = to_json(hosts.overlay_blacklisted(hosts.initramfs_root(hosts.userns_debian_off())), tmp_path)
    assert j["userns"]["unprivileged"] is False
    assert "kernel.unprivileged_userns_clone=0" in j["userns"]["reason"]
    assert j["overlay"]["mountable"] is False
    assert "module_blacklist=overlay" in j["overlay"]["reason"]
    assert j["pivot_root"]["usable"] is False
    assert j["pivot_root"]["root_fstype"] == "rootfs"


def test_json_null_for_what_a_non_root_caller_cannot_tell(tmp_path: Path) -> None:
    j = to_json(hosts.as_user(hosts.v2_only_6_12()), tmp_path)
    assert j["euid"] == 1000
    assert j["userns"]["root"] is None
    assert j["overlay"]["mountable"] is None


# --- mountinfo -------------------------------------------------------------------------------------------


def test_mountinfo_parse_fields() -> None:
    text = (
        "28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,discard,errors=remount-ro\n"
        "30 21 0:26 / /sys/fs/cgroup rw,nosuid shared:9 master:3 - cgroup2 cgroup2 rw,nsdelegate\n"
        "40 28 0:50 /sub /mnt/my\\040disk rw - tmpfs my\\040src rw,size=4k\n"
        "41 28 0:51 / /mnt/tab\\011and\\134back rw - tmpfs tmpfs rw\n"
        "not a mountinfo line\n"
        "\n"
    )
    mounts = mountinfo.parse(text)
    assert [m.mount_point for m in mounts] == ["/", "/sys/fs/cgroup", "/mnt/my disk", "/mnt/tab\tand\\back"]
    cgroup = mounts[1]
    assert (cgroup.mount_id, cgroup.parent_id, cgroup.fstype, cgroup.source) == (30, 21, "cgroup2", "cgroup2")
    assert cgroup.super_options == ("rw", "nsdelegate")
    assert cgroup.has_option("nsdelegate")
    assert not cgroup.has_option("nosuid")  # per-mount, not superblock
    assert (mounts[2].root, mounts[2].source, mounts[2].fstype) == ("/sub", "my src", "tmpfs")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", "28"),
        ("/etc/passwd", "28"),
        ("/sys/fs/cgroup", "31"),  # the later of two mounts on the same point
        ("/sys/fs/cgroup/unified", "32"),
        ("/sys/fs/cgroup/unified/x.slice", "32"),
        ("/sys/fs/cgroupfoo", "21"),  # a prefix of the name is not a parent directory
        ("/sys/kernel", "21"),
    ],
)
def test_mountinfo_containing(path: str, expected: str) -> None:
    mounts = mountinfo.parse(
        "28 1 254:1 / / rw - ext4 /dev/vda1 rw\n"
        "21 28 0:20 / /sys rw - sysfs sysfs rw\n"
        "30 21 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        "31 21 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "32 31 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    )
    found = mountinfo.containing(mounts, path)
    assert found is not None
    assert str(found.mount_id) == expected


def test_mountinfo_containing_nothing() -> None:
    assert mountinfo.containing([], "/") is None


def test_sysroot_fs_type_reads_mountinfo_when_recorded(tmp_path: Path) -> None:
    root, _, _ = hosts.build(hosts.hybrid_6_1(), tmp_path)
    assert root.fs_type("/sys/fs/cgroup") == "tmpfs"
    assert root.fs_type("/sys/fs/cgroup/unified") == "cgroup2"
    assert root.fs_type("/sys/fs/cgroup/memory/x") == "cgroup"


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        ("ok", Outcome(True)),
        ("ok 2", Outcome(True, value=2)),
        ("err EINVAL unshare-userns", Outcome(False, "EINVAL", "unshare-userns")),
        ("err ENOSYS call", Outcome(False, "ENOSYS", "call")),
    ],
)
def test_outcome_encoding_round_trips(text: str, outcome: Outcome) -> None:
    assert Outcome.decode(text) == outcome
    assert outcome.encode() == text


# --- the recorded host and the capture script ---------------------------------------------------------------


def test_recorded_host_debian12_6_18_hybrid() -> None:
    features = detect(*hosts.load_recording(RECORDING))
    assert features.kernel.triple[:2] == (6, 18)
    cgroups = features.cgroups
    assert (cgroups.mode, cgroups.v2_mount) == (CgroupMode.HYBRID, UNIFIED)
    memory, hugetlb = cgroups.controllers["memory"], cgroups.controllers["hugetlb"]
    assert (memory.where, memory.mount) == (Where.V1, "/sys/fs/cgroup/memory")
    assert (hugetlb.where, hugetlb.mount) == (Where.V2, UNIFIED)
    assert [c.name for c in cgroups.controllers.values() if c.where is Where.V2] == ["perf_event", "hugetlb"]
    # No child cgroup exists under unified, and on a recording detection never makes one (live, root does).
    assert {cgroups.extras[name].status for name in ("cgroup.kill", "cgroup.freeze")} == {Status.UNKNOWN}
    # The memory files need no child cgroup to judge: memory is in v1.
    assert {cgroups.extras[name].status for name in ("memory.peak", "memory.oom.group")} == {Status.DISABLED}
    assert cgroups.extras["psi"].status is Status.OK
    assert cgroups.extras["nsdelegate"].status is Status.DISABLED  # unified is mounted plain "rw"
    assert (features.userns.root.status, features.userns.unprivileged.status) == (Status.OK, Status.OK)
    assert features.overlay.registered.status is Status.OK
    assert features.overlay.mountable.status is Status.OK
    assert features.overlay.in_userns.status is Status.OK
    assert (features.pivot_root.usable.status, features.pivot_root.root_fstype) == (Status.OK, "ext4")
    assert features.notes == ()  # the kernel config was not recorded
    assert report.can_run_containers(report.build_checks(features)) is True


def load_capture_script() -> ModuleType:
    path = hosts.RECORDINGS / "capture.py"
    spec = importlib.util.spec_from_file_location("capture_host", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "make",
    [
        hosts.v1_only_6_1,
        hosts.hybrid_6_1,
        hosts.hybrid_6_12,
        hosts.v2_only_6_12,
        hosts.v2_only_5_10,
        hosts.userns_debian_off,
        pytest.param(lambda: hosts.userns_apparmor("use"), id="userns_apparmor"),
        hosts.overlay_blacklisted,
        hosts.overlay_not_built,
        hosts.initramfs_root,
        hosts.psi_off,
        pytest.param(lambda: hosts.memory_disabled(hosts.hybrid_6_1()), id="memory_disabled-hybrid_6_1"),
        pytest.param(lambda: hosts.as_user(hosts.v2_only_6_12()), id="as_user-v2_only_6_12"),
    ],
)
def test_capture_records_everything_detection_reads(make: Callable[[], HostSpec], tmp_path: Path) -> None:
    capture = load_capture_script()
    source, outcomes, euid = hosts.build(make(), tmp_path / "host")
    capture.capture(Path(source.base), tmp_path / "recording", outcomes, euid)
    assert detect(*hosts.load_recording(tmp_path / "recording")) == detect(source, outcomes, euid)


def test_capture_keeps_kernel_parameters_only(tmp_path: Path) -> None:
    capture = load_capture_script()
    spec = hosts.v2_only_6_12()
    spec = dataclasses.replace(spec, cmdline=f"{spec.cmdline} rdinit=/init -- --init-flag psi=0")
    source, outcomes, euid = hosts.build(spec, tmp_path / "host")
    capture.capture(Path(source.base), tmp_path / "recording", outcomes, euid)
    recorded = (tmp_path / "recording/proc/cmdline").read_text()
    assert recorded.endswith(" rdinit=/init\n")


# --- regressions: bugs found by these tests and fixed ---------------------------------------------------------


def test_userns_reason_for_a_rootless_caller_is_the_real_cause(tmp_path: Path) -> None:
    userns = features_of(hosts.as_user(hosts.userns_debian_off()), tmp_path).userns
    assert "kernel.unprivileged_userns_clone=0" in userns.reason


def test_mountinfo_unescape_keeps_non_ascii() -> None:
    (mount,) = mountinfo.parse("40 28 0:50 / /mnt/caf\u00e9\\040bar rw - tmpfs tmpfs rw\n")
    assert mount.mount_point == "/mnt/caf\u00e9 bar"


def test_parameters_after_double_dash_are_not_the_kernels(tmp_path: Path) -> None:
    spec = hosts.psi_off()
    spec = dataclasses.replace(spec, cmdline=spec.cmdline.replace(" psi=0", " -- psi=0"))
    assert features_of(spec, tmp_path).cgroups.extras["psi"].status is Status.MISSING


def test_every_cgroup_disable_parameter_counts(tmp_path: Path) -> None:
    spec = hosts.memory_disabled()
    spec = dataclasses.replace(spec, cmdline=f"{spec.cmdline} cgroup_disable=rdma")
    memory = features_of(spec, tmp_path).cgroups.controllers["memory"].finding
    assert "cgroup_disable=memory" in memory.cause


def test_overlay_reason_for_a_rootless_caller_names_the_blacklist(tmp_path: Path) -> None:
    features = detect(*hosts.build(hosts.as_user(hosts.overlay_blacklisted()), tmp_path))
    doc = report.to_json(features, report.build_checks(features))
    assert doc["overlay"]["mountable"] is None
    assert "module_blacklist=overlay" in doc["overlay"]["reason"]


def test_a_rootless_caller_is_named_as_itself(tmp_path: Path) -> None:
    features = detect(*hosts.build(hosts.as_user(hosts.v2_only_6_12(), euid=1000), tmp_path))
    assert features.userns.unprivileged.detail.startswith("uid 1000 ")


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        pytest.param(lambda base: shutil.rmtree(base / "proc"), "is /proc mounted?", id="no-proc"),
        pytest.param(
            lambda base: (base / "proc/sys/kernel/osrelease").write_text("unknown\n"),
            "cannot read a kernel version from 'unknown'",
            id="unreadable-release",
        ),
    ],
)
def test_check_without_a_kernel_release_is_a_clear_error(
    damage: Callable[[Path], object],
    said: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, outcomes, euid = hosts.build(hosts.v2_only_6_12(), tmp_path)
    damage(tmp_path)
    monkeypatch.setattr(host, "detect", lambda: detect(root, outcomes, euid))
    assert main(["check"]) == EXIT_USAGE  # it could not judge this host: not "cannot run containers" (1)
    err = capsys.readouterr().err
    assert said in err
    assert "mount -t proc proc /proc" in err  # the hint
    assert "Traceback" not in err
