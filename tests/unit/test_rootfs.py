"""The guest rootfs recipe and builder: the debootstrap command, the image size, the rendered sshd
configuration and the cache keys (no network, no root). One integration test builds the real image."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from compat.errors import CompatError
from compat.images import rootfs, treefiles
from compat.images.apt import DEFAULT_KEYRING, AptSource
from compat.images.cache import Cache
from compat.images.debootstrap import debootstrap_argv, mounts_below, tree_bytes
from compat.images.ext4 import image_size_mib, mkfs_argv
from compat.images.recipe import (
    RECIPE,
    Recipe,
    RecipeError,
    RootfsError,
    load_recipe,
    parse_recipe,
    render_sshd_config,
    rendered_files,
)
from compat.images.rootfs import build_rootfs, image_key, tree_key

MIB = 1 << 20
MIRROR = AptSource("http://mirror.example/debian", ("bookworm",), ("main",), "/etc/keys/debian.gpg")
OTHER_MIRROR = AptSource("http://other.example/debian", ("bookworm",), ("main",), None)


def recipe_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RECIPE.read_text(encoding="utf-8"))
    data.update(changes)
    return data


def recipe(**changes: Any) -> Recipe:
    return parse_recipe(recipe_data(**changes))


# --- the recipe file ---


def test_recipe_file_asks_for_the_guest_we_need() -> None:
    r = load_recipe()
    assert (r.suite, r.variant, r.arch) == ("bookworm", "minbase", "amd64")
    assert {"python3", "openssh-server", "iproute2", "util-linux", "procps", "busybox", "kmod"} <= set(
        r.packages
    )
    assert "busybox-static" not in r.packages
    assert "ca-certificates" not in r.packages
    assert dict(r.sshd) == {
        "PermitRootLogin": "prohibit-password",
        "PasswordAuthentication": "no",
        "UseDNS": "no",
    }
    (vagrant,) = r.users
    assert (vagrant.name, vagrant.uid) == ("vagrant", 1000)
    assert vagrant.authorized_keys[0].endswith(" vagrant insecure public key")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra": 1}, "unknown recipe fields"),
        ({"packages": ["python3", "bad,name"]}, "unusable entry"),
        ({"suite": 12}, "must be a str"),
        ({"label": "a-label-longer-than-16"}, "longer than 16"),
        ({"sshd": {"UseDNS": "no\nPermitRootLogin yes"}}, "unusable sshd setting"),
        ({"users": [{"name": "x", "uid": 0, "shell": "/bin/sh", "authorized_keys": []}]}, "outside"),
    ],
)
def test_recipe_refuses_what_it_cannot_use(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        recipe(**changes)


def test_recipe_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "rootfs.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(RecipeError, match=str(bad)):
        load_recipe(bad)


def test_a_recipe_error_names_the_file_to_fix_in_its_hint(tmp_path: Path) -> None:
    bad = tmp_path / "rootfs.json"
    bad.write_text(
        json.dumps({**json.loads(RECIPE.read_text(encoding="utf-8")), "extra": 1}), encoding="utf-8"
    )
    with pytest.raises(CompatError) as info:
        load_recipe(bad)
    assert isinstance(info.value, RecipeError)
    assert info.value.message == f"{bad}: unknown recipe fields: ['extra']"
    assert info.value.hint == f"fix {bad}"


def test_a_symlink_out_of_the_tree_is_refused_with_a_hint(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "etc").symlink_to(tmp_path)
    with pytest.raises(RootfsError) as info:
        treefiles.inside(tree, "etc/hostname")
    assert isinstance(info.value, CompatError)
    assert info.value.message.endswith("(through a symlink)")
    assert info.value.hint == "rebuild the tree"


# --- debootstrap and mkfs commands ---


def test_debootstrap_argv() -> None:
    argv = debootstrap_argv(recipe(packages=["python3", "kmod", "python3"]), MIRROR, Path("/t/tree"))
    assert argv == [
        "debootstrap",
        "--variant=minbase",
        "--arch=amd64",
        "--include=kmod,python3",
        "--keyring=/etc/keys/debian.gpg",
        "bookworm",
        "/t/tree",
        "http://mirror.example/debian",
    ]


@pytest.mark.parametrize("signed_by", [None, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n..."])
def test_debootstrap_keyring_falls_back_to_debians(signed_by: str | None) -> None:
    mirror = AptSource(MIRROR.uri, ("bookworm",), ("main",), signed_by)
    assert f"--keyring={DEFAULT_KEYRING}" in debootstrap_argv(recipe(), mirror, Path("/t"))


def test_debootstrap_without_extra_packages() -> None:
    argv = debootstrap_argv(recipe(packages=[]), MIRROR, Path("/t"))
    assert not any(a.startswith("--include") for a in argv)


def test_mkfs_argv_needs_no_loop_mount() -> None:
    assert mkfs_argv(Path("/s"), Path("/o/rootfs.ext4"), "kcompat-root", 300) == [
        "mkfs.ext4", "-q", "-F", "-L", "kcompat-root", "-d", "/s", "-b", "4096", "-E", "root_owner=0:0",
        "/o/rootfs.ext4", "300M",
    ]  # fmt: skip


# --- sizes ---


@pytest.mark.parametrize(
    ("tree", "mib"),
    [(0, 64), (1, 65), (100 * MIB, 204), (300 * MIB, 484), (300 * MIB + 1, 485)],
)
def test_image_size(tree: int, mib: int) -> None:
    assert image_size_mib(tree) == mib


def test_tree_bytes_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    data = tmp_path / "d" / "a"
    data.write_bytes(b"x" * 100_000)
    os.link(data, tmp_path / "b")
    (tmp_path / "link").symlink_to("d/a")
    one_copy = os.lstat(data).st_blocks * 512
    assert one_copy <= tree_bytes(tmp_path) < 2 * one_copy


def test_mounts_below_deepest_first(tmp_path: Path) -> None:
    top = tmp_path / "tree"
    info = "\n".join(
        f"{n} 1 0:{n} / {point} rw - proc proc rw"
        for n, point in enumerate(
            ["/proc", f"{top}/proc", f"{top}/proc/sys/fs/binfmt_misc", f"{top}2/x", f"{top}/a\\040b"]
        )
    )
    assert mounts_below(top, info) == [f"{top}/proc/sys/fs/binfmt_misc", f"{top}/proc", f"{top}/a b"]


# --- rendered configuration ---


def test_sshd_config_puts_the_recipe_first() -> None:
    text = render_sshd_config(dict(load_recipe().sshd))
    lines = text.splitlines()
    for setting in ("PermitRootLogin prohibit-password", "PasswordAuthentication no", "UseDNS no"):
        assert lines.index(setting) < lines.index("Include /etc/ssh/sshd_config.d/*.conf")
    assert "HostKey /etc/ssh/ssh_host_ed25519_key" in lines
    assert "Subsystem sftp /usr/lib/openssh/sftp-server" in lines
    assert text.endswith("\n")


def test_sshd_config_refuses_injected_lines() -> None:
    with pytest.raises(RecipeError):
        render_sshd_config({"UseDNS": "no\nPermitRootLogin yes"})


def test_rendered_files() -> None:
    files = rendered_files(load_recipe())
    assert files["etc/hostname"] == "kcompat\n"
    assert files["etc/machine-id"] == ""
    assert "UseDNS no" in files["etc/ssh/sshd_config.d/10-kcompat-fast.conf"].splitlines()
    assert "127.0.1.1\tkcompat" in files["etc/hosts"]
    assert [line for line in files["etc/fstab"].splitlines() if not line.startswith("#")] == [
        "LABEL=kcompat-root / ext4 defaults 0 0"
    ]


# --- cache keys ---


def test_keys_are_stable() -> None:
    assert tree_key(recipe()) == tree_key(load_recipe())
    assert image_key(tree_key(recipe()), recipe(), None) == image_key(
        tree_key(load_recipe()), load_recipe(), None
    )


def test_package_change_changes_both_keys() -> None:
    base, more = recipe(), recipe(packages=[*recipe().packages, "less"])
    assert tree_key(base) != tree_key(more)
    assert image_key(tree_key(base), base, None) != image_key(tree_key(more), more, None)


def test_package_order_does_not_matter() -> None:
    assert tree_key(recipe()) == tree_key(recipe(packages=list(reversed(recipe().packages))))


@pytest.mark.parametrize(
    "changes",
    [{"hostname": "other"}, {"label": "other-root"}, {"sshd": {"UseDNS": "yes"}}, {"users": []}],
)
def test_configuration_change_changes_only_the_image_key(changes: dict[str, Any]) -> None:
    base, changed = recipe(), recipe(**changes)
    assert tree_key(base) == tree_key(changed)
    assert image_key(tree_key(base), base, None) != image_key(tree_key(changed), changed, None)


def test_guest_init_changes_the_image_key() -> None:
    tkey = tree_key(recipe())
    keys = {image_key(tkey, recipe(), digest) for digest in (None, "a" * 64, "b" * 64)}
    assert len(keys) == 3


def fake_cached_image(cache_root: Path, recipe_path: Path) -> str:
    """An image artefact in the cache as build_rootfs would find it; returns its key."""
    r = load_recipe(recipe_path)
    ikey = image_key(tree_key(r), r, None)
    (cache_root / "artifacts" / f"rootfs-image-{ikey}").mkdir(parents=True)
    return ikey


def test_mirror_is_not_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached image is found whichever mirror the host uses, without even asking for it, and
    without running a command."""
    ikey = fake_cached_image(tmp_path / "cache", RECIPE)
    no_init = tmp_path / "no-guest-init"
    for mirror in (MIRROR, OTHER_MIRROR):
        monkeypatch.setattr(rootfs, "host_mirror", lambda mirror=mirror: mirror)
        monkeypatch.setattr(rootfs, "run", lambda *a, **_k: pytest.fail(f"ran {a}"))
        started = time.monotonic()
        image = build_rootfs(Cache(tmp_path / "cache"), guest_init=no_init)
        assert time.monotonic() - started < 0.5
        assert image.key == ikey
        assert image.image == tmp_path / "cache" / "artifacts" / f"rootfs-image-{ikey}" / "rootfs.ext4"
        assert image.label == "kcompat-root"


def test_recipe_change_misses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_cached_image(tmp_path / "cache", RECIPE)
    changed = tmp_path / "rootfs.json"
    changed.write_text(json.dumps(recipe_data(hostname="elsewhere")), encoding="utf-8")

    class Built(Exception):
        pass

    def no_tree(*_args: object) -> Path:
        raise Built

    monkeypatch.setattr(rootfs, "_tree", no_tree)
    with pytest.raises(Built):
        build_rootfs(Cache(tmp_path / "cache"), recipe_path=changed, guest_init=tmp_path / "none")
