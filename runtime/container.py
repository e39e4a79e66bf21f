"""The runtime side of `runtime run`: decide, refuse early, launch, wait, clean up.

Every decision comes from what this host offers and is said under --verbose. A limit that cannot
be enforced is refused (exit 125) before a cgroup, mount or process exists. This module and what it
imports are the start path: plain classes and os, no logging, no subprocess, no JSON.
"""

from __future__ import annotations

import _signal
import errno
import os

from runtime import channel, child, output, state
from runtime.cgroups import layout
from runtime.cgroups.base import Cgroup, CgroupError
from runtime.cgroups.manager import DevicesUnrestricted, Manager, NoCgroups, Unavailable, plan
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux import constants as c
from runtime.linux import libc
from runtime.linux.sysroot import LIVE, Sysroot

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from collections.abc import Callable

    from runtime.features.probes import Outcome
    from runtime.seccomp.profile import Profile
    from runtime.spec import ContainerSpec

DEFAULT_ID_RANGE = (100_000, 65_536)
NODEV_FALLBACK = "nodev mounts, and seccomp refuses mknod of devices (no cgroup here can restrict devices)"
LIMIT_FLAGS = {"memory": "--memory", "cpu": "--cpus", "pids": "--pids-limit"}
LOCKLESS_SELF_MOVE = (6, 0)  # a thread writing "0" to a v1 `tasks` file takes no global lock from 6.0


def run(spec: ContainerSpec) -> int:
    if os.geteuid() != 0:
        hint = "run it as root (sudo); rootless containers are not supported yet"
        raise Failure("runtime run needs root", hint, EXIT_RUNTIME)
    manager = choose_cgroups(spec)
    userns = choose_userns(spec.userns)
    storage = choose_storage(spec.image.storage) if spec.image else ""
    profile = choose_seccomp(spec.seccomp)
    record = _claim(spec, manager)
    overlay = None
    try:
        if spec.image:
            overlay = _image_root(spec, storage, userns)
        else:
            _mount_points(spec.rootfs)
        devices_held = _create_cgroups(manager, spec)
        if not devices_held:
            output.note(f"devices: {NODEV_FALLBACK}")
        seccomp = _seccomp_filter(profile, deny_device_mknod=not devices_held)
        return _launch(spec, manager, record, userns, overlay, seccomp, nodev=not devices_held)
    finally:
        _destroy_cgroups(manager)
        if spec.image:
            _remove_container_dir(spec)
        state.release(record)


def _claim(spec: ContainerSpec, manager: Manager) -> state.State:
    directories = tuple(manager.directories())
    command = " ".join(spec.argv)
    if spec.image is None:
        return state.claim(spec.container_id, spec.name, command, directories)
    lock = spec.image.store.lock(exclusive=False)  # `image rm` looks for users under the exclusive lock
    try:
        return state.claim(spec.container_id, spec.name, command, directories, spec.image.record.image_id)
    finally:
        os.close(lock)


# --- decisions ------------------------------------------------------------------------------------------


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


def _seccomp_filter(chosen: Profile | None, deny_device_mknod: bool) -> tuple[bytes, int] | None:
    """The compiled filter and its flags; unconfined still gets the mknod rule where it stands in for
    a devices cgroup."""
    from runtime.seccomp import bpf, profile

    if chosen is None:
        if not deny_device_mknod:
            return None
        chosen = profile.allow_all()
    program = bpf.build(chosen, set(c.DEFAULT_CAPABILITIES.values()), deny_device_mknod=deny_device_mknod)
    return program, chosen.flags


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


def _id_range() -> tuple[int, int]:
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


def _mount_points(rootfs: str) -> None:
    """Made here, as host root: a container root mapped to another uid may not write the rootfs."""
    for name in ("proc", "sys", "dev"):
        point = os.path.join(rootfs, name)
        if not os.path.isdir(point):
            try:
                os.mkdir(point, 0o755)
            except OSError as exc:
                raise Failure(f"cannot make /{name} in {rootfs}: {exc.strerror}", "", EXIT_RUNTIME) from exc


