"""kcompat_fault.ko, the self-check's fault module, built against a catalogue kernel's linux-headers.

build(kernel_id) returns a cached `kcompat_fault.ko` whose vermagic is that kernel's. Two artefacts:

    headers-<id>-<key>    linux-headers-<release> at the kernel's locked version and its same-version
                          dependencies (for bookworm: linux-headers-<abi>-common, linux-kbuild-6.1),
                          unpacked into one tree so that their relative symlinks resolve
    faultmod-<id>-<key>   the module, keyed by the headers, the source in faultmod_src/ and the compiler

Supported: the 6.1 kernel (bookworm, gcc-12), on a Debian 12 host: the module must be built by the
gcc major the kernel was built with, and the kbuild tools of the headers (modpost, objtool) must run
on the host. Other kernels fail with CompilerMismatch (5.10 wants gcc-10, 6.12 gcc-14, 7.x a newer one)
unless the host has that gcc; none of them is verified. The source (faultmod_src/kcompat_fault.c) says
what the module does.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

from compat.errors import CompatError
from compat.images import kernels
from compat.images.apt import AptError, PrivateApt, compare_versions, extract_deb, host_mirror
from compat.images.cache import Cache, file_digest, key
from compat.images.kernel_catalogue import UPDATE_HINT, Catalogue, checked_entry, load_catalogue, load_lock
from compat.images.kernel_download import MIRROR_HINT, open_apt
from compat.images.kernel_tree import KernelTree
from compat.proc import CommandError, run

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "faultmod_src"
MODULE = "kcompat_fault.ko"
PROC_FILE = "/proc/kcompat_fault"  # where the loaded module takes its commands
HEADERS_LAYOUT = 1  # bump when the unpacked headers tree changes shape
_CC_VERSION = re.compile(r'^CONFIG_CC_VERSION_TEXT="(\S+)', re.MULTILINE)
_GCC_MAJOR = re.compile(r"^(?:\S+-)?gcc-(\d+)$")
# A Depends entry pinned to a version: "linux-headers-6.1.0-50-common (= 6.1.176-1)".
_PINNED = re.compile(r"(?P<name>\S+) \((?P<op>=|>=) (?P<version>[^)]+)\)")
_ABSOLUTE_INCLUDE = re.compile(r"^include (/\S+)$", re.MULTILINE)


class FaultModuleError(CompatError):
    """The fault module cannot be built for this kernel."""


class HeadersUnavailable(FaultModuleError):
    """The kernel's linux-headers packages cannot be looked up or downloaded."""


class CompilerMismatch(FaultModuleError):
    """The host lacks the gcc major the kernel was built with."""


def build(kernel_id: str, cache: Cache | None = None, *, catalogue: Catalogue | None = None) -> Path:
    """kcompat_fault.ko for catalogue kernel kernel_id, built once and then taken from the cache."""
    cache = cache or Cache()
    catalogue = catalogue or load_catalogue()
    version = checked_entry(load_lock(), catalogue.get(kernel_id)).packages[0].version
    tree = kernels.fetch(kernel_id, cache, catalogue=catalogue)
    compiler = host_compiler(tree)
    compiler_text = run([compiler, "--version"], capture=True).stdout.splitlines()[0]
    # This file too: it holds the make command line.
    recipe = [Path(__file__), *sorted(path for path in SOURCE.iterdir() if path.is_file())]
    sources = {path.name: file_digest(path) for path in recipe}
    started = time.monotonic()
    module_key = key(tree.release, version, HEADERS_LAYOUT, sources, compiler_text)
    with cache.build(f"faultmod-{kernel_id}", module_key) as slot:
        if not slot.hit:
            headers = headers_tree(kernel_id, tree.release, version, cache, catalogue)
            _make(headers, slot.work, tree.release, compiler)
    if slot.hit:
        log.info("fault module for %s: already in %s", kernel_id, slot.path)
    else:
        log.info("fault module for %s: built in %.1f s", kernel_id, time.monotonic() - started)
    return slot.path / MODULE


def host_compiler(tree: KernelTree) -> str:
    """The host's gcc of the major the kernel was built with; CompilerMismatch when there is none."""
    config = tree.config.read_text(encoding="utf-8", errors="replace") if tree.config else ""
    found = _CC_VERSION.search(config)
    built_with = _GCC_MAJOR.match(found[1]) if found else None
    if built_with is None:
        raise CompilerMismatch(
            f"kernel {tree.id} ({tree.release}): its config names no gcc "
            f"(CONFIG_CC_VERSION_TEXT is {found[1] if found else 'missing'})",
            "the fault module is built only for Debian kernels built with gcc",
        )
    compiler = f"gcc-{built_with[1]}"
    if shutil.which(compiler) is None:
        host = shutil.which("gcc")
        has = f"its gcc is {run(['gcc', '-dumpversion'], capture=True).stdout.strip()}" if host else "no gcc"
        raise CompilerMismatch(
            f"kernel {tree.id} ({tree.release}) was built with {compiler}; this host has no {compiler} ({has}), "
            "and a module must be built by the kernel's own gcc major",
            f"apt-get install {compiler} make (on a host whose Debian release ships {compiler}, "
            f"such as the kernel's own suite)",
        )
    if shutil.which("make") is None:
        raise FaultModuleError(
            "building the fault module needs make, and this host has none", "apt-get install make"
        )
    return compiler


