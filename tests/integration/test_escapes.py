"""The escape corpus: what a hostile command or image tries against `runtime run` on this host, and
what must stop it. Inherited descriptors, Docker's seccomp profile (each syscall it blocks is refused,
the shell and busybox still work), limits that the container cannot lift, device nodes from an image
and from mknod, and the store as seen by another local user.

The container side is tests/sysprobe.c, a static probe built with the host's gcc and copied into a
busybox root filesystem: `sysprobe NAME [ARGS]` prints `NAME ok` or `NAME errno=<ENAME>`. Needs root,
busybox-static, gcc and libc6-dev (a static libc); skipped with the reason otherwise."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import busybox, images, sysprobe
from tests.integration.conftest import REPO, STATE_ROOT, runtime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.usefixtures("no_leftovers"),
]

Result = subprocess.CompletedProcess[str]
NOBODY = 65534
USERNS = {"default": [], "host": ["--userns", "host"]}
# What opening a device node may fail with: EPERM from a devices cgroup or eBPF program, EACCES from a
# nodev mount. Either stops it.
DEVICE_REFUSALS = ("errno=EPERM", "errno=EACCES")
DEADLINE = 10.0


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probe() -> Path:
    try:
        return sysprobe.build()
    except sysprobe.ProbeUnavailable as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def rootfs(probe: Path) -> Iterator[Path]:
    """A busybox root with bin/sysprobe, of this module's own: the tests make nodes and fifos in it.
    Under /tmp, mode 0755: the container's root may be host uid 100000 (see conftest's busybox_rootfs)."""
    base = Path(tempfile.mkdtemp(prefix="escapes-", dir="/tmp"))
    base.chmod(0o755)
    try:
        root = busybox.build_rootfs(base / "rootfs")
        shutil.copyfile(probe, root / "bin/sysprobe")
        (root / "bin/sysprobe").chmod(0o755)
        yield root
    except busybox.BusyboxMissing as missing:
        pytest.skip(str(missing))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def box_run(rootfs: Path, *args: str, timeout: float = 60) -> Result:
    """`runtime run OPTIONS... --rootfs ROOTFS COMMAND...`: args are the options, then the command."""
    return runtime("run", "--rootfs", str(rootfs), *args, timeout=timeout)


@pytest.fixture
def box(rootfs: Path) -> Callable[..., Result]:
    def run_in_box(*args: str, timeout: float = 60) -> Result:
        return box_run(rootfs, *args, timeout=timeout)

    return run_in_box


def probe_lines(output: str) -> dict[str, str]:
    """`NAME result...` lines of the probe's output, by name (the last one of a name wins)."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        name, _, rest = line.partition(" ")
        if rest.startswith(("ok", "errno=")):
            found[name] = rest
    return found


# --- inherited file descriptors ------------------------------------------------------------------------

# Runs its argv[3:] with argv[1] as fd 7 and argv[2] as fd 8: the shell's `7</ 8>>FILE`.
WITH_FDS = "import os, sys; os.dup2(int(sys.argv[1]), 7); os.dup2(int(sys.argv[2]), 8); os.execv(sys.argv[3], sys.argv[3:])"
FD_SCRIPT = (
    "ls -l /proc/self/fd; "
    "head -2 /proc/self/fd/7/etc/shadow >/dev/null 2>&1; echo head=$?; "
    "(echo escaped >&8) 2>/dev/null; echo echo=$?; "
    "sysprobe read-fd 7; sysprobe write-fd 8"
)


def open_fds(ls_output: str) -> dict[int, str]:
    """fd -> link target from busybox `ls -l /proc/self/fd`. ls's own directory fd is gone by the time
    ls reads the links: it shows without a target, and is left out."""
    found: dict[int, str] = {}
    for line in ls_output.splitlines():
        match = re.search(r" (\d+) -> (.*)$", line)
        if match:
            found[int(match[1])] = match[2]
    return found


