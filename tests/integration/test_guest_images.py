"""The guest's images for real: a Debian kernel downloaded and the rootfs debootstrapped from the host's
mirror. Both need the network (and the rootfs root), so both are opt-in: KCOMPAT_NETWORK_TESTS=1 for the
kernel, KCOMPAT_BUILD_TESTS=1 for the rootfs."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from compat.images import kernels
from compat.images.cache import Cache
from compat.images.rootfs import build_rootfs


@pytest.mark.integration
@pytest.mark.skipif(
    os.environ.get("KCOMPAT_NETWORK_TESTS") != "1",
    reason="downloads a Debian kernel: set KCOMPAT_NETWORK_TESTS=1",
)
def test_fetch_the_real_6_1_kernel() -> None:
    tree = kernels.fetch("6.1")
    assert tree.release.startswith("6.1.")
    assert tree.vmlinuz.stat().st_size > 1_000_000
    assert "kernel/drivers/block/virtio_blk.ko:" in tree.modules_dep.read_text()
    assert tree.config is not None
    assert "CONFIG_OVERLAY_FS=m" in tree.config.read_text()


def debugfs(image: Path, request: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True, text=True, check=False)


@pytest.mark.integration
def test_build_the_real_rootfs() -> None:
    if os.environ.get("KCOMPAT_BUILD_TESTS") != "1":
        pytest.skip("builds the guest rootfs from the host's mirror: set KCOMPAT_BUILD_TESTS=1")
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip("no debootstrap: apt-get install debootstrap")
    cache = Cache()
    built = build_rootfs(cache)
    assert (
        subprocess.run(["e2fsck", "-fn", str(built.image)], capture_output=True, check=False).returncode == 0
    )
    for path in ("/usr/sbin/sshd", "/usr/bin/python3", "/usr/bin/busybox", "/etc/ssh/ssh_host_ed25519_key"):
        assert debugfs(built.image, f"stat {path}").returncode == 0
        assert "File not found" not in debugfs(built.image, f"stat {path}").stderr, path
    authorized = debugfs(built.image, "cat /root/.ssh/authorized_keys").stdout
    assert built.ssh_pubkey.read_text(encoding="utf-8").strip() in authorized
    host_pub = debugfs(built.image, "cat /etc/ssh/ssh_host_ed25519_key.pub").stdout
    assert (
        host_pub.strip() == (built.host_keys / "ssh_host_ed25519_key.pub").read_text(encoding="utf-8").strip()
    )
    assert built.ssh_key.stat().st_mode & 0o077 == 0

    started = time.monotonic()
    assert build_rootfs(cache) == built
    assert time.monotonic() - started < 2
