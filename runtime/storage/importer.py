"""`runtime image import`: docker-save tarballs and OCI image layouts, every digest verified.

Layers unpack into <store>/tmp first and move into the store only when the whole image has checked
out, so a failed import leaves no partial image and no orphan layer. Everything that can be checked
before unpacking is: the name, the manifest's and config's types, which files are regular. While the
layers unpack, a budget (storage/space.py) stops a size bomb before it fills the disk.

An import's tmp/import-* directory holds a file `owner`, flocked for as long as the import runs and
naming its pid: `runtime gc` removes the directory of an import whose lock nobody holds.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, cast

from runtime import state
from runtime.storage.archive import BadImage, DirSource, TarSource, open_source
from runtime.storage.extract import Extractor, HashingReader, Readable
from runtime.storage.overlay import make_short_link
from runtime.storage.shape import MALFORMED, MAX_DOCUMENT, Doc, parse
from runtime.storage.space import Budget
from runtime.storage.store import (
    NAME_GRAMMAR,
    NOT_IN_GRAMMAR,
    TEMPORARY_SUFFIX,
    ImageRecord,
    Store,
    reference_problem,
    with_tag,
)

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
Source = DirSource | TarSource
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
WORK_PREFIX = "import-"
STAGING_PREFIX = ".new-"  # a work directory before its owner file is locked
OWNER = "owner"


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


def _unpack(source: Source, layer: LayerRef, dest: str, budget: Budget) -> int:
    """Unpack one layer into dest, checking the blob digest and the diff_id; returns its size."""
    short = layer.diff_id[:12]
    with source.open(layer.name, links=layer.links) as raw:
        hashed = HashingReader(raw)
        extractor = Extractor(
            dest, short, may_mknod=os.geteuid() == 0, meter=lambda size: budget.take(size, short)
        )
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


def _name_refused(name: str, carried: bool) -> BadImage | None:
    problem = reference_problem(with_tag(name))
    if problem is None:
        return None
    hint = f"{NAME_GRAMMAR}; " if problem == NOT_IN_GRAMMAR else ""
    hint += "the image carries that name: import it under another, " if carried else "give one such as "
    return BadImage(f"{name!r} cannot name an image: {problem}", hint + "--name myapp:1")


def check_name(name: str) -> None:
    """--name, before anything is read or written."""
    refused = _name_refused(name, carried=False)
    if refused:
        raise refused


def _refs(found: Plan, name: str | None) -> list[str]:
    """The names the image gets: --name's, else those it carries, which must be names too. One that
    is not is refused rather than dropped: the user would look for the image under it."""
    if name:
        return [with_tag(name)]
    for ref in found.refs:
        refused = _name_refused(ref, carried=True)
        if refused:
            raise refused
    return [with_tag(ref) for ref in found.refs]


def import_image(
    store: Store,
    path: str,
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
    max_size: int | None = None,
) -> Imported:
    """Import the image at path; max_size bounds the bytes unpacked across its new layers."""
    started = time.monotonic()
    if name is not None:
        check_name(name)
    source = open_source(path)
    try:
        lock = store.lock(exclusive=True)
        try:
            work, owner = claim_work_dir(store)
            try:
                record, new = _import(store, source, work, name, progress, Budget(store.path, max_size))
            finally:
                shutil.rmtree(work, ignore_errors=True)
                os.close(owner)
        finally:
            os.close(lock)
    finally:
        source.close()
    return Imported(record, new, time.monotonic() - started)


def _import(
    store: Store,
    source: Source,
    work: str,
    name: str | None,
    progress: Callable[[str], None] | None,
    budget: Budget,
) -> tuple[ImageRecord, int]:
    found = plan(source, name)
    refs = _refs(found, name)
    sizes: dict[str, int] = {}
    for index, layer in enumerate(found.layers, 1):
        if progress:
            progress(f"layer {index}/{len(found.layers)} sha256:{layer.diff_id[:12]}")
        if store.has_layer(layer.diff_id) or layer.diff_id in sizes:
            continue
        os.makedirs(os.path.join(work, layer.diff_id, "diff"))
        sizes[layer.diff_id] = _unpack(source, layer, os.path.join(work, layer.diff_id, "diff"), budget)
    record = _record(found, refs, sizes, store)
    _commit(store, work, found, record, sizes)
    return record, len(sizes)


def claim_work_dir(store: Store) -> tuple[str, int]:
    """tmp/import-XXXX with its owner file flocked and naming this process (keep the descriptor open
    while the import runs). Made as tmp/.new-XXXX and renamed once the lock is held: every import-*
    directory has an owner file that tells whether its import runs."""
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=store.sub("tmp"))
    fd = os.open(os.path.join(staging, OWNER), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    me = os.getpid()
    os.write(fd, f"pid {me} start {state.start_time(me)}\n".encode())
    work = os.path.join(store.sub("tmp"), WORK_PREFIX + os.path.basename(staging)[len(STAGING_PREFIX) :])
    os.rename(staging, work)
    return work, fd


def import_running(work: str) -> bool | None:
    """Whether the import of this tmp/import-* directory runs: None when there is no owner file to
    tell (a directory of an older runtime)."""
    try:
        fd = os.open(os.path.join(work, OWNER), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _record(found: Plan, refs: list[str], sizes: dict[str, int], store: Store) -> ImageRecord:
    return ImageRecord(
        image_id=found.image_id,
        layers=[layer.diff_id for layer in found.layers],
        env=list(found.run.env),
        cmd=found.run.cmd,
        entrypoint=found.run.entrypoint,
        workdir=found.run.workdir,
        user=found.run.user,
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
    temporary = store.ref_path(ref) + TEMPORARY_SUFFIX
    with open(temporary, "w") as file:
        file.write(image_id)
    os.replace(temporary, store.ref_path(ref))
