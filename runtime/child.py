"""The container side: the only code between unshare and exec.

Three processes, all forked from the runtime (single-threaded, nothing imported late):
- setup: born in the container's cgroup2 cgroup where clone3 can, joins its v1 cgroups by itself
  where that takes no global lock (see launch._open_cgroups_for_birth), enters the user namespace (the runtime
  writes its id maps), unshares the rest, forks the init and exits, so the init is reparented to the
  runtime (a child subreaper);
- init: PID 1 of the new PID namespace, in every cgroup the setup was in. Builds the filesystem view,
  switches root, sets the host name and brings up lo while the runtime moves it into the container's
  other cgroups (a move costs an RCU grace period, 10-20 ms on some hosts: this overlaps it with the
  mounts). Then it forks the workload, forwards signals to it and reaps zombies;
- workload: sets workdir, user, capabilities and no_new_privs, then execs the command.

_signal rather than signal, which imports enum: this is the start path.
"""

from __future__ import annotations

import _signal
import errno
import os
import sys

from runtime import channel, rootfs
from runtime.cgroups import cpulist
from runtime.errors import EXIT_RUNTIME
from runtime.linux import constants as c
from runtime.linux import libc, net
from runtime.seccomp import install as seccomp

TYPE_CHECKING = False  # not typing's: see runtime/errors.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import NoReturn

    from runtime.spec import ContainerSpec

FORWARDED = (
    _signal.SIGTERM,
    _signal.SIGINT,
    _signal.SIGHUP,
    _signal.SIGUSR1,
    _signal.SIGUSR2,
    _signal.SIGQUIT,
)
EXIT_CANNOT_EXECUTE = 126
MAX_FD = 0x7FFFFFFF  # os.closerange's end: it becomes one close_range(2) call
EXIT_NOT_FOUND = 127


class Launch:
    """What the runtime decided, handed to the child processes."""

    __slots__ = (
        "cgroupns", "down", "last_cap", "nodev", "overlay", "runtime_pid", "seccomp", "tasks", "up", "userns",
    )  # fmt: skip

    def __init__(
        self,
        userns: str,
        cgroupns: bool,
        last_cap: int,
        up: int,
        down: int,
        overlay: tuple[str, str, str] | None = None,
        seccomp: tuple[bytes, int] | None = None,
        nodev: bool = False,
    ) -> None:
        self.runtime_pid = os.getpid()
        self.nodev = nodev  # no cgroup restricts devices: the root is mounted nodev
        self.userns = userns  # "private", "auto" (private if it works) or "" (the host's)
        self.cgroupns = cgroupns
        self.last_cap = last_cap
        self.up = up  # write end: messages to the runtime
        self.down = down  # read end: go-aheads from the runtime
        self.overlay = overlay  # (cwd, target, options) of the image's overlay mount
        self.seccomp = seccomp  # (filter, flags), installed last before exec; None: unconfined
        self.tasks: tuple[tuple[int, str], ...] = ()  # (fd, directory): v1 `tasks` files the setup joins


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def forked(
    body: Callable[[ContainerSpec, Launch], NoReturn], spec: ContainerSpec, launch: Launch
) -> NoReturn:
    """Run a forked child's body; it never unwinds into the runtime's frames, whose finally blocks would
    tear down the container it belongs to, and no traceback reaches the user."""
    try:
        body(spec, launch)
    except BaseException as exc:  # noqa: BLE001 - the fork boundary: nothing may pass it
        try:
            sys.stderr.write(
                f"runtime: internal error in the container's setup: {type(exc).__name__}: {exc}\n"
            )
        except OSError:
            pass
    os._exit(EXIT_RUNTIME)


def close_inherited(preserve: int, keep: tuple[int, ...]) -> None:
    """Close every descriptor above 2 that the caller left open (CVE-2024-21626: a directory fd is a way
    out of the container's root), except the first `preserve` after 2 and the runtime's own pipes."""
    first = 3 + preserve
    for fd in sorted(fd for fd in keep if fd >= first):
        os.closerange(first, fd)
        first = fd + 1
    os.closerange(first, MAX_FD)


