"""`runtime run`'s decisions and refusals, on recorded hosts: nothing is created when it refuses."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from runtime import container, decide, output, runcli, spec
from runtime.cgroups import layout
from runtime.cgroups.base import Limits
from runtime.cgroups.manager import plan
from runtime.cgroups.v1 import V1Cgroup
from runtime.cgroups.v2 import V2Cgroup
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.linux.sysroot import Sysroot
from tests import hosts

KCONFIG = Path(__file__).parents[1] / "data" / "kconfig"


def recorded(spec_: hosts.HostSpec, tmp_path: Path, config: str | None = None) -> Sysroot:
    if config:
        text = (KCONFIG / f"debian-{config}.config").read_text()
        spec_ = hosts.with_files(spec_, {f"boot/config-{spec_.osrelease}": text})
    root, _, _ = hosts.build(spec_, tmp_path)
    return root


def request(**limits: int | float) -> spec.ContainerSpec:
    return spec.ContainerSpec("c0ffee", "c0ffee", "/nonexistent", ("true",), limits=Limits(**limits))  # type: ignore[arg-type]


def cgroup_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("sys/fs/cgroup/**/runtime"))


def test_memory_limit_on_v1_only_6_12_is_refused_naming_memcg_v1(tmp_path: Path) -> None:
    root = recorded(hosts.v1_only_6_12(), tmp_path, config="6.12")
    with pytest.raises(Failure) as refusal:
        decide.choose_cgroups(request(memory=64 * 1024**2), root)
    assert refusal.value.code == EXIT_RUNTIME
    assert "--memory needs the memory controller" in refusal.value.message
    assert "CONFIG_MEMCG_V1" in refusal.value.message
    assert "cgroup v2" in refusal.value.hint
    assert cgroup_dirs(tmp_path) == []  # refused before anything was made


def test_memory_limit_on_v1_only_6_12_without_its_config_still_says_why(tmp_path: Path) -> None:
    root = recorded(hosts.v1_only_6_12(), tmp_path)
    with pytest.raises(Failure) as refusal:
        decide.choose_cgroups(request(memory=64 * 1024**2), root)
    assert "CONFIG_MEMCG_V1" in refusal.value.message  # "kernels built without CONFIG_MEMCG_V1, such as …"


def test_memory_limit_with_memory_disabled_at_boot(tmp_path: Path) -> None:
    root = recorded(hosts.memory_disabled(hosts.v2_only_6_12()), tmp_path)
    with pytest.raises(Failure, match="cgroup_disable=memory"):
        decide.choose_cgroups(request(memory=64 * 1024**2), root)


def test_cpu_limit_on_v1_only_6_12_is_fine(tmp_path: Path) -> None:
    root = recorded(hosts.v1_only_6_12(), tmp_path, config="6.12")
    manager = decide.choose_cgroups(request(cpus=0.5), root)
    assert manager is not None
    assert "cpu,cpuacct" in [d.rsplit("/", 3)[-3] for d in manager.directories()]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        # hybrid 6.1: memory in v1; the v2 leaf is there too (every hierarchy gets one), with no controller
        (hosts.hybrid_6_1, [V1Cgroup, V2Cgroup]),
        # hybrid 6.12: memory lives in v2, pids in v1: both
        (hosts.hybrid_6_12, [V1Cgroup, V2Cgroup]),
        (hosts.v2_only_6_12, [V2Cgroup]),
    ],
)
def test_each_controller_is_used_where_it_lives(make: object, expected: list[type], tmp_path: Path) -> None:
    root = recorded(make(), tmp_path)  # type: ignore[operator]
    manager = plan(layout.read(root), "c0ffee", Limits(memory=64 * 1024**2, pids=10))
    assert [type(part) for part in manager.parts] == expected
    memory_part = next(p for p in manager.parts if "memory" in p.controllers)
    assert isinstance(memory_part, V2Cgroup if make is not hosts.hybrid_6_1 else V1Cgroup)


@pytest.mark.parametrize(
    ("make", "number", "knob"),
    [
        (hosts.userns_max_zero, errno.ENOSPC, "user.max_user_namespaces=0"),
        (hosts.userns_not_built, errno.EINVAL, "CONFIG_USER_NS"),
    ],
)
def test_userns_failure_names_the_knob(make: object, number: int, knob: str, tmp_path: Path) -> None:
    root = recorded(make(), tmp_path)  # type: ignore[operator]
    assert knob in decide.userns_failure(number, root)


# --- the command line -----------------------------------------------------------------------------------


def test_options_stop_at_the_command() -> None:
    options, command = runcli.parse(["-m", "64m", "--rootfs=/r", "-e", "A=1", "-e", "B", "sh", "-c", "ls -l"])
    assert options == {"--memory": ["64m"], "--rootfs": ["/r"], "--env": ["A=1", "B"]}
    assert command == ["sh", "-c", "ls -l"]


def test_double_dash_ends_options() -> None:
    options, command = runcli.parse(["--read-only", "--", "--not-an-option"])
    assert options == {"--read-only": [""]}
    assert command == ["--not-an-option"]


@pytest.mark.parametrize("argv", [["--bogus", "true"], ["--memory"]])
def test_bad_options_exit_125(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert runcli.main(argv) == EXIT_RUNTIME
    assert "runtime: error:" in capsys.readouterr().err


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert runcli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for long, _short, _value, _help in runcli.OPTIONS:
        assert long in text


@pytest.mark.parametrize(
    ("text", "value"),
    [("64m", 64 * 1024**2), ("1g", 1024**3), ("8192k", 8 * 1024**2), ("64mb", 64 * 1024**2)],
)
def test_memory_sizes(text: str, value: int) -> None:
    assert spec.parse_memory(text) == value


@pytest.mark.parametrize("text", ["lots", "1m", "-5m", ""])
def test_bad_memory_sizes(text: str) -> None:
    with pytest.raises(Failure):
        spec.parse_memory(text)


def test_user_names_come_from_the_rootfs(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\nstaff:x:50:\n")
    user = spec.parse_user("app", str(tmp_path / "etc/passwd"), str(tmp_path / "etc/group"))
    assert (user.uid, user.gid) == (1000, 1001)
    user = spec.parse_user("app:staff", str(tmp_path / "etc/passwd"), str(tmp_path / "etc/group"))
    assert (user.uid, user.gid) == (1000, 50)
    with pytest.raises(Failure, match="not in the container's /etc/passwd"):
        spec.parse_user("ghost", str(tmp_path / "etc/passwd"), str(tmp_path / "etc/group"))


def test_rootfs_must_be_a_directory_and_not_slash(tmp_path: Path) -> None:
    with pytest.raises(Failure):
        spec.check_rootfs(str(tmp_path / "missing"))
    with pytest.raises(Failure):
        spec.check_rootfs("/")
    assert spec.check_rootfs(str(tmp_path)) == os.path.realpath(tmp_path)


def test_private_userns_with_the_limit_at_zero_is_refused_up_front(tmp_path: Path) -> None:
    root = recorded(hosts.userns_max_zero(), tmp_path)
    with pytest.raises(Failure) as refusal:
        decide.choose_userns("private", root)
    assert refusal.value.code == EXIT_RUNTIME
    assert "user.max_user_namespaces=0" in refusal.value.message


def test_auto_userns_falls_back_to_the_host_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = recorded(hosts.userns_max_zero(), tmp_path)
    output.verbose = True
    try:
        assert decide.choose_userns("auto", root) == ""
    finally:
        output.verbose = False
    assert (
        "userns: host, because user namespaces are unusable here: user.max_user_namespaces=0"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize("mode", ["auto", "private"])
def test_userns_is_used_where_it_works(mode: str, tmp_path: Path) -> None:
    assert decide.choose_userns(mode, recorded(hosts.v2_only_6_12(), tmp_path)) == mode


def test_preserve_fds_refuses_a_directory_among_them(tmp_path: Path) -> None:
    directory = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(Failure, match=f"fd {directory} is a directory") as refusal:
            spec.parse_preserve_fds(str(directory - 2))
    finally:
        os.close(directory)
    assert refusal.value.code == EXIT_RUNTIME


def test_preserve_fds_passes_files_and_pipes() -> None:
    read, write = os.pipe()
    try:
        assert spec.parse_preserve_fds(str(max(read, write) - 2)) == max(read, write) - 2
    finally:
        os.close(read)
        os.close(write)
    with pytest.raises(Failure, match="not a whole number"):
        spec.parse_preserve_fds("-1")


@pytest.mark.parametrize(
    ("items", "expected"),
    [([], "default"), (["seccomp=unconfined"], "unconfined"), (["seccomp=/etc/p.json"], "/etc/p.json")],
)
def test_security_opt_names_the_seccomp_profile(items: list[str], expected: str) -> None:
    assert spec.parse_security_opt(items) == expected


@pytest.mark.parametrize("item", ["apparmor=unconfined", "seccomp", "seccomp=", "no-new-privileges"])
def test_security_opt_refuses_what_it_does_not_understand(item: str) -> None:
    with pytest.raises(Failure, match="is not understood"):
        spec.parse_security_opt([item])


def test_a_bad_seccomp_profile_is_refused_before_anything_exists(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": "read"}]}')
    with pytest.raises(Failure, match="names") as refusal:
        decide.choose_seccomp(str(profile))
    assert refusal.value.code == EXIT_RUNTIME


def test_unconfined_keeps_the_mknod_rule_where_no_cgroup_holds_devices() -> None:
    assert container._seccomp_filter(None, deny_device_mknod=False) is None
    fallback = container._seccomp_filter(None, deny_device_mknod=True)
    assert fallback is not None
    assert len(fallback[0]) > 8
