"""The same verdicts as far as a kernel config file can tell, for a kernel that is not running.

What depends on the booted host (sysctls, the cgroup layout init mounts, an initramfs root, a
blacklisted module) is UNKNOWN here, with the knob that decides it.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.features.cgroups import CORE_FILES, MEMORY_FILES, V2_HINT, dotted
from runtime.features.kconfig import ConfigError, KernelConfig
from runtime.features.model import (
    CgroupMode,
    Cgroups,
    Controller,
    Features,
    Finding,
    KernelVersion,
    Overlay,
    PivotRoot,
    UserNamespaces,
    Where,
    missing,
    ok,
    unknown,
)
from runtime.features.namespaces import CONFIG_OPTION
from runtime.features.security import SECURITY, SYSCALLS


@dataclass(frozen=True)
class ControllerOption:
    option: str
    v1: bool = True
    v2: bool = True
    v1_option: str = ""  # a later split-out option that v1 also needs


CONTROLLERS = {
    "cpu": ControllerOption("CGROUP_SCHED"),
    "cpuacct": ControllerOption("CGROUP_CPUACCT", v2=False),
    "cpuset": ControllerOption("CPUSETS", v1_option="CPUSETS_V1"),
    "memory": ControllerOption("MEMCG", v1_option="MEMCG_V1"),
    "devices": ControllerOption("CGROUP_DEVICE", v2=False),
    "freezer": ControllerOption("CGROUP_FREEZER", v2=False),
    "net_cls": ControllerOption("CGROUP_NET_CLASSID", v2=False),
    "net_prio": ControllerOption("CGROUP_NET_PRIO", v2=False),
    "perf_event": ControllerOption("CGROUP_PERF"),
    "hugetlb": ControllerOption("CGROUP_HUGETLB"),
    "pids": ControllerOption("CGROUP_PIDS"),
    "rdma": ControllerOption("CGROUP_RDMA"),
    "misc": ControllerOption("CGROUP_MISC"),
    "blkio": ControllerOption("BLK_CGROUP", v2=False),
    "io": ControllerOption("BLK_CGROUP", v1=False),
}
EXTRAS_SINCE = CORE_FILES | MEMORY_FILES
MEMCG_EXTRAS = set(MEMORY_FILES)
RUNTIME_DECIDES = "the running host decides"


def features(config: KernelConfig) -> Features:
    if config.version is None:
        raise ConfigError(f"{config.source} names no kernel version", "pass a /boot/config-<release> file")
    version = config.version
    user = _userns(config)
    return Features(
        source=f"config:{config.source}",
        euid=None,
        kernel=version,
        cgroups=_cgroups(config, version),
        namespaces={name: _option(config, option) for name, option in CONFIG_OPTION.items()},
        userns=user,
        overlay=_overlay(config, version),
        pivot_root=_pivot_root(version),
        security={name: _security(config, version, name) for name in SECURITY},
        syscalls={name: _since(version, SYSCALLS[name].since, name) for name in SYSCALLS},
    )


def _option(config: KernelConfig, option: str) -> Finding:
    if config.built(option):
        return ok(f"CONFIG_{option}{config.tristate(option)}")
    return missing(f"CONFIG_{option} {config.tristate(option)}", f"kernel option CONFIG_{option}=y")


def _since(version: KernelVersion, since: str, what: str) -> Finding:
    major, minor = (int(part) for part in since.split("."))
    if version.at_least(major, minor):
        return ok(f"Linux {version.release} has {what} (since {since})")
    return missing(f"{what} came in Linux {since}; this is {version.release}", f"Linux {since}+")


# --- cgroups ---------------------------------------------------------------------------------------------


def _cgroups(config: KernelConfig, version: KernelVersion) -> Cgroups:
    controllers = {name: _controller(config, name, spec) for name, spec in CONTROLLERS.items()}
    extras = {
        name: _extra(config, version, name, (major, minor)) for name, (major, minor) in EXTRAS_SINCE.items()
    }
    extras["psi"] = _psi(config)
    extras["nsdelegate"] = _since(version, "4.13", "nsdelegate")
    extras["memory.v1"] = _v1_split(config, "memory", "MEMCG", "MEMCG_V1")
    extras["cpuset.v1"] = _v1_split(config, "cpuset", "CPUSETS", "CPUSETS_V1")
    if not config.built("CGROUPS"):
        finding = missing(f"CONFIG_CGROUPS {config.tristate('CGROUPS')}", "kernel option CONFIG_CGROUPS=y")
    else:
        finding = ok("CONFIG_CGROUPS=y; v1, v2 or hybrid is what the host's init mounts")
    return Cgroups(CgroupMode.UNKNOWN, None, controllers, extras, finding)


def _controller(config: KernelConfig, name: str, spec: ControllerOption) -> Controller:
    if not config.built(spec.option):
        return Controller(name, Where.NONE, None, _option(config, spec.option))
    v1 = spec.v1 and (not spec.v1_option or config.value(spec.v1_option) != "n")
    where = {(True, True): Where.UNKNOWN, (True, False): Where.V1, (False, True): Where.V2}.get((v1, spec.v2))
    detail = f"CONFIG_{spec.option}{config.tristate(spec.option)}"
    if spec.v1_option and spec.v1 and not v1:
        detail += f", CONFIG_{spec.v1_option} not set: v2 only"
    elif where is Where.UNKNOWN:
        detail += ": v1 or v2, as the host mounts it"
    return Controller(name, where or Where.NONE, None, ok(detail))


def _v1_split(config: KernelConfig, name: str, base: str, v1_option: str) -> Finding:
    if not config.built(base):
        return missing(f"CONFIG_{base} {config.tristate(base)}: no {name} controller at all")
    value = config.value(v1_option)
    if value is None:
        return ok(
            f"CONFIG_{base}{config.tristate(base)} and no CONFIG_{v1_option} option yet: v1 {name} is built"
        )
    if value == "n":
        return missing(
            f"CONFIG_{v1_option} is not set: no cgroup v1 {name} controller. Hosts that boot with cgroup v1 "
            f"lose {name} limits, and on hybrid hosts {name} stays in v2",
            V2_HINT,
        )
    return ok(f"CONFIG_{v1_option}{config.tristate(v1_option)}")


def _extra(config: KernelConfig, version: KernelVersion, name: str, since: tuple[int, int]) -> Finding:
    if name in MEMCG_EXTRAS and not config.built("MEMCG"):
        return missing("no memory controller (CONFIG_MEMCG)", "kernel option CONFIG_MEMCG=y")
    return _since(version, dotted(since), name)


def _psi(config: KernelConfig) -> Finding:
    if not config.built("PSI"):
        return missing(f"CONFIG_PSI {config.tristate('PSI')}", "kernel option CONFIG_PSI=y")
    if config.value("PSI_DEFAULT_DISABLED") == "y":
        return unknown(
            "CONFIG_PSI_DEFAULT_DISABLED=y: off unless the host boots with psi=1", "boot with psi=1"
        )
    return ok("CONFIG_PSI=y, on by default (psi=0 on the boot line turns it off)")


# --- namespaces, overlay, pivot_root, security -------------------------------------------------------------


def _userns(config: KernelConfig) -> UserNamespaces:
    if not config.built("USER_NS"):
        absent = missing(f"CONFIG_USER_NS {config.tristate('USER_NS')}", "kernel option CONFIG_USER_NS=y")
        return UserNamespaces(absent, absent, None, None)
    root = ok("CONFIG_USER_NS=y; the host can still turn it off with user.max_user_namespaces=0")
    unprivileged = ok(
        "CONFIG_USER_NS=y; the host can still refuse non-root callers "
        "(kernel.unprivileged_userns_clone=0 on Debian, AppArmor on Ubuntu)"
    )
    return UserNamespaces(root, unprivileged, None, None)


def _overlay(config: KernelConfig, version: KernelVersion) -> Overlay:
    built = _option(config, "OVERLAY_FS")
    if config.value("OVERLAY_FS") == "m":
        registered = unknown(
            f"CONFIG_OVERLAY_FS=m: registered once loaded; {RUNTIME_DECIDES}", "modprobe overlay"
        )
        loadable = ok(
            "CONFIG_OVERLAY_FS=m: a module, loaded on demand (a host can withhold it: module_blacklist=overlay)"
        )
    else:
        registered = loadable = built
    mountable = (
        built if built.status.value != "ok" else ok(f"{built.detail}; a host can still withhold the module")
    )
    if built.status.value != "ok":
        in_userns = built
    elif version.at_least(5, 11):
        in_userns = ok(f"Linux {version.release} mounts overlay in user namespaces (userxattr, since 5.11)")
    else:
        in_userns = missing(
            f"overlay in a user namespace needs Linux 5.11 (this is {version.release})",
            "Linux 5.11+; Debian's 5.10 allows it with overlay.permit_mounts_in_userns=1",
        )
    return Overlay(registered, loadable, mountable, in_userns)


def _pivot_root(version: KernelVersion) -> PivotRoot:
    if version.at_least(7, 0):
        return PivotRoot(
            ok("Linux 7.0+ roots the initramfs on nullfs: pivot_root works from any root"), "unknown"
        )
    return PivotRoot(
        unknown(
            "pivot_root works from a disk root but gives EINVAL from an initramfs root before Linux 7.0: "
            f"{RUNTIME_DECIDES} (the runtime falls back to MS_MOVE + chroot)"
        ),
        "unknown",
    )


def _security(config: KernelConfig, version: KernelVersion, name: str) -> Finding:
    facts = SECURITY[name]
    if not facts.option:
        return _since(version, facts.since, name)
    option = facts.option.removeprefix("CONFIG_")
    if not config.built(option):
        return _option(config, option)
    if name == "landlock" and "landlock" not in (config.value("LSM") or "").split(","):
        return unknown(
            "CONFIG_SECURITY_LANDLOCK=y, but not in CONFIG_LSM: active only if the host boots with lsm=…,landlock",
            "add landlock to lsm= on the boot line",
        )
    return ok(f"CONFIG_{option}{config.tristate(option)}")
