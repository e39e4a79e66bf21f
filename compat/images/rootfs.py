"""The guest root filesystem: a debootstrap tree made from vm-images/rootfs.json, configured for the
harness and packed into an ext4 image without loop mounts.

Two cache artefacts:

    rootfs-tree-<key>/    tree/ (debootstrap's result, mirror traces removed), debootstrap.log, build.json
    rootfs-image-<key>/   rootfs.ext4, id_ed25519{,.pub} (the harness's key), host_keys/*.pub, build.json

The tree's key is made of what debootstrap is asked for (suite, variant, arch, packages) and never of
the mirror: any mirror of the same suite gives the same key. The image's key adds the configuration:
the rest of the recipe, every file rendered from it, and the guest init when there is one.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from compat.errors import CompatError
from compat.images.apt import DEFAULT_KEYRING, PACKAGE_NAME, AptSource, host_mirror
from compat.images.cache import Cache, file_digest, key
from compat.paths import VM_IMAGES
from compat.proc import CommandError, run, tail

log = logging.getLogger(__name__)

RECIPE = VM_IMAGES / "rootfs.json"
GUEST_INIT = VM_IMAGES / "init" / "guest-init"

# Bump when the code changes what a tree, or an image, contains for the same recipe.
TREE_FORMAT = 1
IMAGE_FORMAT = 1

MIB = 1 << 20
SIZE_FACTOR = 1.4
SIZE_SLACK_MIB = 64
# 4 KiB blocks whatever the size: below 512 MiB mke2fs would otherwise pick its "small" type (1 KiB blocks).
MKFS_OPTIONS = ("-b", "4096", "-E", "root_owner=0:0")
IMAGE_NAME = "rootfs.ext4"
HARNESS_KEY = "id_ed25519"
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"
INIT_IN_GUEST = "sbin/kcompat-init"
MOUNT_POINTS = ("lib/modules", "sysroot")
HEARTBEAT_SECONDS = 15.0
_LC_C = {"LC_ALL": "C"}

# Host tools a build needs, with the Debian package that has each.
BUILD_TOOLS = {
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "ssh-keygen": "openssh-client",
    "useradd": "passwd",
    "groupadd": "passwd",
    "chroot": "coreutils",
}

_RECIPE_FIELDS = frozenset(
    {"comment", "suite", "variant", "arch", "packages", "hostname", "label", "sshd", "users"}
)
_USER_FIELDS = frozenset({"name", "uid", "shell", "authorized_keys"})
_NAME = re.compile(r"[a-z_][a-z0-9_-]*")
_WORD = re.compile(r"[A-Za-z0-9._-]+")
_SSHD_KEYWORD = re.compile(r"[A-Za-z]+")
_EXT4_LABEL_MAX = 16
T = TypeVar("T")


class RootfsError(CompatError):
    """The root filesystem could not be built."""


class RecipeError(RootfsError):
    """vm-images/rootfs.json is not what this module expects."""

    def __init__(self, message: str, hint: str = "fix the recipe, vm-images/rootfs.json") -> None:
        super().__init__(message, hint)


# --- the recipe ------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    """A login in the guest, with the public keys that may log in as it."""

    name: str
    uid: int
    shell: str
    authorized_keys: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    suite: str
    variant: str
    arch: str
    packages: tuple[str, ...]
    hostname: str
    label: str
    sshd: tuple[tuple[str, str], ...]
    users: tuple[User, ...]

    @property
    def include(self) -> tuple[str, ...]:
        """The packages in a stable order, each once."""
        return tuple(sorted(set(self.packages)))

    def tree_inputs(self) -> dict[str, object]:
        """What debootstrap is asked for, and nothing else."""
        return {"suite": self.suite, "variant": self.variant, "arch": self.arch, "packages": self.include}

    def config_inputs(self) -> dict[str, object]:
        return {
            "hostname": self.hostname,
            "label": self.label,
            "sshd": self.sshd,
            "users": [asdict(user) for user in self.users],
        }


def _field(data: Mapping[str, Any], name: str, kind: type[T], pattern: re.Pattern[str] | None = None) -> T:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RecipeError(f"recipe field {name!r} must be a {kind.__name__}, not {value!r}")
    if pattern is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
        raise RecipeError(f"recipe field {name!r} has an unusable value {value!r}")
    return value


def _strings(data: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    values = _field(data, name, list)
    for value in values:
        if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
            raise RecipeError(f"recipe field {name!r} has an unusable entry {value!r}")
    return tuple(values)


def _user(data: Mapping[str, Any]) -> User:
    unknown = set(data) - _USER_FIELDS
    if unknown:
        raise RecipeError(f"unknown fields in a recipe user: {sorted(unknown)}")
    keys = _strings(data, "authorized_keys")
    if any("\n" in k for k in keys):
        raise RecipeError("an authorized key must be one line")
    uid = _field(data, "uid", int)
    if not 1 <= uid < 60000:
        raise RecipeError(f"recipe user uid {uid} is outside 1..59999")
    return User(_field(data, "name", str, _NAME), uid, _field(data, "shell", str), keys)


def _sshd_settings(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    settings = _field(data, "sshd", dict)
    for name, value in settings.items():
        if not _SSHD_KEYWORD.fullmatch(name) or not isinstance(value, str) or "\n" in value:
            raise RecipeError(f"unusable sshd setting {name!r}: {value!r}")
    return tuple(settings.items())


def parse_recipe(data: Mapping[str, Any]) -> Recipe:
    unknown = set(data) - _RECIPE_FIELDS
    if unknown:
        raise RecipeError(f"unknown recipe fields: {sorted(unknown)}")
    label = _field(data, "label", str, _WORD)
    if len(label) > _EXT4_LABEL_MAX:
        raise RecipeError(f"the ext4 label {label!r} is longer than {_EXT4_LABEL_MAX} characters")
    return Recipe(
        suite=_field(data, "suite", str, _WORD),
        variant=_field(data, "variant", str, _WORD),
        arch=_field(data, "arch", str, _WORD),
        packages=_strings(data, "packages", PACKAGE_NAME),
        hostname=_field(data, "hostname", str, _NAME),
        label=label,
        sshd=_sshd_settings(data),
        users=tuple(_user(u) for u in _field(data, "users", list)),
    )


def load_recipe(path: Path = RECIPE) -> Recipe:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RecipeError(f"cannot read the rootfs recipe {path}: {exc}", f"fix {path}") from exc
    if not isinstance(data, dict):
        raise RecipeError(f"the rootfs recipe {path} is not a JSON object", f"fix {path}")
    try:
        return parse_recipe(data)
    except RecipeError as exc:
        raise RecipeError(f"{path}: {exc.message}", f"fix {path}") from exc


# --- pure parts: argv, sizes, rendered files, keys -------------------------------------------


def keyring_for(mirror: AptSource) -> str:
    """The keyring file that verifies the mirror; Debian's own when the source names none (or
    embeds its key inline, which debootstrap cannot use)."""
    signed_by = mirror.signed_by
    return signed_by if signed_by and signed_by.startswith("/") else DEFAULT_KEYRING


def debootstrap_argv(recipe: Recipe, mirror: AptSource, target: Path) -> list[str]:
    argv = ["debootstrap", f"--variant={recipe.variant}", f"--arch={recipe.arch}"]
    if recipe.include:
        argv.append(f"--include={','.join(recipe.include)}")
    return [*argv, f"--keyring={keyring_for(mirror)}", recipe.suite, str(target), mirror.uri]


def image_size_mib(tree_size: int) -> int:
    """The ext4 image's size for a tree of tree_size bytes: times 1.4, plus 64 MiB, rounded up to MiB."""
    return math.ceil(tree_size * SIZE_FACTOR / MIB) + SIZE_SLACK_MIB


