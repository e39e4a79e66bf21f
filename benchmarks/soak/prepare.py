"""What the runs need: the runtime's command, a busybox rootfs and the test image imported into the
store under the soak's own name; and the image's removal at the end."""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from benchmarks.soak.runner import Setup, call_runtime
from tests import busybox, images


class SoakError(Exception):
    """The soak cannot start; the message says why and what to do."""


def runtime_command(text: str) -> tuple[str, ...]:
    words = tuple(shlex.split(text))
    if not words:
        raise SoakError(
            "--runtime is empty: give the command, e.g. --runtime runtime or --runtime 'python3 -m runtime'"
        )
    found = shutil.which(words[0])
    if found is None:
        raise SoakError(
            f"{words[0]!r} is not on PATH: install the project (pip install .) or pass --runtime 'python3 -m runtime'"
        )
    return (found, *words[1:])


def prepare(directory: Path, runtime: tuple[str, ...], marker: str, store: str) -> Setup:
    """A busybox rootfs, and the test image imported into the store under the soak's own name."""
    directory.chmod(0o755)  # container root may be host uid 100000: it must reach the rootfs
    try:
        rootfs = busybox.build_rootfs(directory / "rootfs")
        image = dataclasses.replace(images.busybox_image(), ref=f"soak-image-{os.getpid()}:1")
    except busybox.BusyboxMissing as missing:
        raise SoakError(f"{missing} (apt-get install busybox-static)") from None
    tarball = images.write_docker_save(image, directory / "image.tar")
    done = call_runtime(runtime, "image", "import", str(tarball), "--name", image.ref, timeout=300)
    if done.returncode != 0:
        raise SoakError(f"runtime image import failed (exit {done.returncode}): {done.stderr.strip()[:500]}")
    return Setup(runtime, str(rootfs), image.ref, marker, store)


def remove_image(setup: Setup, say: Callable[[str], None]) -> None:
    done = call_runtime(setup.runtime, "image", "rm", setup.image, timeout=120)
    if done.returncode != 0:
        say(
            f"cleanup: runtime image rm {setup.image} failed (exit {done.returncode}): {done.stderr.strip()[:300]}"
        )
