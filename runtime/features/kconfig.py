"""Kernel config files: a /boot/config-*, a gzipped config, or the config inside a kernel .deb."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.features.kernel import parse_release
from runtime.features.model import KernelVersion
from runtime.linux.sysroot import Sysroot

_SET = re.compile(r"^CONFIG_(\w+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_(\w+) is not set$")
_HEADER = re.compile(r"^# Linux/\S+ (\S+) Kernel Configuration")
# Debian keeps it in /boot up to trixie; sid's linux-base-* has it beside the modules.
_DEB_CONFIG = re.compile(r"^(?:\./)?(?:boot/config-(.+)|(?:usr/)?lib/modules/([^/]+)/config)$")


class ConfigError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class KernelConfig:
    source: str
    version: KernelVersion | None
    options: Mapping[str, str]  # name without CONFIG_ -> "y", "m", "n" or the literal value

    def value(self, name: str) -> str | None:
        """ "y", "m", "n" (not set), a literal, or None when this kernel has no such option."""
        return self.options.get(name)

    def built(self, name: str) -> bool:
        return self.value(name) in ("y", "m")

    def tristate(self, name: str) -> str:
        """A short human form: "=y", "=m", "not set", or "absent"."""
        value = self.value(name)
        if value is None:
            return "absent"
        return "not set" if value == "n" else f"={value}"


def parse(text: str, source: str, release: str | None = None) -> KernelConfig:
    options: dict[str, str] = {}
    header_version: str | None = None
    for line in text.splitlines():
        if match := _SET.match(line):
            options[match[1]] = match[2].strip('"')
        elif match := _UNSET.match(line):
            options[match[1]] = "n"
        elif header_version is None and (match := _HEADER.match(line)):
            header_version = match[1]
    if not options:
        raise ConfigError(
            f"{source} holds no CONFIG_ lines: not a kernel config", "pass a /boot/config-* file"
        )
    return KernelConfig(source, _version(header_version, release), options)


def _version(header: str | None, release: str | None) -> KernelVersion | None:
    """Numbers from the header (Debian's release 6.1.0-50 is upstream 6.1.176); the name from the
    file or package when it agrees."""
    if header is None:
        return parse_release(release) if release else None
    version = parse_release(header)
    if release and release.startswith(f"{version.major}.{version.minor}"):
        return KernelVersion(release, version.major, version.minor, version.patch)
    return version


def load(path: Path) -> KernelConfig:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if data.startswith(b"!<arch>\n"):
        deb_release, text = _config_from_deb(data, path)
        return parse(text, str(path), deb_release)
    if data.startswith(b"\x1f\x8b"):
        data = gzip.decompress(data)
    named = path.name.removeprefix("config-") if path.name.startswith("config-") else None
    return parse(data.decode(errors="replace"), str(path), named)


def for_running_kernel(root: Sysroot, release: str) -> KernelConfig | None:
    """The config of the booted kernel, where the host keeps one; None when it does not."""
    for candidate in (f"/boot/config-{release}", f"/lib/modules/{release}/config", "/proc/config.gz"):
        path = Path(root.path(candidate))
        if path.is_file():
            try:
                return load(path)
            except ConfigError:
                continue
    return None


# --- .deb archives (ar, then data.tar.*) ------------------------------------------------------------------


def _ar_members(data: bytes) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[offset + 60 : offset + 60 + size]
        offset += 60 + size + (size % 2)
    return members


def _open_data_tar(members: dict[str, bytes], path: Path) -> tarfile.TarFile:
    # Streamed: the config sits near the start of data.tar, so most of it is never decompressed.
    modes = {"data.tar": "r|", "data.tar.xz": "r|xz", "data.tar.gz": "r|gz", "data.tar.bz2": "r|bz2"}
    for name, payload in members.items():
        if name in modes:
            stream: tarfile.TarFile = tarfile.open(fileobj=io.BytesIO(payload), mode=modes[name])  # type: ignore[call-overload]  # noqa: SIM115 - the caller closes it
            return stream
        if name.startswith("data.tar."):
            raise ConfigError(f"{path}: {name} is compressed in a way Python's standard library cannot read")
    raise ConfigError(f"{path} is an ar archive without data.tar: not a Debian package")


def _config_from_deb(data: bytes, path: Path) -> tuple[str, str]:
    with _open_data_tar(_ar_members(data), path) as tar:
        for member in tar:
            match = _DEB_CONFIG.match(member.name)
            extracted = tar.extractfile(member) if match and member.isfile() else None
            if match and extracted is not None:
                return match[1] or match[2], extracted.read().decode(errors="replace")
    raise ConfigError(
        f"{path} carries no kernel config (boot/config-* or lib/modules/*/config)",
        "Debian sid splits the kernel: the config is in the linux-base-<release> package; pass that one",
    )
