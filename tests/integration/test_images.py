"""`runtime run IMAGE` on this host: images imported with `runtime image import` run in overlay and copy
mode with their layers, Env, Cmd and WorkingDir; containers of one image do not share writes; nothing
is left mounted or in the store; an image in use cannot be removed. Needs root and busybox-static."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.storage.store import Store
from tests import images
from tests.integration.conftest import REPO, host_mounts, runtime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.usefixtures("no_leftovers"),
]

Result = subprocess.CompletedProcess[str]
IMAGE = "busybox-test:1"
DEADLINE = 10.0


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three-layer busybox image as a docker-save tarball (gzip layers) and an OCI layout. Only the
    importer (host root) reads them: pytest's 0700 directory is fine."""
    try:
        image = images.busybox_image()
    except images.NoBusybox as missing:
        pytest.skip(str(missing))
    base = tmp_path_factory.mktemp("images")
    return {
        "docker": images.write_docker_save(image, base / "busybox.tar", gzip_layers=True),
        "oci": images.write_oci_layout(image, base / "busybox-oci"),
    }


class StoreCli:
    """A store under /tmp that the container's root (host uid 100000) can traverse, and `runtime` with
    RUNTIME_STORE pointing at it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="runtime-images-", dir="/tmp"))
        self.base.chmod(0o755)
        self.store = Store(str(self.base / "store"))
        self.env = {**os.environ, "RUNTIME_STORE": self.store.path}
        self.started: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, timeout: float = 60) -> Result:
        return subprocess.run(
            [sys.executable, "-m", "runtime", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        self.started.append(
            subprocess.Popen(
                [sys.executable, "-m", "runtime", *args],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        return self.started[-1]

    def containers(self) -> list[str]:
        return sorted(os.listdir(self.store.sub("containers")))

    def import_(self, path: Path) -> Result:
        done = self("image", "import", str(path))
        assert done.returncode == 0, done.stderr
        return done

    def stop(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=DEADLINE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.communicate()
        self.started.clear()

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def shared(image_files: dict[str, Path]) -> Iterator[StoreCli]:
    cli = StoreCli()
    cli.import_(image_files["docker"])
    yield cli
    cli.remove()


def _checked(cli: StoreCli) -> Iterator[StoreCli]:
    yield cli
    cli.stop()
    left = cli.containers()
    for name in left:  # not to fail the next test of a shared store as well
        shutil.rmtree(cli.store.sub("containers", name), ignore_errors=True)
    assert left == [], "container roots left in the store"


@pytest.fixture
def store(shared: StoreCli) -> Iterator[StoreCli]:
    """The store with the busybox image; after the test, its containers/ must be empty."""
    yield from _checked(shared)


@pytest.fixture
def fresh(image_files: dict[str, Path]) -> Iterator[StoreCli]:
    """An empty store of the test's own."""
    cli = StoreCli()
    try:
        yield from _checked(cli)
    finally:
        cli.remove()


def listed(name: str) -> bool:
    return any(line.split()[:1] == [name] for line in runtime("ps").stdout.splitlines()[1:])


def wait_listed(*names: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not all(listed(name) for name in names):
        assert time.monotonic() < deadline, f"{names} not all in `runtime ps` within {DEADLINE} s"
        time.sleep(0.05)


def new_name() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as file:
        return [line for line in file if path in line]


# --- import and run ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_an_imported_image_runs_its_cmd_with_its_env_and_workdir(
    fmt: str, image_files: dict[str, Path], fresh: StoreCli
) -> None:
    done = fresh.import_(image_files[fmt])
    assert "3 layers (3 new)" in done.stdout
    assert re.search(r"sha256:([0-9a-f]{12})", done.stdout), done.stdout
    ran = fresh("run", IMAGE)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "app: hi from /app\n"


@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_layers_env_and_command_in_each_storage_mode(storage: str, store: StoreCli) -> None:
    script = (
        "test -e /etc/doomed && echo doomed-present || echo doomed-absent; ls /var/cache/old; cat /etc/motd; "
        "echo greeting=$GREETING; pwd; ls -l /usr/bin/sh2; test -x /usr/bin/sh2 && echo sh2-resolves; "
        "ls -i /usr/share/layer2.txt /usr/share/layer2-link"
    )
    done = store("run", "-v", "--storage", storage, "-e", "GREETING=yo", IMAGE, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert f"runtime: storage: {storage}" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == ["doomed-absent", "new", "layer 3", "greeting=yo", "/app"]
    assert lines[5].endswith("/usr/bin/sh2 -> /bin/busybox")
    assert lines[6] == "sh2-resolves"  # an absolute symlink, in the container's root
    inodes = {line.split()[0] for line in lines[7:9]}
    assert len(inodes) == 1, lines[7:9]  # the hard link survived both modes

    done = store("run", "--storage", storage, "-e", "GREETING=yo", IMAGE)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "app: yo from /app\n"

    done = store("run", "--storage", storage, IMAGE, "echo", "replaced")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "replaced\n"


def test_two_containers_of_one_image_do_not_see_each_others_writes(store: StoreCli) -> None:
    names = {tag: new_name() for tag in ("a", "b")}
    script = "echo {tag} > /tmp/from-{tag} && sleep 2 && ls -a /tmp"
    procs = {
        tag: store.popen(
            "run", "--name", name, "--storage", "overlay", IMAGE, "sh", "-c", script.format(tag=tag)
        )
        for tag, name in names.items()
    }
    wait_listed(*names.values())  # both run at once
    for tag, proc in procs.items():
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out.split() == [".", "..", f"from-{tag}"]

    later = store("run", "--storage", "overlay", IMAGE, "ls", "-a", "/tmp")
    assert later.returncode == 0, later.stderr
    assert later.stdout.split() == [".", ".."]
    written = [
        os.path.join(directory, name)
        for directory, dirs, files in os.walk(store.store.sub("layers"))
        for name in dirs + files
        if name.startswith("from-")
    ]
    assert written == []


@pytest.mark.parametrize(
    ("storage", "root"), [("overlay", ["merged", "upper", "work"]), ("copy", ["rootfs"])]
)
def test_no_mount_on_the_host_and_nothing_left_in_the_store(
    storage: str, root: list[str], store: StoreCli
) -> None:
    mounts = host_mounts()
    proc = store.popen("run", "--storage", storage, IMAGE, "sh", "-c", "echo up && sleep 1")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "up\n", proc.communicate(timeout=30)
    # while it runs: its root is in the store, and the host sees no mount of it
    [container] = store.containers()
    assert sorted(os.listdir(store.store.sub("containers", container))) == root
    assert mounts_under(store.store.path) == []
    assert host_mounts() == mounts
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert host_mounts() == mounts
    assert store.containers() == []


def test_rm_of_an_image_in_use_is_refused_until_it_ends(
    image_files: dict[str, Path], fresh: StoreCli
) -> None:
    fresh.import_(image_files["docker"])
    name = new_name()
    proc = fresh.popen("run", "--name", name, IMAGE, "sleep", "3")
    wait_listed(name)

    refused = fresh("image", "rm", IMAGE)
    assert refused.returncode != 0
    assert "in use" in refused.stderr
    assert name in refused.stderr
    assert IMAGE in fresh("image", "ls").stdout
    assert len(os.listdir(fresh.store.sub("layers"))) == 3

    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    removed = fresh("image", "rm", IMAGE)
    assert removed.returncode == 0, removed.stderr
    assert "deleted sha256:" in removed.stdout
    for part in ("layers", "l", "images", "refs"):
        assert os.listdir(fresh.store.sub(part)) == []