# --- images ---------------------------------------------------------------------------------------------


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


def _container_dir(spec: ContainerSpec) -> str:
    assert spec.image is not None
    return spec.image.store.sub("containers", spec.container_id)


def _image_root(spec: ContainerSpec, storage: str, userns: str) -> tuple[str, str, str] | None:
    """Copy mode: the flattened root, made now. Overlay: the (cwd, target, options) that the setup
    process mounts in a mount namespace of its own, so the host never sees the mount.

    The container's directory is 0700, owned by the host uid of the container's root: that uid must
    pass through to reach its root, and no other local user may (the root holds the image's setuid
    binaries and device nodes)."""
    assert spec.image is not None
    store, record = spec.image.store, spec.image.record
    directory = _container_dir(spec)
    os.makedirs(directory, mode=0o700)
    if userns:
        start, _ = _id_range()
        os.chown(directory, start, start)
    if storage == "copy":
        from runtime.storage.flatten import flatten

        spec.rootfs = os.path.join(directory, "rootfs")
        flatten([store.layer_dir(layer) for layer in record.layers], spec.rootfs)
        _mount_points(spec.rootfs)
        return None
    from runtime.storage.overlay import mount_options

    upper, work, merged = (os.path.join(directory, name) for name in ("upper", "work", "merged"))
    for path in (upper, work, merged):
        os.mkdir(path, 0o755)
    _mount_points(upper)
    spec.rootfs = merged
    try:
        return store.path, merged, mount_options(store, record.layers, upper, work)
    except OverflowError as exc:
        raise Failure(f"--storage overlay: {exc}", "use --storage copy", EXIT_RUNTIME) from exc


def _remove_container_dir(spec: ContainerSpec) -> None:
    import shutil

    shutil.rmtree(_container_dir(spec), ignore_errors=True)


def _create_cgroups(manager: Manager, spec: ContainerSpec) -> bool:
    """Made, limited and closed to all but Docker's default devices before the init is moved in.
    Returns whether the devices restriction is in place (manager.devices_restricted says it too);
    where it is not, the caller falls back to nodev mounts and a seccomp mknod deny."""
    try:
        manager.create()
        manager.apply(spec.limits)
    except OSError as exc:
        raise Failure(f"cannot set up the container's cgroups: {exc}", "", EXIT_RUNTIME) from exc
    try:
        output.note(manager.restrict_devices())
    except DevicesUnrestricted as reason:
        output.note(f"devices: not limited by a cgroup: {reason}")
        return False
    return True


def _destroy_cgroups(manager: Manager) -> None:
    try:
        manager.destroy()
    except CgroupError as exc:
        output.warn(f"could not remove a cgroup: {exc} (runtime gc retries)")


# --- launch ---------------------------------------------------------------------------------------------


class _Setup:
    """What the setup processes reported."""

    __slots__ = ("errors", "init_pid", "userns_errno")

    def __init__(self) -> None:
        self.init_pid = 0
        self.errors: list[str] = []
        self.userns_errno = 0


def _launch(
    spec: ContainerSpec,
    manager: Manager,
    record: state.State,
    userns: str,
    overlay: tuple[str, str, str] | None,
    seccomp: tuple[bytes, int] | None,
    nodev: bool,
) -> int:
    libc.prctl(c.PR_SET_CHILD_SUBREAPER, 1)
    up_read, up_write = os.pipe2(os.O_CLOEXEC)
    down_read, down_write = os.pipe2(os.O_CLOEXEC)
    with open("/proc/sys/kernel/cap_last_cap") as file:
        last_cap = int(file.read())
    launch = child.Launch(
        userns, os.path.exists("/proc/self/ns/cgroup"), last_cap, up_write, down_read, overlay, seccomp, nodev
    )
    moved = _open_cgroups_for_birth(manager, launch)
    # Blocked until the container runs; the children unblock them once they have handlers.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, child.FORWARDED)
    setup_pid = _fork_setup(launch, moved)
    if setup_pid == 0:
        os.close(up_read)
        os.close(down_write)
        child.forked(child.setup, spec, launch)
    os.close(up_write)
    os.close(down_read)
    try:
        report = _follow_setup(setup_pid, moved, record, down_write, up_read)
    finally:
        os.close(down_write)
        os.close(up_read)
        _reap(setup_pid)
    _say_userns(spec, report)
    if report.init_pid and report.errors:
        _kill_and_reap(report.init_pid)
    if not report.init_pid or report.errors:
        raise Failure("; ".join(report.errors) or "the container's setup process died", "", EXIT_RUNTIME)
    return _wait(report.init_pid, manager, spec)


