"""The runtime side of `runtime run`: decide, refuse early, launch, wait, clean up.

Every decision comes from detection on this host and is said under --verbose. Anything that cannot
work is refused (exit 125) before a cgroup, mount or process exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from runtime import channel, child, state
from runtime.cgroups import CgroupError, Manager, Unavailable, plan
from runtime.errors import Failure
from runtime.features import cgroups as cgroup_layout
from runtime.features import probes, userns
from runtime.features.model import CgroupMode
from runtime.features.sysroot import LIVE
from runtime.linux import constants as c
from runtime.linux import libc
from runtime.spec import EXIT_RUNTIME, ContainerSpec, UsernsMode

log = logging.getLogger("runtime")
DEFAULT_ID_RANGE = (100_000, 65_536)
LIMIT_FLAGS = {"memory": "--memory", "cpu": "--cpus", "pids": "--pids-limit"}


@dataclass(frozen=True)
class IdMap:
    host_start: int
    count: int

    def line(self) -> str:
        return f"0 {self.host_start} {self.count}"


@dataclass(frozen=True)
class Plan:
    idmap: IdMap | None
    cgroups: Manager | None
    cgroupns: bool
    last_cap: int


def make_plan(spec: ContainerSpec) -> Plan:
    if os.geteuid() != 0:
        raise Failure(
            "runtime run needs root",
            "run it as root (sudo); rootless containers are not supported yet",
            EXIT_RUNTIME,
        )
    return Plan(
        idmap=_choose_userns(spec.userns),
        cgroups=_choose_cgroups(spec),
        cgroupns=os.path.exists("/proc/self/ns/cgroup"),
        last_cap=int(Path("/proc/sys/kernel/cap_last_cap").read_text()),
    )


def _choose_userns(mode: UsernsMode) -> IdMap | None:
    if mode is UsernsMode.HOST:
        log.info("userns: host (asked for)")
        return None
    found = userns.verdict(LIVE, probes.in_child(probes.probe_userns(None)), uid=0)
    if found.usable:
        idmap = _subordinate_ids()
        log.info("userns: private: container root is host uid %d (%d ids)", idmap.host_start, idmap.count)
        return idmap
    if mode is UsernsMode.PRIVATE:
        raise Failure(
            f"--userns private: user namespaces are unusable here: {found.cause}", found.hint, EXIT_RUNTIME
        )
    log.info("userns: host, because user namespaces are unusable here: %s", found.cause)
    return None


def _subordinate_ids() -> IdMap:
    """root's range in /etc/subuid, as Docker's userns-remap reads it; else 100000-165535."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/etc/subuid").read_text().splitlines():
            user, start, count = line.split(":")
            if user in ("root", "0"):
                return IdMap(int(start), int(count))
    return IdMap(*DEFAULT_ID_RANGE)


def _choose_cgroups(spec: ContainerSpec) -> Manager | None:
    layout = cgroup_layout.layout(LIVE)
    if layout.mode is CgroupMode.NONE:
        if spec.limits.controllers():
            raise Failure(
                "limits need cgroups, and none are mounted here",
                "mount cgroup2 on /sys/fs/cgroup",
                EXIT_RUNTIME,
            )
        log.info("cgroups: none mounted; the container runs without limits or accounting")
        return None
    try:
        manager = plan(layout, spec.container_id, spec.limits)
    except Unavailable as missing:
        raise _refusal(missing) from None
    where = ", ".join(f"{d}" for d in manager.directories())
    log.info("cgroups: %s: %s", layout.mode, where)
    return manager


def _refusal(missing: Unavailable) -> Failure:
    # The refusal path may read the kernel config: it names CONFIG_MEMCG_V1 where that is the cause.
    from runtime.features import kconfig

    release = os.uname().release
    precise = cgroup_layout.layout(LIVE, kconfig.for_running_kernel(LIVE, release)).controllers.get(
        missing.controller
    )
    finding = precise.finding if precise is not None else missing.finding
    flag = LIMIT_FLAGS[missing.controller]
    return Failure(
        f"{flag} needs the {missing.controller} controller, which this host does not offer: {finding.cause}",
        finding.hint,
        EXIT_RUNTIME,
    )


