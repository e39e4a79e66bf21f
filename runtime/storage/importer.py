"""`runtime image import`: docker-save tarballs and OCI image layouts, every digest verified.

Layers unpack into <store>/tmp first and move into the store only when the whole image has checked
out, so a failed import leaves no partial image and no orphan layer. Everything that can be checked
before unpacking is: the name, the manifest's and config's types, which files are regular. While the
layers unpack, a budget (storage/space.py) stops a size bomb before it fills the disk.

An import's tmp/import-* directory holds a file `owner`, flocked for as long as the import runs and
naming its pid: `runtime gc` removes the directory of an import whose lock nobody holds.

What the archive says is read and checked by formats.py (the plan); here the layers are unpacked and
verified, and the image is committed into the store.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, cast

from runtime import state
from runtime.storage.archive import BadImage, open_source
from runtime.storage.extract import Extractor, HashingReader, Readable
from runtime.storage.formats import LayerRef, Plan, Source, plan
from runtime.storage.overlay import make_short_link
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
WORK_PREFIX = "import-"
STAGING_PREFIX = ".new-"  # a work directory before its owner file is locked
OWNER = "owner"


@dataclass(frozen=True)
class Imported:
    record: ImageRecord
    new_layers: int
    seconds: float


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
