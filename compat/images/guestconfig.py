"""Step 2 of the guest rootfs: a copy of the tree configured for the harness.

The recipe's rendered files, a fresh SSH host key (its public half kept beside the image, for
known_hosts), the harness's key authorized for root, the recipe's users with their keys, empty mount
points, the guest init where there is one; sshd must accept the result (`sshd -t` in a chroot).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from compat.images.debootstrap import LC_C
from compat.images.recipe import HOST_KEY, Recipe, RootfsError, User, rendered_files
from compat.images.treefiles import inside, mkdir, write
from compat.proc import CommandError, run

log = logging.getLogger(__name__)

HARNESS_KEY = "id_ed25519"
INIT_IN_GUEST = "sbin/kcompat-init"
MOUNT_POINTS = ("lib/modules", "sysroot")


def configure(tree: Path, recipe: Recipe, out: Path, init: Path | None) -> None:
    for rel, text in rendered_files(recipe).items():
        write(tree, rel, text)
    _host_keys(tree, recipe, out / "host_keys")
    _keygen(out / HARNESS_KEY, "kcompat-harness")
    _authorize(tree, "root", [(out / f"{HARNESS_KEY}.pub").read_text(encoding="utf-8").strip()], 0)
    for user in recipe.users:
        _add_user(tree, user)
    _make_dirs(tree)
    if init is not None:
        write(tree, INIT_IN_GUEST, init.read_text(encoding="utf-8"), 0o755)
        log.info("installed %s as /%s", init.name, INIT_IN_GUEST)
    _check_sshd(tree)


def _keygen(path: Path, comment: str) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path])


def _host_keys(tree: Path, recipe: Recipe, dest: Path) -> None:
    """A fresh ed25519 host key (the keys openssh-server's postinst made are dropped)."""
    private = inside(tree, HOST_KEY)
    for old in private.parent.glob("ssh_host_*"):
        old.unlink()
    _keygen(private, f"root@{recipe.hostname}")
    dest.mkdir()
    shutil.copyfile(f"{private}.pub", dest / f"{private.name}.pub")


def _authorize(tree: Path, home: str, keys: list[str] | tuple[str, ...], owner: int) -> None:
    mkdir(tree, f"{home}/.ssh", 0o700, owner)
    write(tree, f"{home}/.ssh/authorized_keys", "".join(f"{k}\n" for k in keys), 0o600, owner)


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
        path = inside(tree, rel)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        mkdir(tree, rel)
    mkdir(tree, "run/sshd")


def _check_sshd(tree: Path) -> None:
    try:
        run(["chroot", tree, "/usr/sbin/sshd", "-t"], env=LC_C)
    except CommandError as exc:
        raise RootfsError(
            f"sshd rejects the guest's configuration: {exc.stderr_tail}",
            "see the sshd settings in vm-images/rootfs.json",
        ) from exc