def setup(spec: ContainerSpec, launch: Launch) -> NoReturn:
    try:
        libc.prctl(c.PR_SET_PDEATHSIG, _signal.SIGKILL)
        if os.getppid() != launch.runtime_pid:
            os._exit(EXIT_RUNTIME)  # the runtime died before the line above: nobody waits for us
        join_v1(launch)
        if spec.limits.cpuset_cpus is not None:
            _pin(spec.limits.cpuset_cpus, launch)
        close_inherited(spec.preserve_fds, (launch.up, launch.down))
        if launch.overlay:
            _mount_overlay(*launch.overlay)
        if launch.userns:
            _enter_userns(launch)
        libc.unshare(_namespace_flags(spec))
        init = os.fork()
        if init == 0:
            forked(container_init, spec, launch)
        channel.send(launch.up, "pid", str(init))
    except OSError as exc:
        channel.send(launch.up, "error", f"cannot create the container's namespaces: {exc}")
        os._exit(EXIT_RUNTIME)
    os._exit(0)


def join_v1(launch: Launch) -> None:
    """Into the container's v1 cgroups before anything else, so that the init is born in them: "0" in a
    `tasks` file moves this thread alone, which takes no global lock (6.0+: no RCU grace period), and
    this process has no other thread. The files were opened by the runtime, as host root."""
    for fd, directory in launch.tasks:
        try:
            os.write(fd, b"0")
        except OSError as exc:
            channel.send(
                launch.up, "error", f"cannot join the container's cgroup {directory}: {exc.strerror}"
            )
            os._exit(EXIT_RUNTIME)
        os.close(fd)
    launch.tasks = ()


def _pin(cpus: str, launch: Launch) -> None:
    """Onto the cpuset's CPUs, whatever cgroup move or birth put us there. A process born into a cpuset
    by clone3's CLONE_INTO_CGROUP keeps its parent's CPUs on kernels without "cgroup/cpuset: Make
    cpuset_fork() handle CLONE_INTO_CGROUP properly" (6.3; seen on Debian's 5.10.0-32, not on 6.1.176)."""
    wanted = [cpu for low, high in cpulist.parse(cpus) or [] for cpu in range(low, high + 1)]
    try:
        os.sched_setaffinity(0, wanted)
    except OSError as exc:
        channel.send(launch.up, "error", f"cannot pin the container to CPUs {cpus}: {exc.strerror}")
        os._exit(EXIT_RUNTIME)


def _mount_overlay(cwd: str, target: str, options: str) -> None:
    """In a mount namespace of the host's user namespace, before the container's own: the host never
    sees it, it dies with the container, and the container's user namespace needs no overlay support."""
    libc.unshare(c.CLONE_NEWNS)
    libc.mount(None, "/", None, c.MS_REC | c.MS_PRIVATE)
    os.chdir(cwd)  # lowerdir names the layers relative to the store (see storage/overlay.py)
    try:
        libc.mount("overlay", target, "overlay", 0, options)
    except OSError as exc:
        raise OSError(exc.errno, f"mount overlay on {target}: {exc.strerror}") from exc
    os.chdir("/")


def _enter_userns(launch: Launch) -> None:
    """Detect by doing: under "auto" a refused unshare means the host's user namespace."""
    try:
        libc.unshare(c.CLONE_NEWUSER)
    except OSError as exc:
        channel.send(launch.up, "userns-failed", str(exc.errno or 0))
        if launch.userns == "private":
            raise
        return
    channel.send(launch.up, "userns")
    channel.wait_for(launch.down, b"m")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _namespace_flags(spec: ContainerSpec) -> int:
    flags = c.CLONE_NEWNS | c.CLONE_NEWUTS | c.CLONE_NEWIPC | c.CLONE_NEWPID
    if spec.network == "none":
        flags |= c.CLONE_NEWNET
    return flags


