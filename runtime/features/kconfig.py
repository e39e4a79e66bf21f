"""Kernel config files: a /boot/config-*, a gzipped config, or the config inside a kernel .deb."""

from __future__ import annotations

import gzip
import io
import lzma
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime.features.kernel import parse_release
from runtime.features.model import KernelVersion
from runtime.features.sysroot import Sysroot

_SET = re.compile(r"^CONFIG_(\w+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_(\w+) is not set$")
_HEADER = re.compile(r"^# Linux/\S+ (\S+) Kernel Configuration")
_DEB_CONFIG = re.compile(r"^(?:\./)?boot/config-(.+)$")


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
    named = release or header_version
    return KernelConfig(source, parse_release(named) if named else None, options)


def load(path: Path) -> KernelConfig:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if data.startswith(b"!<arch>\n"):
        release, text = _config_from_deb(data, path)
        return parse(text, str(path), release)
    if data.startswith(b"\x1f\x8b"):
        data = gzip.decompress(data)
    release = path.name.removeprefix("config-") if path.name.startswith("config-") else None
    if release is not None and not release[:1].isdigit():
        release = None
    return parse(data.decode(errors="replace"), str(path), release)


def for_running_kernel(root: Sysroot, release: str) -> KernelConfig | None:
    """The config of the booted kernel, where the host keeps one; None when it does not."""
    for candidate in (f"/boot/config-{release}", f"/lib/modules/{release}/config", "/proc/config.gz"):
        path = root.path(candidate)
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
    for name, payload in members.items():
        if name == "data.tar":
            return tarfile.open(fileobj=io.BytesIO(payload))
        if name == "data.tar.xz":
            return tarfile.open(fileobj=io.BytesIO(lzma.decompress(payload)))
        if name == "data.tar.gz":
            return tarfile.open(fileobj=io.BytesIO(gzip.decompress(payload)))
        if name.startswith("data.tar."):
            raise ConfigError(f"{path}: {name} is compressed in a way Python's standard library cannot read")
    raise ConfigError(f"{path} is an ar archive without data.tar: not a Debian package")


def _config_from_deb(data: bytes, path: Path) -> tuple[str, str]:
    with _open_data_tar(_ar_members(data), path) as tar:
        for member in tar.getmembers():
            match = _DEB_CONFIG.match(member.name)
            extracted = tar.extractfile(member) if match and member.isfile() else None
            if match and extracted is not None:
                return match[1], extracted.read().decode(errors="replace")
    raise ConfigError(
        f"{path} carries no boot/config-* file",
        "Debian sid splits the kernel: the config is in the linux-base-<release> package; pass that one",
    )
