"""Container images built offline for the tests and benchmarks, in the two formats the runtime
imports: a `docker save` tarball and an OCI image layout (a directory, or the same as a tar).
Also corrupt variants of both, and a corpus of malicious layers.

The image model, the tar writer, `docker save` and the three-layer busybox image live in
compat/images/testimage.py, since the compat guests import that image too; this module re-exports
them and adds the rest. Everything is deterministic: the same image gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from compat.images import testimage
from compat.images.busybox import BUSYBOX, GROUP, PASSWD, BusyboxMissing, is_static_elf
from compat.images.testimage import (
    APPLETS,
    CREATED,
    DOCKER_CORRUPTIONS,
    GZIP_LEVEL,
    KINDS,
    MTIME,
    RUN_SH,
    Entry,
    Image,
    busybox_image,
    busybox_layer,
    canonical_json,
    check_corrupt,
    directory,
    gzip_bytes,
    hardlink,
    host_architecture,
    image_config,
    layer_tar,
    opaque,
    regular,
    sha256_hex,
    split_ref,
    symlink,
    whiteout,
    write_docker_save,
    write_entries,
)

__all__ = [
    "APPLETS", "BUSYBOX", "CREATED", "DOCKER_CORRUPTIONS", "GROUP", "GZIP_LEVEL", "KINDS", "MTIME", "PASSWD",
    "RUN_SH", "BusyboxMissing", "Entry", "Image", "NoBusybox", "busybox_image", "busybox_layer", "directory",
    "gzip_bytes", "hardlink", "host_architecture", "is_static_elf", "layer_tar", "opaque", "regular",
    "sha256_hex", "symlink", "whiteout", "write_docker_save",
]  # fmt: skip

NoBusybox = BusyboxMissing  # the name these tests catch

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

# "zstd" is no corruption but a refusal case all the same: the top layer is stored as tar+zstd.
OCI_CORRUPTIONS = ("blob", "manifest-size", "layer-size", "zstd")


# OCI image layout


def _oci_files(image: Image, gzip_layers: bool, corrupt: str | None) -> dict[str, bytes]:
    """The layout's files, path -> bytes: oci-layout, index.json and blobs/sha256/<hex>."""
    check_corrupt(corrupt, OCI_CORRUPTIONS)
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
            tampered = testimage.tampered(entries)
            tampered = gzip_bytes(tampered) if gzip_layers else tampered
            blobs[str(layer["digest"]).removeprefix("sha256:")] = tampered
            layer["size"] = len(tampered)  # only the digest is wrong
        if index == top and corrupt == "layer-size":
            layer["size"] = len(stored) + 1
        layers.append(layer)
    config = descriptor(MEDIA_CONFIG, canonical_json(image_config(image, diff_ids)))
    manifest_bytes = canonical_json(
        {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST, "config": config, "layers": layers}
    )
    manifest = descriptor(
        MEDIA_MANIFEST, manifest_bytes, len(manifest_bytes) + 1 if corrupt == "manifest-size" else None
    )
    _, tag = split_ref(image.ref)
    manifest["annotations"] = {
        "org.opencontainers.image.ref.name": tag,
        "io.containerd.image.name": image.ref,
    }
    index_json = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest]}
    files = {f"blobs/sha256/{digest}": data for digest, data in sorted(blobs.items())}
    files["index.json"] = canonical_json(index_json)
    files["oci-layout"] = canonical_json({"imageLayoutVersion": "1.0.0"})
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
        write_entries(file, members)
    return path


# More images


def pseudo_random(seed: str, size: int) -> bytes:
    """Deterministic incompressible bytes: SHAKE-128 output, one C call however large."""
    return hashlib.shake_128(seed.encode()).digest(size)


def big_image(size_mb: int = 100, busybox: str = BUSYBOX, files: int = 10) -> Image:
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
    return value if isinstance(value, bytes) else canonical_json(value)


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
        write_entries(file, out)
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
        write_entries(out, members)
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


def setuid_image(busybox: str = BUSYBOX) -> Image:
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
