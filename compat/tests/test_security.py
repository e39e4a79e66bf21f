"""The runtime's confinement on each kernel: the seccomp filter, Docker's device allowlist by the mechanism
the cell's cgroups allow, no descriptor of the caller's in the container, and a cgroup namespace rooted at
the container's own cgroup. What the kernel lacks is an expectation of the cell, not a skip."""

from __future__ import annotations

from compat import matrix
from compat.harness.guest import GUEST_DIR, Guest

ROOTFS = f"{GUEST_DIR}/rootfs"


def test_the_command_runs_under_the_seccomp_filter(guest: Guest) -> None:
    done = guest.runtime(f"run --userns host --rootfs {ROOTFS} sh -c 'grep ^Seccomp: /proc/self/status'")
    assert done.rc == 0, done.stderr
    assert done.stdout.split() == ["Seccomp:", "2"]


def test_a_new_user_namespace_is_refused_inside(guest: Guest) -> None:
    # The way limits were lifted from inside: a user namespace, then a cgroup namespace and a v1 mount.
    done = guest.runtime(f"run --userns host --rootfs {ROOTFS} unshare -U true")
    assert done.rc != 0
    assert "Operation not permitted" in done.stderr, done.stderr


def test_devices_outside_dockers_list_cannot_be_opened(guest: Guest) -> None:
    node = f"{ROOTFS}/loop-probe"
    made = guest.run(f"rm -f {node} && mknod -m 666 {node} b 7 0")
    assert made.rc == 0, made.stderr
    try:
        done = guest.runtime(
            f"-v run --userns host --rootfs {ROOTFS} sh -c 'head -c 1 /loop-probe; head -c 1 /dev/zero | od -An -tx1'"
        )
    finally:
        guest.run(f"rm -f {node}")
    assert done.rc == 0, done.stderr
    mechanism = matrix.devices_mechanism(guest.cell, guest.config)
    assert f"devices: {mechanism}" in done.stderr, done.stderr
    refusal = "Permission denied" if mechanism == matrix.DEVICES_NODEV else "Operation not permitted"
    assert f"/loop-probe: {refusal}" in done.stderr, done.stderr
    assert done.stdout.split() == ["00"]  # /dev/zero, on Docker's list, still works


def test_mknod_of_a_block_device_is_refused(guest: Guest) -> None:
    done = guest.runtime(f"run --userns host --rootfs {ROOTFS} mknod /tmp/blk b 7 0")
    assert done.rc != 0
    assert "Operation not permitted" in done.stderr, done.stderr
    left = guest.run(f"test -e {ROOTFS}/tmp/blk")
    assert left.rc != 0, "the node was left in the root filesystem"


def test_only_stdio_crosses_into_the_container(guest: Guest) -> None:
    done = guest.run(
        f"cd {GUEST_DIR} && python3 -m runtime run --userns host --rootfs {ROOTFS} ls /proc/self/fd 7</ 8>>/tmp/fd-probe"
    )
    assert done.rc == 0, done.stderr
    assert set(done.stdout.split()) <= {"0", "1", "2", "3"}  # 3: the directory ls itself reads


def test_the_cgroup_namespace_is_rooted_at_the_containers_cgroup(guest: Guest) -> None:
    done = guest.runtime(f"run --rootfs {ROOTFS} cat /proc/self/cgroup")
    assert done.rc == 0, done.stderr
    paths = {line.split(":", 2)[2] for line in done.stdout.splitlines()}
    assert paths == {"/"}, done.stdout
