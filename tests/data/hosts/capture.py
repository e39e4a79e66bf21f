#!/usr/bin/env python3
"""Record what runtime.features.detect() reads on this host, for the unit tests.

    python3 tests/data/hosts/capture.py tests/data/hosts/<name> [--force]

The recording is a small tree that Sysroot(base=<dir>, live=False) reads in place of / (see
tests/hosts.py load_recording), plus the probe outcomes this host gave:

  proc/sys/kernel/osrelease, proc/cgroups, proc/filesystems, sys/kernel/cgroup/features   copied
  proc/self/mountinfo    only /, /proc, /dev, /sys and the mounts at or under /sys/fs/cgroup
  proc/cmdline           the kernel's parameters; what follows "--" belongs to init and is dropped
  proc/self/cgroup       only the "0::" line (the v2 cgroup, the one detection reads)
  proc/sys/user/max_*_namespaces, proc/sys/kernel/unprivileged_userns_clone and
  proc/sys/kernel/apparmor_restrict_unprivileged_userns                            copied when present
  proc/pressure/cpu      an empty file when it exists (only its existence is read)
  proc/self/ns/<type>    an empty file per namespace type
  sys/fs/cgroup/...      each hierarchy's root: the names of its cgroup.* files (v1) or of all its files
                         (v2), empty except cgroup.controllers and cgroup.subtree_control; for v2 also
                         the non-root cgroup detection looks at (its file names) and its parent's
                         cgroup.subtree_control
  lib/modules/<release>/modules.dep, modules.builtin   the lines naming overlay only
  outcomes.json          runtime.features.probes.run_all(euid), encoded ("ok", "err EPERM uid_map", ...)
  euid                   who ran the probes

The running kernel's config (/boot/config-*, /lib/modules/*/config, /proc/config.gz) is not recorded:
it is large, and on a recorded tree detection then reports no config (Features.notes is empty).
Nothing else is read from the recorded host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from runtime.features import probes
from runtime.features.probes import Outcome

CGROUP_ROOT = "/sys/fs/cgroup"
KEPT_MOUNTS = ("/", "/proc", "/dev", "/sys", "/sys/fs")
COPIED = (
    "proc/sys/kernel/osrelease",
    "proc/cgroups",
    "proc/filesystems",
    "sys/kernel/cgroup/features",
    "proc/sys/kernel/unprivileged_userns_clone",
    "proc/sys/kernel/apparmor_restrict_unprivileged_userns",
)
WITH_CONTENT = ("cgroup.controllers", "cgroup.subtree_control")


class Recorder:
    def __init__(self, source: Path, dest: Path) -> None:
        self.source = source
        self.dest = dest

    def read(self, relative: str) -> str | None:
        try:
            return (self.source / relative.lstrip("/")).read_text()
        except OSError:
            return None

    def write(self, relative: str, text: str) -> None:
        path = self.dest / relative.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def copy(self, relative: str) -> None:
        text = self.read(relative)
        if text is not None:
            self.write(relative, text)

    def files_in(self, relative: str) -> list[str]:
        directory = self.source / relative.lstrip("/")
        try:
            return sorted(
                entry.name for entry in os.scandir(directory) if entry.is_file(follow_symlinks=False)
            )
        except OSError:
            return []

    def dirs_in(self, relative: str) -> list[str]:
        directory = self.source / relative.lstrip("/")
        try:
            return sorted(
                entry.name for entry in os.scandir(directory) if entry.is_dir(follow_symlinks=False)
            )
        except OSError:
            return []

    def listing(self, relative: str, names: list[str]) -> None:
        """The directory with empty files of these names, except the ones whose content matters."""
        (self.dest / relative.lstrip("/")).mkdir(parents=True, exist_ok=True)
        for name in names:
            text = self.read(f"{relative}/{name}") if name in WITH_CONTENT else ""
            self.write(f"{relative}/{name}", text or "")


def _mount_point(line: str) -> str:
    fields = line.split()
    return fields[4].replace("\\040", " ") if len(fields) > 4 else ""


def _kept(point: str) -> bool:
    return point in KEPT_MOUNTS or point == CGROUP_ROOT or point.startswith(CGROUP_ROOT + "/")


def capture(source: Path, dest: Path, outcomes: Mapping[str, Outcome], euid: int) -> None:
    """Record the tree under source (a live / or another recording) into dest."""
    rec = Recorder(source, dest)
    for relative in COPIED:
        rec.copy(relative)
    for name in rec.files_in("proc/sys/user"):
        if name.startswith("max_") and name.endswith("_namespaces"):
            rec.copy(f"proc/sys/user/{name}")
    if (source / "proc/pressure/cpu").exists():
        rec.write("proc/pressure/cpu", "")
    for name in sorted(os.listdir(source / "proc/self/ns")):
        rec.write(f"proc/self/ns/{name}", "")

    cmdline = (rec.read("proc/cmdline") or "").strip()
    kernel_part = cmdline.split(" -- ", 1)[0].removesuffix(" --")
    rec.write("proc/cmdline", kernel_part + "\n")

    lines = (rec.read("proc/self/mountinfo") or "").splitlines()
    kept = [line for line in lines if _kept(_mount_point(line))]
    rec.write("proc/self/mountinfo", "".join(line + "\n" for line in kept))

    own = [line for line in (rec.read("proc/self/cgroup") or "").splitlines() if line.startswith("0::")]
    if own:
        rec.write("proc/self/cgroup", own[0] + "\n")

    for line in kept:
        fstype = line.split(" - ", 1)[1].split()[0] if " - " in line else ""
        point = _mount_point(line)
        if fstype == "cgroup":
            rec.listing(point, [name for name in rec.files_in(point) if name.startswith("cgroup.")])
        elif fstype == "cgroup2":
            rec.listing(point, rec.files_in(point))
            _v2_child(rec, point, own[0][3:].strip() if own else None)

    release = (rec.read("proc/sys/kernel/osrelease") or "").strip()
    for name in ("modules.dep", "modules.builtin"):
        text = rec.read(f"lib/modules/{release}/{name}")
        if text is not None:
            overlay = [line for line in text.splitlines() if "overlay" in line]
            rec.write(f"lib/modules/{release}/{name}", "".join(line + "\n" for line in overlay))

    rec.write(
        "outcomes.json", json.dumps({k: v.encode() for k, v in sorted(outcomes.items())}, indent=1) + "\n"
    )
    rec.write("euid", f"{euid}\n")


def _v2_child(rec: Recorder, v2_mount: str, own: str | None) -> None:
    """The non-root cgroup detection would look at: ours, else the first one under the root."""
    if own not in (None, "/") and (rec.source / f"{v2_mount}{own}".lstrip("/")).is_dir():
        child = f"{v2_mount}{own}"
    else:
        first = rec.dirs_in(v2_mount)
        if not first:
            return
        child = f"{v2_mount}/{first[0]}"
    rec.listing(child, rec.files_in(child))
    parent = os.path.dirname(child)
    rec.listing(parent, [name for name in WITH_CONTENT if name in rec.files_in(parent)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", type=Path, help="the recording's directory, e.g. tests/data/hosts/<name>")
    parser.add_argument("--force", action="store_true", help="replace an earlier recording in dest")
    args = parser.parse_args(argv)
    dest: Path = args.dest
    if dest.exists():
        if not (args.force and (dest / "outcomes.json").is_file()):
            parser.error(f"{dest} exists (--force replaces an earlier recording, one with outcomes.json)")
        shutil.rmtree(dest)
    euid = os.geteuid()
    capture(Path("/"), dest, probes.run_all(euid), euid)
    count = sum(1 for path in dest.rglob("*") if path.is_file())
    print(f"recorded {count} files in {dest} as euid {euid}; the kernel config is not recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
