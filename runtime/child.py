"""The container side: the only code between unshare and exec.

Three processes, all forked from the runtime (single-threaded, nothing imported late):
- setup: joins the cgroup, enters the user namespace (the runtime writes its id maps), unshares the
  rest, forks the init and exits, so the init is reparented to the runtime (a child subreaper);
- init: PID 1 of the new PID namespace. Builds the filesystem view, switches root, sets the host
  name, brings up lo, forks the workload, then forwards signals to it and reaps zombies;
- workload: sets workdir, user, capabilities and no_new_privs, then execs the command.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import NoReturn

from runtime import channel, rootfs
from runtime.linux import constants as c
from runtime.linux import libc, net
from runtime.spec import EXIT_RUNTIME, ContainerSpec, Network

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGQUIT)
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


@dataclass(frozen=True)
class Launch:
    """What the runtime decided, handed to the child processes."""

    userns: bool
    cgroupns: bool
    last_cap: int
    up: int  # write end: messages to the runtime
    down: int  # read end: go-aheads from the runtime


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def setup(spec: ContainerSpec, launch: Launch) -> NoReturn:
    try:
        channel.wait_for(launch.down, b"g")  # the runtime has put us in the container's cgroups
        if launch.userns:
            libc.unshare(c.CLONE_NEWUSER)
            channel.send(launch.up, "userns")
            channel.wait_for(launch.down, b"m")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        libc.unshare(_namespace_flags(spec, launch))
        init = os.fork()
        if init == 0:
            container_init(spec, launch)
        channel.send(launch.up, "pid", str(init))
    except OSError as exc:
        channel.send(launch.up, "error", f"cannot create the container's namespaces: {exc}")
        os._exit(EXIT_RUNTIME)
    os._exit(0)


def _namespace_flags(spec: ContainerSpec, launch: Launch) -> int:
    flags = c.CLONE_NEWNS | c.CLONE_NEWUTS | c.CLONE_NEWIPC | c.CLONE_NEWPID
    if spec.network is Network.NONE:
        flags |= c.CLONE_NEWNET
    if launch.cgroupns:
        flags |= c.CLONE_NEWCGROUP
    return flags


def container_init(spec: ContainerSpec, launch: Launch) -> NoReturn:
    def note(text: str) -> None:
        channel.send(launch.up, "note", text)

    os.close(launch.down)
    try:
        os.setsid()  # off the terminal's process group: the runtime forwards its signals
        rootfs.prepare(spec.rootfs, spec.read_only, note)
        rootfs.switch_root(spec.rootfs, note)
        socket.sethostname(spec.hostname)
        if spec.network is Network.NONE:
            net.set_up("lo")
        workload = os.fork()
        if workload == 0:
            run_workload(spec, launch)
    except OSError as exc:
        channel.send(launch.up, "error", f"cannot set up the container: {exc}")
        os._exit(EXIT_RUNTIME)
    os.close(launch.up)
    _init_loop(workload)


def _init_loop(workload: int) -> NoReturn:
    def forward(signum: int, _frame: object) -> None:
        os.kill(workload, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
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
    except OSError as exc:
        print(f"runtime: cannot start the command: {exc}", file=sys.stderr)
        os._exit(EXIT_RUNTIME)
    command = spec.argv[0]
    try:
        os.execvpe(command, list(spec.argv), spec.environment())
    except FileNotFoundError:
        print(f"runtime: {command}: command not found in the container", file=sys.stderr)
        os._exit(EXIT_NOT_FOUND)
    except OSError as exc:
        print(f"runtime: {command}: cannot execute: {exc.strerror}", file=sys.stderr)
        os._exit(EXIT_CANNOT_EXECUTE)


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
    for signum in (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
