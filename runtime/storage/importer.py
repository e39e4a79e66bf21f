"""`runtime image import`: docker-save tarballs and OCI image layouts, every digest verified.

Layers unpack into <store>/tmp first and move into the store only when the whole image has checked
out, so a failed import leaves no partial image and no orphan layer.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from typing import IO, Any, cast

from runtime.storage.archive import BadImage, DirSource, TarSource, open_source
from runtime.storage.extract import Extractor, HashingReader, Readable
from runtime.storage.overlay import make_short_link
from runtime.storage.store import ImageRecord, Store, valid_reference, with_tag

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
Source = DirSource | TarSource
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


@dataclass(frozen=True)
class LayerRef:
    name: str  # the member holding the blob
    diff_id: str  # sha256 hex of the uncompressed tar, from the config
    digest: str | None  # sha256 hex of the blob as stored, where the format names one
    media_type: str | None
    size: int | None = None  # of the blob as stored, where the format names one


@dataclass(frozen=True)
class Plan:
    config: bytes
    image_id: str
    layers: tuple[LayerRef, ...]
    refs: tuple[str, ...]


@dataclass(frozen=True)
class Imported:
    record: ImageRecord
    new_layers: int
    seconds: float


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest_hex(digest: str, what: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64 or not all(ch in "0123456789abcdef" for ch in value):
        raise BadImage(
            f"{what} has a digest this runtime cannot check: {digest!r}", "only sha256 digests are supported"
        )
    return value


def _json(source: Source, name: str) -> Any:
    with source.open(name) as stream:
        data = stream.read()
    try:
        return json.loads(data)
    except ValueError as exc:
        raise BadImage(f"{name} is not JSON: {exc}") from exc


def _read_verified(source: Source, name: str, digest_hex: str, size: int | None = None) -> bytes:
    with source.open(name) as stream:
        data = stream.read()
    if sha256_hex(data) != digest_hex:
        raise BadImage(
            f"{name}: content does not match its digest sha256:{digest_hex}",
            "the image is damaged or was altered",
        )
    if size is not None and len(data) != size:
        raise BadImage(f"{name}: {len(data)} bytes, but the manifest says {size}")
    return data


def _diff_ids(config: dict[str, Any], count: int) -> list[str]:
    ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(ids) != count:
        raise BadImage(f"the manifest lists {count} layers but the config has {len(ids)} diff_ids")
    return [_digest_hex(item, "a layer") for item in ids]


# --- docker save ---------------------------------------------------------------------------------------


def plan_docker(source: Source, name: str | None) -> Plan:
    entries = _json(source, "manifest.json")
    if not isinstance(entries, list) or not entries:
        raise BadImage("manifest.json lists no image")
    entry = _pick_docker_entry(entries, name)
    config_name = entry["Config"]
    stem = os.path.basename(config_name).removesuffix(".json")
    config_bytes = _read_verified(
        source, config_name, _digest_hex(f"sha256:{stem}", f"the config {config_name}")
    )
    layers = entry.get("Layers", [])
    diff_ids = _diff_ids(json.loads(config_bytes), len(layers))
    refs = tuple(entry.get("RepoTags") or ())
    return Plan(
        config_bytes,
        stem,
        tuple(_docker_layer(path, diff) for path, diff in zip(layers, diff_ids, strict=True)),
        refs,
    )


def _pick_docker_entry(entries: list[dict[str, Any]], name: str | None) -> dict[str, Any]:
    if len(entries) == 1 or name is None:
        if len(entries) > 1:
            raise BadImage(f"the tarball holds {len(entries)} images", "say which with --name NAME:TAG")
        return entries[0]
    wanted = with_tag(name)
    for entry in entries:
        if wanted in (entry.get("RepoTags") or []):
            return entry
    raise BadImage(f"no image tagged {wanted} in the tarball")


def _docker_layer(path: str, diff_id: str) -> LayerRef:
    # docker 25+ writes blobs/sha256/<digest> names: then the name is a digest to check as well.
    parts = path.split("/")
    digest = parts[-1] if len(parts) >= 3 and parts[-2] == "sha256" and len(parts[-1]) == 64 else None
    return LayerRef(path, diff_id, digest, None)


# --- OCI layout -----------------------------------------------------------------------------------------


def plan_oci(source: Source, name: str | None) -> Plan:
    layout = _json(source, "oci-layout")
    if layout.get("imageLayoutVersion") != "1.0.0":
        raise BadImage(f"oci-layout has imageLayoutVersion {layout.get('imageLayoutVersion')!r}, not 1.0.0")
    descriptor, ref = _pick_manifest(source, _json(source, "index.json"), name)
    manifest = json.loads(_read_blob(source, descriptor))
    config = _read_blob(source, manifest["config"])
    layers = manifest.get("layers", [])
    diff_ids = _diff_ids(json.loads(config), len(layers))
    plan_layers = tuple(_oci_layer(layer, diff) for layer, diff in zip(layers, diff_ids, strict=True))
    return Plan(
        config, _digest_hex(manifest["config"]["digest"], "the config"), plan_layers, (ref,) if ref else ()
    )


def _oci_layer(descriptor: dict[str, Any], diff_id: str) -> LayerRef:
    digest = _digest_hex(descriptor["digest"], "a layer")
    return LayerRef(
        f"blobs/sha256/{digest}", diff_id, digest, descriptor.get("mediaType"), descriptor.get("size")
    )


def _read_blob(source: Source, descriptor: dict[str, Any]) -> bytes:
    digest = _digest_hex(descriptor["digest"], "a blob")
    return _read_verified(source, f"blobs/sha256/{digest}", digest, descriptor.get("size"))


def _pick_manifest(
    source: Source, index: dict[str, Any], name: str | None
) -> tuple[dict[str, Any], str | None]:
    manifests = index.get("manifests", [])
    if not manifests:
        raise BadImage("index.json lists no manifest")
    chosen = manifests[0]
    if len(manifests) > 1:
        tag = (name or "").rpartition(":")[2] if name else None
        named = [m for m in manifests if _ref_name(m) in (name, tag)]
        if len(named) != 1:
            raise BadImage(f"index.json lists {len(manifests)} manifests", "say which with --name NAME:TAG")
        chosen = named[0]
    if chosen.get("mediaType") in (OCI_INDEX, DOCKER_LIST):
        nested = json.loads(_read_blob(source, chosen))
        for candidate in nested.get("manifests", []):
            platform = candidate.get("platform", {})
            if platform.get("os", "linux") == "linux" and platform.get("architecture", ARCH) == ARCH:
                return candidate, _ref_name(chosen)
        raise BadImage(f"the image index has no linux/{ARCH} manifest")
    return chosen, _ref_name(chosen)


def _ref_name(descriptor: dict[str, Any]) -> str | None:
    """containerd's full name where given; org.opencontainers.image.ref.name is most often a bare tag
    ("1"), which names nothing here without the repository: then --name has to."""
    annotations = descriptor.get("annotations", {})
    full: str | None = annotations.get("io.containerd.image.name")
    ref: str | None = annotations.get("org.opencontainers.image.ref.name")
    if full:
        return full
    return ref if ref and (":" in ref.rsplit("/", 1)[-1] or "/" in ref) else None


# --- layers -----------------------------------------------------------------------------------------------


LAYER_MEDIA_ENDINGS = ("tar", "tar+gzip", "tar.gzip")  # OCI and Docker names, distributable or not


def _uncompressed(stream: HashingReader, layer: LayerRef) -> Readable:
    head = stream.peek(4)
    media = layer.media_type or ""
    if media.endswith("zstd") or head == ZSTD_MAGIC:
        raise BadImage(
            f"{layer.name} is zstd-compressed",
            "Python's standard library reads gzip and plain tar layers: save the image with gzip layers",
        )
    if media and not media.endswith(LAYER_MEDIA_ENDINGS):
        raise BadImage(f"{layer.name} has media type {media}, which this runtime does not unpack")
    if head[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=cast(IO[bytes], stream), mode="rb")
    return stream


def _unpack(source: Source, layer: LayerRef, dest: str) -> int:
    """Unpack one layer into dest, checking the blob digest and the diff_id; returns its size."""
    with source.open(layer.name) as raw:
        hashed = HashingReader(raw)
        extractor = Extractor(dest, layer.diff_id[:12], may_mknod=os.geteuid() == 0)
        try:
            diff_id, size = extractor.extract(_uncompressed(hashed, layer))
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise BadImage(f"{layer.name}: cannot unpack: {exc}") from exc
        hashed.drain()
    if layer.size is not None and hashed.size != layer.size:
        raise BadImage(f"{layer.name}: {hashed.size} bytes, but the manifest says {layer.size}")
    if layer.digest and hashed.sha256.hexdigest() != layer.digest:
        raise BadImage(
            f"{layer.name}: content does not match its digest sha256:{layer.digest}",
            "the image is damaged or was altered",
        )
    if diff_id != layer.diff_id:
        raise BadImage(
            f"{layer.name}: unpacked content is sha256:{diff_id}, but the config says sha256:{layer.diff_id}",
            "the image is damaged or was altered",
        )
    return size


# --- the import ---------------------------------------------------------------------------------------------


def plan(source: Source, name: str | None) -> Plan:
    if source.exists("oci-layout") and source.exists("index.json"):
        return plan_oci(source, name)
    if source.exists("manifest.json"):
        return plan_docker(source, name)
    raise BadImage(
        "neither a docker-save tarball (manifest.json) nor an OCI image layout (oci-layout, index.json)",
        "make one with `docker save -o image.tar NAME` or `skopeo copy ... oci:DIR`",
    )


def import_image(store: Store, path: str, name: str | None = None, progress: Any = None) -> Imported:
    started = time.monotonic()
    source = open_source(path)
    lock = store.lock(exclusive=True)
    work = tempfile.mkdtemp(prefix="import-", dir=store.sub("tmp"))
    try:
        found = plan(source, name)
        sizes: dict[str, int] = {}
        for index, layer in enumerate(found.layers, 1):
            if progress:
                progress(f"layer {index}/{len(found.layers)} sha256:{layer.diff_id[:12]}")
            if store.has_layer(layer.diff_id) or layer.diff_id in sizes:
                continue
            os.makedirs(os.path.join(work, layer.diff_id, "diff"))
            sizes[layer.diff_id] = _unpack(source, layer, os.path.join(work, layer.diff_id, "diff"))
        record = _record(found, name, sizes, store)
        _commit(store, work, found, record, sizes)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        source.close()
        os.close(lock)
    return Imported(record, len(sizes), time.monotonic() - started)


def _record(found: Plan, name: str | None, sizes: dict[str, int], store: Store) -> ImageRecord:
    config = json.loads(found.config).get("config") or {}
    refs = [with_tag(name)] if name else list(found.refs)
    for ref in refs:
        if not valid_reference(ref):
            raise BadImage(f"{ref!r} cannot name an image", "give one with --name NAME[:TAG]")
    return ImageRecord(
        image_id=found.image_id,
        layers=[layer.diff_id for layer in found.layers],
        env=list(config.get("Env") or []),
        cmd=config.get("Cmd"),
        entrypoint=config.get("Entrypoint"),
        workdir=config.get("WorkingDir") or "",
        user=config.get("User") or "",
        refs=refs,
        size=sum(sizes.get(layer.diff_id) or store.layer_size(layer.diff_id) for layer in found.layers),
    )


def _commit(store: Store, work: str, found: Plan, record: ImageRecord, sizes: dict[str, int]) -> None:
    for diff_id, size in sizes.items():
        with open(os.path.join(work, diff_id, "size"), "w") as file:
            file.write(str(size))
        os.rename(os.path.join(work, diff_id), store.sub("layers", diff_id))
        make_short_link(store, diff_id)
    staged = os.path.join(work, "image")
    os.mkdir(staged)
    with open(os.path.join(staged, "config.json"), "wb") as file:
        file.write(found.config)
    final = store.sub("images", record.image_id)
    if os.path.isdir(final):  # the same image again: keep its references, add the new ones
        record.refs = sorted(set(record.refs) | set(store.record(record.image_id).refs))
        shutil.rmtree(final)
    with open(os.path.join(staged, "image"), "w") as file:
        file.write(record.dump())
    os.rename(staged, final)
    for ref in record.refs:
        _point(store, ref, record.image_id)


def _point(store: Store, ref: str, image_id: str) -> None:
    """Move a name to this image; the image it named before loses that name."""
    old = store.resolve(ref) if os.path.exists(store.ref_path(ref)) else None
    if old and old != image_id:
        previous = store.record(old)
        previous.refs = [r for r in previous.refs if r != ref]
        with open(store.sub("images", old, "image"), "w") as file:
            file.write(previous.dump())
    temporary = store.ref_path(ref) + ".tmp"
    with open(temporary, "w") as file:
        file.write(image_id)
    os.replace(temporary, store.ref_path(ref))
