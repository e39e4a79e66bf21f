"""The start path stays lean, and the command's front door (--version, --help) speaks to its users.

What `runtime run` imports must not load the modules that cost start-up time (see the developer guide):
a fresh `python -S` imports the start path and says what else got loaded. The rule is kept by this test,
not by the comments in those files.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from runtime import cli

REPO = Path(__file__).resolve().parents[2]
START_PATH = (
    "runtime.cli",
    "runtime.runcli",
    "runtime.container",
    "runtime.decide",
    "runtime.launch",
    "runtime.child",
    "runtime.rootfs",
    "runtime.state",
    "runtime.cgroups.manager",
    "runtime.seccomp.install",
    "runtime.seccomp.profile",
    "runtime.seccomp.bpf",
    "runtime.storage.store",
)
# Each costs milliseconds at start-up; importlib.metadata is for --version, on the argparse path only.
SLOW = (
    "argparse",
    "logging",
    "dataclasses",
    "enum",
    "typing",
    "re",
    "json",
    "pathlib",
    "subprocess",
    "socket",
    "ctypes.util",
    "importlib.metadata",
)


def loaded_by(code: str) -> set[str]:
    """The modules of SLOW that a fresh interpreter (no site, so nothing a .pth file imports) has
    loaded after running code; the names are taken before anything is imported to report them."""
    report = f"import sys as _sys\nprint(' '.join(sorted(set({SLOW!r}) & set(_sys.modules))))\n"
    done = subprocess.run(
        [sys.executable, "-S", "-c", code + report],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split())


def test_importing_the_start_path_loads_nothing_slow() -> None:
    imports = "".join(f"import {name}\n" for name in START_PATH)
    assert loaded_by(imports) == set()


def test_a_run_refused_at_parsing_loads_nothing_slow() -> None:
    """What the verb itself imports on its way, not only the modules' top levels."""
    assert loaded_by("import runtime.cli\nruntime.cli.main(['run', '--no-such-option'])\n") == set()


def test_the_check_sees_a_slow_import(tmp_path: Path) -> None:
    """The test can fail: a start-path module that imports json is caught."""
    (tmp_path / "leaky.py").write_text("import json\n")
    assert "json" in loaded_by(f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\nimport leaky\n")


# --- the command's front door ----------------------------------------------------------------------------


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"runtime {metadata.version('kcompat')}\n"


def test_version_without_package_metadata_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "DISTRIBUTION", "no-such-distribution-here")
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out == "runtime (unknown: not installed)\n"


def test_help_describes_the_tool_not_its_imports(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "container runtime" in shown
    assert "runtime check" in shown
    assert "runtime run" in shown
    assert cli.__doc__ is not None
    assert " ".join(cli.__doc__.split()) not in shown  # a note for developers
