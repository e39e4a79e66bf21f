"""`runtime image ls`, `inspect` and `rm`, and the layer collection that `rm` leaves to do."""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

from runtime import state
from runtime.storage.archive import BadImage
from runtime.storage.store import DamagedStore, ImageRecord, Store, with_tag

logger = logging.getLogger(__name__)


def find(store: Store, name: str) -> ImageRecord:
    image_id = store.resolve(name)
    if image_id is None:
        raise BadImage(
            f"no image {name!r} in {store.path}", "runtime image ls lists them; runtime image import adds one"
        )
    return store.record(image_id)


def listing(store: Store) -> list[tuple[str, str, int, int]]:
    """(name, id, layers, size) for every reference, and for images without one."""
    rows = []
    named = set()
    for ref, image_id in sorted(store.refs().items()):
        try:
            record = store.record(image_id)
        except DamagedStore as damaged:
            logger.warning("%s: %s (runtime image rm %s removes the name)", ref, damaged.message, ref)
            continue
        rows.append((ref, image_id, len(record.layers), record.size))
        named.add(image_id)
    for image_id in store.image_ids():
        if image_id not in named:
            try:
                record = store.record(image_id)
            except DamagedStore as damaged:
                logger.warning("%s (runtime gc removes it)", damaged.message)
                continue
            rows.append(("<none>", image_id, len(record.layers), record.size))
    return rows


def inspect(store: Store, name: str) -> dict[str, Any]:
    record = find(store, name)
    with open(store.sub("images", record.image_id, "config.json")) as file:
        config = json.load(file)
    return {
        "id": f"sha256:{record.image_id}",
        "refs": record.refs,
        "layers": [f"sha256:{layer}" for layer in record.layers],
        "size": record.size,
        "config": config,
    }


def remove(store: Store, name: str) -> str:
    """Untag name; the image itself goes with its last name, unless a running container uses it."""
    lock = store.lock(exclusive=True)
    try:
        try:
            record = find(store, name)
        except DamagedStore:
            return _remove_dangling_name(store, name)
        wanted = with_tag(name)
        if wanted in record.refs and len(record.refs) > 1:
            os.unlink(store.ref_path(wanted))
            record.refs.remove(wanted)
            _write(store, record)
            return f"untagged {wanted}"
        users = [s.name for s in state.load_all() if s.image == record.image_id and s.runtime_alive()]
        if users:
            raise BadImage(f"image {name} is in use by running containers: {', '.join(users)}")
        for ref in record.refs:
            os.unlink(store.ref_path(ref))
        shutil.rmtree(store.sub("images", record.image_id))
        gone = collect_layers(store)
        return f"deleted sha256:{record.image_id[:12]} and {gone} layer(s) no other image uses"
    finally:
        os.close(lock)


def _remove_dangling_name(store: Store, name: str) -> str:
    for candidate in dict.fromkeys((name, with_tag(name))):
        path = store.ref_path(candidate)
        if os.path.exists(path):
            os.unlink(path)
            return f"removed the name {candidate}, which pointed at no image"
    raise BadImage(f"image {name} is damaged and has no name to remove", "runtime gc removes what is left")


def _write(store: Store, record: ImageRecord) -> None:
    path = store.sub("images", record.image_id, "image")
    with open(path + ".tmp", "w") as file:
        file.write(record.dump())
    os.replace(path + ".tmp", path)


def collect_layers(store: Store) -> int:
    """Remove layers no image names (an interrupted import can leave some); returns how many."""
    used: set[str] = set()
    for image_id in store.image_ids():
        try:
            used.update(store.record(image_id).layers)
        except DamagedStore as damaged:
            logger.warning("%s: no layer is removed while it is there", damaged.message)
            return 0  # which layers it needs is unknown
    removed = 0
    for diff_id in os.listdir(store.sub("layers")):
        if diff_id in used:
            continue
        try:
            os.unlink(store.sub("l", store.short_link(diff_id)))
        except OSError:
            pass
        shutil.rmtree(store.sub("layers", diff_id))
        removed += 1
    for short in os.listdir(store.sub("l")):  # a commit killed between a short link and its layer's link file
        if not os.path.exists(store.sub("l", short)):
            os.unlink(store.sub("l", short))
    return removed
