"""Files written into a guest tree as host root, never through a symlink out of it; and build.json.

The tree is debootstrap's and holds the guest's own symlinks: every path is resolved up to its
parent and refused if that leads outside the tree, and a file is replaced, not written through.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from compat.images.recipe import RootfsError


def inside(root: Path, rel: str) -> Path:
    """root/rel with its parent resolved, refused if a symlink leads out of root."""
    path = root / rel
    parent = path.parent.resolve()
    if not parent.is_relative_to(root.resolve()):
        raise RootfsError(f"{rel} leads out of the tree {root} (through a symlink)", "rebuild the tree")
    return parent / path.name


def write(root: Path, rel: str, text: str, mode: int = 0o644, owner: int = 0) -> Path:
    """Replace root/rel (a symlink there is replaced, not followed) with text."""
    path = inside(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, mode)
    os.chown(path, owner, owner)
    return path


def mkdir(root: Path, rel: str, mode: int = 0o755, owner: int = 0) -> Path:
    path = inside(root, rel)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    os.chown(path, owner, owner)
    return path


def manifest(out: Path, data: Mapping[str, object]) -> None:
    """out/build.json: what a cache artefact was built from, and how long it took."""
    (out / "build.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
