"""The decisions of `runtime run`, each from what this host offers and said under --verbose.

cgroups, the user namespace, the storage of an image's root and the seccomp profile are chosen here,
before a cgroup, mount or process exists: a limit or mode that cannot be had is refused (exit 125)
with detection's words for why. Part of the start path: plain functions and os; detection is
imported only on the way to a refusal.
"""

from __future__ import annotations

import errno
import os

from runtime import output
from runtime.cgroups import cpulist, layout
from runtime.cgroups.base import SUBTREE
from runtime.cgroups.manager import Manager, NoCgroups, Unavailable, plan
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux.sysroot import LIVE, Sysroot

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from runtime.features.probes import Outcome
    from runtime.seccomp.profile import Profile
    from runtime.spec import ContainerSpec

DEFAULT_ID_RANGE = (100_000, 65_536)
LIMIT_FLAGS = {"memory": "--memory", "cpu": "--cpus", "pids": "--pids-limit", "cpuset": "--cpuset-cpus"}
ONLINE_CPUS = "/sys/devices/system/cpu/online"
EFFECTIVE_CPUS = {layout.V1: "cpuset.effective_cpus", layout.V2: "cpuset.cpus.effective"}


def choose_cgroups(spec: ContainerSpec, root: Sysroot = LIVE) -> Manager:
    """The cgroups for this container, or a refusal (exit 125) before anything exists.

    One in every hierarchy, limits or not: the init unshares its cgroup namespace once it is moved,
    so the container's view is rooted at its own cgroup everywhere. The devices mechanism follows
    the host (layout.devices_mechanism); RUNTIME_DEVICES=v1|ebpf forces one the host offers (tests)."""
    found = layout.read(root)
    forced = os.environ.get("RUNTIME_DEVICES", "")
    devices = layout.devices_mechanism(found, forced)
    if devices is None:
        raise Failure(
            f"RUNTIME_DEVICES={forced}: this host offers no such devices mechanism",
            "unset it, or set v1 (the cgroup v1 devices controller) or ebpf (cgroup2) where the host has it, or none",
            EXIT_RUNTIME,
        )
    if found.mode == layout.NONE:
        if spec.limits.controllers():
            raise Failure(
                "limits need cgroups, and none are mounted here",
                "mount cgroup2 on /sys/fs/cgroup",
                EXIT_RUNTIME,
            )
        output.note(
            "cgroups: none mounted; the container runs without limits, accounting or a devices cgroup"
        )
        return NoCgroups()
    try:
        manager = plan(found, spec.container_id, spec.limits, devices)
    except Unavailable as missing:
        raise _refusal(missing.controller, found, root) from None
    if spec.limits.cpuset_cpus is not None:
        _check_cpus(spec.limits.cpuset_cpus, found, root)
    output.note(f"cgroups: {found.mode}: {', '.join(manager.directories())}")
    return manager


def choose_userns(mode: str, root: Sysroot = LIVE) -> str:
    """The user namespace: "private", "auto" or "" (the host's). What a file can tell is decided here, before
    anything exists; anything else is found by doing (see child.setup)."""
    if mode == "host":
        output.note("userns: host (asked for)")
        return ""
    built = root.exists("/proc/self/ns/user")
    limit = root.read_int("/proc/sys/user/max_user_namespaces")
    if built and limit != 0:
        return mode
    cause = userns_failure(errno.EINVAL if not built else errno.ENOSPC, root)
    if mode == "private":
        raise Failure(f"--userns private: user namespaces are unusable here: {cause}", "", EXIT_RUNTIME)
    output.note(f"userns: host, because user namespaces are unusable here: {cause}")
    return ""


def choose_seccomp(setting: str) -> Profile | None:
    """The profile named by --security-opt, loaded now: a bad one is refused before anything exists."""
    from runtime.seccomp import profile

    if setting == "unconfined":
        output.note("seccomp: unconfined (asked for)")
        return None
    if setting == "default":
        output.note("seccomp: Docker's default profile")
        return profile.default()
    output.note(f"seccomp: the profile in {setting}")
    return profile.load(setting)


