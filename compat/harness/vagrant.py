"""The Vagrant backend: vagrant-libvirt, offline, in a network namespace of the harness's own.

libvirt's management network is 192.168.121.0/24; outside a namespace that route would leave the
machine. So the harness makes a namespace, starts virtlogd and libvirtd inside it when they are not
running (there is no systemd), and joins it before it speaks SSH; every connection first checks that the
route to the guest goes through a libvirt bridge. The namespace is named after the run (kcompat-<pid>),
and so are the run's domains, volumes and kernel copies, so that teardown removes this run's and those of
a run that died, never those of a run still going on; then the daemons it started and the namespace. The
box's volume is shared by every run and goes with the last one. The machines come from the same matrix
as the QEMU backend, exported as JSON for the top-level Vagrantfile.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from compat.errors import CompatError
from compat.harness.qemu import Machine, kernel_command_line
from compat.paths import REPO
from compat.proc import run

log = logging.getLogger(__name__)
LIBVIRT_SOCKET = Path("/var/run/libvirt/libvirt-sock")
# Where libvirt's qemu user can read the kernels: a directory per run.
IMAGES = Path("/var/lib/libvirt/images/kcompat")
RUNS_LOCK = Path("/run/kcompat-vagrant.lock")  # every run holds it shared while it lasts
RUN_NAME = re.compile(r"kcompat-(\d+)-")  # a run's netns, and the prefix of its domains and volumes
BOX_VOLUME = "_vagrant_box_image_"  # vagrant-libvirt's name for a box's volume, shared by the runs


class VagrantError(CompatError):
    """A Vagrant machine the harness cannot reach, or may not reach safely."""


def usable() -> str:
    """Why the backend cannot run here, or "" when it can."""
    missing = [
        tool
        for tool in ("vagrant", "libvirtd", "virtlogd", "virsh", "qemu-img", "ip")
        if not shutil.which(tool)
    ]
    if missing:
        return f"missing {', '.join(missing)}: apt-get install vagrant vagrant-libvirt libvirt-daemon-system qemu-utils"
    plugins = run(["vagrant", "plugin", "list"], capture=True, check=False).stdout
    if "vagrant-libvirt" not in plugins:
        return "the vagrant-libvirt plugin is missing: apt-get install vagrant-libvirt"
    if os.geteuid() != 0:
        return "the Vagrant backend needs root (network namespace, libvirtd)"
    return ""


# --- the environment: namespace and daemons -------------------------------------------------------------------


@dataclass
class Environment:
    netns: str  # kcompat-<pid of the run's pytest controller>
    started: list[int]  # daemons this run started, to stop at teardown
    runs_lock: int | None = None  # the controller's descriptor of RUNS_LOCK

    @property
    def prefix(self) -> str:
        """Of this run's domains and volumes (vagrant-libvirt's default_prefix)."""
        return f"{self.netns}-"

    @property
    def images(self) -> Path:
        return IMAGES / self.netns

    def ip(self, *args: str) -> str:
        return run(["ip", "-n", self.netns, *args], capture=True).stdout


def _pid(path: str) -> int | None:
    try:
        pid = int(Path(path).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(netns: str) -> Environment:
    runs_lock = os.open(RUNS_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(runs_lock, fcntl.LOCK_SH)  # waits while a last run removes the box volumes
    run(["ip", "netns", "add", netns])
    run(["ip", "-n", netns, "link", "set", "lo", "up"])
    env = Environment(netns, [], runs_lock)
    for daemon, pidfile in (("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")):
        if _pid(pidfile) is None:
            run(["ip", "netns", "exec", netns, daemon, "-d"])
            for _ in range(50):
                if (pid := _pid(pidfile)) is not None:
                    env.started.append(pid)
                    break
                time.sleep(0.1)
    for _ in range(50):
        if LIBVIRT_SOCKET.exists():
            break
        time.sleep(0.1)
    return env


def stop(env: Environment) -> None:
    """Domains and volumes of this run (or of a dead one), the daemons it started, and the namespace."""
    last = _last_run(env)
    domains = _virsh("list", "--all", "--name").split()
    for domain in filter(lambda name: _removable(name, env), domains):
        _virsh("destroy", domain)
        _virsh("undefine", domain, "--remove-all-storage")
    volumes = [line.split()[0] for line in _virsh("vol-list", "default").splitlines()[2:] if line.split()]
    for volume in volumes:
        shared_box = last and volume.startswith("kcompat-") and BOX_VOLUME in volume
        if _removable(volume, env) or shared_box:
            _virsh("vol-delete", "--pool", "default", volume)
    for pid in reversed(env.started):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    run(["ip", "netns", "del", env.netns], check=False)
    shutil.rmtree(env.images, ignore_errors=True)
    with contextlib.suppress(OSError):
        IMAGES.rmdir()  # when no other run has kernels in it
    if env.runs_lock is not None:
        os.close(env.runs_lock)


def _virsh(*args: str) -> str:
    return run(["virsh", "-c", "qemu:///system", *args], capture=True, check=False).stdout


def _removable(name: str, env: Environment) -> bool:
    """This run's, or a run's whose controller is gone (it crashed before its teardown)."""
    if name.startswith(env.prefix):
        return True
    owner = RUN_NAME.match(name)
    return owner is not None and not _alive(int(owner.group(1)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    return True


def _last_run(env: Environment) -> bool:
    """Whether no other run holds RUNS_LOCK: then the box volumes, shared by the runs, may go."""
    if env.runs_lock is None:
        return False
    try:
        fcntl.flock(env.runs_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def join(netns: str) -> None:
    """This thread into the namespace: the SSH connections it opens start from there."""
    from runtime.linux import constants as c
    from runtime.linux import libc

    fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        libc.setns(fd, c.CLONE_NEWNET)
    finally:
        os.close(fd)


# --- machines ---------------------------------------------------------------------------------------------------


def machine_name(cell_id: str) -> str:
    return "m-" + "".join(ch if ch.isalnum() else "-" for ch in cell_id.lower())


def machine_entry(
    env: Environment,
    name: str,
    box: str,
    kernel: Path,
    initrd: Path,
    cmdline: str,
    ssh_key: Path,
    driver: str,
) -> dict[str, str]:
    """One machine for the Vagrantfile. Kernels are copied where libvirt's qemu user may read them."""
    env.images.mkdir(parents=True, exist_ok=True)
    copies = {}
    for label, source in (("kernel", kernel), ("initrd", initrd)):
        target = env.images / f"{name}-{label}"
        shutil.copyfile(source, target)
        target.chmod(0o644)
        copies[label] = str(target)
    # libvirt cannot ask QEMU for single-threaded TCG, and multi-threaded TCG faults SMP guests
    # (compat/harness/qemu.py): a Vagrant machine gets two vCPUs only under KVM.
    cpus = "2" if driver == "kvm" else "1"
    return {"name": name, "prefix": env.prefix, "box": box, "kernel": copies["kernel"],
            "initrd": copies["initrd"], "cmdline": cmdline, "ssh_key": str(ssh_key), "driver": driver,
            "console": str(env.images / f"{name}-console.log"), "cpus": cpus}  # fmt: skip


