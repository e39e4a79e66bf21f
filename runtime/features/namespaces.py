"""Namespace types: present in /proc/self/ns, and creatable (by unshare in a child)."""

from __future__ import annotations

from runtime.features.model import Finding, disabled, missing, ok, unknown
from runtime.features.probes import DROP_STEP, ENTER_USERNS_STEPS, Outcome, Outcomes
from runtime.linux.constants import NAMESPACE_FLAGS
from runtime.linux.sysroot import Sysroot

CONFIG_OPTION = {
    "mnt": "NAMESPACES",
    "uts": "UTS_NS",
    "ipc": "IPC_NS",
    "pid": "PID_NS",
    "net": "NET_NS",
    "user": "USER_NS",
    "cgroup": "CGROUPS",
    "time": "TIME_NS",
}
USERNS_STEPS = ENTER_USERNS_STEPS | {DROP_STEP}


def detect(root: Sysroot, outcomes: Outcomes, euid: int | None, user: Finding) -> dict[str, Finding]:
    """user is the verdict on user namespaces for this caller (see userns)."""
    return {
        name: user if name == "user" else _interpret(root, name, outcomes.get(f"ns.{name}"), euid)
        for name in NAMESPACE_FLAGS
    }


def _interpret(root: Sysroot, name: str, outcome: Outcome | None, euid: int | None) -> Finding:
    listed = root.exists(f"/proc/self/ns/{name}")
    seen = f"/proc/self/ns/{name} {'present' if listed else 'absent'}"
    if outcome is None:
        return unknown(f"not probed; {seen}")
    if outcome.ok:
        how = "created one" if euid == 0 else "created one inside a user namespace"
        return ok(f"{seen}; {how}")
    if outcome.step in USERNS_STEPS:
        return unknown(
            f"as a non-root user a {name} namespace needs a user namespace, and that failed "
            f"({outcome.errno} at {outcome.step})",
            "run as root, or make user namespaces usable (see userns)",
        )
    if outcome.errno == "EINVAL":
        option = CONFIG_OPTION[name]
        return missing(
            f"unshare gave EINVAL: kernel built without CONFIG_{option}", f"kernel option CONFIG_{option}=y"
        )
    if outcome.errno == "ENOSPC":
        knob = f"user.max_{name}_namespaces"
        value = root.read_int(f"/proc/sys/user/max_{name}_namespaces")
        return disabled(f"unshare gave ENOSPC: {knob}={value}", f"sysctl -w {knob}=15000")
    return unknown(f"unshare gave {outcome.errno} at {outcome.step}; {seen}")
