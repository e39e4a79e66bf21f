"""`runtime run` on this host, with a busybox root filesystem: isolation, limits, exit codes, signals,
process setup, user namespaces and cleanup. Needs root and busybox-static; skipped otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime import launch as launch_module
from runtime.linux.release import kernel_version
from tests.integration.conftest import (
    DEADLINE,
    STATE_ROOT,
    Background,
    container_cgroups,
    forked_workload,
    host_mounts,
    runtime,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leftovers")]

Result = subprocess.CompletedProcess[str]
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_DEFAULT_CAPS = "00000000a80425fb"


@pytest.fixture
def box(run: Callable[..., Result], busybox_rootfs: Path) -> Callable[..., Result]:
    """box(OPTION..., COMMAND...): `runtime run --rootfs BUSYBOX ...`, finished."""

    def run_in_box(*args: str, timeout: float = 60) -> Result:
        return run("--rootfs", str(busybox_rootfs), *args, timeout=timeout)

    return run_in_box


def cgroup_dir(state: dict[str, str], controller: str) -> str:
    """The container's directory for controller: its v1 hierarchy's, else the cgroup2 one."""
    directories = state["cgroups"].split(":")
    for directory in directories:
        hierarchy = Path(directory).parent.parent
        if hierarchy.parent == Path("/sys/fs/cgroup") and controller in hierarchy.name.split(","):
            return directory
    v2 = [d for d in directories if Path(d, "cgroup.controllers").exists()]
    assert v2, f"no cgroup for {controller} in {directories}"
    return v2[0]


def read_keyed(path: str) -> dict[str, int]:
    return {key: int(value) for key, value in (line.split() for line in Path(path).read_text().splitlines())}


def pids_in(ps_output: str) -> list[int]:
    return [int(line.split()[0]) for line in ps_output.splitlines()[1:] if line.split()]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- the series' demonstrations: chroot sees everything, a container only itself -------------------------


def test_chroot_alone_sees_the_hosts_processes(busybox_rootfs: Path) -> None:
    script = f"mount -t proc proc {busybox_rootfs}/proc && exec chroot {busybox_rootfs} /bin/ps"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pids = pids_in(done.stdout)
    assert os.getpid() in pids
    assert 1 in pids
    assert len(pids) >= 10, done.stdout


def test_container_sees_only_its_own_processes(box: Callable[..., Result]) -> None:
    done = box("ps")
    assert done.returncode == 0, done.stderr
    pids = pids_in(done.stdout)
    assert pids[0] == 1
    assert 1 <= len(pids) <= 3, done.stdout
    assert os.getpid() not in pids


# --- isolation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("namespace", "options", "shared"),
    [
        ("pid", [], False),
        ("mnt", [], False),
        ("uts", [], False),
        ("ipc", [], False),
        ("net", [], False),
        ("net", ["--network", "host"], True),
        ("user", [], False),
        ("user", ["--userns", "host"], True),
        ("cgroup", [], False),
    ],
)
def test_namespaces(box: Callable[..., Result], namespace: str, options: list[str], shared: bool) -> None:
    if not os.path.exists(f"/proc/self/ns/{namespace}"):
        pytest.skip(f"this kernel has no {namespace} namespace")
    done = box(*options, "readlink", f"/proc/self/ns/{namespace}")
    assert done.returncode == 0, done.stderr
    host = os.readlink(f"/proc/self/ns/{namespace}")
    assert done.stdout.strip().startswith(f"{namespace}:[")
    assert (done.stdout.strip() == host) is shared


def test_hostname(box: Callable[..., Result]) -> None:
    host = socket.gethostname()
    assert host != "box"
    done = box("--hostname", "box", "hostname")
    assert (done.returncode, done.stdout) == (0, "box\n"), done.stderr
    assert socket.gethostname() == host
    assert Path("/proc/sys/kernel/hostname").read_text().strip() == host


def test_network_none_has_only_lo_and_it_is_up(box: Callable[..., Result]) -> None:
    done = box("sh", "-c", "cat /proc/net/dev; echo ---; ip link")
    assert done.returncode == 0, done.stderr
    dev, links = done.stdout.split("---\n")
    assert [line.split(":")[0].strip() for line in dev.splitlines()[2:]] == ["lo"]
    assert len([line for line in links.splitlines() if not line.startswith(" ")]) == 1
    assert links.startswith("1: lo: <LOOPBACK,UP,"), links


def test_ipc_objects_of_the_host_are_not_visible(box: Callable[..., Result]) -> None:
    made = subprocess.run(["ipcmk", "-Q"], capture_output=True, text=True, timeout=10, check=True)
    queue = made.stdout.split(":")[-1].strip()
    try:
        host = Path("/proc/sysvipc/msg").read_text().splitlines()[1:]
        assert queue in [line.split()[1] for line in host]
        done = box("cat", "/proc/sysvipc/msg")
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 1, done.stdout  # the header only
        assert done.stdout.split()[:2] == ["key", "msqid"]
    finally:
        subprocess.run(["ipcrm", "-q", queue], timeout=10, check=True)


def test_mounts_stay_in_the_container(start: Callable[..., Background], busybox_rootfs: Path) -> None:
    before = host_mounts()
    container = start("sh", "-c", "cat /proc/self/mountinfo; echo ready; exec sleep 30")
    inside = container.wait_for_output("ready")
    points = {line.split()[4]: line.split(" - ")[1].split()[0] for line in inside.splitlines()[:-1]}
    assert "/" in points
    assert (points["/proc"], points["/dev"], points["/sys"]) == ("proc", "tmpfs", "sysfs")
    assert points["/dev/shm"] == "tmpfs"
    host = Path("/proc/self/mountinfo").read_text()
    assert str(busybox_rootfs) not in host
    assert host_mounts() == before
    container.proc.terminate()
    assert container.finish()[0] == 128 + signal.SIGTERM


def test_mount_inside_is_refused_without_cap_sys_admin(box: Callable[..., Result]) -> None:
    """Docker's default capabilities do not include CAP_SYS_ADMIN: the container cannot mount."""
    done = box("mount", "-t", "tmpfs", "t", "/mnt")
    assert done.returncode != 0
    assert "permission denied" in done.stderr.lower()


