"""The runtime adapts: the same run with limits works wherever a cell can honour it, is refused with
the expected message where it cannot, and pivot_root gives way to MS_MOVE on an initramfs root."""

from __future__ import annotations

from compat.harness.guest import GUEST_DIR, Guest

ROOTFS = f"{GUEST_DIR}/rootfs"


def test_the_same_limits_run_or_are_refused_with_the_reason(guest: Guest) -> None:
    done = guest.runtime(f"run --memory 64m --pids-limit 50 --cpus 0.5 --rootfs {ROOTFS} true")
    if guest.expected["cgroup.memory"] == "none":
        assert done.rc == 125
        assert "CONFIG_MEMCG_V1" in done.stderr, done.stderr
        assert "cgroup v2" in done.stderr, done.stderr
    else:
        assert done.rc == 0, done.stderr


def test_pivot_root_or_the_ms_move_fallback_still_isolates(guest: Guest) -> None:
    done = guest.runtime(f"-v run --rootfs {ROOTFS} sh -c 'ps -o pid | wc -l; ls /'")
    assert done.rc == 0, done.stderr
    if guest.expected["pivot_root.usable"]:
        assert "root switched with pivot_root" in done.stderr
    else:
        assert "using MS_MOVE + chroot" in done.stderr
    count, *listing = done.stdout.split()
    assert int(count) <= 5  # the header, init, sh, ps and wc
    assert "opt" not in listing  # the guest's own root is out of sight
