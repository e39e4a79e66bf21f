"""Turn Features into checks (required / optional), a verdict, text for people and JSON for tools."""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from runtime.features.model import Features, Finding, Status

SCHEMA_VERSION = 1
REQUIRED_NAMESPACES = ("mnt", "pid", "uts", "ipc", "net")


class Group(enum.StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"


@dataclass(frozen=True)
class Check:
    group: Group
    name: str
    finding: Finding


def who(features: Features) -> str:
    if features.euid is None:
        return "root (from a config file)"
    return "root" if features.euid == 0 else f"uid {features.euid} (rootless)"


def build_checks(features: Features) -> list[Check]:
    return list(_required(features)) + list(_optional(features))


def _required(f: Features) -> Iterator[Check]:
    rootless = f.euid not in (0, None)
    if rootless:
        yield Check(Group.REQUIRED, "user namespaces (unprivileged)", f.userns.unprivileged)
    for name in REQUIRED_NAMESPACES:
        yield Check(Group.REQUIRED, f"namespace {name}", f.namespaces[name])
    if not rootless:
        yield Check(Group.REQUIRED, "cgroups", f.cgroups.finding)
    yield Check(Group.REQUIRED, "no_new_privs", f.security["no_new_privs"])


def _optional(f: Features) -> Iterator[Check]:
    rootless = f.euid not in (0, None)
    if rootless:
        yield Check(Group.OPTIONAL, "cgroups", f.cgroups.finding)
    else:
        yield Check(Group.OPTIONAL, "user namespaces (root)", f.userns.root)
        yield Check(Group.OPTIONAL, "user namespaces (unprivileged)", f.userns.unprivileged)
    for name in ("cgroup", "time"):
        yield Check(Group.OPTIONAL, f"namespace {name}", f.namespaces[name])
    for controller in f.cgroups.controllers.values():
        yield Check(Group.OPTIONAL, f"cgroup {controller.name} ({controller.where})", controller.finding)
    for name, finding in f.cgroups.extras.items():
        yield Check(Group.OPTIONAL, f"cgroup {name}", finding)
    for name in ("registered", "loadable", "mountable", "in_userns"):
        yield Check(Group.OPTIONAL, f"overlay {name}", getattr(f.overlay, name))
    yield Check(Group.OPTIONAL, "pivot_root", f.pivot_root.usable)
    for name, finding in {**f.security, **f.syscalls}.items():
        if name != "no_new_privs":
            yield Check(Group.OPTIONAL, name, finding)


def can_run_containers(checks: list[Check]) -> bool:
    return all(check.finding.status is Status.OK for check in checks if check.group is Group.REQUIRED)


# --- text -------------------------------------------------------------------------------------------------


def render_text(features: Features, checks: list[Check], verbose: bool = False) -> str:
    lines = [_headline(features)]
    for group, title in (
        (Group.REQUIRED, f"Required to run containers as {who(features)}"),
        (Group.OPTIONAL, "Optional"),
    ):
        lines += ["", title]
        for check in checks:
            if check.group is group:
                lines += _check_lines(check, verbose)
    lines += ["", *[f"note: {note}" for note in features.notes]]
    lines.append(_verdict_line(features, checks))
    return "\n".join(line for line in lines if line is not None)


def _headline(f: Features) -> str:
    source = "this host" if f.source == "host" else f.source.removeprefix("config:")
    return f"Linux {f.kernel.release} ({source}); cgroups: {f.cgroups.mode}"


def _check_lines(check: Check, verbose: bool) -> list[str]:
    finding = check.finding
    text = finding.detail if finding.status is Status.OK else finding.cause or finding.detail
    lines = [f"  {finding.status.value:<8} {check.name:<34} {text}"]
    if finding.status is not Status.OK and finding.detail and verbose:
        lines.append(f"  {'':<8} {'':<34} seen: {finding.detail}")
    if finding.hint and finding.status is not Status.OK:
        lines.append(f"  {'':<8} {'':<34} hint: {finding.hint}")
    return lines


def _verdict_line(f: Features, checks: list[Check]) -> str:
    subject = "this host" if f.source == "host" else "this kernel"
    if can_run_containers(checks):
        return f"{subject} can run containers for {who(f)}."
    failed = [c.name for c in checks if c.group is Group.REQUIRED and c.finding.status is not Status.OK]
    return f"{subject} cannot run containers for {who(f)}: {', '.join(failed)}."


# --- JSON (schema documented in docs/check-json.md) ----------------------------------------------------------


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "status": finding.status.value,
        "detail": finding.detail,
        "cause": finding.cause,
        "hint": finding.hint,
    }


def _reason(*findings: Finding) -> str | None:
    """The first cause that says no; an unknown's cause only when nothing says no."""
    refusals = [f for f in findings if f.status in (Status.MISSING, Status.DISABLED)]
    unknowns = [f for f in findings if f.status is Status.UNKNOWN]
    for finding in refusals + unknowns:
        if finding.cause:
            return finding.cause
    return None


def to_json(features: Features, checks: list[Check]) -> dict[str, Any]:
    f = features
    return {
        "schema": SCHEMA_VERSION,
        "source": "host" if f.source == "host" else "config",
        "config": f.source.removeprefix("config:") if f.source != "host" else None,
        "euid": f.euid,
        "kernel": {"release": f.kernel.release, "version": list(f.kernel.triple)},
        "cgroup": {
            "mode": f.cgroups.mode.value,
            "v2_mount": f.cgroups.v2_mount,
            "finding": _finding(f.cgroups.finding),
            "controllers": {
                name: {"where": c.where.value, "mount": c.mount, **_finding(c.finding)}
                for name, c in f.cgroups.controllers.items()
            },
            "extras": {name: _finding(finding) for name, finding in f.cgroups.extras.items()},
        },
        "namespaces": {name: _finding(finding) for name, finding in f.namespaces.items()},
        "userns": {
            "root": f.userns.root.usable,
            "unprivileged": f.userns.unprivileged.usable,
            "reason": f.userns.reason or None,
            "max_user_namespaces": f.userns.max_user_namespaces,
            "unprivileged_userns_clone": f.userns.unprivileged_userns_clone,
            "findings": {"root": _finding(f.userns.root), "unprivileged": _finding(f.userns.unprivileged)},
        },
        "overlay": {
            "registered": f.overlay.registered.usable,
            "loadable": f.overlay.loadable.usable,
            "mountable": f.overlay.mountable.usable,
            "in_userns": f.overlay.in_userns.usable,
            "reason": _reason(f.overlay.mountable, f.overlay.in_userns),
            "findings": {
                name: _finding(getattr(f.overlay, name))
                for name in ("registered", "loadable", "mountable", "in_userns")
            },
        },
        "pivot_root": {
            "usable": f.pivot_root.usable.usable,
            "reason": _reason(f.pivot_root.usable),
            "root_fstype": f.pivot_root.root_fstype,
            "finding": _finding(f.pivot_root.usable),
        },
        "security": {name: _finding(finding) for name, finding in f.security.items()},
        "syscalls": {name: _finding(finding) for name, finding in f.syscalls.items()},
        "checks": [{"group": c.group.value, "name": c.name, **_finding(c.finding)} for c in checks],
        "can_run_containers": can_run_containers(checks),
        "notes": list(f.notes),
    }
