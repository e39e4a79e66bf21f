"""The image store: layers by content, image records, references by name, and per-container roots.

    <root>/layers/<diff_id hex>/diff   one unpacked layer, shared by every image that has it
    <root>/layers/<diff_id hex>/link   its short name: <root>/l/<short> points at diff
    <root>/images/<config hex>/image   the record `runtime run` reads (lines, not JSON: start path)
    <root>/images/<config hex>/config.json   the image config as imported
    <root>/refs/<name:tag>             the image id a name points to
    <root>/containers/<id>/            upper, work and merged (overlay) or rootfs (copy)
    <root>/tmp/                        imports in progress; nothing there is part of the store

The root is /var/lib/runtime, or $RUNTIME_STORE. Others have no way in: layers hold what images
hold (setuid-root files, device nodes), so layers/, images/, refs/, l/ and tmp/ are 0700 and the root
0711. containers/ is 0711, traversable and not listable: in copy mode a container's root is an
unprivileged host uid that must reach its rootfs. Overlay lowerdirs are mounted by host root.
"""

from __future__ import annotations

import fcntl
import os
import stat

from runtime.errors import Failure

DEFAULT_ROOT = "/var/lib/runtime"
SHORT_LINK_LENGTH = 26  # as Docker's overlay2: keeps lowerdir= short, see storage/overlay.py


MODES = {
    "": 0o711,
    "layers": 0o700,
    "l": 0o700,
    "images": 0o700,
    "refs": 0o700,
    "containers": 0o711,
    "tmp": 0o700,
}
NAME_MAX = 255  # a reference is one file name in refs/, and _point writes NAME.tmp first
TEMPORARY_SUFFIX = ".tmp"

# Docker's reference grammar (distribution/reference), without digests; by hand, since `re` costs
# milliseconds on `runtime run`'s start path.
_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_ALNUM = _LOWER_ALNUM | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TAG_FIRST = _ALNUM | {"_"}
_TAG_REST = _TAG_FIRST | {".", "-"}
NOT_IN_GRAMMAR = "it is not in Docker's reference grammar"
NAME_GRAMMAR = (
    "a name is lowercase letters and digits, with '.', '_', '__' or '-' inside, in parts joined by '/' "
    "(after an optional registry host[:port]), then an optional :TAG of up to 128 letters, digits, '_', '.' "
    "or '-' (not first)"
)


