"""The real detection on this host, cross-checked against util-linux and coreutils doing the same thing.

These run as root (the usual CI) and probe as an unprivileged user too: a forked child drops to
uid 65534 and runs detect() there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.features import report
from runtime.features.host import detect
from runtime.features.model import CgroupMode, Features, Status
from runtime.features.probes import UNPRIVILEGED_UID

pytestmark = pytest.mark.integration

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="probing as root and as another user needs root")
needs_util_linux = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("unshare", "setpriv", "stat")),
    reason="util-linux or coreutils missing",
)


def succeeds(*argv: str) -> bool:
    return subprocess.run(argv, capture_output=True, check=False, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def features() -> Features:
    return detect()


@pytest.fixture(scope="module")
def as_nobody() -> dict[str, object]:
    """runtime check --json, computed by detect() in a child running as uid 65534."""
    if os.geteuid() != 0:
        pytest.skip("dropping to another user needs root")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(UNPRIVILEGED_UID, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
            os.setresuid(UNPRIVILEGED_UID, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
            found = detect()
            with os.fdopen(write_end, "w") as out:
                json.dump(report.to_json(found, report.build_checks(found)), out)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    return dict(json.loads(text))


def test_kernel_release(features: Features) -> None:
    assert features.kernel.release == os.uname().release


@needs_util_linux
def test_cgroup_mode_agrees_with_statfs(features: Features) -> None:
    top = subprocess.run(
        ["stat", "-f", "-c", "%T", "/sys/fs/cgroup"], capture_output=True, text=True, check=False
    )
    if top.stdout.strip() == "cgroup2fs":
        assert features.cgroups.mode is CgroupMode.V2
    elif Path("/sys/fs/cgroup/unified/cgroup.controllers").exists():
        assert features.cgroups.mode is CgroupMode.HYBRID
    else:
        assert features.cgroups.mode in (CgroupMode.V1, CgroupMode.NONE)


def test_every_v1_controller_is_where_it_is_mounted(features: Features) -> None:
    for controller in features.cgroups.controllers.values():
        if controller.mount and controller.where.value == "v1":
            assert os.path.ismount(controller.mount)
            assert (Path(controller.mount) / "cgroup.procs").exists()


def test_v2_controllers_are_listed_by_the_kernel(features: Features) -> None:
    if features.cgroups.v2_mount is None:
        pytest.skip("no cgroup2 hierarchy on this host")
    listed = Path(features.cgroups.v2_mount, "cgroup.controllers").read_text().split()
    in_v2 = {c.name for c in features.cgroups.controllers.values() if c.where.value == "v2"}
    assert in_v2 - {"perf_event"} == set(listed)


@needs_root
@needs_util_linux
def test_userns_for_root_agrees_with_unshare(features: Features) -> None:
    assert features.userns.root.usable == succeeds("unshare", "--user", "--map-root-user", "true")


@needs_root
@needs_util_linux
def test_userns_for_nobody_agrees_with_unshare(features: Features) -> None:
    drop = ["setpriv", f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups"]
    expected = succeeds(*drop, "unshare", "--user", "--map-root-user", "true")
    assert features.userns.unprivileged.usable == expected


@needs_root
@needs_util_linux
def test_overlay_mountable_agrees_with_mount(features: Features) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        script = (
            f"mount -t tmpfs t {scratch} && mkdir {scratch}/l {scratch}/u {scratch}/w {scratch}/m && "
            f"mount -t overlay o -o lowerdir={scratch}/l,upperdir={scratch}/u,workdir={scratch}/w {scratch}/m"
        )
        expected = succeeds("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
    assert features.overlay.mountable.usable == expected


@needs_root
@needs_util_linux
def test_pivot_root_agrees_with_pivot_root(features: Features) -> None:
    if not shutil.which("pivot_root"):
        pytest.skip("no pivot_root command")
    with tempfile.TemporaryDirectory() as scratch:
        script = f"mount -t tmpfs t {scratch} && mkdir {scratch}/old && cd {scratch} && pivot_root . old"
        expected = succeeds("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
    assert features.pivot_root.usable.usable == expected


@pytest.fixture
def host_state() -> Iterator[None]:
    before = (Path("/proc/self/mountinfo").read_text(), sorted(os.listdir(tempfile.gettempdir())))
    yield
    after = (Path("/proc/self/mountinfo").read_text(), sorted(os.listdir(tempfile.gettempdir())))
    assert after == before, "detection left a mount or a scratch directory behind"


@pytest.mark.usefixtures("host_state")
def test_detection_leaves_nothing_behind(features: Features) -> None:
    again = detect()
    assert again.cgroups.mode is features.cgroups.mode
    v2 = features.cgroups.v2_mount
    if v2:
        assert not [name for name in os.listdir(v2) if name.startswith("runtime-probe-")]


def test_root_verdict(features: Features) -> None:
    checks = report.build_checks(features)
    required = [c for c in checks if c.group is report.Group.REQUIRED]
    assert report.can_run_containers(checks) == all(c.finding.status is Status.OK for c in required)


def test_nobody_sees_root_only_probes_as_unknown(as_nobody: dict[str, object]) -> None:
    assert as_nobody["euid"] == UNPRIVILEGED_UID
    userns = as_nobody["userns"]
    overlay = as_nobody["overlay"]
    assert isinstance(userns, dict)
    assert isinstance(overlay, dict)
    assert userns["root"] is None
    assert overlay["mountable"] is None  # a trial mount needs root: unknown, never guessed


def test_nobody_agrees_with_root_about_unprivileged_userns(
    features: Features, as_nobody: dict[str, object]
) -> None:
    userns = as_nobody["userns"]
    assert isinstance(userns, dict)
    assert userns["unprivileged"] == features.userns.unprivileged.usable
    checks = as_nobody["checks"]
    assert isinstance(checks, list)
    required = {c["name"]: c["status"] for c in checks if c["group"] == "required"}
    assert required["user namespaces (unprivileged)"] == ("ok" if userns["unprivileged"] else "disabled")
    assert as_nobody["can_run_containers"] == all(status == "ok" for status in required.values())


def test_cli_exit_code_matches_the_json_verdict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime", "check", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    doc = json.loads(result.stdout)
    assert result.returncode == (0 if doc["can_run_containers"] else 1)
    for key in ("schema", "kernel", "cgroup", "userns", "overlay", "pivot_root"):
        assert key in doc