def container_init(spec: ContainerSpec, launch: Launch) -> NoReturn:
    def note(text: str) -> None:
        channel.send(launch.up, "note", text)

    try:
        os.setsid()  # off the terminal's process group: the runtime forwards its signals
        rootfs.prepare(spec.rootfs, spec.read_only, note, launch.nodev)
        rootfs.switch_root(spec.rootfs, note)
        libc.sethostname(spec.hostname)
        if spec.network == "none":
            net.set_up("lo")
        channel.wait_for(launch.down, b"g")  # the runtime has moved us into the container's cgroups
        os.close(launch.down)
        if launch.cgroupns:
            libc.unshare(c.CLONE_NEWCGROUP)  # now, so that the container's cgroup is its root
        workload = os.fork()
        if workload == 0:
            forked(run_workload, spec, launch)
    except OSError as exc:
        channel.send(launch.up, "error", f"cannot set up the container: {exc}{_hint(exc, launch)}")
        os._exit(EXIT_RUNTIME)
    os.close(launch.up)
    _init_loop(workload)


def _hint(exc: OSError, launch: Launch) -> str:
    if exc.errno == errno.EACCES and launch.userns:
        return (
            " (hint: container root is an unprivileged host uid here: make the rootfs and every directory"
            " above it searchable by others (chmod o+x), or use --userns host)"
        )
    return ""


def _init_loop(workload: int) -> NoReturn:
    def forward(signum: int, _frame: object) -> None:
        os.kill(workload, signum)

    for signum in FORWARDED:
        _signal.signal(signum, forward)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(EXIT_RUNTIME)
        if pid == workload:
            os._exit(exit_code(status))


def run_workload(spec: ContainerSpec, launch: Launch) -> NoReturn:
    try:
        rootfs.make_workdir(spec.workdir)
        os.chdir(spec.workdir)
        _drop_privileges(spec, launch.last_cap)
        _reset_signals()
        for fd in range(3, 3 + spec.preserve_fds):
            if fd != launch.up:
                _inherit(fd)
        if launch.seccomp:
            seccomp.install(*launch.seccomp)  # last: the filter judges what the command does, not us
    except OSError as exc:
        sys.stderr.write(f"runtime: cannot start the command: {exc}\n")
        os._exit(EXIT_RUNTIME)
    command = spec.argv[0]
    try:
        execute(list(spec.argv), spec.environment())
    except FileNotFoundError:
        sys.stderr.write(f"runtime: {command}: command not found in the container\n")
        os._exit(EXIT_NOT_FOUND)
    except OSError as exc:
        sys.stderr.write(f"runtime: {command}: cannot execute: {exc.strerror}\n")
        os._exit(EXIT_CANNOT_EXECUTE)


def execute(argv: list[str], env: dict[str, str]) -> NoReturn:
    """execvpe's PATH search, written out: os.execvpe imports `warnings` lazily, and after the switch of
    root the container has no Python library to import it from (a pip-installed runtime crashed there)."""
    command = argv[0]
    if "/" in command:
        os.execve(command, argv, env)
    denied: OSError | None = None
    for directory in env.get("PATH", "").split(":"):
        try:
            os.execve(f"{directory or '.'}/{command}", argv, env)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            denied = exc  # as execvp: a later directory may still hold an executable one
    if denied is not None:
        raise denied
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)


def _inherit(fd: int) -> None:
    try:
        os.set_inheritable(fd, True)
    except OSError as exc:
        if exc.errno != errno.EBADF:  # asked for, but the caller did not open it: as runc, nothing to pass
            raise


def _drop_privileges(spec: ContainerSpec, last_cap: int) -> None:
    keep = set(c.DEFAULT_CAPABILITIES.values())
    for cap in range(last_cap + 1):
        if cap not in keep:
            libc.prctl(c.PR_CAPBSET_DROP, cap)
    libc.prctl(c.PR_CAP_AMBIENT, c.PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(spec.user.gid, spec.user.gid, spec.user.gid)
    os.setresuid(spec.user.uid, spec.user.uid, spec.user.uid)  # a non-root user loses every capability here
    if spec.user.uid == 0:
        mask = sum(1 << cap for cap in keep)
        libc.capset(mask, mask, 0)
    libc.prctl(c.PR_SET_NO_NEW_PRIVS, 1)


def _reset_signals() -> None:
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal stays ignored across exec.
    for signum in (_signal.SIGPIPE, _signal.SIGXFSZ, *FORWARDED):
        _signal.signal(signum, _signal.SIG_DFL)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