# --- limits ---------------------------------------------------------------------------------------------


def test_memory_limit_ends_in_an_oom_kill(box: Callable[..., Result]) -> None:
    done = box("--memory", "32m", "sh", "-c", "head -c 100m /dev/zero | tail")
    assert done.returncode == 137, done.stderr
    assert "ran out of memory" in done.stderr
    assert "--memory limit of 32 MiB" in done.stderr


def test_pids_limit_stops_a_fork_loop(start: Callable[..., Background]) -> None:
    script = "(for i in $(seq 1 60); do sleep 30 & echo $!; done) 2>/dev/null; echo forked; exec sleep 30"
    container = start("--pids-limit", "20", "sh", "-c", script)
    forks = len(container.wait_for_output("forked").splitlines()) - 1
    pids = cgroup_dir(container.state(), "pids")
    assert Path(pids, "pids.max").read_text().strip() == "20"
    current = int(Path(pids, "pids.current").read_text())
    # init, the shell and its subshell besides the sleeps: the subshell is gone when it failed to fork
    assert 15 <= forks + 3 <= 20, forks
    assert current == forks + 2
    container.proc.terminate()
    assert container.finish()[0] == 128 + signal.SIGTERM


def cgroups_of(pid: str) -> dict[str, str]:
    """/proc/PID/cgroup as {"4:memory": "/runtime/ID", ...}."""
    return dict(line.rsplit(":", 1) for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())


@pytest.mark.parametrize("clone3", ["", "0"], ids=["born-in-them", "forked-and-moved"])
def test_the_init_is_in_the_containers_cgroups_in_every_hierarchy(
    start: Callable[..., Background], monkeypatch: pytest.MonkeyPatch, clone3: str
) -> None:
    # RUNTIME_CLONE3=0: as on a kernel without clone3, the init is moved into each cgroup
    monkeypatch.setenv("RUNTIME_CLONE3", clone3)
    container = start("--verbose", "sh", "-c", "echo up; exec sleep 30")
    assert container.first_line() == "up\n"
    state = container.state()
    for pid in (int(state["init_pid"]), forked_workload(int(state["init_pid"]))):
        seen = cgroups_of(str(pid))
        assert sorted(seen) == sorted(cgroups_of("self"))  # "4:memory", "0:", ...: every hierarchy
        assert set(seen.values()) == {f"/runtime/{state['id']}"}, seen
    container.proc.terminate()
    code, _, stderr = container.finish()
    assert code == 128 + signal.SIGTERM, stderr
    if clone3 == "0":
        assert "cgroups: joined without a move: none; moved: " in stderr, stderr
    elif kernel_version() >= launch_module.LOCKLESS_SELF_MOVE:
        assert "; moved: none" in stderr, stderr  # clone3 into cgroup2, "0" into the v1 tasks files


