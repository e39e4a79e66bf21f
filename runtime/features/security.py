"""Security and process features found by calling the syscall: seccomp, no_new_privs, ambient
capabilities, Landlock, clone3, pidfd_open, the new mount API and mount_setattr."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.features.model import Finding, disabled, missing, ok, unknown
from runtime.features.probes import Outcomes


@dataclass(frozen=True)
class Facts:
    since: str
    option: str


SECURITY = {
    "seccomp_filter": Facts("3.5", "CONFIG_SECCOMP_FILTER"),
    "no_new_privs": Facts("3.5", ""),
    "ambient_caps": Facts("4.3", ""),
    "landlock": Facts("5.13", "CONFIG_SECURITY_LANDLOCK"),
}
SYSCALLS = {
    "clone3": Facts("5.3", ""),
    "pidfd_open": Facts("5.3", ""),
    "mount_api": Facts("5.2", ""),
    "mount_setattr": Facts("5.12", ""),
}


def detect(outcomes: Outcomes, table: dict[str, Facts]) -> dict[str, Finding]:
    return {name: _interpret(name, facts, outcomes) for name, facts in table.items()}


def _interpret(name: str, facts: Facts, outcomes: Outcomes) -> Finding:
    outcome = outcomes.get(name)
    if outcome is None:
        return unknown("not probed")
    if outcome.ok:
        if name == "landlock":
            return ok(f"ABI {outcome.value}")
        return ok("the kernel answers")
    needs = f"Linux {facts.since}+" + (f" with {facts.option}=y" if facts.option else "")
    if name == "landlock" and outcome.errno == "EOPNOTSUPP":
        return disabled(
            "built, but not in the active security modules", "add landlock to lsm= on the boot line"
        )
    if outcome.errno == "ENOSYS":
        return missing(f"ENOSYS: the kernel lacks it (needs {needs}), or a seccomp filter hides it", needs)
    if outcome.errno == "EINVAL" and name in SECURITY:
        return missing(f"EINVAL: the kernel does not know it (needs {needs})", needs)
    return unknown(f"the probe gave {outcome.errno}")