@pytest.mark.parametrize("userns", USERNS)
def test_only_stdio_crosses_into_the_container(rootfs: Path, tmp_path: Path, userns: str) -> None:
    target = tmp_path / "host-file"
    target.write_text("the host's\n")
    root_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    append_fd = os.open(target, os.O_WRONLY | os.O_APPEND)
    try:
        done = subprocess.run(
            [sys.executable, "-c", WITH_FDS, str(root_fd), str(append_fd), sys.executable, "-m", "runtime",
             "run", *USERNS[userns], "--rootfs", str(rootfs), "/bin/sh", "-c", FD_SCRIPT],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False, pass_fds=(root_fd, append_fd),
        )  # fmt: skip
    finally:
        os.close(root_fd)
        os.close(append_fd)
    assert done.returncode == 0, done.stderr
    fds = open_fds(done.stdout)
    assert sorted(fds) == [0, 1, 2], f"descriptors beyond stdio reached the container: {fds}"
    assert "head=0" not in done.stdout, "the host's /etc/shadow was read through an inherited directory fd"
    assert "echo=0" not in done.stdout, "a host file was written through an inherited fd"
    results = probe_lines(done.stdout)
    assert results["read-fd"] == "errno=EBADF"
    assert results["write-fd"] == "errno=EBADF"
    assert target.read_text() == "the host's\n"


# --- seccomp: Docker's default profile -----------------------------------------------------------------

