"""Recorded hosts for the detection tests: a /proc and /sys tree written to a directory, plus the
probe outcomes that host gave.

A HostSpec holds the text of each file detection reads. build() writes it under a directory and returns
what runtime.features.detect() takes. The ready-made specs follow the facts in the kernel-features
reference (sections 1.4, 1.6 and 3): Debian cloud kernels 5.10, 6.1 and 6.12 in the cgroup layouts and
with the knobs a guest was booted with.

Variations are dataclasses.replace() on a base spec; with_files() and with_outcomes() merge the dicts.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runtime.features.probes import Outcome
from runtime.linux.sysroot import Sysroot

DEBIAN_5_10 = "5.10.0-32-cloud-amd64"
DEBIAN_6_1 = "6.1.0-54-cloud-amd64"
DEBIAN_6_12 = "6.12.117+deb13-cloud-amd64"

NS_TYPES = (
    "cgroup",
    "ipc",
    "mnt",
    "net",
    "pid",
    "pid_for_children",
    "time",
    "time_for_children",
    "user",
    "uts",
)
CHILD = "runtime-test.scope"  # the non-root v2 cgroup this process sits in (see /proc/self/cgroup)
RECORDINGS = Path(__file__).parent / "data" / "hosts"


@dataclass(frozen=True)
class HostSpec:
    osrelease: str
    mountinfo: str
    proc_cgroups: str
    filesystems: str
    cmdline: str
    # Extra files, path relative to the root -> content; a path ending in "/" is an empty directory.
    files: dict[str, str] = field(default_factory=dict)
    ns_types: tuple[str, ...] = NS_TYPES  # names under /proc/self/ns
    # Probe outcomes in Outcome.encode() form: "ok", "ok 1", "err EINVAL unshare-userns".
    outcomes: dict[str, str] = field(default_factory=dict)
    euid: int = 0


def build(spec: HostSpec, tmp_path: Path) -> tuple[Sysroot, dict[str, Outcome], int]:
    """Write spec under tmp_path; return (root, outcomes, euid) for runtime.features.detect()."""
    files = {
        "proc/sys/kernel/osrelease": spec.osrelease + "\n",
        "proc/self/mountinfo": spec.mountinfo,
        "proc/cgroups": spec.proc_cgroups,
        "proc/filesystems": spec.filesystems,
        "proc/cmdline": spec.cmdline + "\n",
        **{f"proc/self/ns/{name}": "" for name in spec.ns_types},
        **spec.files,
    }
    for relative, content in files.items():
        path = tmp_path / relative
        if relative.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return Sysroot(base=tmp_path, live=False), decode_outcomes(spec.outcomes), spec.euid


def decode_outcomes(encoded: Mapping[str, str]) -> dict[str, Outcome]:
    return {name: Outcome.decode(text) for name, text in encoded.items()}


def load_recording(directory: Path) -> tuple[Sysroot, dict[str, Outcome], int]:
    """A host recorded by tests/data/hosts/capture.py: the tree itself, outcomes.json and euid."""
    outcomes = decode_outcomes(json.loads((directory / "outcomes.json").read_text()))
    euid = int((directory / "euid").read_text())
    return Sysroot(base=directory, live=False), outcomes, euid


# --- helpers for variations ------------------------------------------------------------------------------


def with_files(spec: HostSpec, add: Mapping[str, str] | None = None, drop: Iterable[str] = ()) -> HostSpec:
    """spec with files added or replaced, and files dropped (a path ending in "/" drops the subtree)."""
    gone = tuple(drop)
    kept = {
        path: text
        for path, text in spec.files.items()
        if not any(path == g or (g.endswith("/") and path.startswith(g)) for g in gone)
    }
    return dataclasses.replace(spec, files={**kept, **(add or {})})


def with_outcomes(spec: HostSpec, drop: Iterable[str] = (), **changes: str) -> HostSpec:
    """spec with outcomes replaced (keyword names use "__" for "."), and some dropped."""
    dropped = set(drop)
    outcomes = {name: text for name, text in spec.outcomes.items() if name not in dropped}
    outcomes.update({name.replace("__", "."): text for name, text in changes.items()})
    return dataclasses.replace(spec, outcomes=outcomes)


def without_mount(text: str, mount_point: str) -> str:
    """mountinfo text without the mounts on mount_point."""
    return "".join(line + "\n" for line in text.splitlines() if line.split()[4] != mount_point)


def disable_in_proc_cgroups(proc_cgroups: str, name: str) -> str:
    """What cgroup_disable=<name> does to /proc/cgroups: hierarchy 0, enabled 0."""
    return re.sub(rf"^{name}\t\d+\t(\d+)\t1$", rf"{name}\t0\t\1\t0", proc_cgroups, flags=re.MULTILINE)


def words_without(text: str, word: str) -> str:
    return " ".join(w for w in text.split() if w != word) + "\n"


# --- the pieces of a Debian guest ------------------------------------------------------------------------

_SYSTEM_MOUNTS = (
    "21 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
    "22 28 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
    "23 28 0:5 / /dev rw,nosuid,relatime shared:2 - devtmpfs udev rw,size=987604k,nr_inodes=246901,mode=755,inode64",
    "24 23 0:22 / /dev/pts rw,nosuid,noexec,relatime shared:3 - devpts devpts rw,gid=5,mode=620,ptmxmode=000",
    "25 28 0:23 / /run rw,nosuid,nodev,noexec,relatime shared:5 - tmpfs tmpfs rw,size=203388k,mode=755,inode64",
    "28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,discard,errors=remount-ro",
    "29 21 0:6 / /sys/kernel/security rw,nosuid,nodev,noexec,relatime shared:8 - securityfs securityfs rw",
)
_TAIL_MOUNTS = (
    "50 28 0:40 / /tmp rw,nosuid,nodev shared:20 - tmpfs tmpfs rw,size=1016948k,nr_inodes=1048576,inode64",
    "51 21 0:41 / /sys/fs/fuse/connections rw,nosuid,nodev,noexec,relatime shared:21 - fusectl fusectl rw",
)
# The order of /proc/cgroups; misc came in 5.13.
_PROC_CGROUPS_ORDER = (
    "cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer", "net_cls", "perf_event",
    "net_prio", "hugetlb", "pids", "rdma", "misc",
)  # fmt: skip
# systemd's v1 layout: cpu and cpuacct share a hierarchy, so do net_cls and net_prio.
V1_GROUPS_6_1 = (
    "cpuset", "cpu,cpuacct", "blkio", "memory", "devices", "freezer", "net_cls,net_prio", "perf_event",
    "hugetlb", "pids", "rdma", "misc",
)  # fmt: skip
V2_CONTROLLERS_6_X = "cpuset cpu io memory hugetlb pids rdma misc"
V2_CONTROLLERS_5_10 = "cpuset cpu io memory hugetlb pids rdma"
FEATURES_5_10 = "nsdelegate\nmemory_localevents\nmemory_recursiveprot\n"
FEATURES_6_1 = "nsdelegate\nfavordynmods\nmemory_localevents\nmemory_recursiveprot\n"
FEATURES_6_12 = (
    "nsdelegate\nfavordynmods\nmemory_localevents\nmemory_recursiveprot\nmemory_hugetlb_accounting\n"
    "pids_localevents\n"
)
# /proc/filesystems; a leading "-" marks a block filesystem (a line without "nodev").
_FILESYSTEMS = (
    "sysfs", "tmpfs", "bdev", "proc", "cgroup", "cgroup2", "cpuset", "devtmpfs", "debugfs", "tracefs",
    "securityfs", "sockfs", "bpf", "pipefs", "ramfs", "hugetlbfs", "devpts", "-ext3", "-ext2", "-ext4",
    "mqueue", "pstore", "autofs", "fusectl", "overlay",
)  # fmt: skip
PRESSURE_CPU = (
    "some avg10=0.00 avg60=0.00 avg300=0.00 total=1523887\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
)


def filesystems(without: Sequence[str] = ()) -> str:
    lines = []
    for name in _FILESYSTEMS:
        if name.lstrip("-") in without:
            continue
        lines.append(f"\t{name[1:]}" if name.startswith("-") else f"nodev\t{name}")
    return "\n".join(lines) + "\n"


def cmdline(release: str, *extra: str) -> str:
    return " ".join(
        (
            f"BOOT_IMAGE=/boot/vmlinuz-{release}",
            "root=UUID=3f1c5e0a-7d2b-4c1e-9a8f-2b6d4e5f7a90",
            "ro",
            "console=tty0",
            "console=ttyS0,115200",
            "earlyprintk=ttyS0,115200",
            *extra,
        )
    )


def modules_dep(with_overlay: bool = True, compressed: bool = False) -> str:
    ext = ".ko.xz" if compressed else ".ko"
    lines = [
        f"kernel/fs/fuse/fuse{ext}:",
        f"kernel/fs/fuse/virtiofs{ext}: kernel/fs/fuse/fuse{ext}",
        f"kernel/net/bridge/bridge{ext}: kernel/net/802/stp{ext} kernel/net/llc/llc{ext}",
        f"kernel/net/netfilter/nf_conntrack{ext}: kernel/lib/libcrc32c{ext}",
    ]
    if with_overlay:
        lines.insert(1, f"kernel/fs/overlayfs/overlay{ext}:")
    return "\n".join(lines) + "\n"


def _v2_mount(mount_point: str, super_options: str, mount_id: int = 30, parent: int = 21) -> str:
    return (
        f"{mount_id} {parent} 0:26 / {mount_point} rw,nosuid,nodev,noexec,relatime shared:9 "
        f"- cgroup2 cgroup2 {super_options}"
    )


def _v1_mounts(groups: Sequence[str], unified: bool) -> list[str]:
    """tmpfs on /sys/fs/cgroup, cgroup2 on unified (hybrid), name=systemd, then one mount a group."""
    lines = [
        "30 21 0:25 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,size=4096k,nr_inodes=1024,mode=755,inode64"
    ]
    if unified:
        lines.append(_v2_mount("/sys/fs/cgroup/unified", "rw,nsdelegate", mount_id=31, parent=30))
    lines.append(
        "32 30 0:27 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd"
    )
    for index, group in enumerate(groups):
        lines.append(
            f"{33 + index} 30 0:{28 + index} / /sys/fs/cgroup/{group} rw,nosuid,nodev,noexec,relatime "
            f"shared:{12 + index} - cgroup cgroup rw,{group}"
        )
    return lines


def mountinfo(*cgroup_lines: str) -> str:
    return "\n".join((*_SYSTEM_MOUNTS, *cgroup_lines, *_TAIL_MOUNTS)) + "\n"


def _hierarchy_ids(groups: Sequence[str]) -> dict[str, int]:
    """Controller -> hierarchy id; name=systemd takes id 1 here, as it is mounted first."""
    ids: dict[str, int] = {}
    for index, group in enumerate(groups, start=2):
        for name in group.split(","):
            ids[name] = index
    return ids


def proc_cgroups(controllers: Sequence[str], v1_groups: Sequence[str] = ()) -> str:
    ids = _hierarchy_ids(v1_groups)
    lines = ["#subsys_name\thierarchy\tnum_cgroups\tenabled"]
    for name in _PROC_CGROUPS_ORDER:
        if name in controllers:
            count = 64 if name in ("cpu", "cpuacct", "memory", "pids", "blkio", "devices") else 1
            lines.append(f"{name}\t{ids.get(name, 0)}\t{count}\t1")
    return "\n".join(lines) + "\n"


def _proc_self_cgroup(groups: Sequence[str], v2_path: str | None) -> str:
    """/proc/self/cgroup: one line per v1 hierarchy (highest id first), then 0:: when v2 is mounted."""
    lines = [f"{index}:{group}:/" for index, group in reversed(list(enumerate(groups, start=2)))]
    lines.append(f"1:name=systemd:/{CHILD}")
    if v2_path is not None:
        lines.append(f"0::{v2_path}")
    return "\n".join(lines) + "\n"


def _common_files(release: str, features: str, compressed_modules: bool) -> dict[str, str]:
    return {
        "proc/sys/user/max_user_namespaces": "31503\n",
        "proc/sys/user/max_mnt_namespaces": "31503\n",
        "proc/sys/kernel/unprivileged_userns_clone": "1\n",  # Debian's patch, default 1
        "proc/pressure/cpu": PRESSURE_CPU,
        "sys/kernel/cgroup/features": features,
        f"lib/modules/{release}/modules.dep": modules_dep(compressed=compressed_modules),
        f"lib/modules/{release}/modules.builtin": "kernel/fs/ext4/ext4.ko\nkernel/fs/proc/proc.ko\n",
    }


def _v2_child(root: str, files: Sequence[str]) -> dict[str, str]:
    return {f"{root}/{CHILD}/{name}": "" for name in ("cgroup.procs", "cgroup.events", *files)}


def root_outcomes(landlock_abi: int = 6, **changes: str) -> dict[str, str]:
    """What root sees on a Debian 6.x guest where everything works; keywords use "__" for "."."""
    outcomes = {
        "clone3": "ok",
        "pidfd_open": "ok",
        "mount_api": "ok",
        "mount_setattr": "ok",
        "landlock": f"ok {landlock_abi}",
        "seccomp_filter": "ok",
        "no_new_privs": "ok 0",
        "ambient_caps": "ok 0",
        "userns.self": "ok",
        "userns.unprivileged": "ok",
        **{f"ns.{name}": "ok" for name in ("mnt", "uts", "ipc", "pid", "net", "cgroup", "time")},
        "overlay.mount": "ok 1",
        "overlay.userns": "ok 1",
        "pivot_root": "ok",
    }
    outcomes.update({name.replace("__", "."): text for name, text in changes.items()})
    return outcomes


# --- cgroup layouts ---------------------------------------------------------------------------------------


def v1_only_6_1() -> HostSpec:
    """bookworm booted with every controller in v1 and no unified mount."""
    release = DEBIAN_6_1
    return HostSpec(
        osrelease=release,
        mountinfo=mountinfo(*_v1_mounts(V1_GROUPS_6_1, unified=False)),
        proc_cgroups=proc_cgroups(_PROC_CGROUPS_ORDER, V1_GROUPS_6_1),
        filesystems=filesystems(),
        cmdline=cmdline(release, "systemd.unified_cgroup_hierarchy=0"),
        files={
            **_common_files(release, FEATURES_6_1, compressed_modules=False),
            "proc/self/cgroup": _proc_self_cgroup(V1_GROUPS_6_1, None),
            **{f"sys/fs/cgroup/{group}/": "" for group in ("systemd", *V1_GROUPS_6_1)},
        },
        outcomes=root_outcomes(landlock_abi=2),
    )


def hybrid_6_1() -> HostSpec:
    """bookworm, hybrid: every controller binds to v1, so unified/cgroup.controllers is empty."""
    base = v1_only_6_1()
    unified = "sys/fs/cgroup/unified"
    return with_files(
        dataclasses.replace(
            base,
            mountinfo=mountinfo(*_v1_mounts(V1_GROUPS_6_1, unified=True)),
            cmdline=cmdline(DEBIAN_6_1, "systemd.unified_cgroup_hierarchy=0"),
        ),
        {
            "proc/self/cgroup": _proc_self_cgroup(V1_GROUPS_6_1, f"/{CHILD}"),
            f"{unified}/cgroup.controllers": "\n",
            f"{unified}/cgroup.subtree_control": "\n",
            **_v2_child(unified, ("cgroup.kill", "cgroup.freeze")),
        },
    )


V1_GROUPS_6_12 = tuple(g for g in V1_GROUPS_6_1 if g not in ("memory", "cpuset"))


def hybrid_6_12() -> HostSpec:
    """trixie, hybrid: no v1 memory or cpuset (MEMCG_V1, CPUSETS_V1 not set), so both stay in unified."""
    release = DEBIAN_6_12
    unified = "sys/fs/cgroup/unified"
    return HostSpec(
        osrelease=release,
        mountinfo=mountinfo(*_v1_mounts(V1_GROUPS_6_12, unified=True)),
        # 6.12 still lists memory and cpuset in /proc/cgroups, enabled, in hierarchy 0 (the v2 one).
        proc_cgroups=proc_cgroups(_PROC_CGROUPS_ORDER, V1_GROUPS_6_12),
        filesystems=filesystems(),
        cmdline=cmdline(release, "systemd.unified_cgroup_hierarchy=0"),
        files={
            **_common_files(release, FEATURES_6_12, compressed_modules=True),
            "proc/self/cgroup": _proc_self_cgroup(V1_GROUPS_6_12, f"/{CHILD}"),
            **{f"sys/fs/cgroup/{group}/": "" for group in ("systemd", *V1_GROUPS_6_12)},
            f"{unified}/cgroup.controllers": "cpuset memory\n",
            f"{unified}/cgroup.subtree_control": "\n",
            **_v2_child(unified, ("cgroup.kill", "cgroup.freeze")),
        },
        outcomes=root_outcomes(landlock_abi=6),
    )


def v1_only_6_12() -> HostSpec:
    """trixie booted "v1 only": memory and cpuset have no v1 controller, so they are nowhere."""
    spec = hybrid_6_12()
    return with_files(
        dataclasses.replace(spec, mountinfo=mountinfo(*_v1_mounts(V1_GROUPS_6_12, unified=False))),
        {"proc/self/cgroup": _proc_self_cgroup(V1_GROUPS_6_12, None)},
        drop=["sys/fs/cgroup/unified/"],
    )


def v2_only_6_12() -> HostSpec:
    """trixie, unified: cgroup2 alone on /sys/fs/cgroup; this process in a child with memory files."""
    release = DEBIAN_6_12
    top = "sys/fs/cgroup"
    return HostSpec(
        osrelease=release,
        # nsdelegate and memory_recursiveprot are superblock options: after the "-" in mountinfo.
        mountinfo=mountinfo(_v2_mount("/sys/fs/cgroup", "rw,nsdelegate,memory_recursiveprot")),
        proc_cgroups=proc_cgroups(_PROC_CGROUPS_ORDER),
        filesystems=filesystems(),
        cmdline=cmdline(release),
        files={
            **_common_files(release, FEATURES_6_12, compressed_modules=True),
            "proc/self/cgroup": f"0::/{CHILD}\n",
            f"{top}/cgroup.controllers": V2_CONTROLLERS_6_X + "\n",
            f"{top}/cgroup.subtree_control": "cpu memory pids\n",
            **_v2_child(
                top,
                (
                    "cgroup.kill",
                    "cgroup.freeze",
                    "memory.current",
                    "memory.max",
                    "memory.peak",
                    "memory.oom.group",
                ),
            ),
        },
        outcomes=root_outcomes(landlock_abi=6),
    )


def v2_only_5_10() -> HostSpec:
    """bullseye, unified: no cgroup.kill (5.14), no memory.peak (5.19), no misc controller (5.13)."""
    release = DEBIAN_5_10
    top = "sys/fs/cgroup"
    return HostSpec(
        osrelease=release,
        mountinfo=mountinfo(_v2_mount("/sys/fs/cgroup", "rw,nsdelegate,memory_recursiveprot")),
        proc_cgroups=proc_cgroups([n for n in _PROC_CGROUPS_ORDER if n != "misc"]),
        filesystems=filesystems(),
        cmdline=cmdline(release),
        files={
            **_common_files(release, FEATURES_5_10, compressed_modules=False),
            "proc/self/cgroup": f"0::/{CHILD}\n",
            f"{top}/cgroup.controllers": V2_CONTROLLERS_5_10 + "\n",
            f"{top}/cgroup.subtree_control": "cpu memory pids\n",
            **_v2_child(top, ("cgroup.freeze", "memory.current", "memory.max", "memory.oom.group")),
        },
        # 5.10: no mount_setattr, no Landlock; overlay in a user namespace is refused (before 5.11).
        outcomes=root_outcomes(
            mount_setattr="err ENOSYS call",
            landlock="err ENOSYS call",
            overlay__userns="err EPERM mount-overlay",
        ),
    )


# --- user namespace knobs (section 1.6) -----------------------------------------------------------------


def userns_max_zero(base: HostSpec | None = None) -> HostSpec:
    """user.max_user_namespaces=0: ENOSPC for root and non-root alike."""
    spec = with_files(base or v2_only_6_12(), {"proc/sys/user/max_user_namespaces": "0\n"})
    failure = "err ENOSPC unshare-userns"
    return with_outcomes(spec, userns__self=failure, userns__unprivileged=failure, overlay__userns=failure)


def userns_debian_off(base: HostSpec | None = None) -> HostSpec:
    """kernel.unprivileged_userns_clone=0 (Debian): EPERM without CAP_SYS_ADMIN, root still fine."""
    spec = with_files(base or v2_only_6_12(), {"proc/sys/kernel/unprivileged_userns_clone": "0\n"})
    return with_outcomes(spec, userns__unprivileged="err EPERM unshare-userns")


def userns_not_built(base: HostSpec | None = None) -> HostSpec:
    """CONFIG_USER_NS=n: unshare(CLONE_NEWUSER) is EINVAL, and /proc/self/ns has no user."""
    spec = base or v2_only_6_12()
    spec = dataclasses.replace(spec, ns_types=tuple(n for n in spec.ns_types if n != "user"))
    failure = "err EINVAL unshare-userns"
    return with_outcomes(spec, userns__self=failure, userns__unprivileged=failure, overlay__userns=failure)


def userns_apparmor(step: str = "uid_map", base: HostSpec | None = None) -> HostSpec:
    """Ubuntu's kernel.apparmor_restrict_unprivileged_userns=1: unshare works, the next step is EPERM."""
    spec = with_files(
        base or v2_only_6_12(), {"proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1\n"}
    )
    return with_outcomes(spec, userns__unprivileged=f"err EPERM {step}")