def _refusal(controller: str, found: layout.Layout, root: Sysroot) -> Failure:
    """Why the controller is missing, in detection's words (they name CONFIG_MEMCG_V1 and the fix)."""
    from runtime.features import cgroups as detection
    from runtime.features import kconfig, kernel

    config = kconfig.for_running_kernel(root, kernel.detect(root).release)
    described = detection.controllers(root, found, config).get(controller)
    cause = described.finding.cause if described else f"the kernel has no {controller} controller"
    hint = described.finding.hint if described else ""
    return Failure(
        f"{LIMIT_FLAGS[controller]} needs the {controller} controller, which this host does not offer: {cause}",
        hint,
        EXIT_RUNTIME,
    )


def _check_cpus(wanted: str, found: layout.Layout, root: Sysroot) -> None:
    """Refuse CPUs that are not online, or that the cgroup the container's would sit in may not use,
    now rather than as the kernel's EINVAL once cgroups exist. The runtime's own cgroup first: on v1
    it keeps the CPUs it was given when made (CPU hotplug takes them away), else the hierarchy's root."""
    ranges = cpulist.parse(wanted) or []  # spec.parse_cpuset_cpus has checked it
    online = _cpu_file(root, ONLINE_CPUS)
    missing = cpulist.first_missing(ranges, online) if online is not None else None
    if online is not None and missing is not None:
        raise Failure(
            f"--cpuset-cpus {wanted}: CPU {missing} is not online here (online: {cpulist.spell(online)})",
            "",
            EXIT_RUNTIME,
        )
    where, mount = found.where("cpuset")
    if mount is None:
        return
    for directory in (os.path.join(mount, SUBTREE), mount):
        path = os.path.join(directory, EFFECTIVE_CPUS[where])
        allowed = _cpu_file(root, path)
        if allowed is None:
            continue
        missing = cpulist.first_missing(ranges, allowed)
        if missing is not None:
            raise Failure(
                f"--cpuset-cpus {wanted}: CPU {missing} is not one the runtime's cgroups may use "
                f"({path}: {cpulist.spell(allowed)})",
                "",
                EXIT_RUNTIME,
            )
        return


def _cpu_file(root: Sysroot, path: str) -> cpulist.Ranges | None:
    """A CPU list file's ranges; None when it is missing, empty or unreadable."""
    text = (root.read(path) or "").strip()
    return cpulist.parse(text) if text else None


def id_range() -> tuple[int, int]:
    """root's range in /etc/subuid, as Docker's userns-remap reads it; else 100000-165535."""
    try:
        with open("/etc/subuid") as file:
            for line in file.read().splitlines():
                user, start, count = line.split(":")
                if user in ("root", "0"):
                    return int(start), int(count)
    except (OSError, ValueError):
        pass
    return DEFAULT_ID_RANGE


def choose_storage(mode: str, root: Sysroot = LIVE, trial: Callable[[], Outcome] | None = None) -> str:
    """Overlay or copy for an image's root; `--storage overlay` where it cannot mount is refused."""
    if mode == "copy":
        output.note("storage: copy (asked for)")
        return "copy"
    if "overlay" in (root.read("/proc/filesystems") or "").split():
        output.note("storage: overlay")
        return "overlay"
    outcome = (trial or _trial_overlay)()
    if outcome.ok:
        output.note("storage: overlay (loaded by a trial mount)")
        return "overlay"
    from runtime.features.overlay import mount_verdict

    verdict = mount_verdict(root, outcome)
    if mode == "overlay":
        raise Failure(
            f"--storage overlay: overlayfs cannot mount here: {verdict.cause}", verdict.hint, EXIT_RUNTIME
        )
    output.note(f"storage: copy, because overlayfs cannot mount here: {verdict.cause}")
    return "copy"


def _trial_overlay() -> Outcome:
    import shutil
    import tempfile

    from runtime.features import probes

    scratch = tempfile.mkdtemp(prefix="runtime-probe-")
    try:
        return probes.in_child(probes.probe_overlay(scratch, in_userns=False))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def userns_failure(errno_number: int, root: Sysroot = LIVE) -> str:
    """Why unshare(CLONE_NEWUSER) failed, naming the knob (detection's words)."""
    from runtime.features import probes, userns

    failed = probes.Outcome(False, errno=probes.errno_name(errno_number), step="unshare-userns")
    verdict = userns.verdict(root, failed, uid=0)
    return verdict.cause + (f"; hint: {verdict.hint}" if verdict.hint else "")
