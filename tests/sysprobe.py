"""sysprobe, the escape tests' static probe (tests/sysprobe.c), built with the host's gcc.

`sysprobe NAME [ARGS...]` makes one named system call or sequence and prints `NAME ok` or
`NAME errno=<ENAME>`; see the source for the actions. It is linked statically so that it runs in any
root filesystem, busybox's included. The binary is cached by the digest of its source and of the
compiler's version under $KCOMPAT_CACHE/sysprobe (default ~/.cache/kcompat/sysprobe), or under the
temporary directory when that cannot be written."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.busybox import is_static_elf

SOURCE = Path(__file__).with_name("sysprobe.c")
FLAGS = ("-static", "-O2", "-Wall", "-Wextra", "-Werror")
COMPILE_TIMEOUT = 120


class ProbeUnavailable(Exception):
    """The probe cannot be built here; the message says what to install."""


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ProbeUnavailable("gcc is missing: install gcc")
    # gcc prints the bare name back when it has no such file: then there is no static libc.
    libc = subprocess.run(
        [gcc, "-print-file-name=libc.a"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    if not os.path.isabs(libc) or not os.path.exists(libc):
        raise ProbeUnavailable("static libc (libc.a) is missing: install libc6-dev")
    return gcc


def _digest(gcc: str) -> str:
    version = subprocess.run([gcc, "--version"], capture_output=True, check=False, timeout=30).stdout
    inputs = hashlib.sha256(SOURCE.read_bytes())
    inputs.update(version)
    inputs.update(" ".join(FLAGS).encode())
    return inputs.hexdigest()[:16]


def _cache_dirs() -> list[Path]:
    configured = os.environ.get("KCOMPAT_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache" / "kcompat"
    return [base / "sysprobe", Path(tempfile.gettempdir()) / f"kcompat-sysprobe-{os.geteuid()}"]


def _compile(gcc: str, target: Path) -> None:
    """Into a file beside the target, then renamed: a concurrent build never sees half a binary."""
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    try:
        done = subprocess.run(
            [gcc, *FLAGS, "-o", str(partial), str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
            timeout=COMPILE_TIMEOUT,
        )
        if done.returncode != 0:
            raise ProbeUnavailable(f"gcc could not build {SOURCE.name}: {done.stderr.strip()[-2000:]}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def build() -> Path:
    """The path of a built, static sysprobe; raises ProbeUnavailable with the reason."""
    gcc = _gcc()
    name = f"sysprobe-{_digest(gcc)}"
    failures: list[str] = []
    for directory in _cache_dirs():
        target = directory / name
        if is_static_elf(str(target)):
            return target
        try:
            directory.mkdir(parents=True, exist_ok=True)
            _compile(gcc, target)
        except OSError as error:
            failures.append(f"{directory}: {error.strerror or error}")
            continue
        if not is_static_elf(str(target)):
            raise ProbeUnavailable(f"{target} is not a static executable: install libc6-dev")
        return target
    raise ProbeUnavailable(f"no writable cache for the probe ({'; '.join(failures)})")


def install(rootfs: Path, name: str = "sysprobe") -> Path:
    """Copies the probe to <rootfs>/bin/<name>, mode 0755; returns the path inside the container."""
    target = rootfs / "bin" / name
    shutil.copyfile(build(), target)
    target.chmod(0o755)
    return Path("/bin") / name