@pytest.mark.parametrize("clone3", ["", "0"], ids=["born-in-them", "forked-and-moved"])
def test_pids_limit_2_is_the_init_and_the_workload(
    box: Callable[..., Result], monkeypatch: pytest.MonkeyPatch, clone3: str
) -> None:
    # the setup process is in the container's cgroups until it exits: the runtime reaps it first
    monkeypatch.setenv("RUNTIME_CLONE3", clone3)
    done = box("--pids-limit", "2", "sh", "-c", "echo ok")
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


def test_cpu_limit_throttles_a_busy_loop(start: Callable[..., Background]) -> None:
    container = start("--cpus", "0.2", "sh", "-c", "echo busy; while :; do :; done")
    container.wait_for_output("busy")
    state = container.state()
    workload = forked_workload(int(state["init_pid"]))
    before, began = cpu_seconds(workload), time.monotonic()
    time.sleep(1.5)
    share = (cpu_seconds(workload) - before) / (time.monotonic() - began)
    cpu = cgroup_dir(state, "cpu")
    stat = read_keyed(f"{cpu}/cpu.stat")
    v1_quota = Path(cpu, "cpu.cfs_quota_us")
    quota = v1_quota.read_text().split() if v1_quota.exists() else Path(cpu, "cpu.max").read_text().split()
    container.proc.terminate()
    assert container.finish()[0] == 128 + signal.SIGTERM
    assert quota in (["20000"], ["20000", "100000"])
    assert stat["nr_throttled"] > 0, stat
    assert 0.05 < share < 0.3, share


# --- exit codes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "code", "message"),
    [
        (["sh", "-c", "exit 3"], 3, ""),
        (["true"], 0, ""),
        (["nosuch"], 127, "nosuch: command not found"),
        (["/etc/passwd"], 126, "/etc/passwd: cannot execute"),
        (["sh", "-c", "kill -TERM $$"], 128 + signal.SIGTERM, ""),
        (["sh", "-c", "kill -USR1 $$"], 128 + signal.SIGUSR1, ""),
    ],
)
def test_exit_codes(box: Callable[..., Result], command: list[str], code: int, message: str) -> None:
    done = box(*command)
    assert done.returncode == code, done.stderr
    assert message in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory", "lots", "true"], "--memory 'lots' is not a size"),
        (["--bogus", "true"], "unknown option --bogus"),
        (["--network", "bridge", "true"], "--network 'bridge' is not one of"),
        ([], "no command to run"),
    ],
)
def test_bad_options_are_runtime_failures(box: Callable[..., Result], args: list[str], message: str) -> None:
    done = box(*args)
    assert done.returncode == 125
    assert done.stderr.startswith(f"runtime: error: {message}"), done.stderr


def test_missing_rootfs_is_a_runtime_failure(run: Callable[..., Result]) -> None:
    done = run("--rootfs", "/nonexistent", "true")
    assert done.returncode == 125
    assert "runtime: error: --rootfs /nonexistent: not a directory" in done.stderr


def test_sigkill_of_the_init_from_the_host(start: Callable[..., Background]) -> None:
    container = start("--memory", "64m", "sh", "-c", "echo ready; exec sleep 30")
    container.wait_for_output("ready")
    os.kill(int(container.state()["init_pid"]), signal.SIGKILL)
    code, _, stderr = container.finish()
    assert code == 128 + signal.SIGKILL
    assert "out of memory" not in stderr  # killed, but not by the OOM killer


# --- signals and the init -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["TERM", "INT", "HUP", "USR1", "USR2", "QUIT"])
def test_signals_are_forwarded(start: Callable[..., Background], name: str) -> None:
    container = start("sh", "-c", f'trap "exit 42" {name}; echo ready; while :; do sleep 0.1; done')
    container.wait_for_output("ready")
    container.proc.send_signal(getattr(signal, f"SIG{name}"))
    code, _, stderr = container.finish()
    assert code == 42, stderr


def test_orphans_are_reaped(box: Callable[..., Result]) -> None:
    done = box("sh", "-c", 'sh -c "sleep 0.2 &"; sleep 1; cat /proc/[0-9]*/stat')
    assert done.returncode == 0, done.stderr
    states = {line.split()[0]: line.rsplit(")", 1)[1].split()[0] for line in done.stdout.splitlines()}
    assert "Z" not in states.values(), done.stdout
    assert set(states) == {"1", "2"}, done.stdout  # the init and the shell; the orphan is gone