def export(machines: list[dict[str, str]], path: Path) -> Path:
    path.write_text(json.dumps(machines, indent=2))
    return path


def command_line(machine: Machine) -> str:
    return kernel_command_line(machine) + " kc_net=dhcp"  # libvirt's dnsmasq gives the address


def vagrant(env: Environment, machines_json: Path, dotfiles: Path, *args: str, check: bool = True) -> str:
    environment = {"KCOMPAT_VAGRANT_MACHINES": str(machines_json), "VAGRANT_CWD": str(REPO),
                   "VAGRANT_DOTFILE_PATH": str(dotfiles)}  # fmt: skip
    done = run(
        ["ip", "netns", "exec", env.netns, "vagrant", *args], capture=True, check=check, env=environment
    )
    return done.stdout


@contextlib.contextmanager
def one_at_a_time(lock: Path) -> Iterator[None]:
    """One `vagrant up` of the run at a time. Two at once share the machine's cores while the guests
    boot under TCG, and vagrant-libvirt guards the box's volume and the management network with a
    lock of its process only; the tests of the cells still run side by side."""
    with lock.open("w") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        yield  # the lock goes with the file


@dataclass(frozen=True)
class SshTarget:
    host: str
    address: str
    port: int
    user: str
    identity: str


def parse_ssh_config(text: str, host: str) -> SshTarget:
    import paramiko

    config = paramiko.SSHConfig.from_text(text)
    found = config.lookup(host)
    if "hostname" not in found or found["hostname"] == host:
        raise VagrantError(
            f"vagrant ssh-config says nothing about {host}",
            "the machine may not have come up: see `vagrant status` and its console log",
        )
    identity = found.get("identityfile", [""])
    return SshTarget(
        host, found["hostname"], int(found.get("port", 22)), found.get("user", "root"), identity[0]
    )


def check_route(route_get_output: str, address: str) -> str:
    """The bridge a route to the guest leaves by; anything but a libvirt bridge is refused."""
    words = route_get_output.split()
    device = words[words.index("dev") + 1] if "dev" in words else ""
    if not device.startswith("virbr"):
        raise VagrantError(
            f"the route to {address} leaves by {device or 'no device'}, not a libvirt bridge: refusing to connect",
            "libvirt's management network must be active in the harness's namespace (virsh net-list --all)",
        )
    return device


@dataclass
class VagrantVm:
    """What the compat fixture holds for a Vagrant machine: it stops like a QEMU VM."""

    env: Environment
    machines: Path
    dotfiles: Path
    name: str
    console: Path

    def stop(self) -> None:
        vagrant(self.env, self.machines, self.dotfiles, "destroy", "-f", self.name, check=False)