# label -> (probe arguments, the result under Docker's default profile with Docker's default
# capabilities). Probe arguments are chosen so that nothing changes even where a call is allowed.
BLOCKED: dict[str, tuple[str, str]] = {
    "unshare-user": ("unshare-user", "errno=EPERM"),
    "unshare-user-then-cgroupns": ("unshare-user-then-cgroupns-mount-cgroup-v1", "errno=EPERM"),
    "clone-newuser": ("clone-newuser", "errno=EPERM"),
    # ENOSYS, so that a libc falls back to clone (Docker's errnoRet 38)
    "clone3": ("clone3", "errno=ENOSYS"),
    "keyctl": ("keyctl", "errno=EPERM"),
    "add_key": ("add_key", "errno=EPERM"),
    "request_key": ("request_key", "errno=EPERM"),
    "perf_event_open": ("perf_event_open", "errno=EPERM"),
    "userfaultfd": ("userfaultfd", "errno=EPERM"),
    "io_uring_setup": ("io_uring_setup", "errno=EPERM"),
    "personality-0x40000": ("personality 0x40000", "errno=EPERM"),
    "bpf": ("bpf", "errno=EPERM"),
    "mount-tmpfs": ("mount-tmpfs", "errno=EPERM"),
    "umount2": ("umount2", "errno=EPERM"),
    "setns": ("setns", "errno=EPERM"),
    "pivot_root": ("pivot_root", "errno=EPERM"),
    "kexec_load": ("kexec_load", "errno=EPERM"),
    "kexec_file_load": ("kexec_file_load", "errno=EPERM"),
    "init_module": ("init_module", "errno=EPERM"),
    "finit_module": ("finit_module", "errno=EPERM"),
    "delete_module": ("delete_module", "errno=EPERM"),
    "swapon": ("swapon", "errno=EPERM"),
    "swapoff": ("swapoff", "errno=EPERM"),
    "reboot": ("reboot", "errno=EPERM"),
    "acct": ("acct", "errno=EPERM"),
    "settimeofday": ("settimeofday", "errno=EPERM"),
    "clock_settime": ("clock_settime", "errno=EPERM"),
    "open_by_handle_at": ("open_by_handle_at", "errno=EPERM"),
    "fsopen": ("fsopen", "errno=EPERM"),
    "fsconfig": ("fsconfig", "errno=EPERM"),
    "fsmount": ("fsmount", "errno=EPERM"),
    "fspick": ("fspick", "errno=EPERM"),
    "move_mount": ("move_mount", "errno=EPERM"),
    "open_tree": ("open_tree", "errno=EPERM"),
    "mount_setattr": ("mount_setattr", "errno=EPERM"),
    "kcmp": ("kcmp", "errno=EPERM"),
    "pidfd_getfd": ("pidfd_getfd", "errno=EPERM"),
    "process_madvise": ("process_madvise", "errno=EPERM"),
    "iopl": ("iopl", "errno=EPERM"),
    "ioperm": ("ioperm", "errno=EPERM"),
    "quotactl": ("quotactl", "errno=EPERM"),
    "lookup_dcookie": ("lookup_dcookie", "errno=EPERM"),
    "syslog": ("syslog", "errno=EPERM"),
    "sethostname": ("sethostname", "errno=EPERM"),
    "fanotify_init": ("fanotify_init", "errno=EPERM"),
    "get_mempolicy": ("get_mempolicy", "errno=EPERM"),
    "set_mempolicy": ("set_mempolicy", "errno=EPERM"),
    "socket-af_alg": ("socket-alg", "errno=EPERM"),
    "socket-af_vsock": ("socket-vsock", "errno=EPERM"),
    # not in the profile, with numbers below its highest: the default action, EPERM
    "uselib": ("uselib", "errno=EPERM"),
    "ustat": ("ustat", "errno=EPERM"),
    "sysfs": ("sysfs", "errno=EPERM"),
    "_sysctl": ("_sysctl", "errno=EPERM"),
    "create_module": ("create_module", "errno=EPERM"),
    "nfsservctl": ("nfsservctl", "errno=EPERM"),
    "vserver": ("vserver", "errno=EPERM"),
    # above every number the profile knows: ENOSYS, as for a syscall newer than the profile
    "syscall-1000": ("syscall 1000", "errno=ENOSYS"),
}
ALLOWED: dict[str, tuple[str, str]] = {
    "personality-0x0": ("personality 0", "ok"),
    "personality-0x8": ("personality 0x8", "ok"),
    "personality-0x20000": ("personality 0x20000", "ok"),
    "personality-query": ("personality 0xffffffff", "ok"),
    "clone-plain": ("clone-plain", "ok"),
    # ptrace and process_vm_readv: allowed from kernel 4.8 on, as in Docker's profile
    "ptrace-traceme": ("ptrace", "ok"),
    "process_vm_readv": ("process_vm_readv", "ok"),
    # allowed in Docker's current profile (systemd needs it); older profiles listed it under CAP_SYS_ADMIN
    "name_to_handle_at": ("name_to_handle_at", "ok"),
    "socket-inet": ("socket-inet", "ok"),
    "socket-unix": ("socket-unix", "ok"),
    "getcwd": ("getcwd", "ok"),
    "memfd_create": ("memfd_create", "ok"),
    "pidfd_open": ("pidfd_open", "ok"),
    "chroot": ("chroot", "ok"),  # CAP_SYS_CHROOT is one of Docker's default capabilities
    "forks": ("forks 2", "ok"),
}


def sweep_script(cases: dict[str, tuple[str, str]]) -> str:
    """One line `LABEL|EXIT|OUTPUT` per case. A probe killed by the filter prints nothing and exits
    128+SIGSYS: that shows too."""
    return "".join(
        f'r=$(sysprobe {args} 2>/dev/null); echo "{label}|$?|$r"; ' for label, (args, _) in cases.items()
    )


@pytest.fixture(scope="module")
def sweep(rootfs: Path) -> Callable[[str], dict[str, str]]:
    """sweep(userns) -> label -> `EXIT|OUTPUT` of every BLOCKED and ALLOWED case, from one container per
    user namespace setting, run once for the module."""
    cache: dict[str, dict[str, str]] = {}

    def results(userns: str) -> dict[str, str]:
        if userns not in cache:
            done = box_run(rootfs, *USERNS[userns], "/bin/sh", "-c", sweep_script({**BLOCKED, **ALLOWED}))
            assert done.returncode == 0, done.stderr
            lines = (line.split("|", 1) for line in done.stdout.splitlines() if "|" in line)
            # key=value fields after the result (forks has one) are left out
            cache[userns] = {label: " ".join(rest.split(" ")[:2]) for label, rest in lines}
        return cache[userns]

    return results


