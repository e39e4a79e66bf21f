"""Seccomp profiles in Docker's JSON format: the model, its loader and the default profile.

`load(path)` reads a user's --security-opt seccomp=PROFILE.json; `default()` gives Docker's default
profile (default.py). Both go through `from_dict`, which checks every field and raises ProfileError
(a message naming the field, and a hint) for anything it cannot honour. Names of syscalls this
architecture does not have are kept here and skipped by the compiler, as libseccomp skips them.

This module is imported on `runtime run`'s start path: no dataclasses, enum or typing here, and json
only inside `load`, which reads a host file and so runs before the container's root changes.
"""

from __future__ import annotations

import os
import stat

from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux.constants import CAPABILITIES
from runtime.seccomp import default as default_data

TYPE_CHECKING = False  # not typing's: importing typing costs 8 ms on `runtime run`'s start path
if TYPE_CHECKING:
    from collections.abc import Mapping

# SECCOMP_RET_* values (linux/seccomp.h), by libseccomp's action names.
RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_DATA = 0x0000FFFF

ACTIONS: dict[str, int] = {
    "SCMP_ACT_KILL": RET_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": RET_TRAP,
    "SCMP_ACT_ERRNO": RET_ERRNO,
    "SCMP_ACT_TRACE": RET_TRACE,
    "SCMP_ACT_LOG": RET_LOG,
    "SCMP_ACT_ALLOW": RET_ALLOW,
}
# Actions that run the syscall (TRACE does when a tracer says so): a filter whose default is one
# of them is a denylist, and syscalls newer than it must keep running rather than get ENOSYS.
PERMISSIVE = frozenset((RET_ALLOW, RET_LOG, RET_TRACE))

EPERM = 1
ENOSYS = 38
MAX_ERRNO = 4095  # the kernel clamps larger values to this

OPS = (
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
)
MAX_ARG_INDEX = 5
U64_MAX = (1 << 64) - 1

# seccomp(2) flags a profile may ask for (runtime-spec names).
FLAGS: dict[str, int] = {
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
}

MAX_PROFILE_BYTES = 4 << 20  # Docker's default profile is 20 kB

# The architecture includes/excludes are matched against: Docker's name for the native one.
NATIVE_ARCH = "amd64"


_HINT = "fix the profile (Docker's seccomp JSON format), or run with --security-opt seccomp=unconfined"


class ProfileError(Failure):
    """A profile that cannot be honoured: what and where, and a hint."""

    def __init__(self, message: str, hint: str = _HINT) -> None:
        super().__init__(message, hint, EXIT_RUNTIME)


class Condition:
    """One argument comparison, as libseccomp's: unsigned 64-bit, MASKED_EQ is (arg & value) == value_two.

    `width` 32 compares the low 32 bits only: for arguments the kernel reads as 32-bit ints, whose
    upper register half it ignores (used by the compiler's own rules, never by profiles).
    """

    __slots__ = ("index", "op", "value", "value_two", "width")

    def __init__(self, index: int, op: str, value: int, value_two: int = 0, width: int = 64) -> None:
        self.index = index
        self.op = op
        self.value = value
        self.value_two = value_two
        self.width = width

    def matches(self, args: tuple[int, ...]) -> bool:
        """The reference meaning, for tests and tools; the compiler emits BPF for the same thing."""
        mask = U64_MAX if self.width == 64 else 0xFFFFFFFF
        arg = args[self.index] & mask
        value = self.value & mask
        if self.op == "SCMP_CMP_MASKED_EQ":
            return (arg & value) == (self.value_two & mask)
        return {
            "SCMP_CMP_NE": arg != value,
            "SCMP_CMP_LT": arg < value,
            "SCMP_CMP_LE": arg <= value,
            "SCMP_CMP_EQ": arg == value,
            "SCMP_CMP_GE": arg >= value,
            "SCMP_CMP_GT": arg > value,
        }[self.op]


