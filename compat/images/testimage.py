"""The test image the compat guests import, and the image model the project's tests build theirs with.

An image is layers of tar entries, written as a `docker save` tarball (tests/images.py adds the OCI
layouts, corrupt and malicious variants). Everything is deterministic: fixed mtimes, numeric owners
without names, entries in the order given, gzip without a timestamp. The same image gives the same
bytes, so the same digests.

Entries are written in the order given, not re-sorted: a layer tar is a stream, a hard link must
come after its target, and the malicious cases need a symlink before the file written through it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import platform
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from compat.images.busybox import BUSYBOX, GROUP, PASSWD, static_busybox

MTIME = 946684800  # 2000-01-01T00:00:00Z
CREATED = "2000-01-01T00:00:00Z"
GZIP_LEVEL = 6

DOCKER_CORRUPTIONS = ("layer", "config", "manifest-missing-layer", "diff-id-count")

KINDS = ("file", "dir", "symlink", "hardlink", "chardev", "blockdev", "fifo")
_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "chardev": tarfile.CHRTYPE,
    "blockdev": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}
_DEFAULT_MODES = {
    "file": 0o644,
    "dir": 0o755,
    "symlink": 0o777,
    "hardlink": 0o644,
    "chardev": 0o600,
    "blockdev": 0o600,
    "fifo": 0o644,
}
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le"}

APPLETS = (
    "sh", "ls", "cat", "echo", "id", "pwd", "env", "sleep", "touch", "rm", "mkdir", "test", "true",
    "false", "head", "wc", "ps", "hostname", "mount",
)  # fmt: skip
RUN_SH = b'#!/bin/sh\necho "app: $GREETING from $(pwd)"\n'


@dataclass(frozen=True)
class Entry:
    """One tar member. `path` is written as given: no leading "/" stripped, no ".." resolved.
    `mode` None means the usual mode for the kind (0o644 files, 0o755 dirs, 0o777 symlinks)."""

    path: str
    kind: str
    data: bytes = b""
    target: str = ""
    mode: int | None = None
    major: int = 0
    minor: int = 0
    uid: int = 0
    gid: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown entry kind {self.kind!r}: one of {', '.join(KINDS)}")
        if self.data and self.kind != "file":
            raise ValueError(f"{self.path}: only a file has data")
        if self.kind in ("symlink", "hardlink") and not self.target:
            raise ValueError(f"{self.path}: a {self.kind} needs a target")


def regular(path: str, data: bytes = b"", mode: int = 0o644) -> Entry:
    return Entry(path, "file", data=data, mode=mode)


def directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, "dir", mode=mode)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, "symlink", target=target)


def hardlink(path: str, target: str) -> Entry:
    return Entry(path, "hardlink", target=target)


def whiteout(path: str) -> Entry:
    """Deletes `path` from the layers below: an empty file named .wh.<name> beside it."""
    parent, _, name = path.rpartition("/")
    return regular(f"{parent}/.wh.{name}" if parent else f".wh.{name}")


def opaque(directory_path: str) -> Entry:
    """Hides everything the layers below have in the directory."""
    return regular(f"{directory_path}/.wh..wh..opq")


def host_architecture() -> str:
    machine = platform.machine()
    return _GOARCH.get(machine, machine)


@dataclass(frozen=True)
class Image:
    layers: list[list[Entry]]
    env: list[str] = field(default_factory=lambda: ["PATH=/usr/local/bin:/usr/bin:/bin"])
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    workdir: str = "/"
    user: str = ""
    ref: str = "test:1"
    architecture: str = field(default_factory=host_architecture)


# Tars


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    # TarInfo(name) keeps the name as given; only TarFile.add/gettarinfo strip a leading "/".
    info = tarfile.TarInfo(entry.path)
    info.type = _TAR_TYPES[entry.kind]
    info.mode = _DEFAULT_MODES[entry.kind] if entry.mode is None else entry.mode
    info.mtime = MTIME
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.linkname = entry.target
    info.devmajor, info.devminor = entry.major, entry.minor
    info.size = len(entry.data) if entry.kind == "file" else 0
    return info


def write_entries(fileobj: BinaryIO, entries: Iterable[Entry]) -> None:
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = _tarinfo(entry)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)


def layer_tar(entries: list[Entry]) -> bytes:
    """Uncompressed PAX tar bytes of `entries`, in the order given."""
    buffer = io.BytesIO()
    write_entries(buffer, entries)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a timestamp or file name, so the bytes depend on `data` only."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def split_ref(ref: str) -> tuple[str, str]:
    name, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:
        return ref, "latest"
    return name, tag


def tampered(entries: list[Entry]) -> bytes:
    """A valid tar whose bytes differ from layer_tar(entries): one more file."""
    return layer_tar([*entries, regular("tampered-by-tests", b"tampered\n")])


def image_config(image: Image, diff_ids: list[str]) -> dict[str, object]:
    return {
        "architecture": image.architecture,
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": list(image.env),
            "Cmd": list(image.cmd),
            "Entrypoint": None if image.entrypoint is None else list(image.entrypoint),
            "WorkingDir": image.workdir,
            "User": image.user,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": CREATED, "created_by": f"compat/images/testimage.py layer {i + 1}"}
            for i in range(len(image.layers))
        ],
    }


def check_corrupt(corrupt: str | None, allowed: tuple[str, ...]) -> None:
    if corrupt is not None and corrupt not in allowed:
        raise ValueError(f"unknown corruption {corrupt!r}: one of {', '.join(allowed)}")


# docker save


def write_docker_save(
    image: Image, path: Path, *, gzip_layers: bool = False, corrupt: str | None = None
) -> Path:
    """What `docker save -o path ref` writes (the classic layout): manifest.json, the config
    named by its digest, <id>/layer.tar, VERSION and json per layer, and repositories.
    With gzip_layers, each layer.tar holds gzip bytes under the same name.

    corrupt: "layer" (the top layer's bytes don't match its diff_id), "config" (the config's
    name isn't its digest), "manifest-missing-layer" (the manifest names a layer.tar absent
    from the tar), "diff-id-count" (the config lists one diff_id fewer than the manifest)."""
    check_corrupt(corrupt, DOCKER_CORRUPTIONS)
    name, tag = split_ref(image.ref)
    top = len(image.layers) - 1
    members: list[Entry] = []
    diff_ids: list[str] = []
    layer_paths: list[str] = []
    parent = ""
    for index, entries in enumerate(image.layers):
        tar = layer_tar(entries)
        diff_id = "sha256:" + sha256_hex(tar)
        diff_ids.append(diff_id)
        if corrupt == "layer" and index == top:
            tar = tampered(entries)
        stored = gzip_bytes(tar) if gzip_layers else tar
        # A v1 layer id, chained on the parent's, as docker does: two equal layers get two ids.
        layer_id = sha256_hex(f"{parent} {diff_id}".encode())
        legacy: dict[str, object] = {"id": layer_id, "created": CREATED, "os": "linux"}
        if parent:
            legacy["parent"] = parent
        members += [
            directory(layer_id),
            regular(f"{layer_id}/VERSION", b"1.0"),
            regular(f"{layer_id}/json", canonical_json(legacy)),
        ]
        if not (corrupt == "manifest-missing-layer" and index == top):
            members.append(regular(f"{layer_id}/layer.tar", stored))
        layer_paths.append(f"{layer_id}/layer.tar")
        parent = layer_id
    config = image_config(image, diff_ids[:-1] if corrupt == "diff-id-count" else diff_ids)
    config_bytes = canonical_json(config)
    config_name = sha256_hex(config_bytes) + ".json"
    if corrupt == "config":
        config_env = config["config"]
        assert isinstance(config_env, dict)
        config_env["Env"] = [*config_env["Env"], "TAMPERED=1"]
        config_bytes = canonical_json(config)
    manifest = [{"Config": config_name, "RepoTags": [f"{name}:{tag}"], "Layers": layer_paths}]
    members += [
        regular(config_name, config_bytes),
        regular("manifest.json", canonical_json(manifest)),
        regular("repositories", canonical_json({name: {tag: parent}})),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        write_entries(file, members)
    return path


# The test image


def busybox_layer(busybox: str = BUSYBOX) -> list[Entry]:
    """The base layer: busybox, applet symlinks, passwd, group, and files the layers above
    delete or hide."""
    static = static_busybox(busybox)
    return [
        directory("bin"),
        regular("bin/busybox", static.read_bytes(), 0o755),
        *(symlink(f"bin/{applet}", "busybox") for applet in sorted(APPLETS)),
        directory("etc"),
        regular("etc/doomed", b"delete me\n"),
        regular("etc/group", GROUP.encode()),
        regular("etc/passwd", PASSWD.encode()),
        directory("root", 0o700),
        directory("tmp", 0o1777),
        directory("usr"),
        directory("usr/share"),
        regular("usr/share/hello", b"hello from layer 1\n"),
        directory("var"),
        directory("var/cache"),
        directory("var/cache/old"),
        regular("var/cache/old/a", b"a from layer 1\n"),
        regular("var/cache/old/b", b"b from layer 1\n"),
    ]


def busybox_image(busybox: str = BUSYBOX) -> Image:
    """The standard test image, three layers. Layer 2 deletes etc/doomed (whiteout), makes
    var/cache/old opaque (a and b gone, new added), adds an absolute symlink and a hard link;
    layer 3 adds etc/motd and app/run.sh, the command."""
    layer2 = [
        directory("etc"),
        whiteout("etc/doomed"),  # .wh.doomed
        directory("usr"),
        directory("usr/bin"),
        symlink("usr/bin/sh2", "/bin/busybox"),
        directory("usr/share"),
        regular("usr/share/layer2.txt", b"layer 2 hard link target\n"),
        # After its target, out of sorted order ("-" < "."): a hard link needs its target first.
        hardlink("usr/share/layer2-link", "usr/share/layer2.txt"),
        directory("var"),
        directory("var/cache"),
        directory("var/cache/old"),
        opaque("var/cache/old"),
        regular("var/cache/old/new", b"from layer 2\n"),
    ]
    layer3 = [
        directory("app"),
        regular("app/run.sh", RUN_SH, 0o755),
        directory("etc"),
        regular("etc/motd", b"layer 3\n"),
    ]
    return Image(
        layers=[busybox_layer(busybox), layer2, layer3],
        env=["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hi"],
        cmd=["/app/run.sh"],
        entrypoint=None,
        workdir="/app",
        user="",
        ref="busybox-test:1",
    )
