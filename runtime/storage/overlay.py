"""Overlay mounts of image layers. Many layers must not overflow mount(2)'s one-page option string:
as Docker's overlay2 does, each layer has a short link <store>/l/<26 chars>, and the mount is made
from <store> so that lowerdir= names them relatively ("l/ABC…:l/DEF…", 29 bytes a layer)."""

from __future__ import annotations

import base64
import os

from runtime.storage.store import SHORT_LINK_LENGTH, Store

PAGE = 4096


def make_short_link(store: Store, diff_id: str) -> str:
    while True:
        short = base64.b32encode(os.urandom(20)).decode()[:SHORT_LINK_LENGTH]
        try:
            os.symlink(f"../layers/{diff_id}/diff", store.sub("l", short))
            break
        except FileExistsError:
            continue
    with open(store.sub("layers", diff_id, "link"), "w") as file:
        file.write(short)
    return short


def mount_options(store: Store, layers: list[str], upper: str, work: str) -> str:
    """lowerdir (top layer first), upperdir and workdir, to be mounted with <store> as the cwd."""
    lower = ":".join(f"l/{store.short_link(diff_id)}" for diff_id in reversed(layers))
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    if len(options) >= PAGE:
        raise OverflowError(
            f"{len(layers)} layers make a {len(options)}-byte overlay option string (limit {PAGE - 1})"
        )
    return options
