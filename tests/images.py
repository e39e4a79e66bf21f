"""Container images built offline for the tests and benchmarks, in the two formats the runtime
imports: a `docker save` tarball and an OCI image layout (a directory, or the same as a tar).
Also corrupt variants of both, and a corpus of malicious layers.

Everything is deterministic: fixed mtimes, numeric owners without names, entries in the order
given, gzip without a timestamp. The same image gives the same bytes, so the same digests.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from tests.busybox import GROUP, PASSWD, BusyboxMissing, is_static_elf

MTIME = 946684800  # 2000-01-01T00:00:00Z
CREATED = "2000-01-01T00:00:00Z"
GZIP_LEVEL = 6
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_CORRUPTIONS = ("layer", "config", "manifest-missing-layer", "diff-id-count")
# "zstd" is no corruption but a refusal case all the same: the top layer is stored as tar+zstd.
OCI_CORRUPTIONS = ("blob", "manifest-size", "layer-size", "zstd")

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


class NoBusybox(BusyboxMissing):
    """No static busybox here; the message says what to install."""


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


def _write_entries(fileobj: BinaryIO, entries: Iterable[Entry]) -> None:
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = _tarinfo(entry)
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == "file" else None)


def layer_tar(entries: list[Entry]) -> bytes:
    """Uncompressed PAX tar bytes of `entries`, in the order given."""
    buffer = io.BytesIO()
    _write_entries(buffer, entries)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a timestamp or file name, so the bytes depend on `data` only."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _split_ref(ref: str) -> tuple[str, str]:
    name, colon, tag = ref.rpartition(":")
    if not colon or "/" in tag:
        return ref, "latest"
    return name, tag


def _tampered(entries: list[Entry]) -> bytes:
    """A valid tar whose bytes differ from layer_tar(entries): one more file."""
    return layer_tar([*entries, regular("tampered-by-tests", b"tampered\n")])


def _config(image: Image, diff_ids: list[str]) -> dict[str, object]:
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
            {"created": CREATED, "created_by": f"tests/images.py layer {i + 1}"}
            for i in range(len(image.layers))
        ],
    }


def _check_corrupt(corrupt: str | None, allowed: tuple[str, ...]) -> None:
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
    _check_corrupt(corrupt, DOCKER_CORRUPTIONS)
    name, tag = _split_ref(image.ref)
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
            tar = _tampered(entries)
        stored = gzip_bytes(tar) if gzip_layers else tar
        # A v1 layer id, chained on the parent's, as docker does: two equal layers get two ids.
        layer_id = sha256_hex(f"{parent} {diff_id}".encode())
        legacy: dict[str, object] = {"id": layer_id, "created": CREATED, "os": "linux"}
        if parent:
            legacy["parent"] = parent
        members += [
            directory(layer_id),
            regular(f"{layer_id}/VERSION", b"1.0"),
            regular(f"{layer_id}/json", _json(legacy)),
        ]
        if not (corrupt == "manifest-missing-layer" and index == top):
            members.append(regular(f"{layer_id}/layer.tar", stored))
        layer_paths.append(f"{layer_id}/layer.tar")
        parent = layer_id
    config = _config(image, diff_ids[:-1] if corrupt == "diff-id-count" else diff_ids)
    config_bytes = _json(config)
    config_name = sha256_hex(config_bytes) + ".json"
    if corrupt == "config":
        config_env = config["config"]
        assert isinstance(config_env, dict)
        config_env["Env"] = [*config_env["Env"], "TAMPERED=1"]
        config_bytes = _json(config)
    manifest = [{"Config": config_name, "RepoTags": [f"{name}:{tag}"], "Layers": layer_paths}]
    members += [
        regular(config_name, config_bytes),
        regular("manifest.json", _json(manifest)),
        regular("repositories", _json({name: {tag: parent}})),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        _write_entries(file, members)
    return path


# OCI image layout


def _oci_files(image: Image, gzip_layers: bool, corrupt: str | None) -> dict[str, bytes]:
    """The layout's files, path -> bytes: oci-layout, index.json and blobs/sha256/<hex>."""
    _check_corrupt(corrupt, OCI_CORRUPTIONS)
    blobs: dict[str, bytes] = {}
    top = len(image.layers) - 1

    def descriptor(media_type: str, data: bytes, size: int | None = None) -> dict[str, object]:
        digest = sha256_hex(data)
        blobs[digest] = data
        return {
            "mediaType": media_type,
            "digest": "sha256:" + digest,
            "size": len(data) if size is None else size,
        }

    layers: list[dict[str, object]] = []
    diff_ids: list[str] = []
    for index, entries in enumerate(image.layers):
        tar = layer_tar(entries)
        diff_ids.append("sha256:" + sha256_hex(tar))
        media_type, stored = (MEDIA_LAYER_GZIP, gzip_bytes(tar)) if gzip_layers else (MEDIA_LAYER, tar)
        if corrupt == "zstd" and index == top:
            # Not a zstd stream: the importer must refuse on the media type or magic, unread.
            media_type, stored = MEDIA_LAYER_ZSTD, ZSTD_MAGIC + tar
        layer = descriptor(media_type, stored)
        if index == top and corrupt == "blob":
            tampered = _tampered(entries)
            tampered = gzip_bytes(tampered) if gzip_layers else tampered
            blobs[str(layer["digest"]).removeprefix("sha256:")] = tampered
            layer["size"] = len(tampered)  # only the digest is wrong
        if index == top and corrupt == "layer-size":
            layer["size"] = len(stored) + 1
        layers.append(layer)
    config = descriptor(MEDIA_CONFIG, _json(_config(image, diff_ids)))
    manifest_bytes = _json(
        {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": layers}
    )
    manifest = descriptor(
        MEDIA_MANIFEST, manifest_bytes, len(manifest_bytes) + 1 if corrupt == "manifest-size" else None
    )
    _, tag = _split_ref(image.ref)
    manifest["annotations"] = {
        "org.opencontainers.image.ref.name": tag,
        "io.containerd.image.name": image.ref,
    }
    index_json = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest]}
    files = {f"blobs/sha256/{digest}": data for digest, data in sorted(blobs.items())}
    files["index.json"] = _json(index_json)
    files["oci-layout"] = _json({"imageLayoutVersion": "1.0.0"})
    return files


