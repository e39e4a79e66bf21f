"""`runtime` as users install it: a wheel built from this checkout, installed with pip into a fresh venv,
run as the console script on that venv's PATH. The editable install that the other tests use keeps the
checkout's Python library reachable after the container's root is switched, which hid a crash (os.execvpe
importing `warnings` lazily). Needs root, busybox-static and network access to the package index (pip
fetches setuptools to build the wheel); skipped with the reason otherwise."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import images
from tests.integration.conftest import REPO

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_leftovers")]

Result = subprocess.CompletedProcess[str]


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The `runtime` script of a fresh venv that holds only the wheel built from this checkout."""
    if os.geteuid() != 0:
        pytest.skip("runtime run needs root")
    base = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build the wheel here: {build.stderr.strip().splitlines()[-1:]}")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    wheel = next((base / "dist").glob("kcompat-*.whl"))
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "--no-deps", str(wheel)], check=True)
    script = venv / "bin/runtime"
    assert script.exists(), "the wheel did not install the runtime console script"
    yield script
    shutil.rmtree(base, ignore_errors=True)


def installed_run(script: Path, *args: str) -> Result:
    """Run from a directory away from the checkout, so that nothing can import it from the cwd."""
    return subprocess.run(
        [str(script), *args], cwd="/", capture_output=True, text=True, timeout=60, check=False
    )


def test_the_script_is_the_installed_copy(installed: Path) -> None:
    python = installed.parent / "python"
    where = subprocess.run(
        [str(python), "-c", "import runtime; print(runtime.__file__)"],
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in where.stdout, where.stdout


def test_a_command_found_on_path(installed: Path, busybox_rootfs: Path) -> None:
    result = installed_run(installed, "run", "--rootfs", str(busybox_rootfs), "sh", "-c", "echo hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_command_that_is_nowhere_on_path(installed: Path, busybox_rootfs: Path) -> None:
    result = installed_run(installed, "run", "--rootfs", str(busybox_rootfs), "no-such-command")
    assert result.returncode == 127, result.stderr
    assert "command not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_user_given_by_name_and_a_workdir(installed: Path, busybox_rootfs: Path) -> None:
    result = installed_run(
        installed,
        "run",
        "-u",
        "nobody",
        "-w",
        "/tmp/work",
        "--rootfs",
        str(busybox_rootfs),
        "sh",
        "-c",
        "id -u; pwd",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["65534", "/tmp/work"]


@pytest.fixture
def store() -> Iterator[Path]:
    """A store the container's root (host uid 100000 in a private user namespace) can traverse to."""
    base = Path(tempfile.mkdtemp(prefix="installed-store-", dir="/tmp"))
    base.chmod(0o755)
    os.environ["RUNTIME_STORE"] = str(base / "store")
    try:
        yield base / "store"
    finally:
        del os.environ["RUNTIME_STORE"]
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.usefixtures("store")
@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_an_image_whose_cmd_is_a_bare_name(installed: Path, tmp_path: Path, storage: str) -> None:
    try:
        image = dataclasses.replace(
            images.busybox_image(), cmd=["sh", "-c", "echo from the image"], ref="bare:1"
        )
    except images.NoBusybox as missing:
        pytest.skip(str(missing))
    tar = images.write_docker_save(image, tmp_path / "bare.tar")
    imported = installed_run(installed, "image", "import", str(tar))
    assert imported.returncode == 0, imported.stderr
    result = installed_run(installed, "run", "--storage", storage, "bare:1")
    assert (result.returncode, result.stdout) == (0, "from the image\n"), result.stderr
