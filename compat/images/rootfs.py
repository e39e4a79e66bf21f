"""The guest root filesystem: a debootstrap tree made from vm-images/rootfs.json, configured for the
harness and packed into an ext4 image without loop mounts.

Two cache artefacts:

    rootfs-tree-<key>/    tree/ (debootstrap's result, mirror traces removed), debootstrap.log, build.json
    rootfs-image-<key>/   rootfs.ext4, id_ed25519{,.pub} (the harness's key), host_keys/*.pub, build.json

The tree's key is made of what debootstrap is asked for (suite, variant, arch, packages) and never of
the mirror: any mirror of the same suite gives the same key. The image's key adds the configuration:
the rest of the recipe, every file rendered from it, and the guest init when there is one.

This module keys, finds and orders the steps; the parts:

    recipe.py       vm-images/rootfs.json loaded and checked, the files it renders (and RootfsError)
    debootstrap.py  step 1, the tree
    guestconfig.py  step 2, a copy of the tree configured for the harness
    ext4.py         step 3, the ext4 image
    treefiles.py    writing inside a tree without following its symlinks out; build.json
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from compat.images.apt import host_mirror
from compat.images.cache import Cache, file_digest, key
from compat.images.debootstrap import MIB, make_tree, require_build_host, tree_bytes
from compat.images.ext4 import MKFS_OPTIONS, SIZE_FACTOR, SIZE_SLACK_MIB, image_size_mib, pack
from compat.images.guestconfig import HARNESS_KEY, configure
from compat.images.recipe import RECIPE, Recipe, load_recipe, rendered_files
from compat.images.treefiles import manifest
from compat.paths import VM_IMAGES
from compat.proc import run

log = logging.getLogger(__name__)

GUEST_INIT = VM_IMAGES / "init" / "guest-init"

# Bump when the code changes what a tree, or an image, contains for the same recipe.
TREE_FORMAT = 1
IMAGE_FORMAT = 1

IMAGE_NAME = "rootfs.ext4"


def tree_key(recipe: Recipe) -> str:
    return key("rootfs-tree", TREE_FORMAT, recipe.tree_inputs())


def image_key(tree: str, recipe: Recipe, init_digest: str | None) -> str:
    sizing = (SIZE_FACTOR, SIZE_SLACK_MIB, MKFS_OPTIONS)
    return key(
        "rootfs-image",
        IMAGE_FORMAT,
        tree,
        recipe.config_inputs(),
        rendered_files(recipe),
        init_digest,
        sizing,
    )


# --- the result ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RootfsImage:
    """A built root filesystem image and the keys to reach a guest booted from it."""

    image: Path  # ext4, labelled `label`
    ssh_key: Path  # the harness's private key; its public half is root's authorized key
    ssh_pubkey: Path
    host_keys: Path  # the guest's SSH host public keys, for known_hosts
    key: str
    label: str
    built: bool = False  # made by this call, not found in the cache


def _result(artefact: Path, image_key_: str, recipe: Recipe, built: bool = False) -> RootfsImage:
    return RootfsImage(
        image=artefact / IMAGE_NAME,
        ssh_key=artefact / HARNESS_KEY,
        ssh_pubkey=artefact / f"{HARNESS_KEY}.pub",
        host_keys=artefact / "host_keys",
        key=image_key_,
        label=recipe.label,
        built=built,
    )


def build_rootfs(
    cache: Cache, rebuild: bool = False, *, recipe_path: Path = RECIPE, guest_init: Path = GUEST_INIT
) -> RootfsImage:
    """The image of the recipe, from the cache or built (tree and image) now; rebuild forces both."""
    recipe = load_recipe(recipe_path)
    init = guest_init if guest_init.is_file() else None
    tkey = tree_key(recipe)
    ikey = image_key(tkey, recipe, file_digest(init) if init else None)
    with cache.build("rootfs-image", ikey, rebuild) as slot:
        if slot.hit:
            log.info("rootfs image %s: cached at %s", ikey, slot.path)
        else:
            tree = _tree(cache, recipe, tkey, rebuild)
            _build_image(tree, recipe, slot.work, init, ikey)
    return _result(slot.path, ikey, recipe, built=not slot.hit)


def _tree(cache: Cache, recipe: Recipe, tkey: str, rebuild: bool) -> Path:
    with cache.build("rootfs-tree", tkey, rebuild) as slot:
        if slot.hit:
            log.info("rootfs tree %s: cached", tkey)
        else:
            require_build_host()
            make_tree(recipe, host_mirror(), slot.work)
    return slot.path / "tree"


# --- the image: a configured copy of the tree, packed ---------------------------------------


def _build_image(tree: Path, recipe: Recipe, out: Path, init: Path | None, ikey: str) -> None:
    started = time.monotonic()
    staging = out / "staging"
    log.info("configuring a copy of the rootfs tree")
    run(["cp", "-a", "--reflink=auto", tree, staging])
    configure(staging, recipe, out, init)
    size = tree_bytes(staging)
    image = out / IMAGE_NAME
    pack(staging, image, recipe.label, image_size_mib(size))
    shutil.rmtree(staging)
    manifest(out, {"key": ikey, "tree_bytes": size, "image_bytes": image.stat().st_size,
                   "guest_init": init is not None})  # fmt: skip
    log.info("rootfs image %s: %d MiB ext4 from a %d MiB tree in %.0f s",
             ikey, image.stat().st_size // MIB, size // MIB, time.monotonic() - started)  # fmt: skip