def as_user(spec: HostSpec, euid: int = 1000) -> HostSpec:
    """The same host probed by a non-root caller: what root saw as "unprivileged" is now "self".

    A non-root caller gets no root-only probes, and reaches every other namespace, overlay and
    pivot_root through a user namespace, so a userns failure fails those too, at the same step.
    """
    user = spec.outcomes["userns.unprivileged"]
    outcomes = {k: v for k, v in spec.outcomes.items() if k not in ("userns.unprivileged", "overlay.mount")}
    outcomes["userns.self"] = user
    if user != "ok":
        for name in [k for k in outcomes if k.startswith("ns.")] + ["overlay.userns", "pivot_root"]:
            outcomes[name] = user
    return dataclasses.replace(spec, outcomes=outcomes, euid=euid)


# --- overlayfs, pivot_root, PSI, cgroup_disable ---------------------------------------------------------


def overlay_blacklisted(base: HostSpec | None = None) -> HostSpec:
    """module_blacklist=overlay: the module is there, the kernel refuses it; mount -t overlay is ENODEV."""
    spec = base or v2_only_6_12()
    spec = dataclasses.replace(
        spec,
        filesystems=filesystems(without=["overlay"]),
        cmdline=f"{spec.cmdline} module_blacklist=overlay",
    )
    failure = "err ENODEV mount-overlay"
    return with_outcomes(spec, overlay__mount=failure, overlay__userns=failure)