def run(spec: ContainerSpec) -> int:
    launch_plan = make_plan(spec)
    directories = tuple(str(d) for d in launch_plan.cgroups.directories()) if launch_plan.cgroups else ()
    record = state.claim(spec.container_id, spec.name, " ".join(spec.argv), directories)
    try:
        _mount_points(spec)
        if launch_plan.cgroups:
            _create_cgroups(launch_plan.cgroups, spec)
        return _launch(spec, launch_plan, record)
    finally:
        if launch_plan.cgroups:
            _destroy_cgroups(launch_plan.cgroups)
        state.release(record)


def _mount_points(spec: ContainerSpec) -> None:
    """Made here, as host root: a container root mapped to another uid may not write the rootfs."""
    for name in ("proc", "sys", "dev"):
        point = spec.rootfs / name
        if not point.is_dir():
            try:
                point.mkdir(mode=0o755)
            except OSError as exc:
                raise Failure(f"cannot make /{name} in {spec.rootfs}: {exc.strerror}", "", EXIT_RUNTIME) from exc


def _create_cgroups(manager: Manager, spec: ContainerSpec) -> None:
    try:
        manager.create()
        manager.apply(spec.limits)
    except OSError as exc:
        raise Failure(f"cannot set up the container's cgroups: {exc}", "", EXIT_RUNTIME) from exc


def _destroy_cgroups(manager: Manager) -> None:
    try:
        manager.destroy()
    except CgroupError as exc:
        log.warning("could not remove a cgroup: %s (runtime gc retries)", exc)


def _launch(spec: ContainerSpec, launch_plan: Plan, record: state.State) -> int:
    libc.prctl(c.PR_SET_CHILD_SUBREAPER, 1)
    up_read, up_write = os.pipe2(os.O_CLOEXEC)
    down_read, down_write = os.pipe2(os.O_CLOEXEC)
    launch = child.Launch(
        launch_plan.idmap is not None, launch_plan.cgroupns, launch_plan.last_cap, up_write, down_read
    )
    # Blocked until the container runs; the children unblock them once they have handlers.
    signal.pthread_sigmask(signal.SIG_BLOCK, child.FORWARDED)
    setup_pid = os.fork()
    if setup_pid == 0:
        os.close(up_read)
        os.close(down_write)
        child.setup(spec, launch)
    os.close(up_write)
    os.close(down_read)
    try:
        init_pid, errors = _follow_setup(setup_pid, launch_plan, down_write, up_read)
    finally:
        os.close(down_write)
        os.close(up_read)
        _reap(setup_pid)
    if init_pid and errors:
        _kill_and_reap(init_pid)
    if not init_pid or errors:
        raise Failure("; ".join(errors) or "the container's setup process died", "", EXIT_RUNTIME)
    state.record_init(record, init_pid)
    return _wait(init_pid, launch_plan.cgroups, spec)


def _follow_setup(setup_pid: int, launch_plan: Plan, down: int, up: int) -> tuple[int, list[str]]:
    if launch_plan.cgroups:
        try:
            launch_plan.cgroups.add(setup_pid)
        except OSError as exc:
            return 0, [f"cannot join the container's cgroups: {exc}"]
    os.write(down, b"g")
    init_pid, errors = 0, []
    for kind, text in channel.receive(up):
        if kind == "userns" and launch_plan.idmap:
            _write_id_maps(setup_pid, launch_plan.idmap)
            os.write(down, b"m")
        elif kind == "pid":
            init_pid = int(text)
        elif kind == "note":
            log.info("%s", text)
        elif kind == "error":
            errors.append(text)
    return init_pid, errors


def _write_id_maps(pid: int, idmap: IdMap) -> None:
    Path(f"/proc/{pid}/uid_map").write_text(idmap.line())
    Path(f"/proc/{pid}/gid_map").write_text(idmap.line())


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _kill_and_reap(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _wait(init_pid: int, cgroups: Manager | None, spec: ContainerSpec) -> int:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init_pid, signum)

    for signum in child.FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, child.FORWARDED)
    _, status = os.waitpid(init_pid, 0)
    code = child.exit_code(status)
    if code == 128 + signal.SIGKILL and cgroups is not None and cgroups.oom_kills():
        limit = spec.limits.memory
        shown = f"the --memory limit of {limit // 1024**2} MiB" if limit else "its memory limit"
        log.error("the container ran out of memory: the kernel's OOM killer ended it at %s", shown)
    return code