# --- process setup --------------------------------------------------------------------------------------


def test_environment_and_default_path(box: Callable[..., Result]) -> None:
    done = box("-e", "FOO=bar", "--hostname", "envbox", "sh", "-c", 'echo "$FOO|$PATH|$HOSTNAME|$HOME"')
    assert (done.returncode, done.stdout) == (0, f"bar|{DEFAULT_PATH}|envbox|/root\n"), done.stderr


def test_workdir_is_made_and_used(box: Callable[..., Result], busybox_rootfs: Path) -> None:
    done = box("-w", "/tmp/work", "sh", "-c", "pwd; stat -c %F .")
    assert (done.returncode, done.stdout) == (0, "/tmp/work\ndirectory\n"), done.stderr
    (busybox_rootfs / "tmp/work").rmdir()


@pytest.mark.parametrize("user", ["1000:1000", "app", "app:app"])
def test_user(box: Callable[..., Result], user: str) -> None:
    done = box(
        "-u", user, "sh", "-c", "id -u; id -g; id -G; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1000", "1000", "1000", "CapEff:", "0000000000000000", "NoNewPrivs:", "1"]


def test_root_has_dockers_capabilities_and_no_new_privs(box: Callable[..., Result]) -> None:
    done = box("cat", "/proc/self/status")
    assert done.returncode == 0, done.stderr
    status = dict(line.split(":\t", 1) for line in done.stdout.splitlines() if ":\t" in line)
    assert status["NoNewPrivs"] == "1"
    for capabilities in ("CapEff", "CapPrm", "CapBnd"):
        assert status[capabilities] == DOCKER_DEFAULT_CAPS, capabilities
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"


@pytest.mark.parametrize("userns", ["auto", "host"])
def test_masked_paths(box: Callable[..., Result], userns: str) -> None:
    files = [
        f"/proc/{name}"
        for name in ("kcore", "keys", "timer_list", "sched_debug")
        if os.path.isfile(f"/proc/{name}")
    ]
    directories = [d for d in ("/sys/firmware", "/proc/acpi", "/proc/scsi") if os.path.isdir(d)]
    if not (files and directories):
        pytest.skip(f"this host lacks the masked paths to check: files {files}, directories {directories}")
    script = "for f in $FILES; do echo $f $(wc -c < $f); done; for d in $DIRS; do echo $d $(ls -A $d | wc -l); done"
    variables = ("-e", f"FILES={' '.join(files)}", "-e", f"DIRS={' '.join(directories)}")
    done = box("--userns", userns, *variables, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{path} 0" for path in (*files, *directories)]


@pytest.mark.parametrize(
    ("path", "userns"),
    [
        ("/proc/sys/kernel/ns_last_pid", "auto"),
        ("/proc/sys/kernel/ns_last_pid", "host"),
        ("/proc/irq/default_smp_affinity", "host"),
        ("/sys/kernel/mm/ksm/run", "host"),
    ],
)
def test_proc_sys_and_sys_are_read_only(box: Callable[..., Result], path: str, userns: str) -> None:
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist on this host")
    done = box("--userns", userns, "sh", "-c", f"echo 0 > {path}")
    assert done.returncode != 0
    assert "Read-only file system" in done.stderr


def test_read_only_rootfs(box: Callable[..., Result], busybox_rootfs: Path) -> None:
    script = "touch /x 2>&1; touch /tmp/x 2>&1; touch /dev/shm/x && echo shm-ok"
    done = box("--read-only", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "touch: /x: Read-only file system\ntouch: /tmp/x: Read-only file system\nshm-ok\n"
    assert not (busybox_rootfs / "x").exists()
    writable = box("sh", "-c", "touch /tmp/x && rm /tmp/x && echo ok")
    assert (writable.returncode, writable.stdout) == (0, "ok\n"), writable.stderr


# --- user namespaces ------------------------------------------------------------------------------------


def subordinate_range() -> tuple[int, int]:
    try:
        for line in Path("/etc/subuid").read_text().splitlines():
            user, begin, count = line.split(":")
            if user in ("root", "0"):
                return int(begin), int(count)
    except (OSError, ValueError):
        pass
    return 100_000, 65_536


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], "0 {start} {count}"),
        (["--userns", "auto"], "0 {start} {count}"),
        (["--userns", "private"], "0 {start} {count}"),
        (["--userns", "host"], "0 0 4294967295"),
    ],
)
def test_user_namespace_maps(box: Callable[..., Result], options: list[str], expected: str) -> None:
    start, count = subordinate_range()
    done = box(*options, "cat", "/proc/self/uid_map", "/proc/self/gid_map")
    assert done.returncode == 0, done.stderr
    line = expected.format(start=start, count=count)
    assert [" ".join(row.split()) for row in done.stdout.splitlines()] == [line, line]