class Filter:
    """A rule's includes or excludes: capability names, Docker architecture names, a minimum kernel."""

    __slots__ = ("arches", "caps", "min_kernel")

    def __init__(
        self,
        caps: tuple[str, ...] = (),
        arches: tuple[str, ...] = (),
        min_kernel: tuple[int, int] | None = None,
    ) -> None:
        self.caps = caps
        self.arches = arches
        self.min_kernel = min_kernel


class Rule:
    """Syscall names, the SECCOMP_RET_* value to return, and the conditions (all must hold)."""

    __slots__ = ("action", "conditions", "excludes", "includes", "names")

    def __init__(
        self,
        names: tuple[str, ...],
        action: int,
        conditions: tuple[Condition, ...] = (),
        includes: Filter | None = None,
        excludes: Filter | None = None,
    ) -> None:
        self.names = names
        self.action = action
        self.conditions = conditions
        self.includes = includes
        self.excludes = excludes

    def applies(self, capabilities: set[int] | frozenset[int], kernel: tuple[int, int]) -> bool:
        """Docker's reading: every included cap held, no excluded cap held, kernel at least minKernel."""
        include, exclude = self.includes, self.excludes
        if exclude is not None:
            if NATIVE_ARCH in exclude.arches or any(_held(cap, capabilities) for cap in exclude.caps):
                return False
            if exclude.min_kernel is not None and kernel >= exclude.min_kernel:
                return False
        if include is not None:
            if include.arches and NATIVE_ARCH not in include.arches:
                return False
            if not all(_held(cap, capabilities) for cap in include.caps):
                return False
            if include.min_kernel is not None and kernel < include.min_kernel:
                return False
        return True


def _held(name: str, capabilities: set[int] | frozenset[int]) -> bool:
    # A capability this table does not know cannot have been granted: never held.
    number = CAPABILITIES.get(name.upper())
    return number is not None and number in capabilities


class Profile:
    """A whole profile: the default SECCOMP_RET_* value, the rules in order, and seccomp(2) flags."""

    __slots__ = ("default_action", "flags", "rules", "source")

    def __init__(
        self, default_action: int, rules: tuple[Rule, ...], flags: int = 0, source: str = ""
    ) -> None:
        self.default_action = default_action
        self.rules = rules
        self.flags = flags
        self.source = source

    def names(self) -> set[str]:
        """Every syscall name the profile mentions, whatever its includes and excludes."""
        return {name for rule in self.rules for name in rule.names}


def default() -> Profile:
    return from_dict(default_data.PROFILE, "the default seccomp profile")


def allow_all() -> Profile:
    """A profile that allows every x86_64 syscall: for seccomp=unconfined where the compiler must
    still add its own rules (deny_device_mknod)."""
    return Profile(RET_ALLOW, (), 0, "the allow-all seccomp profile")


