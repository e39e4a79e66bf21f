"""Kernel faults end to end: a candidate whose kernel crashes in the middle of its cell, and Debian's
generic 6.1 kernel qualified from its .deb.

The crash is real: `compat qualify --inject-fault panic@TEST` has the guest's kernel crash itself
(sysrq) when TEST starts. It must read as a kernel panic during that test in every report, leave no
QEMU behind, and give a regression verdict (exit 1), never "could not decide" (exit 2).

Needs root, QEMU and the network to Debian's archive; about two minutes under TCG.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
TARGET = "test_pids_limit_stops_forks"
HEADLINE = f"kernel panic during cgroups::{TARGET}: kernel panic: sysrq triggered crash"
EXCERPT = "Kernel panic - not syncing: sysrq triggered crash"


def _needs_vms() -> None:
    if os.geteuid() != 0:
        pytest.skip("building and booting the guests needs root")
    missing = [tool for tool in ("qemu-system-x86_64", "debootstrap", "mkfs.ext4") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"missing {', '.join(missing)}: install qemu-system-x86 debootstrap e2fsprogs")


def _qualify(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "import sys; from compat.cli import main; sys.exit(main())", "qualify"]
    return subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=1500, check=False)


def _qemus_under(directory: Path) -> list[str]:
    found = subprocess.run(
        ["pgrep", "-af", "qemu-system-x86_64"], capture_output=True, text=True, check=False
    )
    return [line for line in found.stdout.splitlines() if str(directory) in line]


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    _needs_vms()
    out = tmp_path_factory.mktemp("crash")
    done = _qualify(
        "--kernel", "6.1", "--baseline", "6.1", "--flavours", "v2",
        "--inject-fault", f"panic@{TARGET}", "--report", str(out),
    )  # fmt: skip
    return done, out


def test_a_crash_mid_cell_is_a_regression_not_undecided(
    crashed: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, out = crashed
    assert done.returncode == 1, done.stdout + done.stderr
    regressions = (out / "qualify.md").read_text().split("## Regressions", 1)[1].split("\n## ", 1)[0]
    first = next(line for line in regressions.splitlines() if line.startswith("- "))
    assert HEADLINE in first
    assert "reproduced 2/2" in first
    assert not _qemus_under(out)


def test_every_report_says_kernel_panic_during_the_test_with_title_and_excerpt(
    crashed: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _, out = crashed
    candidate = out / "candidate"
    document = json.loads((candidate / "results.json").read_text())
    (cell,) = document["cells"]
    assert cell["infra_error"] is None
    (fault,) = [fault for fault in cell["faults"] if fault["crashed"]]
    assert (fault["type"], fault["during"], fault["seen"], fault["tries"]) == (
        "panic",
        f"cgroups::{TARGET}",
        2,
        2,
    )
    assert EXCERPT in fault["excerpt"]
    outcomes = {test["name"]: test["outcome"] for test in cell["tests"]}
    assert outcomes[TARGET] == "failed"
    assert "not-run" in outcomes.values()
    for name in ("matrix.md", "matrix.html"):
        text = (candidate / name).read_text()
        assert HEADLINE in text, name
        assert EXCERPT in text, name
    suite = ET.parse(candidate / "junit" / "6.1-v2.xml").getroot()
    failure = next(case.find("failure") for case in suite.iter("testcase") if case.get("name") == TARGET)
    assert failure is not None
    assert HEADLINE in (failure.get("message") or "")
    assert EXCERPT in (failure.text or "")
    assert int(suite.get("skipped") or 0) > 0  # the tests the crash stopped
    terminal = subprocess.run(
        [sys.executable, "-m", "compat.results", str(candidate / "results.json"), "--out", str(out / "again")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert terminal.returncode == 1
    assert "CRASH" in terminal.stdout
    assert HEADLINE in terminal.stdout


@pytest.mark.parametrize("flavour", ["amd64", "rt-amd64"])
def test_debians_generic_and_rt_61_kernels_qualify_from_a_deb_or_a_directory(
    tmp_path: Path, flavour: str
) -> None:
    """linux-image-<release>-amd64 and -rt-amd64 have ext4 as a module: the initramfs brings it, and the
    candidate gets a verdict (0 or 1), not an infra error. The rt kernel is given as a directory (the
    .deb unpacked), whose config also says =m."""
    _needs_vms()
    from compat.images.apt import extract_deb
    from compat.images.kernel_download import flavour_deb

    deb = flavour_deb("6.1", flavour)
    candidate = deb
    if flavour == "rt-amd64":  # unpacked as a user would, and indexed as the refusal's hint says
        candidate = extract_deb(deb, tmp_path / "kernel")
        (release,) = (path.name for path in (candidate / "lib" / "modules").iterdir())
        subprocess.run(["depmod", "-b", str(candidate), release], check=True)
    report = tmp_path / "report"
    done = _qualify(
        "--kernel", str(candidate), "--baseline", "6.1", "--flavours", "v2", "--report", str(report)
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    (cell,) = json.loads((report / "candidate" / "results.json").read_text())["cells"]
    assert cell["infra_error"] is None
    assert cell["faults"] == []
    assert cell["release"].endswith(f"-{flavour}")
    assert sum(test["outcome"] == "passed" for test in cell["tests"]) >= 20
    assert not _qemus_under(tmp_path)
