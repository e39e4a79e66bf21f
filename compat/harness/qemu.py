"""The QEMU backend: an argument builder (pure), and a VM that boots, says ready, and always dies.

A VM has SMP_DEFAULT vCPUs, under TCG as under KVM. Under TCG they share one host thread (TCG_ACCEL):
QEMU 7.2's multi-threaded TCG lets one vCPU run kernel text that another has just re-patched (static
keys, int3 patching), which gives `Oops: int3` on 7.2 and soft lockups on 6.1 whatever the -cpu model
(tests/data/consoles/*-mttcg-*.log); single-threaded TCG still gives the guest two CPUs, with no fault in
44 boots across the four kernels, 19 of them under heavy re-patching. Every model showed the oops under
multi-threaded TCG, so TCG_CPU stays `max`, which gives the guest the most features.
Its console is watched from the first byte (compat/harness/kernel.py): a crash or a hang of the kernel
while it boots is KernelCrashed, the kernel's failure; BootError is the harness's or the host's. SSH goes
through user-mode networking, forwarded from 127.0.0.1 on a free port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from compat import faults
from compat.errors import CompatError
from compat.flavours import READY_MARKER, Flavour
from compat.harness.kernel import KernelCrashed, KernelWatch, ended_boot
from compat.proc import Spawned, spawn
from compat.results.model import InfraKind

GUEST_INIT_FAILED = "KCOMPAT-FAILED"  # the guest's init could not set up the flavour
SMP_DEFAULT = 2
TCG_CPU = "max"
TCG_ACCEL = "tcg,thread=single"


class BootError(CompatError):
    """The VM did not come up: its kind (one of the results' InfraKind), why, and the console's tail."""

    def __init__(self, kind: InfraKind, message: str, console_tail: str) -> None:
        super().__init__(f"{kind}: {message}\n--- console (last lines) ---\n{console_tail}")
        self.kind = kind
        self.console_tail = console_tail


@dataclass(frozen=True)
class Machine:
    """What one VM boots: a kernel, its initramfs and modules disk, the shared root disk."""

    kernel: Path
    initrd: Path
    rootfs: Path
    modules: Path | None
    flavour: Flavour
    memory_mb: int = 1024
    accel: str = "tcg"
    extra_args: tuple[str, ...] = field(default=())
    smp: int = SMP_DEFAULT


def kernel_command_line(machine: Machine) -> str:
    # loglevel=7: a hung task's or a lockup's stack is printed at KERN_INFO, and its title needs it.
    base = ["console=ttyS0", "panic=-1", "oops=panic", "loglevel=7"]
    return " ".join([*base, *machine.flavour.kernel_args(), *machine.extra_args])


def qemu_argv(machine: Machine, ssh_port: int, console: Path, pidfile: Path) -> list[str]:
    """The whole qemu-system-x86_64 command line: disks on virtio-blk with the root's writes
    discarded, virtio-rng, machine.smp CPUs, SSH forwarded from 127.0.0.1."""
    cpu = ["-cpu", TCG_CPU if machine.accel == "tcg" else "host", "-smp", str(machine.smp)]
    argv = [
        "qemu-system-x86_64",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-accel", TCG_ACCEL if machine.accel == "tcg" else machine.accel, *cpu, "-m", str(machine.memory_mb),
        "-kernel", str(machine.kernel), "-initrd", str(machine.initrd),
        "-append", kernel_command_line(machine),
        "-drive", f"file={machine.rootfs},if=virtio,format=raw,snapshot=on",
        "-device", "virtio-rng-pci",
        "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
        "-device", "virtio-net-pci,netdev=net0",
        "-serial", f"file:{console}",
        "-pidfile", str(pidfile),
    ]  # fmt: skip
    if machine.modules is not None:
        argv += ["-drive", f"file={machine.modules},if=virtio,format=raw,readonly=on"]
    return argv


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console output)"


@dataclass
class Vm:
    machine: Machine
    workdir: Path
    ssh_port: int = 0
    process: Spawned | None = None
    watch: KernelWatch | None = None

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "qemu.pid"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ssh_port = self.ssh_port or free_port()
        argv = qemu_argv(self.machine, self.ssh_port, self.console, self.pidfile)
        (self.workdir / "qemu.argv").write_text(" ".join(argv) + "\n")
        # A watch reads from the first byte: this VM's console, not the last one's.
        self.console.unlink(missing_ok=True)
        # spawn: the VM dies with us even if we are killed (a parent-death signal), in its own group.
        self.process = spawn(argv, stderr=subprocess.PIPE)
        self.watch = KernelWatch(self.console, self.alive)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, deadline: float) -> str:
        """Wait for the ready marker on the console, then for sshd's banner; returns the marker line.
        The kernel going down (or hanging) meanwhile is KernelCrashed; anything else that stops the
        boot is a BootError."""
        assert self.watch is not None, "start() first"
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            self.watch.take(settle=0.0)
            self._check_crash()
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            if GUEST_INIT_FAILED in text:
                raise BootError(InfraKind.GUEST_INIT, GUEST_INIT_FAILED, tail(self.console))
            self._check_alive()
            # Whole lines only: the guest may be half-way through writing the marker.
            for line in text.splitlines(keepends=True):
                if line.startswith(READY_MARKER) and line.endswith("\n"):
                    wait_for_ssh_banner(self.ssh_port, end - time.monotonic(), self.console)
                    return line.rstrip("\r\n")
            time.sleep(0.1)
        self.watch.finish()
        ended = ended_boot(self.watch.seen)
        if faults.crash(ended) is not None:
            raise KernelCrashed(ended)
        raise BootError(
            InfraKind.BOOT_TIMEOUT, f"no {READY_MARKER} within {deadline:.0f} s", tail(self.console)
        )

    def _check_crash(self) -> None:
        assert self.watch is not None
        if self.watch.crashed is None:
            return
        stop = time.monotonic() + 2.0  # QEMU leaves (-no-reboot) once the panic is printed
        while self.alive() and time.monotonic() < stop:
            time.sleep(0.1)
        self.watch.finish()
        raise KernelCrashed(self.watch.seen)

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            assert self.watch is not None
            self.watch.finish()
            self._check_crash()
            pipe = self.process.process.stderr
            stderr = pipe.read().decode(errors="replace") if pipe else ""
            raise BootError(
                InfraKind.QEMU_EXITED,
                f"exit {self.process.returncode}: {stderr.strip()[-500:]}",
                tail(self.console),
            )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.stop()
        self.process = None


def wait_for_ssh_banner(port: int, deadline: float, console: Path) -> None:
    """hostfwd accepts before the guest listens: only sshd's "SSH-2.0-" banner proves it is up."""
    end = time.monotonic() + max(deadline, 1.0)
    while time.monotonic() < end:
        if ssh_banner(port):
            return
        time.sleep(0.2)
    raise BootError(InfraKind.SSH, f"no SSH-2.0- banner on 127.0.0.1:{port}", tail(console))


def ssh_banner(port: int, timeout: float = 2.0) -> bool:
    """Whether sshd in the guest answers with its banner: the guest's kernel is alive and scheduling."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        return sock.recv(64).startswith(b"SSH-2.0-")
    return False


@contextlib.contextmanager
def running(machine: Machine, workdir: Path, deadline: float = 120.0) -> Iterator[tuple[Vm, str]]:
    vm = Vm(machine, workdir)
    vm.start()
    try:
        yield vm, vm.wait_ready(deadline)
    finally:
        vm.stop()


def reap_stale(directory: Path) -> list[int]:
    """Kill QEMUs left by a crashed run: their pidfiles are under directory/<cell>/qemu.pid."""
    killed = []
    for pidfile in directory.glob("*/qemu.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                command = file.read().split(b"\0")
        except (OSError, ValueError):
            pidfile.unlink(missing_ok=True)
            continue
        if (
            command
            and command[0].endswith(b"qemu-system-x86_64")
            and str(pidfile).encode() in b" ".join(command)
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        pidfile.unlink(missing_ok=True)
    return killed
