"""One cell's VM as the compat tests see it: booted once, reached over SSH (paramiko, testinfra),
with the runtime, a static busybox root filesystem and a test image copied in."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paramiko
import testinfra
import testinfra.backend
import testinfra.host

from compat import faults, matrix
from compat.harness.kernel import KernelCrashed, KernelWatch
from compat.harness.qemu import SMP_DEFAULT, BootError, Machine, Vm, ssh_banner, tail
from compat.images import busybox, testimage
from compat.images.build import build_all
from compat.matrix import Cell
from compat.paths import REPO
from compat.results.model import InfraKind
from runtime.features import kconfig
from runtime.features.kernel import parse_release
from runtime.features.model import KernelVersion

GUEST_DIR = "/opt/kcompat"  # the runtime, rootfs/ and images/ inside the guest
RUNTIME = f"cd {GUEST_DIR} && python3 -m runtime"


class Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class Guest:
    cell: Cell
    vm: Stoppable  # a QEMU VM, or a Vagrant machine
    host: Any  # testinfra.host.Host
    config: kconfig.KernelConfig
    release: str
    package: str
    boot_seconds: float
    console_log: Path
    watch: KernelWatch
    check: dict[str, Any] = field(default_factory=dict)
    prepared: set[str] = field(default_factory=set)  # what tests set up once per VM (an imported image)

    @property
    def version(self) -> KernelVersion:
        return parse_release(self.release)

    @property
    def expected(self) -> dict[str, matrix.Value]:
        return matrix.expected(self.cell, self.config)

    @property
    def features(self) -> dict[str, matrix.Value]:
        return matrix.observed(self.check)

    def replace_with(self, fresh: Guest) -> None:
        """Become a fresh boot of the same cell, in place: tests hold this object."""
        self.__dict__.update(fresh.__dict__)

    def responds(self) -> bool:
        """sshd answers: the kernel is up (a Vagrant machine has only its console to say otherwise)."""
        port = getattr(self.vm, "ssh_port", 0)
        return ssh_banner(port, timeout=3.0) if port else True

    def run(self, command: str) -> Any:
        return self.host.run(command)

    def runtime(self, arguments: str) -> Any:
        return self.host.run(f"{RUNTIME} {arguments}")


def _ssh_config(path: Path, port: int, key: Path) -> Path:
    path.write_text(
        f"Host guest\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  IdentityFile {key}\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
    )
    return path


def _payload() -> bytes:
    """runtime/, a static busybox root filesystem and the three-layer test image, as one tar."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(REPO / "runtime", "runtime", filter=lambda info: None if "__pycache__" in info.name else info)
        tar.add(busybox.build_rootfs(Path(scratch) / "rootfs"), "rootfs")
        image = Path(scratch) / "busybox-test.tar"
        testimage.write_docker_save(testimage.busybox_image(), image)
        tar.add(image, "images/busybox-test.tar")
    return buffer.getvalue()


def boot(
    cell: Cell,
    workdir: Path,
    accel: str,
    deadline: float,
    extra_args: tuple[str, ...] = (),
    kernel: str | None = None,
    smp: int = SMP_DEFAULT,
) -> Guest:
    """Raises KernelCrashed when the kernel goes down or hangs while booting, BootError (an
    infrastructure failure, with the console's tail) when the VM does not come up otherwise; the VM
    is stopped then too."""
    spec = kernel or cell.kernel  # a catalogue id, or the .deb or directory the cell's name stands for
    built = build_all([spec])
    kernel_set = built.kernels[spec]
    config = _kernel_config(cell, kernel_set.kernel.config)
    machine = Machine(
        kernel_set.kernel.vmlinuz, kernel_set.initrd, built.rootfs.image, kernel_set.modules_image, cell.flavour,
        accel=accel, extra_args=extra_args, smp=smp,
    )  # fmt: skip
    vm = Vm(machine, workdir)
    started = time.monotonic()
    vm.start()
    try:
        vm.wait_ready(deadline)
        took = time.monotonic() - started
        ssh_config = _ssh_config(workdir / "ssh_config", vm.ssh_port, built.rootfs.ssh_key)
        host = _connect("paramiko://guest", ssh_config)
        _install(host, workdir)
    except (paramiko.SSHException, OSError) as failure:
        vm.stop()
        raise BootError(
            InfraKind.SSH, f"sshd answered but the session failed: {failure}", tail(vm.console)
        ) from failure
    except BaseException:
        vm.stop()
        raise
    assert vm.watch is not None
    release, package = kernel_set.kernel.release, kernel_set.kernel.source
    return _checked(Guest(cell, vm, host, config, release, package, took, vm.console, vm.watch))