def load(path: str | os.PathLike[str]) -> Profile:
    """Read and check a profile in Docker's JSON format. Call it before the container's root changes."""
    import json  # 1 ms that only user profiles pay

    where = f"seccomp profile {os.fspath(path)}"
    try:
        # O_NONBLOCK: a FIFO given as the profile must not hang the runtime; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise ProfileError(
            f"{where}: cannot read it: {error.strerror}", "give the path of a readable JSON file"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ProfileError(f"{where}: not a regular file", "give the path of a JSON file")
        if info.st_size > MAX_PROFILE_BYTES:
            raise ProfileError(
                f"{where}: {info.st_size} bytes, over the {MAX_PROFILE_BYTES} a profile may have",
                "give a seccomp profile, not another file",
            )
        text = os.read(fd, MAX_PROFILE_BYTES + 1)
    except OSError as error:
        raise ProfileError(
            f"{where}: cannot read it: {error.strerror}", "give the path of a readable JSON file"
        ) from None
    finally:
        os.close(fd)
    try:
        document = json.loads(text)
    except UnicodeDecodeError as error:
        raise ProfileError(f"{where}: not UTF-8 text ({error.reason})") from None
    except json.JSONDecodeError as error:
        raise ProfileError(
            f"{where}: not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    return from_dict(document, where)


def from_dict(document: object, where: str = "seccomp profile") -> Profile:
    """Check a decoded profile and build its model; ProfileError names the first bad field."""
    top = _object(document, where, "the profile")
    if "architectures" in top and "archMap" in top:
        raise ProfileError(f"{where}: both 'architectures' and 'archMap' are given", "keep one of them")
    _strings(top.get("architectures"), where, "architectures")
    for index, entry in enumerate(_list(top.get("archMap"), where, "archMap")):
        field = f"archMap[{index}]"
        arch = _object(entry, where, field)
        _string(arch.get("architecture"), where, f"{field}.architecture")
        _strings(arch.get("subArchitectures"), where, f"{field}.subArchitectures")
    if top.get("listenerPath"):
        raise ProfileError(
            f"{where}: listenerPath: user notification (SCMP_ACT_NOTIFY) is not supported",
            "remove listenerPath and the SCMP_ACT_NOTIFY rules",
        )
    if "defaultAction" not in top:
        raise ProfileError(f"{where}: defaultAction is missing", 'add "defaultAction": "SCMP_ACT_ERRNO"')
    default_action = _action(top, "defaultAction", "defaultErrnoRet", where, "")
    flags = 0
    for flag in _strings(top.get("flags"), where, "flags"):
        if flag not in FLAGS:
            raise ProfileError(f"{where}: flags: {flag!r} is not supported", f"use {' or '.join(FLAGS)}")
        flags |= FLAGS[flag]
    calls = _list(top.get("syscalls"), where, "syscalls")
    rules = tuple(_rule(call, where, f"syscalls[{index}]") for index, call in enumerate(calls))
    return Profile(default_action, rules, flags, where)


def _rule(document: object, where: str, field: str) -> Rule:
    call = _object(document, where, field)
    if "name" in call and "names" in call:
        raise ProfileError(f"{where}: {field}: both 'name' and 'names' are given", "keep 'names'")
    if "name" in call:
        names: tuple[str, ...] = (_string(call["name"], where, f"{field}.name"),)
    else:
        if "names" not in call:
            raise ProfileError(
                f"{where}: {field}: 'names' is missing", 'give the syscalls: "names": ["read"]'
            )
        names = _strings(call["names"], where, f"{field}.names")
        if not names:
            raise ProfileError(
                f"{where}: {field}.names is empty", "name at least one syscall, or drop the rule"
            )
    if "action" not in call:
        raise ProfileError(f"{where}: {field}: 'action' is missing", 'add "action": "SCMP_ACT_ALLOW"')
    action = _action(call, "action", "errnoRet", where, f"{field}.")
    arguments = _list(call.get("args"), where, f"{field}.args")
    conditions = tuple(
        _condition(arg, where, f"{field}.args[{index}]") for index, arg in enumerate(arguments)
    )
    includes = _filter(call.get("includes"), where, f"{field}.includes")
    excludes = _filter(call.get("excludes"), where, f"{field}.excludes")
    return Rule(names, action, conditions, includes, excludes)


def _action(document: Mapping[str, object], key: str, errno_key: str, where: str, prefix: str) -> int:
    name = _string(document[key], where, prefix + key)
    if name == "SCMP_ACT_NOTIFY":
        raise ProfileError(
            f"{where}: {prefix}{key}: SCMP_ACT_NOTIFY (user notification) is not supported",
            "use SCMP_ACT_ERRNO or SCMP_ACT_ALLOW",
        )
    if name not in ACTIONS:
        raise ProfileError(
            f"{where}: {prefix}{key}: unknown action {name!r}", f"use one of {', '.join(ACTIONS)}"
        )
    action = ACTIONS[name]
    errno = document.get(errno_key)
    if errno is None:
        # runc's choice: ERRNO without a number is EPERM; TRACE passes 0 to the tracer.
        return action | EPERM if action == RET_ERRNO else action
    if action not in (RET_ERRNO, RET_TRACE):
        raise ProfileError(
            f"{where}: {prefix}{errno_key} goes with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {name}",
            f"remove {errno_key}",
        )
    return action | _integer(errno, 0, MAX_ERRNO, where, prefix + errno_key)


def _condition(document: object, where: str, field: str) -> Condition:
    arg = _object(document, where, field)
    for key in ("index", "op"):
        if key not in arg:
            raise ProfileError(f"{where}: {field}: '{key}' is missing")
    index = _integer(arg["index"], 0, MAX_ARG_INDEX, where, f"{field}.index")
    op = _string(arg["op"], where, f"{field}.op")
    if op not in OPS:
        raise ProfileError(f"{where}: {field}.op: unknown comparison {op!r}", f"use one of {', '.join(OPS)}")
    value = _integer(arg.get("value", 0), 0, U64_MAX, where, f"{field}.value")
    value_two = _integer(arg.get("valueTwo", 0), 0, U64_MAX, where, f"{field}.valueTwo")
    return Condition(index, op, value, value_two)


def _filter(document: object, where: str, field: str) -> Filter | None:
    if document is None:
        return None
    conditions = _object(document, where, field)
    caps = _strings(conditions.get("caps"), where, f"{field}.caps")
    arches = _strings(conditions.get("arches"), where, f"{field}.arches")
    min_kernel = None
    version = conditions.get("minKernel")
    if version is not None and version != "":
        min_kernel = _kernel(version, where, f"{field}.minKernel")
    return Filter(caps, arches, min_kernel)


def _kernel(document: object, where: str, field: str) -> tuple[int, int]:
    text = _string(document, where, field)
    major, dot, minor = text.partition(".")
    if not (dot and major.isdigit() and minor.isdigit() and int(major) + int(minor) > 0):
        raise ProfileError(
            f"{where}: {field}: {text!r} is not a kernel version", 'write it as "<major>.<minor>": "4.8"'
        )
    return int(major), int(minor)


def _object(document: object, where: str, field: str) -> dict[str, object]:
    if not isinstance(document, dict):
        raise ProfileError(f"{where}: {field} must be a JSON object, not {_kind(document)}")
    return document


def _list(document: object, where: str, field: str) -> list[object]:
    if document is None:
        return []
    if not isinstance(document, list):
        raise ProfileError(f"{where}: {field} must be a list, not {_kind(document)}")
    return document


def _string(document: object, where: str, field: str) -> str:
    if not isinstance(document, str):
        raise ProfileError(f"{where}: {field} must be a string, not {_kind(document)}")
    return document


def _strings(document: object, where: str, field: str) -> tuple[str, ...]:
    items = _list(document, where, field)
    for index, item in enumerate(items):
        _string(item, where, f"{field}[{index}]")
    return tuple(items)  # type: ignore[arg-type]  # each item was checked to be a str


def _integer(document: object, low: int, high: int, where: str, field: str) -> int:
    if isinstance(document, bool) or not isinstance(document, int):
        raise ProfileError(f"{where}: {field} must be an integer, not {_kind(document)}")
    if not low <= document <= high:
        raise ProfileError(f"{where}: {field}: {document} is out of range ({low} to {high})")
    return document


def _kind(document: object) -> str:
    if document is None:
        return "null"
    if isinstance(document, bool):
        return "a boolean"
    if isinstance(document, str):
        return f"the string {document!r}"
    if isinstance(document, int | float):
        return f"the number {document!r}"
    return "a list" if isinstance(document, list) else "an object"


def main(argv: list[str]) -> int:
    """`python3 -m runtime.seccomp.profile --default` prints the default profile as JSON to start a
    custom one from; `... PROFILE.json` checks a profile and says what it holds."""
    import json

    if argv == ["--default"]:
        print(json.dumps(default_data.PROFILE, indent=2))
        return 0
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python3 -m runtime.seccomp.profile --default | PROFILE.json")
        return 2
    try:
        profile = load(argv[0])
    except ProfileError as error:
        print(error)
        return 1
    print(f"{argv[0]}: {len(profile.rules)} rules naming {len(profile.names())} syscalls")
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
