"""What an image archive says, read and verified before anything is unpacked: the plan of an import.

A docker-save tarball (manifest.json) or an OCI image layout (oci-layout, index.json) becomes one
Plan: the config's bytes and image id, the layers to unpack with the digests to check them against,
the names the image carries and its run settings. Every manifest, index and config is read bounded
(MAX_DOCUMENT), checked against its sha256 digest and for the type of each field it uses. The layer
blobs themselves are read by importer.py, which unpacks and commits.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from runtime.storage.archive import BadImage, DirSource, TarSource
from runtime.storage.shape import MALFORMED, MAX_DOCUMENT, Doc, parse
from runtime.storage.store import with_tag

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
    links: bool = False  # whether the format may store it as a link to another member


@dataclass(frozen=True)
class RunConfig:
    """What the image config says about running it, checked for type at planning."""

    env: list[str]
    cmd: list[str] | None
    entrypoint: list[str] | None
    workdir: str
    user: str


@dataclass(frozen=True)
class Plan:
    config: bytes
    image_id: str
    layers: tuple[LayerRef, ...]
    refs: tuple[str, ...]
    run: RunConfig


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digest_hex(digest: str, what: str) -> str:
    algorithm, _, value = digest.partition(":")
    if algorithm != "sha256" or len(value) != 64 or not all(ch in "0123456789abcdef" for ch in value):
        raise BadImage(
            f"{what} has a digest this runtime cannot check: {digest!r}", "only sha256 digests are supported"
        )
    return value


def _read_small(source: Source, name: str) -> bytes:
    """A manifest, index or config: never a blob of gigabytes read into memory."""
    with source.open(name) as stream:
        data = stream.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise BadImage(f"{name} is over {MAX_DOCUMENT >> 20} MiB, which no manifest or config is", MALFORMED)
    return data


def _document(source: Source, name: str) -> Doc:
    return Doc(parse(_read_small(source, name), name), name)


def _read_verified(source: Source, name: str, digest_hex: str, size: int | None = None) -> bytes:
    data = _read_small(source, name)
    if sha256_hex(data) != digest_hex:
        raise BadImage(
            f"{name}: content does not match its digest sha256:{digest_hex}",
            "the image is damaged or was altered",
        )
    if size is not None and len(data) != size:
        raise BadImage(f"{name}: {len(data)} bytes, but the manifest says {size}")
    return data


def _read_config(data: bytes, name: str, layers: int) -> tuple[list[str], RunConfig]:
    """The diff_ids (as many as the manifest has layers) and the run settings, every type checked."""
    config = Doc(parse(data, name), name)
    config.mapping()
    ids = config.need("rootfs").need("diff_ids").items()
    if len(ids) != layers:
        raise BadImage(f"the manifest lists {layers} layers but the config has {len(ids)} diff_ids")
    diff_ids = [_digest_hex(item.text(), "a layer") for item in ids]
    settings = config.get("config")
    if settings.value is None:
        return diff_ids, RunConfig([], None, None, "", "")
    settings.mapping()
    return diff_ids, RunConfig(
        env=settings.get("Env").texts() or [],
        cmd=settings.get("Cmd").texts(),
        entrypoint=settings.get("Entrypoint").texts(),
        workdir=settings.get("WorkingDir").text(default=""),
        user=settings.get("User").text(default=""),
    )


# --- docker save ---------------------------------------------------------------------------------------


def plan_docker(source: Source, name: str | None) -> Plan:
    entries = _document(source, "manifest.json").items()
    if not entries:
        raise BadImage("manifest.json lists no image")
    entry = _pick_docker_entry(entries, name)
    config_name = entry.need("Config").text()
    stem = os.path.basename(config_name).removesuffix(".json")
    config_bytes = _read_verified(
        source, config_name, _digest_hex(f"sha256:{stem}", f"the config {config_name}")
    )
    layers = entry.get("Layers").texts() or []
    diff_ids, run = _read_config(config_bytes, config_name, len(layers))
    refs = tuple(entry.get("RepoTags").texts() or ())
    return Plan(
        config_bytes,
        stem,
        tuple(_docker_layer(path, diff) for path, diff in zip(layers, diff_ids, strict=True)),
        refs,
        run,
    )


def _pick_docker_entry(entries: list[Doc], name: str | None) -> Doc:
    for entry in entries:
        entry.mapping()
    if len(entries) == 1 or name is None:
        if len(entries) > 1:
            raise BadImage(f"the tarball holds {len(entries)} images", "say which with --name NAME:TAG")
        return entries[0]
    wanted = with_tag(name)
    for entry in entries:
        if wanted in (entry.get("RepoTags").texts() or []):
            return entry
    raise BadImage(f"no image tagged {wanted} in the tarball")


def _docker_layer(path: str, diff_id: str) -> LayerRef:
    # docker 25+ writes blobs/sha256/<digest> names: then the name is a digest to check as well.
    parts = path.split("/")
    digest = parts[-1] if len(parts) >= 3 and parts[-2] == "sha256" and len(parts[-1]) == 64 else None
    # docker save writes a layer it saw twice as a symlink to the first copy.
    return LayerRef(path, diff_id, digest, None, links=True)


# --- OCI layout -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    digest: str  # sha256 hex
    size: int | None
    media_type: str | None
    annotations: dict[str, str]
    doc: Doc


def _descriptor(doc: Doc) -> Descriptor:
    doc.mapping()
    media = doc.get("mediaType")
    return Descriptor(
        digest=_digest_hex(doc.need("digest").text(), f"{doc.name}: {doc.path}"),
        size=doc.get("size").count(),
        media_type=None if media.value is None else media.text(),
        annotations=doc.get("annotations").table(),
        doc=doc,
    )


def plan_oci(source: Source, name: str | None) -> Plan:
    layout = _document(source, "oci-layout")
    version = layout.get("imageLayoutVersion").value
    if version != "1.0.0":
        raise BadImage(f"oci-layout has imageLayoutVersion {version!r}, not 1.0.0")
    descriptor, ref = _pick_manifest(source, _document(source, "index.json"), name)
    manifest = _blob_document(source, descriptor, "the manifest")
    config_descriptor = _descriptor(manifest.need("config"))
    config = _read_blob(source, config_descriptor)
    found = manifest.get("layers")
    layers = [_descriptor(item) for item in found.items()] if found.value is not None else []
    diff_ids, run = _read_config(config, f"the config sha256:{config_descriptor.digest[:12]}", len(layers))
    plan_layers = tuple(_oci_layer(layer, diff) for layer, diff in zip(layers, diff_ids, strict=True))
    return Plan(config, config_descriptor.digest, plan_layers, (ref,) if ref else (), run)


def _oci_layer(descriptor: Descriptor, diff_id: str) -> LayerRef:
    return LayerRef(
        f"blobs/sha256/{descriptor.digest}",
        diff_id,
        descriptor.digest,
        descriptor.media_type,
        descriptor.size,
    )


def _read_blob(source: Source, descriptor: Descriptor) -> bytes:
    return _read_verified(source, f"blobs/sha256/{descriptor.digest}", descriptor.digest, descriptor.size)


def _blob_document(source: Source, descriptor: Descriptor, what: str) -> Doc:
    name = f"{what} sha256:{descriptor.digest[:12]}"
    return Doc(parse(_read_blob(source, descriptor), name), name).an_object()


def _pick_manifest(source: Source, index: Doc, name: str | None) -> tuple[Descriptor, str | None]:
    manifests = [_descriptor(item) for item in index.need("manifests").items()]
    if not manifests:
        raise BadImage("index.json lists no manifest")
    chosen = manifests[0]
    if len(manifests) > 1:
        tag = (name or "").rpartition(":")[2] if name else None
        named = [m for m in manifests if _ref_name(m) in (name, tag)]
        if len(named) != 1:
            raise BadImage(f"index.json lists {len(manifests)} manifests", "say which with --name NAME:TAG")
        chosen = named[0]
    if chosen.media_type in (OCI_INDEX, DOCKER_LIST):
        nested = _blob_document(source, chosen, "the image index")
        for candidate in nested.need("manifests").items():
            platform = candidate.get("platform")
            system, machine = "linux", ARCH
            if platform.value is not None:
                system = platform.get("os").text(default="linux")
                machine = platform.get("architecture").text(default=ARCH)
            if system == "linux" and machine == ARCH:
                return _descriptor(candidate), _ref_name(chosen)
        raise BadImage(f"the image index has no linux/{ARCH} manifest")
    return chosen, _ref_name(chosen)


def _ref_name(descriptor: Descriptor) -> str | None:
    """containerd's full name where given; org.opencontainers.image.ref.name is most often a bare tag
    ("1"), which names nothing here without the repository: then --name has to."""
    full = descriptor.annotations.get("io.containerd.image.name")
    ref = descriptor.annotations.get("org.opencontainers.image.ref.name")
    if full:
        return full
    return ref if ref and (":" in ref.rsplit("/", 1)[-1] or "/" in ref) else None


# --- which format -------------------------------------------------------------------------------------


def plan(source: Source, name: str | None) -> Plan:
    if source.exists("oci-layout") and source.exists("index.json"):
        return plan_oci(source, name)
    if source.exists("manifest.json"):
        return plan_docker(source, name)
    raise BadImage(
        "neither a docker-save tarball (manifest.json) nor an OCI image layout (oci-layout, index.json)",
        "make one with `docker save -o image.tar NAME` or `skopeo copy ... oci:DIR`",
    )
