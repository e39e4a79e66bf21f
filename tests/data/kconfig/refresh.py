#!/usr/bin/env python3
"""Refresh the Debian cloud kernel config extracts kept beside this script.

For each kernel line (5.10/bullseye, 6.1/bookworm, 6.12/trixie, 7.x/sid) this
finds the newest linux-image-*-cloud-amd64 in that suite of the host's Debian
mirror, follows it to the package that actually holds the config (sid splits
the kernel into linux-image, -binary, -modules and -base), and writes:

  debian-<id>.config           header + container-relevant lines, in file order
  modules.builtin-overlay-<id> lines of modules.builtin naming overlay (only if any)
  sources.json                 suite, package, version, .deb sha256, kernel release

Downloads stay in the work dir (default: ~/.cache/kcompat/kconfig), never in the repo.
Running it again with nothing new upstream leaves every file byte-identical.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from compat.images.apt import AptSource, PackageNotFound, PrivateApt, extract_deb, host_mirror
from compat.images.cache import file_digest
from compat.images.kernel_catalogue import CatalogueEntry, load_catalogue, write_if_changed
from compat.images.kernel_download import kernel_parts, open_apt
from compat.proc import run

HERE = Path(__file__).resolve().parent
# The kernel lines (id, suite, release pattern, flavour) come from the VM matrix's catalogue.
CATALOGUE = load_catalogue()
KERNELS = CATALOGUE.entries

# Option names (after CONFIG_) kept in the extracts, matched against the whole name.
KEEP_NAMES = (
    "NAMESPACES", ".*_NS", "CGROUP.*", "MEMCG.*", "CPUSETS.*", "BLK_CGROUP.*", "BLK_DEV_THROTTLING",
    "CFS_BANDWIDTH", "FAIR_GROUP_SCHED", "RT_GROUP_SCHED", "PSI.*", "OVERLAY_FS.*", "SECCOMP.*",
    "SECURITY_LANDLOCK", "SECURITY_APPARMOR", "SECURITY_SELINUX", "LSM", "BPF_SYSCALL", "CGROUP_BPF",
    "KEYS", "POSIX_MQUEUE", "VETH", "BRIDGE", "TMPFS.*", "EXT4_FS", "MODULES", "MODULE_COMPRESS.*",
    "IKCONFIG.*", "FUSE_FS", "VIRTIO_FS", "BLK_DEV_INITRD", "DEVTMPFS.*", "USERFAULTFD",
    "CHECKPOINT_RESTORE", "SYSVIPC",
)  # fmt: skip
KEEP = re.compile("|".join(KEEP_NAMES))
# Toolchain lines of the header: they say what built the kernel.
TOOLCHAIN = re.compile(
    r"CC_VERSION_TEXT|CC_IS_\w+|GCC_VERSION|CLANG_VERSION|AS_IS_\w+|AS_VERSION|LD_IS_\w+|LD_VERSION"
    r"|LLD_VERSION|RUSTC_VERSION|RUSTC_LLVM_VERSION|BINDGEN_VERSION_TEXT|PAHOLE_VERSION"
)
TITLE = re.compile(r"# Linux/\S+ \S+ Kernel Configuration")
OPTION_LINE = re.compile(r"(?:CONFIG_(\w+)=.*|# CONFIG_(\w+) is not set)")
# Where a kernel package may keep its config: the classic /boot, or (sid) beside the modules.
CONFIG_MEMBER = re.compile(r"\./(?:boot/config-(?P<boot>[^/]+)|(?:usr/)?lib/modules/(?P<mod>[^/]+)/config)")


@dataclass(frozen=True)
class Found:
    kernel: CatalogueEntry
    image_package: str
    package: str
    version: str
    deb: Path
    config_member: str
    release: str


def deb_members(deb: Path) -> list[str]:
    lines = run(["dpkg-deb", "-c", deb], capture=True).stdout.splitlines()
    return [line.split(maxsplit=5)[5].split(" -> ")[0] for line in lines if line.strip()]


def find_config(apt: PrivateApt, kernel: CatalogueEntry, debs_dir: Path) -> Found:
    """Download the image package, then its same-version parts, until one holds the config."""
    parts = kernel_parts(apt, kernel)
    image = parts[0]
    for package in parts:
        deb = apt.download(package, debs_dir)
        for member in deb_members(deb):
            if match := CONFIG_MEMBER.fullmatch(member):
                release = match["boot"] or match["mod"]
                version = apt.candidate_version(package)
                return Found(kernel, image, package, version, deb, member, release)
    raise PackageNotFound(f"no kernel config in {image} or its parts ({kernel.suite})")


def wanted(line: str, in_header: bool) -> bool:
    match = OPTION_LINE.fullmatch(line)
    name = (match[1] or match[2]) if match else ""
    if in_header and (TITLE.fullmatch(line) or (name and TOOLCHAIN.fullmatch(name))):
        return True
    return bool(name and KEEP.fullmatch(name))


def extract_lines(config: str) -> list[str]:
    """Kept lines, verbatim and in file order; the header ends where "General setup" begins."""
    in_header = True
    kept = []
    for line in config.splitlines():
        in_header = in_header and line != "# General setup"
        if wanted(line, in_header):
            kept.append(line)
    return kept


def _text(lines: Sequence[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


def refresh_one(
    kernel: CatalogueEntry, mirror: AptSource, workdir: Path, fallback_suites: Sequence[str]
) -> dict[str, str]:
    apt = open_apt(kernel, mirror, workdir, fallback_suites)
    found = find_config(apt, kernel, workdir / "debs")
    print(f"  {kernel.id}: {found.package} {found.version} -> {found.config_member}")

    tree = Path(tempfile.mkdtemp(prefix=f"tree-{kernel.id}-", dir=workdir))
    try:
        extract_deb(found.deb, tree)
        config = (tree / found.config_member).read_text(encoding="utf-8")
        builtin = [tree / d / "lib/modules" / found.release / "modules.builtin" for d in ("", "usr")]
        builtin_lines = next((b.read_text("utf-8").splitlines() for b in builtin if b.is_file()), None)
    finally:
        shutil.rmtree(tree)

    extract = HERE / f"debian-{kernel.id}.config"
    print(f"  {extract.name}: {write_if_changed(extract, _text(extract_lines(config)))}")
    overlay_file = HERE / f"modules.builtin-overlay-{kernel.id}"
    overlay = [line for line in builtin_lines or [] if "overlay" in line]
    if overlay:
        print(f"  {overlay_file.name}: {write_if_changed(overlay_file, _text(overlay))}")
    elif overlay_file.exists():
        overlay_file.unlink()

    return {
        "suite": kernel.suite,
        "arch": kernel.arch,
        "image_package": found.image_package,
        "package": found.package,
        "version": found.version,
        "deb": found.deb.name,
        "sha256": file_digest(found.deb),
        "config_member": found.config_member.removeprefix("./"),
        "kernel_release": found.release,
        "modules_builtin": "absent" if builtin_lines is None else f"{len(overlay)} overlay lines",
    }


def default_workdir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "kcompat" / "kconfig"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", type=Path, default=default_workdir(), help="downloads and apt state")
    parser.add_argument("--only", action="append", choices=[k.id for k in KERNELS], help="refresh only these")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(message)s")

    started = time.monotonic()
    workdir: Path = args.workdir.resolve()
    if workdir.is_relative_to(HERE.parents[2]):
        parser.error(f"--workdir {workdir} is inside the repository; downloads must stay out of it")
    workdir.mkdir(parents=True, exist_ok=True)
    fallback = CATALOGUE.fallback_suites
    mirror = host_mirror()

    sources_path = HERE / "sources.json"
    sources = json.loads(sources_path.read_text(encoding="utf-8")) if sources_path.exists() else {}
    for kernel in KERNELS:
        if args.only and kernel.id not in args.only:
            continue
        print(f"{kernel.id} ({kernel.suite}):")
        sources[kernel.id] = refresh_one(kernel, mirror, workdir, fallback)
    ordered = {k.id: sources[k.id] for k in KERNELS if k.id in sources}
    status = write_if_changed(sources_path, json.dumps(ordered, indent=2) + "\n")

    summary = ", ".join(f"{k}={v['kernel_release']}" for k, v in ordered.items())
    print(f"done in {time.monotonic() - started:.0f}s: {summary}; sources.json {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
