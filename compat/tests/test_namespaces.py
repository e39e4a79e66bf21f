"""The series' demonstrations, as assertions: chroot isolates nothing, namespaces do."""

from __future__ import annotations

from compat.harness.guest import GUEST_DIR, Guest

ROOTFS = f"{GUEST_DIR}/rootfs"


def test_a_plain_chroot_sees_and_can_signal_host_processes(guest: Guest) -> None:
    victim = guest.run("sleep 600 > /dev/null 2>&1 & echo $!").stdout.strip()
    script = f"mount -t proc proc {ROOTFS}/proc && chroot {ROOTFS} /bin/sh -c 'ps -o pid,comm; kill {victim}'"
    seen = guest.run(f'unshare --mount --propagation private sh -c "{script}"')
    assert seen.rc == 0, seen.stderr
    assert "sshd" in seen.stdout  # a host process, from inside the chroot
    assert guest.run(f"kill -0 {victim}").rc != 0  # and signalled it


def test_unshare_pid_namespace_gives_pid_1_and_hides_the_host(guest: Guest) -> None:
    seen = guest.run("unshare -fp --mount-proc ps -eo pid,comm")
    assert seen.rc == 0, seen.stderr
    pids = [line.split()[0] for line in seen.stdout.splitlines()[1:]]
    assert pids[0] == "1"
    assert len(pids) <= 2
    assert "sshd" not in seen.stdout


def test_runtime_run_isolates(guest: Guest) -> None:
    script = (
        "echo pid=$$; hostname; ls /sys/class/net; echo --; cat /proc/self/cgroup; echo --; ps -o pid | wc -l"
    )
    done = guest.runtime(f"run --rootfs {ROOTFS} --hostname box sh -c '{script}'")
    assert done.rc == 0, done.stderr
    head, cgroups, count = done.stdout.split("--\n")
    assert head.split() == ["pid=2", "box", "lo"]  # the runtime's init is PID 1; only lo in the netns
    assert all(line.endswith(":/") for line in cgroups.split()), cgroups  # the cgroup namespace's root
    assert int(count) <= 5  # the header, init, sh, ps and wc


def test_runtime_run_maps_users_where_user_namespaces_work(guest: Guest) -> None:
    done = guest.runtime(f"-v run --rootfs {ROOTFS} cat /proc/self/uid_map")
    assert done.rc == 0, done.stderr
    if guest.expected["userns.root"]:
        assert done.stdout.split()[:2] == ["0", "100000"]
    else:
        assert done.stdout.split()[:2] == ["0", "0"]
        assert "userns: host, because user namespaces are unusable here" in done.stderr