def mkfs_argv(tree: Path, image: Path, label: str, size_mib: int) -> list[str]:
    return ["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(tree), *MKFS_OPTIONS, str(image), f"{size_mib}M"]


def render_sshd_config(settings: Mapping[str, str]) -> str:
    """/etc/ssh/sshd_config. sshd keeps the first value it reads for a keyword, so the recipe's
    settings come first and win over the drop-ins and Debian's defaults that follow."""
    for name, value in settings.items():
        if not _SSHD_KEYWORD.fullmatch(name) or "\n" in value:
            raise RecipeError(f"unusable sshd setting {name!r}: {value!r}")
    lines = [
        "# Written by compat/images/rootfs.py from vm-images/rootfs.json.",
        *(f"{name} {value}" for name, value in settings.items()),
        f"HostKey /{HOST_KEY}",
        "Include /etc/ssh/sshd_config.d/*.conf",
        "KbdInteractiveAuthentication no",
        "UsePAM yes",
        "X11Forwarding no",
        "PrintMotd no",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ]
    return "\n".join(lines) + "\n"


SSHD_FAST_DROPIN = """\
# Written by compat/images/rootfs.py. The guest has no resolver and no Kerberos: never wait for them.
UseDNS no
GSSAPIAuthentication no
PrintLastLog no
"""


def rendered_files(recipe: Recipe) -> dict[str, str]:
    """The guest's files that come from the recipe, by path in the tree."""
    name = recipe.hostname
    return {
        "etc/ssh/sshd_config": render_sshd_config(dict(recipe.sshd)),
        "etc/ssh/sshd_config.d/10-kcompat-fast.conf": SSHD_FAST_DROPIN,
        "etc/hostname": f"{name}\n",
        "etc/hosts": f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "etc/fstab": f"# <file system> <mount point> <type> <options> <dump> <pass>\nLABEL={recipe.label} / ext4 defaults 0 0\n",
        # No resolver in the guest: an empty file makes every lookup fail at once on loopback.
        "etc/resolv.conf": "",
        # Empty: nothing in the image names one machine (the guest has no systemd to fill it in).
        "etc/machine-id": "",
    }


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


# --- step 1: the debootstrap tree ------------------------------------------------------------


def _require_build_host() -> None:
    if os.geteuid() != 0:
        raise RootfsError(
            "building the guest rootfs needs root (debootstrap makes device nodes and owned files)",
            "run as root, or point KCOMPAT_CACHE at a cache that already has the image",
        )
    missing = sorted({pkg for tool, pkg in BUILD_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise RootfsError(
            "tools to build the guest rootfs are missing", f"apt-get install {' '.join(missing)}"
        )


def _tree(cache: Cache, recipe: Recipe, tkey: str, rebuild: bool) -> Path:
    with cache.build("rootfs-tree", tkey, rebuild) as slot:
        if slot.hit:
            log.info("rootfs tree %s: cached", tkey)
        else:
            _require_build_host()
            _make_tree(recipe, host_mirror(), slot.work)
    return slot.path / "tree"


def _make_tree(recipe: Recipe, mirror: AptSource, out: Path) -> None:
    target = out / "tree"
    started = time.monotonic()
    _debootstrap(recipe, mirror, target)
    seconds = time.monotonic() - started
    _scrub(target, out)
    size = tree_bytes(target)
    version = run(["dpkg-query", "-W", "-f=${Version}", "debootstrap"], check=False, capture=True).stdout
    _manifest(
        out, {**recipe.tree_inputs(), "debootstrap": version, "seconds": round(seconds, 1), "bytes": size}
    )
    log.info("debootstrap %s (%s): %.0f s, %d MiB tree", recipe.suite, recipe.variant, seconds, size // MIB)


def _debootstrap(recipe: Recipe, mirror: AptSource, target: Path) -> None:
    argv = debootstrap_argv(recipe, mirror, target)
    log.info(
        "debootstrap %s (%s, from the host's mirror) with %s",
        recipe.suite,
        recipe.variant,
        ", ".join(recipe.include),
    )
    try:
        with _heartbeat(f"debootstrap {recipe.suite}", target):
            proc = run(argv, check=False, capture=True, env=_LC_C)
    finally:
        _unmount_below(target)
    # Its I:/W:/E: lines go to stdout; everything else to target/debootstrap/debootstrap.log.
    for line in proc.stdout.splitlines():
        log.debug("debootstrap: %s", line)
        if line.startswith("W: "):
            log.warning("debootstrap: %s", line[3:])
    if proc.returncode != 0:
        detail = tail(proc.stdout) or _last_line(target / "debootstrap" / "debootstrap.log")
        raise RootfsError(
            f"debootstrap of {recipe.suite} from {mirror.uri} failed (exit {proc.returncode}): {detail}",
            f"check the host's apt sources, the keyring {keyring_for(mirror)} (debian-archive-keyring) "
            "and the package names in vm-images/rootfs.json",
        )


@contextmanager
def _heartbeat(what: str, tree: Path) -> Iterator[None]:
    """Log a progress line every HEARTBEAT_SECONDS while the with-block runs."""
    started = time.monotonic()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            last = _last_line(tree / "debootstrap" / "debootstrap.log")
            log.info(
                "%s: %.0f s, %d MiB so far; %s",
                what,
                time.monotonic() - started,
                tree_bytes(tree) // MIB,
                last,
            )

    thread = threading.Thread(target=beat, name="rootfs-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _last_line(path: Path, limit: int = 120) -> str:
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - 4096))
            lines = [
                line.strip() for line in file.read().decode(errors="replace").splitlines() if line.strip()
            ]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def mounts_below(path: Path, mountinfo: str) -> list[str]:
    """Mount points at or under path in mountinfo's text, deepest first."""
    top = str(path.resolve())
    points = [_unescape(line.split()[4]) for line in mountinfo.splitlines() if line.strip()]
    return sorted((p for p in points if p == top or p.startswith(top + "/")), key=len, reverse=True)


def _unmount_below(path: Path) -> None:
    """Detach what a failed or killed debootstrap left mounted in the target (proc, sys)."""
    for point in mounts_below(path, Path("/proc/self/mountinfo").read_text(encoding="utf-8")):
        log.warning("unmounting %s, left behind by debootstrap", point)
        run(["umount", "--lazy", point])


def _scrub(tree: Path, out: Path) -> None:
    """Remove apt's lists and caches, and what debootstrap copied from the host or wrote about the
    mirror, so that the tree is the same from any mirror on any host."""
    for rel in ("var/lib/apt/lists", "var/cache/apt/archives"):
        for entry in _inside(tree, rel).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()
    for cache_file in _inside(tree, "var/cache/apt").glob("*.bin"):
        cache_file.unlink()
    log_file = _inside(tree, "var/log/bootstrap.log")
    if log_file.is_file():
        shutil.move(log_file, out / "debootstrap.log")
    for rel in ("etc/resolv.conf", "etc/hostname"):
        _inside(tree, rel).unlink(missing_ok=True)
    _write(tree, "etc/apt/sources.list", "# The guest has no mirror: the image was built from the host's.\n")


def tree_bytes(root: Path) -> int:
    """Disk usage of the tree, like du: allocated blocks, each hard-linked inode once. Entries that
    vanish while it counts are skipped."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for top, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            try:
                st = os.lstat(os.path.join(top, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


# --- step 2: configure a copy of the tree ----------------------------------------------------


def _build_image(tree: Path, recipe: Recipe, out: Path, init: Path | None, ikey: str) -> None:
    started = time.monotonic()
    staging = out / "staging"
    log.info("configuring a copy of the rootfs tree")
    run(["cp", "-a", "--reflink=auto", tree, staging])
    _configure(staging, recipe, out, init)
    size = tree_bytes(staging)
    image = out / IMAGE_NAME
    _pack(staging, image, recipe.label, image_size_mib(size))
    shutil.rmtree(staging)
    _manifest(out, {"key": ikey, "tree_bytes": size, "image_bytes": image.stat().st_size,
                    "guest_init": init is not None})  # fmt: skip
    log.info("rootfs image %s: %d MiB ext4 from a %d MiB tree in %.0f s",
             ikey, image.stat().st_size // MIB, size // MIB, time.monotonic() - started)  # fmt: skip


def _configure(tree: Path, recipe: Recipe, out: Path, init: Path | None) -> None:
    for rel, text in rendered_files(recipe).items():
        _write(tree, rel, text)
    _host_keys(tree, recipe, out / "host_keys")
    _keygen(out / HARNESS_KEY, "kcompat-harness")
    _authorize(tree, "root", [(out / f"{HARNESS_KEY}.pub").read_text(encoding="utf-8").strip()], 0)
    for user in recipe.users:
        _add_user(tree, user)
    _make_dirs(tree)
    if init is not None:
        _write(tree, INIT_IN_GUEST, init.read_text(encoding="utf-8"), 0o755)
        log.info("installed %s as /%s", init.name, INIT_IN_GUEST)
    _check_sshd(tree)


def _inside(root: Path, rel: str) -> Path:
    """root/rel with its parent resolved, refused if a symlink leads out of root."""
    path = root / rel
    parent = path.parent.resolve()
    if not parent.is_relative_to(root.resolve()):
        raise RootfsError(f"{rel} leads out of the tree {root} (through a symlink)", "rebuild the tree")
    return parent / path.name


def _write(root: Path, rel: str, text: str, mode: int = 0o644, owner: int = 0) -> Path:
    """Replace root/rel (a symlink there is replaced, not followed) with text."""
    path = _inside(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(path, mode)
    os.chown(path, owner, owner)
    return path


def _mkdir(root: Path, rel: str, mode: int = 0o755, owner: int = 0) -> Path:
    path = _inside(root, rel)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    os.chown(path, owner, owner)
    return path


def _keygen(path: Path, comment: str) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])


def _host_keys(tree: Path, recipe: Recipe, dest: Path) -> None:
    """A fresh ed25519 host key (the keys openssh-server's postinst made are dropped)."""
    private = _inside(tree, HOST_KEY)
    for old in private.parent.glob("ssh_host_*"):
        old.unlink()
    _keygen(private, f"root@{recipe.hostname}")
    dest.mkdir()
    shutil.copyfile(f"{private}.pub", dest / f"{private.name}.pub")


def _authorize(tree: Path, home: str, keys: list[str] | tuple[str, ...], owner: int) -> None:
    _mkdir(tree, f"{home}/.ssh", 0o700, owner)
    _write(tree, f"{home}/.ssh/authorized_keys", "".join(f"{k}\n" for k in keys), 0o600, owner)


def _add_user(tree: Path, user: User) -> None:
    uid = str(user.uid)
    home = f"home/{user.name}"
    run(["groupadd", "--root", tree, "--gid", uid, user.name])
    # "*": no password, yet not locked, so key logins work whatever UsePAM says.
    run(["useradd", "--root", tree, "--uid", uid, "--gid", uid, "--home-dir", f"/{home}", "--create-home",
         "--shell", user.shell, "--password", "*", user.name])  # fmt: skip
    _authorize(tree, home, user.authorized_keys, user.uid)


def _make_dirs(tree: Path) -> None:
    """Empty mount points, and sshd's privilege separation directory (the guest init makes it as
    well, when /run is a fresh tmpfs)."""
    for rel in MOUNT_POINTS:
        path = _inside(tree, rel)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        _mkdir(tree, rel)
    _mkdir(tree, "run/sshd")


def _check_sshd(tree: Path) -> None:
    try:
        run(["chroot", tree, "/usr/sbin/sshd", "-t"], env=_LC_C)
    except CommandError as exc:
        raise RootfsError(
            f"sshd rejects the guest's configuration: {exc.stderr_tail}",
            "see the sshd settings in vm-images/rootfs.json",
        ) from exc


# --- step 3: the ext4 image ------------------------------------------------------------------


def _pack(tree: Path, image: Path, label: str, size_mib: int) -> None:
    log.info("making %s (%d MiB, label %s)", image.name, size_mib, label)
    run(mkfs_argv(tree, image, label, size_mib), capture=True)  # it says "Creating regular file" even with -q
    check = run(["e2fsck", "-fn", image], check=False, capture=True, env=_LC_C)
    if check.returncode != 0:
        raise RootfsError(
            f"e2fsck finds errors in the new image {image} (exit {check.returncode}): "
            f"{tail(check.stdout + check.stderr)}",
            "check e2fsprogs (mkfs.ext4 -d)",
        )


def _manifest(out: Path, data: Mapping[str, object]) -> None:
    (out / "build.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