class _Moved:
    """The container's cgroups the runtime moves the init into, and the cgroup2 one the setup process
    may be born in instead (the fd for clone3)."""

    __slots__ = ("cgroup2", "cgroup2_fd", "parts")

    def __init__(self, parts: list[Cgroup], cgroup2: V2Cgroup | None = None, cgroup2_fd: int = -1) -> None:
        self.parts = parts
        self.cgroup2 = cgroup2
        self.cgroup2_fd = cgroup2_fd


def _open_cgroups_for_birth(manager: Manager, launch: child.Launch) -> _Moved:
    """Nothing moves where it can be helped (a move waits for an RCU grace period, 20 ms here): the
    setup process is born in the cgroup2 cgroup (clone3, 5.7+), writes "0" to the v1 `tasks` files
    itself (lockless for a thread moving itself from 6.0, see child.join_v1), and the init inherits
    both; the runtime moves it into whatever is left. The files are opened here, as host root.

    RUNTIME_CLONE3=0 does as on a kernel without clone3 (before 5.3): fork, then move the init into
    every cgroup (tests)."""
    if os.environ.get("RUNTIME_CLONE3") == "0":
        return _Moved(list(manager.parts))
    moved = _Moved([])
    tasks: list[tuple[int, str]] = []
    try:
        for part in manager.parts:
            if isinstance(part, V2Cgroup):
                moved.cgroup2_fd = os.open(part.leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                moved.cgroup2 = part
            elif isinstance(part, V1Cgroup) and kernel_at_least(os.uname().release, LOCKLESS_SELF_MOVE):
                for directory in part.directories():
                    tasks.append(
                        (os.open(os.path.join(directory, "tasks"), os.O_WRONLY | os.O_CLOEXEC), directory)
                    )
            else:
                moved.parts.append(part)
    except OSError as exc:
        for fd in (moved.cgroup2_fd, *(fd for fd, _ in tasks)):
            if fd >= 0:
                os.close(fd)
        raise Failure(f"cannot join the container's cgroups: {exc}", "", EXIT_RUNTIME) from exc
    launch.tasks = tuple(tasks)
    return moved


def kernel_at_least(release: str, wanted: tuple[int, int]) -> bool:
    """Whether a release string such as "6.1.0-18-amd64" is at least (major, minor); False if unreadable."""
    fields = release.split("-", 1)[0].split(".")[:2]
    if not all(field.isdigit() for field in fields):
        return False
    return tuple(int(field) for field in fields) >= wanted


def _fork_setup(launch: child.Launch, moved: _Moved) -> int:
    """os.fork(), or clone3 into the cgroup2 cgroup where it can."""
    pid: int | None = -1
    try:
        pid = _clone_into_cgroup2(moved) if moved.cgroup2_fd >= 0 else None
        if pid is None:
            pid = os.fork()
    finally:
        if pid != 0:  # the runtime's copies: the setup process writes and closes its own
            for fd, _ in launch.tasks:
                os.close(fd)
    if pid:
        _say_joined(launch, moved)
    return pid


def _clone_into_cgroup2(moved: _Moved) -> int | None:
    """The pid (0 in the child), or None where clone3 cannot: the init is then moved in (moved.parts)."""
    try:
        pid = libc.fork_into_cgroup(moved.cgroup2_fd)
    except OSError as exc:
        raise Failure(f"cannot create the container's setup process: {exc}", "", EXIT_RUNTIME) from exc
    finally:
        os.close(moved.cgroup2_fd)  # in the child too, before anything: it is a way out of the root
    if pid is None and moved.cgroup2 is not None:
        moved.parts.append(moved.cgroup2)
    return pid


def _say_joined(launch: child.Launch, moved: _Moved) -> None:
    joined = ["v1 (the setup process writes its tasks files)"] if launch.tasks else []
    if moved.cgroup2 is not None and moved.cgroup2 not in moved.parts:
        joined.insert(0, "cgroup2 (born in it by clone3)")
    left = ["cgroup2" if isinstance(part, V2Cgroup) else "v1" for part in moved.parts]
    output.note(
        f"cgroups: joined without a move: {', '.join(joined) or 'none'}; moved: {', '.join(left) or 'none'}"
    )


def _follow_setup(setup_pid: int, moved: _Moved, record: state.State, down: int, up: int) -> _Setup:
    report = _Setup()
    for kind, text in channel.receive(up):
        if kind == "userns":
            _write_id_maps(setup_pid)
            _go_ahead(down, b"m")
        elif kind == "userns-failed":
            report.userns_errno = int(text)
        elif kind == "pid":
            report.init_pid = int(text)
            # Recorded before the go-ahead: until then the init gives up by itself if we die (the pipe
            # closes), after it `runtime gc` can find and kill it.
            state.record_init(record, report.init_pid)
            # It exits after this message, and counts against --pids-limit until reaped (it may be in
            # the container's cgroups): `--pids-limit 2` is the init and the workload.
            _reap(setup_pid)
            _join_cgroups(moved, report, down)
        elif kind == "note":
            output.note(text)
        elif kind == "error":
            report.errors.append(text)
    return report


def _join_cgroups(moved: _Moved, report: _Setup, down: int) -> None:
    """Move the init into the cgroups it was not born in, while it mounts; it waits for the go-ahead
    before it forks the workload."""
    try:
        for part in moved.parts:
            part.add(report.init_pid)
    except OSError as exc:
        report.errors.append(f"cannot join the container's cgroups: {exc}")
        return  # no go-ahead: the init sees the pipe close and gives up
    _go_ahead(down, b"g")


def _go_ahead(down: int, word: bytes) -> None:
    """A child that already failed has closed its end; its error message is still on the way."""
    try:
        os.write(down, word)
    except BrokenPipeError:
        pass


def _write_id_maps(pid: int) -> None:
    start, count = _id_range()
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as file:
            file.write(f"0 {start} {count}")
    output.note(f"userns: private: container root is host uid {start} ({count} ids)")


def _say_userns(spec: ContainerSpec, report: _Setup) -> None:
    if not report.userns_errno:
        return
    cause = userns_failure(report.userns_errno)
    if spec.userns == "private":
        report.errors.append(f"--userns private: user namespaces are unusable here: {cause}")
    else:
        output.note(f"userns: host, because user namespaces are unusable here: {cause}")


def userns_failure(errno_number: int, root: Sysroot = LIVE) -> str:
    """Why unshare(CLONE_NEWUSER) failed, naming the knob (detection's words)."""
    from runtime.features import probes, userns

    failed = probes.Outcome(False, errno=probes.errno_name(errno_number), step="unshare-userns")
    verdict = userns.verdict(root, failed, uid=0)
    return verdict.cause + (f"; hint: {verdict.hint}" if verdict.hint else "")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
    _reap(pid)


def _wait(init_pid: int, manager: Manager, spec: ContainerSpec) -> int:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(init_pid, signum)
        except ProcessLookupError:
            pass

    for signum in child.FORWARDED:
        _signal.signal(signum, forward)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, child.FORWARDED)
    _, status = os.waitpid(init_pid, 0)
    code = child.exit_code(status)
    if code == 128 + _signal.SIGKILL and manager.oom_kills():
        limit = spec.limits.memory
        shown = f"the --memory limit of {limit // 1024**2} MiB" if limit else "its memory limit"
        output.warn(f"the container ran out of memory: the kernel's OOM killer ended it at {shown}")
    return code