# --- the headers ------------------------------------------------------------------------------


def headers_tree(kernel_id: str, release: str, version: str, cache: Cache, catalogue: Catalogue) -> Path:
    """The unpacked linux-headers-<release> (its flavour directory), downloaded once."""
    package = f"linux-headers-{release}"
    with cache.build(f"headers-{kernel_id}", key(package, version, HEADERS_LAYOUT)) as slot:
        if not slot.hit:
            started = time.monotonic()
            debs = _download_headers(kernel_id, package, version, slot.work / "debs", cache, catalogue)
            for deb in debs:
                extract_deb(deb, slot.work)
            shutil.rmtree(slot.work / "debs")
            # lib/modules/<release>/{build,source} are absolute links to /usr/src; nothing uses them here.
            shutil.rmtree(slot.work / "lib", ignore_errors=True)
            _relative_includes(slot.work / "usr" / "src" / package / "Makefile", slot.work)
            log.info("headers for %s: %s unpacked in %.1f s", kernel_id, package, time.monotonic() - started)
    return slot.path / "usr" / "src" / package


def _download_headers(
    kernel_id: str, package: str, version: str, dest: Path, cache: Cache, catalogue: Catalogue
) -> list[Path]:
    """package at exactly version, then its dependencies pinned to that version, recursively."""
    try:
        apt = open_apt(catalogue.get(kernel_id), host_mirror(), cache.root / "apt", catalogue.fallback_suites)
        found = apt.candidate_version(package)
        if found != version:
            raise HeadersUnavailable(
                f"kernel {kernel_id}: {apt.suite} has {package} {found}, the kernel is linux-image {version}",
                f"a module must be built against the headers of its kernel's own version: {UPDATE_HINT.format(id=kernel_id)}",
            )
        names = _same_version_closure(apt, package, version)
        log.info("headers for %s: downloading %s", kernel_id, ", ".join(names))
        return [apt.download(name, dest) for name in names]
    except (AptError, CommandError) as exc:
        raise HeadersUnavailable(
            f"kernel {kernel_id}: cannot download {package} {version}: {exc}", MIRROR_HINT
        ) from exc


def _same_version_closure(apt: PrivateApt, package: str, version: str) -> list[str]:
    """package and every package its Depends pin to this version (= or >=), transitively: the parts of
    one kernel build (headers, common headers, kbuild), not the libraries those parts need."""
    names = [package]
    for name in names:
        for dep in apt.record(name).get("depends", "").split(","):
            pinned = _PINNED.fullmatch(dep.strip())
            if pinned is None or pinned["version"] != version:
                continue
            part = pinned["name"]
            if pinned["op"] == ">=" and compare_versions(apt.candidate_version(part), version) < 0:
                raise HeadersUnavailable(
                    f"{name} needs {part} >= {version}, and {apt.suite} has an older one"
                )
            if part not in names:
                names.append(part)
    return names


def _relative_includes(makefile: Path, root: Path) -> None:
    """Debian's flavour Makefile includes the common one by absolute path (/usr/src/...); point it into root."""
    text = makefile.read_text(encoding="utf-8")

    def inside(match: re.Match[str]) -> str:
        target = root / match[1].lstrip("/")
        if not target.is_file():
            raise FaultModuleError(f"{makefile} includes {match[1]}, which no downloaded package holds")
        return f"include {os.path.relpath(target, makefile.parent)}"

    makefile.write_text(_ABSOLUTE_INCLUDE.sub(inside, text), encoding="utf-8")


# --- the module -------------------------------------------------------------------------------


def _make(headers: Path, work: Path, release: str, compiler: str) -> None:
    """make -C <headers> M=<copy of the source> modules; only the .ko is kept in work."""
    source = work / "build"
    shutil.copytree(SOURCE, source)
    # The prefix map makes WARN's and BUG's "at kcompat_fault.c:33" the same in every build directory.
    argv: list[str | os.PathLike[str]] = [
        "make", "-C", headers, f"M={source}", f"CC={compiler}", f"KCFLAGS=-fmacro-prefix-map={source}/=",
        "modules",
    ]  # fmt: skip
    try:
        run(argv, capture=True, env={"LC_ALL": "C"})
        vermagic = run(["modinfo", "-F", "vermagic", source / MODULE], capture=True).stdout
    except CommandError as exc:
        raise FaultModuleError(
            f"cannot build {MODULE} against {headers.name}: {exc}",
            f"to see the whole log: make -C {headers} M=<a copy of {SOURCE}> modules",
        ) from exc
    if vermagic.split()[:1] != [release]:
        raise FaultModuleError(f"{MODULE} has vermagic {vermagic.strip()!r}, not {release}")
    (source / MODULE).rename(work / MODULE)
    shutil.rmtree(source)