def write_oci_layout(
    image: Image, directory: Path, *, gzip_layers: bool = True, corrupt: str | None = None
) -> Path:
    """An OCI image layout (image-spec v1.1) in `directory`, created if need be.

    corrupt: "blob" (the top layer blob's content doesn't match its digest; its size does),
    "manifest-size" (index.json gives the manifest's size one too big), "layer-size" (the
    manifest gives the top layer's size one too big), "zstd" (the top layer is
    application/vnd.oci.image.layer.v1.tar+zstd, its blob the zstd magic and a plain tar)."""
    for name, data in _oci_files(image, gzip_layers, corrupt).items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return directory


def write_oci_tar(image: Image, path: Path, *, gzip_layers: bool = True, corrupt: str | None = None) -> Path:
    """The layout of write_oci_layout as a tar (what `skopeo copy ... oci-archive:` writes)."""
    files = _oci_files(image, gzip_layers, corrupt)
    members = [directory("blobs"), directory("blobs/sha256")]
    members += [regular(name, files[name]) for name in sorted(files)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as file:
        _write_entries(file, members)
    return path


# The images


def busybox_layer(busybox: str = "/bin/busybox") -> list[Entry]:
    """The base layer: busybox, applet symlinks, passwd, group, and files the layers above
    delete or hide."""
    if not Path(busybox).exists():
        raise NoBusybox(f"{busybox} is missing: install busybox-static")
    if not is_static_elf(busybox):
        raise NoBusybox(f"{busybox} is not a static executable (it has PT_INTERP): install busybox-static")
    return [
        directory("bin"),
        regular("bin/busybox", Path(busybox).read_bytes(), 0o755),
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


def busybox_image(busybox: str = "/bin/busybox") -> Image:
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


def pseudo_random(seed: str, size: int) -> bytes:
    """Deterministic incompressible bytes: SHAKE-128 output, one C call however large."""
    return hashlib.shake_128(seed.encode()).digest(size)


def big_image(size_mb: int = 100, busybox: str = "/bin/busybox", files: int = 10) -> Image:
    """For the import benchmark: the busybox layer, then a layer of size_mb MiB of
    incompressible data in `files` files under data/."""
    total = size_mb * 1024 * 1024
    sizes = [total // files + (1 if i < total % files else 0) for i in range(files)]
    data = [directory("data")]
    data += [regular(f"data/blob-{i:02d}", pseudo_random(f"big-image {i}", n)) for i, n in enumerate(sizes)]
    return Image(layers=[busybox_layer(busybox), data], cmd=["/bin/true"], ref=f"big-test:{size_mb}m")


def malicious_layers() -> dict[str, list[Entry]]:
    """Layers a naive extractor would let write, link or create outside the layer directory."""
    return {
        "traversal": [
            regular("../../escaped-traversal", b"escaped\n"),
            directory("a"),
            regular("a/../../escaped-traversal-nested", b"escaped\n"),
        ],
        "absolute": [regular("/tmp/escaped-absolute", b"escaped\n")],
        "symlink-escape": [symlink("evil", "../../../../../../tmp")],
        "symlink-absolute-then-write": [
            symlink("etcdir", "/etc"),
            regular("etcdir/escaped-through-symlink", b"escaped\n"),
        ],
        "symlink-relative-then-write": [
            symlink("up", "../.."),
            regular("up/escaped-through-relative", b"escaped\n"),
        ],
        "hardlink-escape": [hardlink("stolen", "/etc/passwd")],
        "hardlink-traversal": [hardlink("stolen2", "../../../etc/shadow")],
        "device-node": [
            directory("dev"),
            Entry("dev/evil", "chardev", mode=0o666, major=1, minor=3),
            Entry("dev/disk", "blockdev", mode=0o660, major=8, minor=0),
        ],
    }


def malicious_image(case: str) -> Image:
    """One malicious case as the top layer over a base layer of base/ and base/ok."""
    cases = malicious_layers()
    if case not in cases:
        raise ValueError(f"unknown malicious case {case!r}: one of {', '.join(cases)}")
    base = [directory("base"), regular("base/ok", b"ok\n")]
    return Image(layers=[base, cases[case]], cmd=["/base/ok"], ref=f"evil-{case}:1")


# Hostile variants: a good image with one part replaced. Each edit gets the part as JSON and returns
# the new part, as a JSON value or as raw bytes (for what is not JSON at all); what names the edited
# part by digest is re-digested, so the import gets as far as reading it.

Edit = Callable[[Any], object]


def _encoded(value: object) -> bytes:
    return value if isinstance(value, bytes) else _json(value)


def docker_save_edited(
    image: Image,
    path: Path,
    *,
    manifest: Edit | None = None,
    config: Edit | None = None,
    manifest_symlink: bool = False,
    layer_links: dict[int, int | str] | None = None,
    gzip_layers: bool = False,
) -> Path:
    """write_docker_save, then: the config edited (and renamed by its new digest, manifest.json
    following), manifest.json edited, and with manifest_symlink manifest.json a symlink member to
    real-manifest.json, which holds it. layer_links makes layer i's layer.tar a symlink member: to
    layer j's (an int, as docker save writes a layer seen twice) or to a target given as text."""
    scratch = write_docker_save(image, path.with_name(path.name + ".plain"), gzip_layers=gzip_layers)
    with tarfile.open(scratch) as source:
        members = [(m, source.extractfile(m).read() if m.isfile() else None) for m in source]  # type: ignore[union-attr]
    files = {m.name: data for m, data in members if data is not None}
    [entry] = json.loads(files["manifest.json"])
    renamed: dict[str, tuple[str, bytes]] = {}
    if config is not None:
        edited = _encoded(config(json.loads(files[entry["Config"]])))
        renamed[entry["Config"]] = (sha256_hex(edited) + ".json", edited)
        entry["Config"] = renamed[entry["Config"]][0]
    links = {
        entry["Layers"][index]: f"../{entry['Layers'][target]}" if isinstance(target, int) else target
        for index, target in (layer_links or {}).items()
    }
    manifest_bytes = _encoded(manifest([entry]) if manifest is not None else [entry])
    out: list[Entry] = []
    for member, data in members:
        if member.name == "manifest.json":
            if manifest_symlink:
                out += [
                    regular("real-manifest.json", manifest_bytes),
                    symlink("manifest.json", "real-manifest.json"),
                ]
            else:
                out.append(regular("manifest.json", manifest_bytes))
        elif member.name in renamed:
            out.append(regular(*renamed[member.name]))
        elif member.name in links:
            out.append(symlink(member.name, links[member.name]))
        else:
            out.append(regular(member.name, data) if data is not None else directory(member.name))
    scratch.unlink()
    with path.open("wb") as file:
        _write_entries(file, out)
    return path


def oci_layout_edited(
    image: Image,
    directory_: Path,
    *,
    index: Edit | None = None,
    manifest: Edit | None = None,
    config: Edit | None = None,
    layout: Edit | None = None,
) -> Path:
    """write_oci_layout (gzip layers), then the config, the manifest, index.json and oci-layout
    edited in that order, each descriptor on the way re-digested."""
    write_oci_layout(image, directory_)
    index_json = json.loads((directory_ / "index.json").read_bytes())
    descriptor = index_json["manifests"][0]
    manifest_json = json.loads(oci_blob(directory_, "manifest").read_bytes())
    if config is not None:
        edited = _encoded(config(json.loads(oci_blob(directory_, "config").read_bytes())))
        manifest_json["config"].update(_put_blob(directory_, edited))
    manifest_bytes = _encoded(manifest(manifest_json) if manifest is not None else manifest_json)
    descriptor.update(_put_blob(directory_, manifest_bytes))
    (directory_ / "index.json").write_bytes(_encoded(index(index_json) if index is not None else index_json))
    if layout is not None:
        (directory_ / "oci-layout").write_bytes(
            _encoded(layout(json.loads((directory_ / "oci-layout").read_bytes())))
        )
    return directory_


def _put_blob(layout: Path, data: bytes) -> dict[str, object]:
    digest = sha256_hex(data)
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_blob(layout: Path, which: str) -> Path:
    """The blob of an OCI layout's first manifest ("manifest"), its config ("config") or its top
    layer ("layer")."""
    descriptor = json.loads((layout / "index.json").read_bytes())["manifests"][0]
    if which != "manifest":
        manifest = json.loads((layout / "blobs/sha256" / descriptor["digest"][7:]).read_bytes())
        descriptor = manifest["config"] if which == "config" else manifest["layers"][-1]
    return layout / "blobs/sha256" / str(descriptor["digest"]).removeprefix("sha256:")


def tar_of_layout(layout: Path, path: Path, *, symlinks: Iterable[Path] = ()) -> Path:
    """A layout directory as a tar (as write_oci_tar), with each file in `symlinks` written as a
    symlink member to a copy of it under elsewhere/ instead."""
    linked = {file.relative_to(layout).as_posix() for file in symlinks}
    members = [directory("elsewhere")] if linked else []
    for file in sorted(layout.rglob("*")):
        name = file.relative_to(layout).as_posix()
        if file.is_dir():
            members.append(directory(name))
        elif name in linked:
            hops = "../" * name.count("/")
            members += [
                regular(f"elsewhere/{file.name}", file.read_bytes()),
                symlink(name, f"{hops}elsewhere/{file.name}"),
            ]
        else:
            members.append(regular(name, file.read_bytes()))
    with path.open("wb") as out:
        _write_entries(out, members)
    return path


def docker_save_directory(image: Image, directory_: Path) -> Path:
    """A docker-save tarball unpacked into a directory (which `runtime image import` also reads)."""
    tar_path = write_docker_save(image, directory_.with_name(directory_.name + ".tar"))
    directory_.mkdir(parents=True)
    with tarfile.open(tar_path) as tar:
        for member in tar:
            target = directory_ / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    tar_path.unlink()
    return directory_


def zero_bomb(size_mb: int, ref: str = "bomb:1") -> Image:
    """One layer of size_mb MiB of zeros: gzip makes it about a thousandth of that."""
    return Image(layers=[[regular("zeros", bytes(size_mb * 1024 * 1024))]], cmd=["/zeros"], ref=ref)


def setuid_image(busybox: str = "/bin/busybox") -> Image:
    """busybox as a setuid-root file and a world-readable and -writable device node (1:3, null)
    beside an ordinary file: what a local user must not reach through the store."""
    base = busybox_layer(busybox)
    extra = [
        directory("evil"),
        regular("evil/suid-busybox", Path(busybox).read_bytes(), 0o4755),
        Entry("evil/null", "chardev", mode=0o666, major=1, minor=3),
        regular("evil/readable", b"secret\n", 0o644),
    ]
    return Image(layers=[base, extra], cmd=["/bin/sh"], ref="setuid-test:1")
