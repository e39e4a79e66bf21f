"""`runtime run --cpuset-cpus` on this host: the container runs on the CPUs asked for, its cgroup says
so, and CPU lists the host cannot honour are refused before anything exists. Needs root, busybox-static
and, for pinning to CPU 1, two CPUs online."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.cgroups import cpulist
from tests.integration.conftest import Background

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leftovers")]

Result = subprocess.CompletedProcess[str]
ONLINE = Path("/sys/devices/system/cpu/online")


def online() -> cpulist.Ranges:
    ranges = cpulist.parse(ONLINE.read_text().strip())
    assert ranges is not None, ONLINE.read_text()
    return ranges


def cpuset_dir(state: dict[str, str]) -> Path:
    """The container's directory with a cpuset.cpus: in the v1 cpuset hierarchy, or its cgroup2 leaf
    where cpuset lives in v2."""
    found = [Path(d) for d in state["cgroups"].split(":") if Path(d, "cpuset.cpus").exists()]
    assert len(found) == 1, state["cgroups"]
    return found[0]


@pytest.fixture
def box(run: Callable[..., Result], busybox_rootfs: Path) -> Callable[..., Result]:
    def run_in_box(*args: str) -> Result:
        return run("--rootfs", str(busybox_rootfs), *args)

    return run_in_box


@pytest.mark.parametrize("cpus", ["1", "0-1"])
def test_the_container_runs_on_the_cpus_asked_for(start: Callable[..., Background], cpus: str) -> None:
    if cpulist.first_missing(cpulist.parse(cpus) or [], online()) is not None:
        pytest.skip(f"CPUs {cpus} are not all online here ({ONLINE.read_text().strip()})")
    container = start(
        "--cpuset-cpus", cpus, "sh", "-c", "grep Cpus_allowed_list /proc/self/status; exec sleep 30"
    )
    said = container.wait_for_output("\n")
    directory = cpuset_dir(container.state())
    pinned = (directory / "cpuset.cpus").read_text().strip()
    container.proc.terminate()
    code, _, stderr = container.finish()
    assert said == f"Cpus_allowed_list:\t{cpus}\n", stderr
    assert pinned == cpus
    assert code == 128 + signal.SIGTERM, stderr


def test_without_the_option_the_container_has_every_cpu(box: Callable[..., Result]) -> None:
    done = box("grep", "Cpus_allowed_list", "/proc/self/status")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Cpus_allowed_list:\t{cpulist.spell(online())}\n"


@pytest.mark.parametrize("text", ["1-x", "3-1", "1,,2", ""])
def test_a_bad_list_is_refused_in_one_line(box: Callable[..., Result], text: str) -> None:
    done = box("--cpuset-cpus", text, "true")
    assert done.returncode == 125
    assert done.stderr == f"runtime: error: --cpuset-cpus {text}: not a CPU list (e.g. 0-1,3)\n"


def test_an_offline_cpu_is_refused_naming_the_online_ones(box: Callable[..., Result]) -> None:
    beyond = online()[-1][1] + 1
    done = box("--cpuset-cpus", f"0,{beyond}", "true")
    assert done.returncode == 125
    wanted = cpulist.spell(cpulist.parse(f"0,{beyond}") or [])  # "0-1" where only CPU 0 is online
    said = f"--cpuset-cpus {wanted}: CPU {beyond} is not online here (online: {cpulist.spell(online())})"
    assert done.stderr == f"runtime: error: {said}\n"
