"""Limits as the kernel enforces them, through `runtime run`, and the v1/v2 differences."""

from __future__ import annotations

from collections.abc import Callable

from compat.harness.guest import GUEST_DIR, Guest

ROOTFS = f"{GUEST_DIR}/rootfs"


def test_memory_limit_ends_in_an_oom_kill(guest: Guest, absent: Callable[[], None]) -> None:
    done = guest.runtime(
        f"run --memory 32m --rootfs {ROOTFS} sh -c 'head -c 100m /dev/zero | tail > /dev/null'"
    )
    if guest.expected["cgroup.memory"] == "none":
        assert done.rc == 125, done.stderr
        assert "--memory needs the memory controller" in done.stderr
        absent()
        return
    assert done.rc == 137, (done.rc, done.stderr)
    assert "ran out of memory" in done.stderr
    assert "--memory limit of 32 MiB" in done.stderr


def test_pids_limit_stops_forks(guest: Guest) -> None:
    # Watched from the host: inside, once the limit is hit, nothing can fork to report it.
    script = (
        f"cd {GUEST_DIR} && (python3 -m runtime run --pids-limit 12 --rootfs {ROOTFS} "
        # The loop in a subshell: ash gives up when a fork fails; exec needs none.
        "sh -c '(for i in $(seq 1 40); do sleep 4 & done) 2>/dev/null; exec sleep 4' &); "
        "for i in $(seq 1 50); do ls /run/runtime/containers/*/state >/dev/null 2>&1 && break; sleep 0.1; done; "
        "sleep 2; echo sleeping=$(ps -eo comm | grep -c '^sleep$'); "
        "for dir in $(sed -n 's/^cgroups=//p' /run/runtime/containers/*/state | tr : ' '); do "
        "test -e $dir/pids.max && echo max=$(cat $dir/pids.max); done; wait"
    )
    said = dict(word.split("=", 1) for word in guest.run(script).stdout.split() if "=" in word)
    assert said.get("max") == "12", said
    assert 5 <= int(said["sleeping"]) <= 12, said


def test_cpu_quota_shows_throttling(guest: Guest) -> None:
    script = (
        f"cd {GUEST_DIR} && (python3 -m runtime run --name cpuq --cpus 0.2 --rootfs {ROOTFS} "
        "sh -c 'end=$(($(date +%s)+4)); while [ $(date +%s) -lt $end ]; do :; done' &); "
        "for i in $(seq 1 50); do ls /run/runtime/containers/*/state >/dev/null 2>&1 && break; sleep 0.1; done; "
        "sleep 2; "
        "for dir in $(sed -n 's/^cgroups=//p' /run/runtime/containers/*/state | tr : ' '); do "
        "cat $dir/cpu.stat 2>/dev/null; done; wait"
    )
    stat = dict(line.split() for line in guest.run(script).stdout.splitlines() if len(line.split()) == 2)
    throttled = int(stat.get("nr_throttled", "0"))
    assert throttled > 0, stat


def test_cgroup_kill_or_its_absence(guest: Guest, absent: Callable[[], None]) -> None:
    root = "/sys/fs/cgroup" if guest.expected["cgroup.mode"] == "v2" else "/sys/fs/cgroup/unified"
    script = (
        f"mkdir {root}/kctest; sleep 600 & pid=$!; "
        f"echo $pid > {root}/kctest/cgroup.procs 2>/dev/null; "
        f"if [ -e {root}/kctest/cgroup.kill ]; then echo 1 > {root}/kctest/cgroup.kill; sleep 0.5; "
        f"kill -0 $pid 2>/dev/null && echo alive || echo killed; else echo no-cgroup.kill; kill $pid; fi; "
        f"sleep 0.2; rmdir {root}/kctest 2>/dev/null; true"
    )
    said = guest.run(script).stdout.split()
    if guest.expected["cgroup.kill"]:
        assert said[-1:] == ["killed"], said
    else:
        assert said[-1:] == ["no-cgroup.kill"], said  # before 5.14, or no v2 hierarchy to hold it
        absent()


def test_v1_and_v2_interfaces_differ_as_they_should(guest: Guest) -> None:
    mode = guest.expected["cgroup.mode"]
    files = guest.run("ls /sys/fs/cgroup").stdout.split()
    if mode == "v2":
        assert "cgroup.controllers" in files
        assert "memory" not in files
    else:
        assert "memory" in files or guest.expected["cgroup.memory"] != "v1", files
        assert ("unified" in files) == (mode == "hybrid")


def test_cpuset_pins_to_cpu_1(guest: Guest, absent: Callable[[], None]) -> None:
    done = guest.runtime(
        f"run --cpuset-cpus 1 --rootfs {ROOTFS} sh -c 'grep Cpus_allowed_list /proc/self/status'"
    )
    if guest.expected["cgroup.cpuset"] == "none":
        assert done.rc == 125, done.stderr
        assert "--cpuset-cpus needs the cpuset controller" in done.stderr
        absent()
        return
    cpus = int(guest.run("nproc").stdout)
    if cpus < 2:  # refused before anything exists, naming the CPUs there are
        assert done.rc == 125, (done.rc, done.stdout, done.stderr)
        assert "--cpuset-cpus 1: CPU 1 is not online here (online: 0)" in done.stderr
        return
    assert done.rc == 0, (done.rc, done.stderr)
    assert done.stdout.split() == ["Cpus_allowed_list:", "1"], done.stdout
