"""`runtime run --rootfs R /bin/true` against `runc run` and `crun run` on the same busybox rootfs.

Runs are interleaved (runtime, runc, crun, runtime, ...) so that a busy moment hurts all alike, and
medians are printed with the ratio to runc. Target: runtime at or below runc's median. Needs root,
the host's static busybox (Debian's busybox-static), and runc or crun where they are installed.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.busybox import build_rootfs  # noqa: E402 - after the path is set

RUNC_LIKE = "runtime --userns host"
INSTALLED = (
    "`runtime` on PATH, --userns host"  # runc's default spec has no user namespace: the like-for-like run
)


def runtime_commands(rootfs: Path) -> dict[str, list[str]]:
    run = ["run", "--rootfs", str(rootfs)]
    python = [sys.executable, "-S", "-m", "runtime"]
    commands = {
        RUNC_LIKE: [*python, *run, "--userns", "host", "/bin/true"],
        "runtime (private userns)": [*python, *run, "/bin/true"],
    }
    installed = shutil.which("runtime")
    if installed:  # the command users type, with its launcher and site
        commands[INSTALLED] = [installed, *run, "--userns", "host", "/bin/true"]
    return commands


def limited_command(rootfs: Path) -> list[str]:
    """With a limit the runtime makes cgroups, as runc always does. Measured apart: moving a process
    into a cgroup starts an RCU grace period, and one run's grace period speeds up the next run's move,
    so interleaving it with runc would flatter runc."""
    return [sys.executable, "-S", "-m", "runtime", "run", "--rootfs", str(rootfs), "--userns", "host",
            "--memory", "64m", "/bin/true"]  # fmt: skip


def oci_bundle(tool: str, rootfs: Path, directory: Path) -> Path:
    """A bundle made by the tool's own `spec`, pointed at the rootfs, running /bin/true."""
    bundle = directory / f"bundle-{tool}"
    bundle.mkdir()
    subprocess.run([tool, "spec"], cwd=bundle, check=True, capture_output=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["root"] = {"path": str(rootfs), "readonly": False}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


class Contender:
    def __init__(self, label: str, argv: list[str], env: dict[str, str], unique: bool = False) -> None:
        self.label = label
        self.argv = argv
        self.env = env
        self.unique = unique  # runc and crun need a new container id per run
        self.samples: list[float] = []
        self.failure = ""

    def once(self, index: int) -> None:
        argv = [*self.argv, f"bench-{os.getpid()}-{index}"] if self.unique else self.argv
        start = time.perf_counter()
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - start
        if result.returncode == 0:
            self.samples.append(elapsed)
        elif not self.failure:
            self.failure = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]


def contenders(rootfs: Path, scratch: Path) -> list[Contender]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    found = [Contender(label, argv, env) for label, argv in runtime_commands(rootfs).items()]
    for tool in ("runc", "crun"):
        if shutil.which(tool):
            bundle = oci_bundle(tool, rootfs, scratch)
            found.append(Contender(tool, [tool, "run", "--bundle", str(bundle)], env, unique=True))
        else:
            print(f"{tool}: not installed (apt-get install {tool})")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    runs = parser.parse_args().runs
    if os.geteuid() != 0:
        print("run_speed: needs root (containers are made as root)")
        return 1
    compileall.compile_dir(str(REPO / "runtime"), quiet=1)  # as a package install would
    with tempfile.TemporaryDirectory(prefix="run-speed-") as scratch:
        Path(scratch).chmod(0o755)  # container root may be an unprivileged host uid
        rootfs = build_rootfs(Path(scratch) / "rootfs")
        field = contenders(rootfs, Path(scratch))
        for index in range(runs):
            for contender in field:
                contender.once(index)
        limited = Contender("runtime --memory 64m", limited_command(rootfs), field[0].env)
        for index in range(runs):
            limited.once(index)
    report(field)
    print("measured apart, after the others:")
    report([limited])
    return 0


def report(field: list[Contender]) -> None:
    medians = {}
    for contender in field:
        if not contender.samples:
            print(f"{contender.label:<34} failed: {contender.failure}")
            continue
        ms = sorted(s * 1000 for s in contender.samples)
        medians[contender.label] = statistics.median(ms)
        note = f"   ({len(ms)} of the runs; failed: {contender.failure})" if contender.failure else ""
        print(
            f"{contender.label:<34} median {statistics.median(ms):6.1f} ms   min {ms[0]:6.1f}   max {ms[-1]:6.1f}{note}"
        )
    for label in (INSTALLED, RUNC_LIKE):
        ours = medians.get(label)
        if ours and "runc" in medians:
            ratio = ours / medians["runc"]
            verdict = "at or below" if ratio <= 1 else "above"
            print(f"{label} / runc: {ratio:.2f} ({verdict} runc's median)")


if __name__ == "__main__":
    raise SystemExit(main())