def _expected_line(args: str, result: str) -> str:
    return f"0|{args.split()[0]} {result}"


@pytest.mark.parametrize("label", BLOCKED)
@pytest.mark.parametrize("userns", USERNS)
def test_what_dockers_profile_blocks_is_refused(
    sweep: Callable[[str], dict[str, str]], userns: str, label: str
) -> None:
    args, result = BLOCKED[label]
    assert sweep(userns)[label] == _expected_line(args, result)


@pytest.mark.parametrize("label", ALLOWED)
@pytest.mark.parametrize("userns", USERNS)
def test_what_dockers_profile_allows_still_works(
    sweep: Callable[[str], dict[str, str]], userns: str, label: str
) -> None:
    args, result = ALLOWED[label]
    assert sweep(userns)[label] == _expected_line(args, result)


BUSYBOX_SCRIPT = (
    "echo shell; ls / >/dev/null && echo ls; ps >/dev/null && echo ps; "
    "wget --help >/dev/null 2>&1 && echo wget; "
    "mkfifo /tmp/fifo-$$ && test -p /tmp/fifo-$$ && rm /tmp/fifo-$$ && echo mkfifo; "
    "x=$(echo sub) && echo $x; "
    "grep Seccomp: /proc/self/status"
)


@pytest.mark.parametrize("userns", USERNS)
def test_busybox_works_under_the_filter(box: Callable[..., Result], userns: str) -> None:
    done = box(*USERNS[userns], "/bin/sh", "-c", BUSYBOX_SCRIPT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:6] == ["shell", "ls", "ps", "wget", "mkfifo", "sub"], done.stderr
    assert re.search(r"^Seccomp:\s+2$", done.stdout, re.M), (
        "the container's command runs without a seccomp filter"
    )


