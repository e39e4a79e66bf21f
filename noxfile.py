"""Sessions (`nox -s NAME`; `tests` when none is named):

    tests    the project's own tests: unit, config files, real containers and detection on this host
    lint     ruff (check and format) and mypy
    compat   the kernel x flavour matrix booted under QEMU (or Vagrant) and checked over SSH
    qualify  a candidate kernel against a baseline, with a verdict; or the qualification self-check
    images   the kernels, guest root filesystem, initramfs and modules disks the VMs boot, cached
    bench    benchmarks that print figures: check, run, image import, boot
    soak     many containers with random SIGKILLs, then `runtime gc`; fails on any leak

Each session installs what it needs. Run as root on Debian or Ubuntu, the sessions also install the
system packages they need with apt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
# With CI=true nox fails on a missing interpreter; we only ever ask for the ones that are here.
nox.options.error_on_missing_interpreters = False


def present_interpreters() -> list[str]:
    """Versions that really start: pyenv leaves shims for versions that are not installed."""
    wanted = ("3.11", "3.12", "3.13", "3.14")
    found = [version for version in wanted if _starts(f"python{version}")]
    return found or [f"{sys.version_info.major}.{sys.version_info.minor}"]


def _starts(interpreter: str) -> bool:
    path = shutil.which(interpreter)
    if path is None:
        return False
    probe = subprocess.run([path, "-c", "pass"], capture_output=True, check=False)  # noqa: S603 - fixed argv
    return probe.returncode == 0


PYTHONS = present_interpreters()
# What real containers and VMs need: busybox-static for root filesystems and initramfs, the rest
# to build the guest's disks and boot it.
IMAGE_PACKAGES = (
    "busybox-static",
    "debootstrap",
    "e2fsprogs",
    "kmod",
    "openssh-client",
    "dpkg",
    "qemu-system-x86",
)
# The Vagrant backend: vagrant-libvirt, with libvirtd started by the harness (no systemd needed).
VAGRANT_PACKAGES = (
    "vagrant",
    "vagrant-libvirt",
    "libvirt-daemon-system",
    "libvirt-clients",
    "dnsmasq-base",
    "qemu-utils",
)
# The self-check's fault module (compat/images/faultmod.py): the kernel's gcc major (gcc-12 for bookworm's
# 6.1, Debian 12's gcc) and make; the headers' prebuilt objtool links libelf.
FAULT_MODULE_PACKAGES = ("gcc", "make", "libelf1")
# gcc and libc6-dev (a static libc) build tests/sysprobe.c, the escape tests' probe.
TEST_PACKAGES = ("util-linux", "libc6-dev", *FAULT_MODULE_PACKAGES, *IMAGE_PACKAGES, *VAGRANT_PACKAGES)
NEWEST = PYTHONS[-1]


def apt_install(session: nox.Session, *packages: str) -> None:
    """Install Debian packages when root and missing; otherwise say what is missing."""
    missing = [name for name in packages if not _dpkg_installed(session, name)]
    if not missing:
        return
    if os.geteuid() != 0:
        session.warn(f"not root: cannot apt-get install {' '.join(missing)}; tests that need them will skip")
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-q", external=True, env=env)
    session.run("apt-get", "install", "-y", "-q", *missing, external=True, env=env)


def _dpkg_installed(session: nox.Session, name: str) -> bool:
    if not shutil.which("dpkg-query"):
        return True  # not a Debian system: nothing we could install anyway
    status = session.run(
        "dpkg-query", "-W", "-f=${Status}", name, external=True, silent=True, success_codes=[0, 1], log=False
    )
    return isinstance(status, str) and "install ok installed" in status


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The project's own tests: unit, config files, and real detection on this host."""
    apt_install(session, *TEST_PACKAGES)
    session.install("-e", ".[test,compat]")
    session.run("pytest", *session.posargs)


@nox.session(python=NEWEST)
def lint(session: nox.Session) -> None:
    """ruff and mypy."""
    session.install("-e", ".[lint,test]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=NEWEST)
def compat(session: nox.Session) -> None:
    """The main job: boot the kernel x flavour matrix under QEMU and check it over SSH.
    `nox -s compat [-- --cells 6.1-v2,6.12-hybrid | --matrix full] [--accel tcg]`. Reports land in reports/."""
    apt_install(session, *IMAGE_PACKAGES)
    if "vagrant" in session.posargs:
        apt_install(session, *VAGRANT_PACKAGES)
    session.install("-e", ".[compat]")
    session.run("python", "-m", "compat.images", "-q")  # build or find the images first, once
    workers = str(max(1, min(os.cpu_count() or 1, 2)))
    session.run(
        "pytest", "compat/tests", "-n", workers, "-p", "no:cacheprovider", "--reports", "reports", "-q",
        *session.posargs,
    )  # fmt: skip


@nox.session(python=NEWEST)
def qualify(session: nox.Session) -> None:
    """A candidate kernel against a baseline, with a verdict (exit 0, 1 or 2):
    `nox -s qualify -- --kernel 6.12 [--baseline 6.1] [--flavours v2,hybrid,v1]`, or `-- --self-check`."""
    apt_install(session, *IMAGE_PACKAGES, *FAULT_MODULE_PACKAGES)
    session.install("-e", ".[compat]")
    session.run("compat", "qualify", *session.posargs)


@nox.session(python=NEWEST)
def images(session: nox.Session) -> None:
    """Kernels, the guest root filesystem, per-kernel initramfs and modules disks, all cached:
    `nox -s images [-- --kernels 6.1,6.12] [--rebuild]`."""
    apt_install(session, *IMAGE_PACKAGES)
    session.install("-e", ".")
    session.run("python", "-m", "compat.images", *session.posargs)


@nox.session(python=NEWEST)
def bench(session: nox.Session) -> None:
    """Benchmarks that print figures: `runtime check`; `runtime run` against runc and crun; image import
    and overlay versus copy."""
    apt_install(session, *IMAGE_PACKAGES, "runc", "crun")
    session.install("-e", ".")
    session.run("python", "benchmarks/check_speed.py", *session.posargs)
    session.run("python", "benchmarks/run_speed.py", *session.posargs)
    session.run("python", "benchmarks/image_speed.py", *session.posargs)
    session.run("python", "benchmarks/boot_speed.py", *session.posargs)


@nox.session(python=NEWEST)
def soak(session: nox.Session) -> None:
    """1,000 containers (`-- --containers 200` in CI), 4 at a time, with random SIGKILLs of the workload,
    the init and the runtime, then `runtime gc`; prints the leaks and fails on any. Installed as users
    install it (no -e): the editable install hides what a wheel lacks."""
    apt_install(session, "busybox-static")
    session.install("--force-reinstall", ".")
    session.run("python", "-m", "benchmarks.soak", *session.posargs)