def overlay_not_built(base: HostSpec | None = None) -> HostSpec:
    """No overlay.ko shipped or loaded: not registered, not in modules.dep, mount is ENODEV."""
    spec = base or v2_only_6_12()
    spec = with_files(
        dataclasses.replace(spec, filesystems=filesystems(without=["overlay"])),
        {f"lib/modules/{spec.osrelease}/modules.dep": modules_dep(with_overlay=False, compressed=True)},
    )
    failure = "err ENODEV mount-overlay"
    return with_outcomes(spec, overlay__mount=failure, overlay__userns=failure)


def overlay_not_loaded(base: HostSpec | None = None) -> HostSpec:
    """Debian at boot: overlay=m not loaded yet; the trial mount autoloads it (request_module)."""
    spec = base or v2_only_6_12()
    return dataclasses.replace(spec, filesystems=filesystems(without=["overlay"]))


INITRAMFS_MOUNTINFO = (
    "1 1 0:2 / / rw - rootfs rootfs rw,size=987604k,nr_inodes=246901\n"
    "20 1 0:19 / /proc rw,relatime - proc proc rw\n"
    "21 1 0:20 / /sys rw,relatime - sysfs sysfs rw\n"
    "22 1 0:5 / /dev rw,relatime - devtmpfs devtmpfs rw,size=987604k,nr_inodes=246901,mode=755\n"
    "23 21 0:21 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
)


