"""Build the 6.1 set and boot it under QEMU (TCG) in each flavour, to the ready marker and sshd.

Needs root, qemu-system-x86_64, debootstrap and the network to Debian's archive (the first build);
`nox -s tests` as root installs the tools. Each boot takes about 5 s here; the VM always dies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from compat import flavours
from compat.harness.qemu import Machine, running
from compat.images.build import Images, build_all

pytestmark = pytest.mark.integration
TOOLS = ("qemu-system-x86_64", "debootstrap", "mkfs.ext4", "depmod", "ssh")


@pytest.fixture(scope="module")
def images() -> Images:
    if os.geteuid() != 0:
        pytest.skip("building the guest root filesystem needs root")
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        pytest.skip(
            f"missing {', '.join(missing)}: install qemu-system-x86 debootstrap e2fsprogs kmod openssh-client"
        )
    return build_all(["6.1"])


def ssh(images: Images, port: int, command: str) -> str:
    argv = [
        "ssh", "-i", str(images.rootfs.ssh_key), "-p", str(port), "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "root@127.0.0.1", command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.fixture
def boot(images: Images, tmp_path: Path) -> Callable[[str], object]:
    def start(flavour: str) -> object:
        kernel = images.kernels["6.1"]
        machine = Machine(
            kernel.kernel.vmlinuz,
            kernel.initrd,
            images.rootfs.image,
            kernel.modules_image,
            flavours.parse(flavour),
        )
        return running(machine, tmp_path / flavour, deadline=120)

    return start


def cgroup_mounts(images: Images, port: int) -> dict[str, str]:
    lines = ssh(images, port, "awk '$9 ~ /^cgroup/ { print $5, $9 }' /proc/self/mountinfo").split("\n")
    return dict(line.split() for line in lines if line)


@pytest.mark.parametrize(
    ("flavour", "expected"),
    [
        ("v2", {"/sys/fs/cgroup": "cgroup2"}),
        (
            "hybrid",
            {
                "/sys/fs/cgroup/unified": "cgroup2",
                "/sys/fs/cgroup/memory": "cgroup",
                "/sys/fs/cgroup/systemd": "cgroup",
            },
        ),
        ("v1", {"/sys/fs/cgroup/memory": "cgroup", "/sys/fs/cgroup/cpuset": "cgroup"}),
    ],
)
def test_each_cgroup_layout_boots(
    flavour: str, expected: dict[str, str], images: Images, boot: object
) -> None:
    with boot(flavour) as (vm, marker):  # type: ignore[operator]
        assert marker.startswith(
            f"KCOMPAT-READY release={images.kernels['6.1'].kernel.release} cgroups={flavour}"
        )
        mounts = cgroup_mounts(images, vm.ssh_port)
        assert expected.items() <= mounts.items()
        if flavour == "v1":
            assert "cgroup2" not in mounts.values()
        if flavour == "hybrid":  # 6.1: every controller binds to v1, the unified hierarchy stays empty
            assert ssh(images, vm.ssh_port, "cat /sys/fs/cgroup/unified/cgroup.controllers").strip() == ""


def test_userns_off_and_overlay_withheld(images: Images, boot: object) -> None:
    with boot("v2+userns-off+no-overlay") as (vm, _marker):  # type: ignore[operator]
        assert ssh(images, vm.ssh_port, "cat /proc/sys/user/max_user_namespaces").strip() == "0"
        assert "overlay" not in ssh(images, vm.ssh_port, "cat /proc/filesystems")
        refused = ssh(images, vm.ssh_port, "modprobe overlay 2>&1; echo exit=$?")
        assert "exit=0" not in refused


def test_overlay_is_loaded_by_default(images: Images, boot: object) -> None:
    with boot("v2") as (vm, _marker):  # type: ignore[operator]
        assert "overlay" in ssh(images, vm.ssh_port, "cat /proc/filesystems")


def test_initramfs_root_keeps_rootfs_as_root(images: Images, boot: object) -> None:
    with boot("initramfs-root") as (vm, _marker):  # type: ignore[operator]
        root = ssh(images, vm.ssh_port, "awk '$5 == \"/\" { print $9 }' /proc/self/mountinfo").split()
        assert root[0] == "rootfs"
        assert ssh(images, vm.ssh_port, "python3 -c 'print(1 + 1)'").strip() == "2"


def test_no_qemu_outlives_the_tests() -> None:
    left = subprocess.run(
        ["pgrep", "-f", "qemu-system-x86_64.*kcompat|qemu-system-x86_64.*-kernel"],
        capture_output=True,
        text=True,
    )
    assert left.stdout == "", f"QEMU processes left: {left.stdout}"