def test_private_root_is_an_unprivileged_host_uid(start: Callable[..., Background]) -> None:
    container = start("sh", "-c", "echo ready; exec sleep 30")
    container.wait_for_output("ready")
    init = int(container.state()["init_pid"])
    workload = forked_workload(init)
    uids = Path(f"/proc/{workload}/status").read_text().split("Uid:")[1].split()[:4]
    assert uids == [str(subordinate_range()[0])] * 4


# --- cleanup, ps and gc ---------------------------------------------------------------------------------


def test_fifty_runs_leave_nothing_behind(box: Callable[..., Result]) -> None:
    # no_leftovers also compares the host's mounts; these are the brief's checks, spelled out
    cgroups, containers, mounts = container_cgroups(), os.listdir(f"{STATE_ROOT}/containers"), host_mounts()
    for attempt in range(50):
        done = box("--memory", "64m", "--pids-limit", "50", "/bin/true") if attempt % 2 else box("/bin/true")
        assert done.returncode == 0, (attempt, done.stderr)
    assert container_cgroups() == cgroups
    assert os.listdir(f"{STATE_ROOT}/containers") == containers
    assert host_mounts() == mounts


def test_ps_lists_a_running_container(start: Callable[..., Background]) -> None:
    container = start("sleep", "30")
    state = container.state()
    listed = runtime("ps")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows[container.name][:3] == [container.name, state["id"], state["init_pid"]]
    assert rows[container.name][-2:] == ["sleep", "30"]
    container.proc.terminate()
    assert container.finish()[0] == 128 + signal.SIGTERM
    assert container.name not in runtime("ps").stdout


def test_gc_after_the_runtime_was_killed(start: Callable[..., Background]) -> None:
    runtime("gc")  # so that what an earlier, interrupted session left does not count here
    container = start("--memory", "64m", "sleep", "30")
    state = container.state()
    init = int(state["init_pid"])
    workload = forked_workload(init)
    assert container.kill_runtime() == -signal.SIGKILL
    assert alive(init)
    assert alive(workload)
    assert container.name not in runtime("ps").stdout  # its runtime is gone
    collected = runtime("gc")
    assert collected.returncode == 0, collected.stderr
    assert f"{container.name} ({state['id']})" in collected.stdout
    assert collected.stdout.endswith("runtime gc: removed 1 leftover(s)\n"), collected.stdout
    deadline = time.monotonic() + DEADLINE
    while (alive(init) or alive(workload)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(init)
    assert not alive(workload)
    assert not any(os.path.exists(directory) for directory in state["cgroups"].split(":"))
    assert not os.path.exists(f"{STATE_ROOT}/containers/{state['id']}")
    assert not os.path.lexists(f"{STATE_ROOT}/names/{container.name}")


def test_verbose_says_what_it_chose(box: Callable[..., Result]) -> None:
    done = box("--verbose", "true")
    assert done.returncode == 0, done.stderr
    assert "runtime: userns: private: container root is host uid" in done.stderr
    assert "runtime: cgroups: " in done.stderr
    quiet = box("true")
    assert quiet.stderr == ""


def test_unreachable_rootfs_is_a_runtime_failure(run: Callable[..., Result], busybox_rootfs: Path) -> None:
    private = Path(f"{busybox_rootfs.parent}-private")
    private.mkdir(mode=0o700)
    hidden = private / "rootfs"
    try:
        shutil.copytree(busybox_rootfs, hidden, symlinks=True)
        done = run("--rootfs", str(hidden), "true")
    finally:
        shutil.rmtree(private)
    assert done.returncode == 125, done.stderr
    assert "Traceback" not in done.stderr
    assert str(hidden) in done.stderr  # the init's error names the rootfs it could not bind
    assert "chmod o+x" in done.stderr  # and the hint names the fix