def initramfs_root(base: HostSpec | None = None) -> HostSpec:
    """The guest runs from its initramfs (busybox init, no switch_root): pivot_root is EINVAL (<= 6.x)."""
    spec = dataclasses.replace(base or v2_only_6_12(), mountinfo=INITRAMFS_MOUNTINFO)
    return with_outcomes(spec, pivot_root="err EINVAL pivot_root")


def psi_off(base: HostSpec | None = None) -> HostSpec:
    """psi=0 on the boot line: /proc/pressure is not created."""
    spec = base or v2_only_6_12()
    return with_files(dataclasses.replace(spec, cmdline=f"{spec.cmdline} psi=0"), drop=["proc/pressure/cpu"])


def memory_disabled(base: HostSpec | None = None) -> HostSpec:
    """cgroup_disable=memory: gone from v1 and v2; /proc/cgroups says enabled 0."""
    spec = base or v2_only_6_12()
    spec = dataclasses.replace(
        spec,
        cmdline=f"{spec.cmdline} cgroup_disable=memory",
        proc_cgroups=disable_in_proc_cgroups(spec.proc_cgroups, "memory"),
        mountinfo=without_mount(spec.mountinfo, "/sys/fs/cgroup/memory"),
    )
    changed = {
        path: words_without(text, "memory")
        for path, text in spec.files.items()
        if path.endswith(("/cgroup.controllers", "/cgroup.subtree_control"))
    }
    no_memory_files = [path for path in spec.files if path.rsplit("/", 1)[-1].startswith("memory.")]
    return with_files(spec, changed, drop=[*no_memory_files, "sys/fs/cgroup/memory/"])