def _kernel_config(cell: Cell, path: Path | None) -> kconfig.KernelConfig:
    """Before any boot: without a config, the cell's expectations cannot be derived."""
    if path is None:
        raise matrix.MatrixError(f"{cell.kernel} has no kernel config to derive the cell's expectations from")
    return kconfig.load(path)


def _checked(guest: Guest) -> Guest:
    """What `runtime check` sees in the guest, once, for the detection tests and the report."""
    guest.check = json.loads(guest.run(f"{RUNTIME} check --json").stdout)
    return guest


def boot_vagrant(
    cell: Cell,
    workdir: Path,
    netns: str,
    driver: str = "qemu",
    extra_args: tuple[str, ...] = (),
    kernel: str | None = None,
) -> Guest:
    """The same cell through Vagrant and libvirt; failures are classified as for QEMU."""
    from compat.harness import vagrant
    from compat.images.box import build_box
    from compat.images.kernel_catalogue import load_catalogue
    from compat.proc import CommandError

    spec = kernel or cell.kernel
    built = build_all(list(dict.fromkeys([*load_catalogue().ids, spec])))
    box = build_box(built)
    kernel_set = built.kernels[spec]
    kernel_config = _kernel_config(cell, kernel_set.kernel.config)
    machine = Machine(kernel_set.kernel.vmlinuz, kernel_set.initrd, built.rootfs.image, None, cell.flavour,
                      extra_args=extra_args)  # fmt: skip
    name = vagrant.machine_name(cell.id)
    workdir.mkdir(parents=True, exist_ok=True)
    env = vagrant.Environment(netns, [])
    entry = vagrant.machine_entry(env, name, box.name, kernel_set.kernel.vmlinuz, kernel_set.initrd,
                                  vagrant.command_line(machine), box.ssh_key, driver)  # fmt: skip
    machines = vagrant.export([entry], workdir / "machines.json")
    console = Path(entry["console"])
    vm = vagrant.VagrantVm(env, machines, workdir / ".vagrant", name, console)
    started = time.monotonic()
    try:
        with vagrant.one_at_a_time(workdir.parent / "vagrant-up.lock"):
            vagrant.vagrant(env, machines, vm.dotfiles, "up", name, "--provider", "libvirt")
        config = vagrant.vagrant(env, machines, vm.dotfiles, "ssh-config", name)
        target = vagrant.parse_ssh_config(config, name)
        vagrant.check_route(env.ip("route", "get", target.address), target.address)
        vagrant.join(netns)
        ssh_config = workdir / "ssh_config"
        ssh_config.write_text(config)
        host = _connect(f"paramiko://{name}", ssh_config)
        _install(host, workdir)
    except (CommandError, vagrant.VagrantError) as failure:
        vm.stop()
        seen = faults.classify(console.read_bytes()) if console.exists() else []
        if faults.crash(seen) is not None:
            raise KernelCrashed(seen) from failure
        tail = console.read_text(errors="replace")[-3000:] if console.exists() else ""
        kind = InfraKind.SSH if isinstance(failure, vagrant.VagrantError) else InfraKind.BOOT_TIMEOUT
        raise BootError(kind, f"vagrant: {failure.message}", tail) from failure
    except BaseException:
        vm.stop()
        raise
    took = time.monotonic() - started
    watch = KernelWatch(console, alive=lambda: True)  # libvirt's domain: its console is all we see
    watch.take(settle=0.0)
    release, package = kernel_set.kernel.release, kernel_set.kernel.source
    return _checked(Guest(cell, vm, host, kernel_config, release, package, took, console, watch))


def _connect(spec: str, ssh_config: Path) -> Any:
    """A testinfra host of its own: Host.get_host caches by spec, and a VM booted again to confirm a
    fault has the same spec and a new sshd."""
    backend = testinfra.backend.get_backend(spec, ssh_config=str(ssh_config), timeout=120)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host


def _install(host: Any, workdir: Path) -> None:
    archive = workdir / "payload.tar"
    archive.write_bytes(_payload())
    client = host.backend.client
    with client.open_sftp() as sftp:
        sftp.put(str(archive), "/tmp/kcompat-payload.tar")
    host.check_output(f"mkdir -p {GUEST_DIR} && tar -C {GUEST_DIR} -xf /tmp/kcompat-payload.tar")
