"""User namespaces, for root and for an unprivileged user, and which knob stops them."""

from __future__ import annotations

from runtime.features.model import Finding, UserNamespaces, disabled, missing, ok, unknown
from runtime.features.probes import DROP_STEP, MAP_STEPS, UNPRIVILEGED_UID, USE_STEP, Outcome, Outcomes
from runtime.linux.sysroot import Sysroot

MAX_KNOB = "/proc/sys/user/max_user_namespaces"
DEBIAN_KNOB = "/proc/sys/kernel/unprivileged_userns_clone"
APPARMOR_KNOB = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
AFTER_UNSHARE = MAP_STEPS | {USE_STEP}


def detect(root: Sysroot, outcomes: Outcomes, euid: int | None) -> UserNamespaces:
    if euid == 0:
        as_root = verdict(root, outcomes.get("userns.self"), uid=0)
        as_user = verdict(root, outcomes.get("userns.unprivileged"), uid=UNPRIVILEGED_UID)
    else:
        as_root = unknown("not root: cannot probe as root")
        as_user = verdict(root, outcomes.get("userns.self"), uid=euid)
    return UserNamespaces(
        root=as_root,
        unprivileged=as_user,
        max_user_namespaces=root.read_int(MAX_KNOB),
        unprivileged_userns_clone=root.read_int(DEBIAN_KNOB),
    )


def verdict(root: Sysroot, outcome: Outcome | None, uid: int | None) -> Finding:
    """What a userns probe outcome means for uid, naming the knob when it failed."""
    unprivileged = uid != 0
    who = "root" if uid == 0 else f"uid {uid}"
    if outcome is None:
        return unknown("not probed")
    if outcome.ok:
        return ok(f"{who} created one, mapped its uid and mounted inside it")
    if outcome.step == DROP_STEP:
        return unknown(f"cannot switch to uid {UNPRIVILEGED_UID} to probe as an unprivileged user")
    if outcome.step in AFTER_UNSHARE:
        return _after_unshare(root, outcome, who)
    return _unshare_refused(root, outcome, unprivileged)


def _unshare_refused(root: Sysroot, outcome: Outcome, unprivileged: bool) -> Finding:
    if outcome.errno == "EINVAL":
        return missing(
            "unshare(CLONE_NEWUSER) gave EINVAL: kernel built without CONFIG_USER_NS", "CONFIG_USER_NS=y"
        )
    if outcome.errno == "ENOSPC":
        limit = root.read_int(MAX_KNOB)
        if limit == 0:
            return disabled(
                "user.max_user_namespaces=0 (unshare gives ENOSPC, to root as well)",
                "sysctl -w user.max_user_namespaces=15000 (and drop sysctl.user.max_user_namespaces=0 from the boot line)",
            )
        return disabled(f"the limit user.max_user_namespaces={limit} is used up (ENOSPC)", "raise the sysctl")
    if outcome.errno == "EPERM" and unprivileged and root.read_int(DEBIAN_KNOB) == 0:
        return disabled(
            "kernel.unprivileged_userns_clone=0 (Debian): EPERM for non-root callers",
            "sysctl -w kernel.unprivileged_userns_clone=1",
        )
    if outcome.errno == "EUSERS":
        return disabled("too deeply nested in user namespaces (EUSERS)")
    return disabled(
        f"unshare(CLONE_NEWUSER) gave {outcome.errno}: a seccomp filter or a security module forbids it",
        "run outside the sandbox that forbids it",
    )


def _after_unshare(root: Sysroot, outcome: Outcome, who: str) -> Finding:
    if root.read_int(APPARMOR_KNOB) == 1:
        return disabled(
            f"AppArmor restricts unprivileged user namespaces: unshare succeeded, then {outcome.step} "
            f"gave {outcome.errno} (kernel.apparmor_restrict_unprivileged_userns=1)",
            "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing userns",
        )
    return disabled(f"{who}: unshare succeeded, then {outcome.step} gave {outcome.errno}")