def with_tag(name: str) -> str:
    """name:tag, adding :latest; a registry's port (host:5000/name) is not a tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _split_tag(name: str) -> tuple[str, str | None]:
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        return name, None
    return repository, tag


def _runs(text: str, members: frozenset[str]) -> list[str]:
    """text cut where it goes in or out of members: "ab.-c" -> ["ab", ".-", "c"]."""
    runs: list[str] = []
    for ch in text:
        if runs and (runs[-1][-1] in members) == (ch in members):
            runs[-1] += ch
        else:
            runs.append(ch)
    return runs


def _path_component(text: str) -> bool:
    runs = _runs(text, _LOWER_ALNUM)
    if not runs or runs[0][0] not in _LOWER_ALNUM or runs[-1][0] not in _LOWER_ALNUM:
        return False
    separators = runs[1::2]
    return all(sep in (".", "_", "__") or set(sep) == {"-"} for sep in separators)


def _domain(text: str) -> bool:
    host, colon, port = text.partition(":")
    if colon and not (port.isdigit() and port.isascii()):
        return False
    for part in host.split("."):
        if not part or part[0] not in _ALNUM or part[-1] not in _ALNUM:
            return False
        if any(ch not in _ALNUM and ch != "-" for ch in part):
            return False
    return True


def stored_name(name: str) -> str:
    """The file name of a reference in refs/. The grammar has no '%', so the escape cannot collide."""
    return name.replace("/", "%2F")


def reference_problem(name: str) -> str | None:
    """Why name (NAME[:TAG]) cannot name an image here, or None when it can."""
    repository, tag = _split_tag(name)
    components = repository.split("/")
    if len(components) > 1 and _domain(components[0]):
        components = components[1:]
    if tag is not None and not (
        0 < len(tag) <= 128 and tag[0] in _TAG_FIRST and all(ch in _TAG_REST for ch in tag)
    ):
        return NOT_IN_GRAMMAR
    if not all(_path_component(part) for part in components):
        return NOT_IN_GRAMMAR
    length = len(stored_name(with_tag(name)).encode()) + len(TEMPORARY_SUFFIX)
    if length > NAME_MAX:
        return (
            f"it is too long: the store writes it as a {length - len(TEMPORARY_SUFFIX)}-byte file name "
            f"({NAME_MAX - len(TEMPORARY_SUFFIX)} at most; each '/' takes 3)"
        )
    return None


def valid_reference(name: str) -> bool:
    return reference_problem(name) is None


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
        """Make the store, or give every part of it its mode (an older runtime made them looser)."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        for name, mode in MODES.items():
            path = self.sub(name) if name else self.path
            try:
                os.mkdir(path, mode)
            except FileExistsError:
                pass
            os.chmod(path, mode)  # mkdir's mode went through the umask; an old store had others'

    def quick_ensure(self) -> None:
        """For `runtime run`'s start path: two stats when the store is as it should be, and the full
        ensure() when the root or layers/ (what guards the layers) has another mode, or is missing."""
        for name in ("", "layers"):
            try:
                mode = os.stat(self.sub(name) if name else self.path).st_mode
            except FileNotFoundError:
                break
            if stat.S_IMODE(mode) != MODES[name]:
                break
        else:
            return
        self.ensure()

    def lock(self, exclusive: bool) -> int:
        """A whole-store lock: imports and removals take it exclusively, runs shared. Close to release."""
        if exclusive:
            self.ensure()
        else:
            self.quick_ensure()
        fd = os.open(self.sub("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        return fd

    def try_lock(self) -> int | None:
        """The exclusive lock if nobody holds the store (no import, rm or claiming run), else None."""
        self.ensure()
        fd = os.open(self.sub("lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
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
        return self.sub("refs", stored_name(name))

    def resolve(self, name: str) -> str | None:
        """An image id from a name (name:tag, name meaning name:latest) or an id (prefix). A name outside
        the grammar names nothing: it is never made a path ("..", "a%2F..")."""
        for candidate in dict.fromkeys((name, with_tag(name))):
            if not valid_reference(candidate):
                continue
            try:
                with open(self.ref_path(candidate)) as file:
                    return file.read().strip()
            except (FileNotFoundError, IsADirectoryError):
                continue
        prefix = name.removeprefix("sha256:")
        if len(prefix) < 6 or any(ch not in "0123456789abcdef" for ch in prefix):
            return None
        ids = [image for image in self.image_ids() if image.startswith(prefix)]
        return ids[0] if len(ids) == 1 else None

    def image_ids(self) -> list[str]:
        try:
            return sorted(os.listdir(self.sub("images")))
        except FileNotFoundError:
            return []

    def record(self, image_id: str) -> ImageRecord:
        """The image's record; a missing or unreadable one (a command killed halfway) is DamagedStore."""
        if len(image_id) != 64 or any(ch not in "0123456789abcdef" for ch in image_id):
            raise DamagedStore(f"{image_id!r} in {self.path} is not an image id")
        try:
            with open(self.sub("images", image_id, "image")) as file:
                return ImageRecord.load(file.read())
        except (OSError, KeyError, ValueError) as exc:
            raise DamagedStore(
                f"the record of image {image_id[:12]} in {self.path} is unreadable: {exc}"
            ) from exc

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


class DamagedStore(Failure):
    """The store holds a name or an image that a killed command left half-made."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            "runtime image rm NAME removes a name that points at no image",
            1,
        )


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
