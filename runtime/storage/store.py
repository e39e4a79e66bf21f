"""The image store: layers by content, image records, references by name, and per-container roots.

    <root>/layers/<diff_id hex>/diff   one unpacked layer, shared by every image that has it
    <root>/layers/<diff_id hex>/link   its short name: <root>/l/<short> points at diff
    <root>/images/<config hex>/image   the record `runtime run` reads (lines, not JSON: start path)
    <root>/images/<config hex>/config.json   the image config as imported
    <root>/refs/<name:tag>             the image id a name points to
    <root>/containers/<id>/            upper, work and merged (overlay) or rootfs (copy)
    <root>/tmp/                        imports in progress; nothing there is part of the store

The root is /var/lib/runtime, or $RUNTIME_STORE.
"""

from __future__ import annotations

import fcntl
import os
import stat

DEFAULT_ROOT = "/var/lib/runtime"
SHORT_LINK_LENGTH = 26  # as Docker's overlay2: keeps lowerdir= short, see storage/overlay.py


def with_tag(name: str) -> str:
    """name:tag, adding :latest; a registry's port (host:5000/name) is not a tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def valid_reference(name: str) -> bool:
    """What may name an image here: printable, no whitespace, no empty or dot-only path parts."""
    if not name or len(name) > 255 or any(ch.isspace() or not ch.isprintable() for ch in name):
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def root() -> str:
    return os.environ.get("RUNTIME_STORE") or DEFAULT_ROOT


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _unescape(text: str) -> str:
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            out.append("\n" if text[index + 1] == "n" else text[index + 1])
            index += 2
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


class ImageRecord:
    """What `runtime run IMAGE` needs. Layers bottom first, as diff_id hex digests."""

    __slots__ = ("cmd", "entrypoint", "env", "image_id", "layers", "refs", "size", "user", "workdir")
    LISTS = ("layer", "env", "cmd", "entrypoint", "ref")

    def __init__(
        self,
        image_id: str,
        layers: list[str],
        env: list[str],
        cmd: list[str] | None,
        entrypoint: list[str] | None,
        workdir: str,
        user: str,
        refs: list[str],
        size: int = 0,
    ) -> None:
        self.image_id = image_id
        self.layers = layers
        self.env = env
        self.cmd = cmd
        self.entrypoint = entrypoint
        self.workdir = workdir
        self.user = user
        self.refs = refs
        self.size = size

    def dump(self) -> str:
        lines = [
            f"id {self.image_id}",
            f"workdir {_escape(self.workdir)}",
            f"user {_escape(self.user)}",
            f"size {self.size}",
        ]
        lines += [f"layer {layer}" for layer in self.layers]
        lines += [f"env {_escape(item)}" for item in self.env]
        lines += [f"ref {_escape(item)}" for item in self.refs]
        for key, values in (("cmd", self.cmd), ("entrypoint", self.entrypoint)):
            if values is not None:
                lines.append(f"{key}-set")
                lines += [f"{key} {_escape(item)}" for item in values]
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, text: str) -> ImageRecord:
        single: dict[str, str] = {}
        lists: dict[str, list[str]] = {key: [] for key in cls.LISTS}
        flags: set[str] = set()
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key in lists:
                lists[key].append(_unescape(value))
            elif key.endswith("-set"):
                flags.add(key[:-4])
            else:
                single[key] = _unescape(value)
        return cls(
            image_id=single["id"],
            layers=lists["layer"],
            env=lists["env"],
            cmd=lists["cmd"] if "cmd" in flags else None,
            entrypoint=lists["entrypoint"] if "entrypoint" in flags else None,
            workdir=single.get("workdir", ""),
            user=single.get("user", ""),
            refs=lists["ref"],
            size=int(single.get("size", "0")),
        )


class Store:
    def __init__(self, path: str | None = None) -> None:
        self.path = path or root()

    def sub(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def ensure(self) -> None:
        for name in ("layers", "l", "images", "refs", "containers", "tmp"):
            os.makedirs(self.sub(name), mode=0o711, exist_ok=True)

    def lock(self, exclusive: bool) -> int:
        """A whole-store lock: imports and removals take it exclusively, runs shared. Close to release."""
        self.ensure()
        fd = os.open(self.sub("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        return fd

    # --- layers ---

    def layer_dir(self, diff_id: str) -> str:
        return self.sub("layers", diff_id, "diff")

    def has_layer(self, diff_id: str) -> bool:
        return os.path.isdir(self.layer_dir(diff_id))

    def layer_size(self, diff_id: str) -> int:
        try:
            with open(self.sub("layers", diff_id, "size")) as file:
                return int(file.read())
        except (OSError, ValueError):
            return 0

    def short_link(self, diff_id: str) -> str:
        with open(self.sub("layers", diff_id, "link")) as file:
            return file.read().strip()

    # --- images and references ---

    def ref_path(self, name: str) -> str:
        return self.sub("refs", name.replace("/", "%2F"))

    def resolve(self, name: str) -> str | None:
        """An image id from a name (name:tag, name meaning name:latest) or an id (prefix)."""
        for candidate in dict.fromkeys((name, with_tag(name))):
            try:
                with open(self.ref_path(candidate)) as file:
                    return file.read().strip()
            except FileNotFoundError:
                continue
        ids = [image for image in self.image_ids() if image.startswith(name.removeprefix("sha256:"))]
        return ids[0] if len(ids) == 1 and len(name.removeprefix("sha256:")) >= 6 else None

    def image_ids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.sub("images")))
        except FileNotFoundError:
            return []

    def record(self, image_id: str) -> ImageRecord:
        with open(self.sub("images", image_id, "image")) as file:
            return ImageRecord.load(file.read())

    def refs(self) -> dict[str, str]:
        try:
            names = os.listdir(self.sub("refs"))
        except FileNotFoundError:
            return {}
        found = {}
        for escaped in names:
            with open(self.sub("refs", escaped)) as file:
                found[escaped.replace("%2F", "/")] = file.read().strip()
        return found


def top_file(store: Store, record: ImageRecord, relative: str) -> str | None:
    """A regular file as the image shows it (top layer first), read before any mount: for user
    names. A symlink anywhere on the way ends the search: it would resolve on the host, not in the image."""
    for layer in reversed(record.layers):
        path = store.layer_dir(layer)
        for part in relative.split("/"):
            path = os.path.join(path, part)
            try:
                info = os.lstat(path)
            except FileNotFoundError:
                break
            if stat.S_ISLNK(info.st_mode) or (stat.S_ISCHR(info.st_mode) and info.st_rdev == 0):
                return None  # a symlink leads out of the layer; a whiteout deletes the file
        else:
            return path if stat.S_ISREG(info.st_mode) else None
    return None
