"""Importing a 100 MB image, and a container's root from it in overlay mode versus copy mode.

Prints: the import time of a docker-save tarball and of a gzipped OCI layout (each into an empty
store); the time to set up the root (copy: flatten the layers; overlay: mount them, in a private mount
namespace); and a whole `runtime run IMAGE /bin/true` in each mode. Needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.timing import line, timed  # noqa: E402
from runtime.features import probes  # noqa: E402 - after the path is set
from runtime.linux import constants as c  # noqa: E402
from runtime.linux import libc  # noqa: E402
from runtime.storage.flatten import flatten  # noqa: E402
from runtime.storage.importer import import_image  # noqa: E402
from runtime.storage.overlay import mount_options  # noqa: E402
from runtime.storage.store import Store  # noqa: E402
from tests import images  # noqa: E402


def fresh_import(source: Path, scratch: Path) -> Callable[[], object]:
    def run() -> object:
        store = Store(str(scratch / f"store-{time.monotonic_ns()}"))
        try:
            return import_image(store, str(source))
        finally:
            shutil.rmtree(store.path, ignore_errors=True)

    return run


def overlay_mount(store: Store, layers: list[str], scratch: Path) -> Callable[[], object]:
    """Mount the layers in a forked child's private mount namespace: the mount dies with it."""

    def mount_once() -> None:
        base = Path(tempfile.mkdtemp(dir=scratch))
        upper, work, merged = (str(base / name) for name in ("upper", "work", "merged"))
        for path in (upper, work, merged):
            os.mkdir(path)
        options = mount_options(store, layers, upper, work)

        def child() -> None:
            libc.unshare(c.CLONE_NEWNS)
            libc.mount(None, "/", None, c.MS_REC | c.MS_PRIVATE)
            os.chdir(store.path)
            libc.mount("overlay", merged, "overlay", 0, options)

        try:
            outcome = probes.in_child(child)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        if not outcome.ok:
            raise SystemExit(f"overlay mount failed: {outcome.errno} at {outcome.step}")

    return mount_once


def copy_root(store: Store, layers: list[str], scratch: Path) -> Callable[[], object]:
    def run() -> None:
        dest = scratch / f"flat-{time.monotonic_ns()}"
        try:
            flatten([store.layer_dir(layer) for layer in layers], str(dest))
        finally:
            shutil.rmtree(dest, ignore_errors=True)

    return run


def whole_run(store: Store, mode: str) -> Callable[[], object]:
    env = {**os.environ, "RUNTIME_STORE": store.path, "PYTHONPATH": str(REPO)}

    def run() -> object:
        argv = [
            sys.executable,
            "-m",
            "runtime",
            "run",
            "--storage",
            mode,
            "--userns",
            "host",
            "big:1",
            "/bin/true",
        ]
        return subprocess.run(argv, env=env, check=True, capture_output=True)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=100)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("image_speed: needs root (layers keep their owners; whiteouts are device nodes)")
        return 1
    image = images.big_image(args.size_mb)
    image = images.Image(layers=image.layers, cmd=["/bin/true"], ref="big:1")
    with tempfile.TemporaryDirectory(prefix="image-speed-") as name:
        scratch = Path(name)
        scratch.chmod(0o755)
        docker = images.write_docker_save(image, scratch / "big.tar")
        oci = images.write_oci_layout(image, scratch / "big-oci", gzip_layers=True)
        size = args.size_mb
        print(line(f"import docker-save ({size} MB)", timed(fresh_import(docker, scratch), args.runs), size))
        print(
            line(f"import OCI layout, gzip ({size} MB)", timed(fresh_import(oci, scratch), args.runs), size)
        )
        store = Store(str(scratch / "store"))
        layers = import_image(store, str(docker)).record.layers
        print(line("root setup: overlay mount", timed(overlay_mount(store, layers, scratch), args.runs * 5)))
        print(line("root setup: copy (flatten)", timed(copy_root(store, layers, scratch), args.runs)))
        print(line("runtime run --storage overlay", timed(whole_run(store, "overlay"), args.runs * 3)))
        print(line("runtime run --storage copy", timed(whole_run(store, "copy"), args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
