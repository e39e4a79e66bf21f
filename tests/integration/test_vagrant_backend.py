"""End to end through Vagrant: one cell of the compat suite, then nothing left behind.

Runs when vagrant, vagrant-libvirt and the libvirt daemons are installed (the tests session installs
them as root); otherwise skipped with the reason. About 3 minutes here: `vagrant up` under TCG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_one_cell_through_vagrant_passes_and_leaves_nothing(tmp_path: Path) -> None:
    pytest.importorskip("testinfra", reason="the compat suite's SSH libraries: pip install .[compat]")
    from compat.harness import vagrant

    why = vagrant.usable()
    if why:
        pytest.skip(why)
    reports = tmp_path / "reports"
    argv = [sys.executable, "-m", "pytest", str(REPO / "compat" / "tests"), "--backend", "vagrant", "--cells", "6.1-v2",
            "-p", "no:cacheprovider", "-q", "--reports", str(reports)]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1500, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    results = json.loads((reports / "results.json").read_text())
    (cell,) = results["cells"]
    assert (cell["id"], cell["infra_error"]) == ("6.1-v2", None)
    assert cell["features"] == cell["expected"]
    assert {test["outcome"] for test in cell["tests"]} <= {"passed", "expected-absent"}
    # Nothing is left: no namespace, no daemon started for the run, no domain, no volume.
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert "kcompat" not in namespaces
    assert not [name for name in os.listdir("/var/lib/libvirt/images") if name.startswith("kcompat")]
    leftover = subprocess.run(
        ["pgrep", "-f", "qemu-system-x86_64.*kcompat-"], capture_output=True, text=True, check=False
    )
    assert leftover.stdout == ""