def test_seccomp_unconfined_turns_the_filter_off(box: Callable[..., Result]) -> None:
    done = box(
        "--security-opt",
        "seccomp=unconfined",
        "/bin/sh",
        "-c",
        "grep Seccomp: /proc/self/status; sysprobe keyctl",
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^Seccomp:\s+0$", done.stdout, re.M), done.stdout


def test_a_custom_profile_in_dockers_format_replaces_the_default(
    box: Callable[..., Result], tmp_path: Path
) -> None:
    profile = tmp_path / "no-getcwd.json"
    # SCMP_ACT_ERRNO without errnoRet: EPERM, as in Docker
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    done = box(
        "--security-opt", f"seccomp={profile}", "/bin/sh", "-c",
        "sysprobe getcwd; sysprobe personality 0x40000; grep Seccomp: /proc/self/status",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = probe_lines(done.stdout)
    assert results.get("getcwd") == "errno=EPERM", done.stdout
    assert results.get("personality") == "ok", "the default profile still applied under a custom one"
    assert re.search(r"^Seccomp:\s+2$", done.stdout, re.M), done.stdout


# --- limits that cannot be lifted from inside -------------------------------------------------------------


@pytest.mark.parametrize("userns", USERNS)
def test_a_memory_limit_holds_after_an_attempt_to_lift_it(box: Callable[..., Result], userns: str) -> None:
    script = "sysprobe unshare-user-then-cgroupns-mount-cgroup-v1; exec sysprobe alloc 64"
    done = box(*USERNS[userns], "--memory", "32m", "--pids-limit", "20", "/bin/sh", "-c", script)
    escape = probe_lines(done.stdout).get("unshare-user-then-cgroupns-mount-cgroup-v1")
    assert escape is not None, f"no probe line: {done.stdout}"
    assert escape.startswith("errno="), f"limits rewritten from inside: {done.stderr}"
    assert "alloc ok" not in done.stdout, "64 MB were allocated under --memory 32m"
    assert done.returncode == 137, done.stderr


SLEEPS = "(for i in $(seq 35); do sleep 30 >/dev/null 2>&1 & echo $!; done) 2>/dev/null | wc -l"


@pytest.mark.parametrize("userns", USERNS)
def test_a_pids_limit_holds_after_an_attempt_to_lift_it(box: Callable[..., Result], userns: str) -> None:
    script = f"sysprobe unshare-user-then-cgroupns-mount-cgroup-v1; {SLEEPS}; sysprobe forks 35"
    done = box(*USERNS[userns], "--memory", "32m", "--pids-limit", "20", "/bin/sh", "-c", script)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    results = probe_lines(done.stdout)
    assert results["unshare-user-then-cgroupns-mount-cgroup-v1"].startswith("errno="), done.stderr
    sleeps = int(next(line for line in lines if line.isdigit()))
    # besides the sleeps: the init, the shell, the subshell and wc
    assert sleeps + 4 <= 20, f"{sleeps} background sleeps under --pids-limit 20"
    assert re.fullmatch(r"errno=EAGAIN forked=(\d+)", results["forks"]), results["forks"]
    assert int(results["forks"].rsplit("=", 1)[1]) + 3 <= 20, results["forks"]


CGROUP_SCRIPT = (
    "cat /proc/self/cgroup; "
    "grep -E ' - cgroup2? ' /proc/self/mountinfo | while read -r _ _ _ _ mp _; do "
    'if mkdir "$mp/escape-$$" 2>/dev/null; then rmdir "$mp/escape-$$"; echo "made a cgroup in $mp"; fi; done; '
    "sysprobe unshare-user-then-cgroupns-mkdir-cgroup-v1"
)


@pytest.mark.parametrize("userns", USERNS)
def test_own_cgroup_namespace_and_no_cgroup_can_be_made(box: Callable[..., Result], userns: str) -> None:
    done = box(*USERNS[userns], "/bin/sh", "-c", CGROUP_SCRIPT)
    assert done.returncode == 0, done.stderr
    memberships = [line for line in done.stdout.splitlines() if re.fullmatch(r"\d+:[^:]*:.*", line)]
    assert memberships, done.stdout
    assert all(line.endswith(":/") for line in memberships), f"not rooted at its own cgroup: {memberships}"
    assert "made a cgroup" not in done.stdout, done.stdout
    made = probe_lines(done.stdout)["unshare-user-then-cgroupns-mkdir-cgroup-v1"]
    assert made != "ok", f"a cgroup was made through a new cgroup namespace: {done.stderr}"


# --- device nodes --------------------------------------------------------------------------------------

DEFAULT_NODES = ("null", "zero", "full", "random", "urandom", "ptmx")
NODES_SCRIPT = "".join(f"sysprobe open /dev/{node} | sed 's|^open|{node}|'; " for node in DEFAULT_NODES)


def assert_default_nodes_work(output: str) -> None:
    results = probe_lines(output)
    assert {node: results.get(node) for node in DEFAULT_NODES} == dict.fromkeys(DEFAULT_NODES, "ok")


@pytest.mark.parametrize("userns", USERNS)
def test_mknod_gives_no_usable_node_and_leaves_none(
    rootfs: Path, box: Callable[..., Result], userns: str
) -> None:
    name = f"node-{uuid.uuid4().hex[:8]}"
    script = (
        f"sysprobe mknod-block 7 0 /tmp/{name}-blk; sysprobe open /tmp/{name}-blk | sed 's|^open|open-blk|'; "
        f"sysprobe mknod-char 1 1 /tmp/{name}-mem; sysprobe open /tmp/{name}-mem | sed 's|^open|open-mem|'; "
        + NODES_SCRIPT
    )
    try:
        done = box(*USERNS[userns], "/bin/sh", "-c", script)
        left = sorted(path.name for path in (rootfs / "tmp").glob(f"{name}-*"))
    finally:
        for path in (rootfs / "tmp").glob(f"{name}-*"):
            path.unlink()
    assert done.returncode == 0, done.stderr
    results = probe_lines(done.stdout)
    for kind in ("blk", "mem"):
        made = results[f"mknod-{'block' if kind == 'blk' else 'char'}"]
        assert made == "errno=EPERM" or results[f"open-{kind}"] in DEVICE_REFUSALS, (kind, results)
    assert left == [], f"device nodes left in the --rootfs directory on the host: {left}"
    assert_default_nodes_work(done.stdout)


class Store:
    """A store of the module's own under /tmp (0755, traversable by the container's host uid), and
    `runtime` with RUNTIME_STORE pointing at it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="escapes-store-", dir="/tmp"))
        self.base.chmod(0o755)
        self.path = self.base / "store"
        self.env = {**os.environ, "RUNTIME_STORE": str(self.path)}

    def __call__(self, *args: str, timeout: float = 60) -> Result:
        return subprocess.run(
            [sys.executable, "-m", "runtime", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "runtime", *args],
            cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def layer_file(self, relative: str) -> Path:
        """Where a layer's file is in the store, found as root."""
        [found] = [
            d / "diff" / relative
            for d in (self.path / "layers").iterdir()
            if os.path.lexists(d / "diff" / relative)
        ]
        return found


HOSTILE_IMAGE = "escapes-hostile:1"


def hostile_image(probe: Path) -> images.Image:
    """busybox and sysprobe, a 0666 block device node 7:0 (a host loop device), a 0666 char node 1:1
    (memory), and a setuid-root copy of sysprobe: what neither a container nor a local user may use."""
    extra = [
        images.regular("bin/sysprobe", probe.read_bytes(), 0o755),
        images.directory("evil"),
        images.Entry("evil/loop0", "blockdev", mode=0o666, major=7, minor=0),
        images.Entry("evil/mem", "chardev", mode=0o666, major=1, minor=1),
        images.regular("evil/sysprobe-suid", probe.read_bytes(), 0o4755),
    ]
    return images.Image(layers=[images.busybox_layer(), extra], cmd=["/bin/sh"], ref=HOSTILE_IMAGE)


@pytest.fixture(scope="module")
def hostile_store(probe: Path) -> Iterator[Store]:
    try:
        image = hostile_image(probe)
    except images.NoBusybox as missing:
        pytest.skip(str(missing))
    store = Store()
    try:
        tar = images.write_docker_save(image, store.base / "hostile.tar")
        done = store("image", "import", str(tar))
        assert done.returncode == 0, done.stderr
        tar.unlink()
        yield store
    finally:
        shutil.rmtree(store.base, ignore_errors=True)


IMAGE_NODES_SCRIPT = (
    "sysprobe open /evil/loop0 | sed 's|^open|loop0|'; sysprobe open /evil/mem | sed 's|^open|mem|'; "
    + NODES_SCRIPT
)


@pytest.mark.parametrize("userns", USERNS)
@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_device_nodes_from_an_image_cannot_be_opened(hostile_store: Store, storage: str, userns: str) -> None:
    done = hostile_store(
        "run", *USERNS[userns], "--storage", storage, HOSTILE_IMAGE, "/bin/sh", "-c", IMAGE_NODES_SCRIPT
    )
    assert done.returncode == 0, done.stderr
    results = probe_lines(done.stdout)
    assert results.get("loop0") in DEVICE_REFUSALS, f"the image's block device 7:0 opened: {results}"
    assert results.get("mem") in DEVICE_REFUSALS, f"the image's char device 1:1 opened: {results}"
    assert_default_nodes_work(done.stdout)


# --- the store, as another local user ----------------------------------------------------------------------


def as_nobody(attempt: Callable[[], str]) -> str:
    """attempt()'s result in a forked child that is uid and gid 65534 without supplementary groups."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write, attempt().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer


def outcome(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error.errno))
    return "ok"


def run_setuid(path: Path) -> str:
    """`ids ok uid=.. euid=..` from the setuid probe, or the errno name of the failed exec."""
    try:
        done = subprocess.run(
            [str(path), "ids"], capture_output=True, text=True, timeout=DEADLINE, check=False
        )
    except OSError as error:
        return errno.errorcode.get(error.errno or 0, str(error.errno))
    return done.stdout.strip()


def test_another_user_cannot_list_or_stat_layer_contents(hostile_store: Store) -> None:
    layer_dir = hostile_store.layer_file("evil")
    suid = hostile_store.layer_file("evil/sysprobe-suid")
    short_links = sorted((hostile_store.path / "l").iterdir())
    assert outcome(lambda: os.listdir(layer_dir)) == "ok"  # as root
    seen = {
        "list a layer's directory": as_nobody(lambda: outcome(lambda: os.listdir(layer_dir))),
        "stat a layer's file": as_nobody(lambda: outcome(lambda: os.stat(suid))),
        "list the layers": as_nobody(lambda: outcome(lambda: os.listdir(hostile_store.path / "layers"))),
        "list a layer through l/": as_nobody(
            lambda: outcome(lambda: [os.listdir(link) for link in short_links])
        ),
    }
    assert seen == dict.fromkeys(seen, "EACCES")


def test_another_user_gets_no_root_from_an_image_s_setuid_binary(hostile_store: Store) -> None:
    suid = hostile_store.layer_file("evil/sysprobe-suid")
    assert stat.S_IMODE(suid.lstat().st_mode) == 0o4755
    assert suid.lstat().st_uid == 0  # as the image says
    ran = as_nobody(lambda: run_setuid(suid))
    assert "euid=0" not in ran, f"a layer's setuid-root binary gave euid 0: {ran}"


def test_another_user_cannot_open_an_image_s_device_node(hostile_store: Store) -> None:
    node = hostile_store.layer_file("evil/loop0")
    assert stat.S_ISBLK(node.lstat().st_mode)
    opened = as_nobody(lambda: outcome(lambda: os.close(os.open(node, os.O_RDONLY))))
    assert opened in ("EACCES", "EPERM"), f"a layer's block device 7:0 opened as uid {NOBODY}: {opened}"


def wait_for_container_dir(name: str) -> str:
    """The id of the container named `name`, once its state records an init."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            container_id = os.readlink(f"{STATE_ROOT}/names/{name}")
            state = Path(f"{STATE_ROOT}/containers/{container_id}/state").read_text()
            if "init_pid=" in state and "init_pid=0\n" not in state:
                return container_id
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no state for {name} within {DEADLINE} s"
        time.sleep(0.02)


def test_another_user_gets_no_root_from_a_running_copy_mode_container(hostile_store: Store) -> None:
    """A copy-mode root is a directory in the store while its container runs: the setuid binary
    and the node in it are the image's."""
    name = f"esc-{uuid.uuid4().hex[:10]}"
    proc = hostile_store.popen(
        "run", "--name", name, "--storage", "copy", HOSTILE_IMAGE, "/bin/sh", "-c", "echo up; exec sleep 30"
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "up\n", proc.stderr.read() if proc.stderr else ""
        container_id = wait_for_container_dir(name)
        roots = sorted((hostile_store.path / "containers").glob("*/*/evil"))
        assert roots, f"no copy of the image's root for {container_id} in the store"
        suid, node = roots[0] / "sysprobe-suid", roots[0] / "loop0"
        ran = as_nobody(lambda: run_setuid(suid))
        opened = as_nobody(lambda: outcome(lambda: os.close(os.open(node, os.O_RDONLY))))
    finally:
        proc.terminate()
        proc.communicate(timeout=DEADLINE)
    assert "euid=0" not in ran, f"the running container's setuid-root binary gave euid 0: {ran}"
    assert opened in ("EACCES", "EPERM"), f"the running container's block device 7:0 opened: {opened}"
