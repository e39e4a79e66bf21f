"""The Vagrant box: the same guest root filesystem, with every matrix kernel's modules inside (one box
boots all four kernels; Vagrant has no second disk for them), as qcow2 for vagrant-libvirt.

    <artefact>/kcompat.box   a tar of metadata.json, Vagrantfile and box.img (vagrant-libvirt's v1 format)
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from compat.images import debootstrap, ext4
from compat.images.build import Images
from compat.images.cache import Cache, file_digest, key
from compat.images.kernel_tree import depmod
from compat.proc import run

log = logging.getLogger(__name__)
LAYOUT = 2


@dataclass(frozen=True)
class Box:
    name: str  # as `vagrant box add` knows it
    path: Path
    ssh_key: Path  # root's key in the guest (the harness key of the root filesystem)


def build_box(images: Images, cache: Cache | None = None, rebuild: bool = False) -> Box:
    cache = cache or Cache()
    trees = sorted(images.kernels.values(), key=lambda k: k.kernel.release)
    inputs = key(
        "box",
        LAYOUT,
        images.rootfs.key,
        [(k.kernel.release, file_digest(k.kernel.modules_dep)) for k in trees],
    )
    with cache.build("box", inputs, rebuild) as slot:
        if not slot.hit:
            _make(images, slot.work)
    name = f"kcompat-{inputs}"
    _add(name, slot.path / "kcompat.box")
    return Box(name, slot.path / "kcompat.box", images.rootfs.ssh_key)


def _make(images: Images, work: Path) -> None:
    tree = work / "tree"
    tree.mkdir()
    run(["debugfs", "-R", f"rdump / {tree}", images.rootfs.image], capture=True)
    for kernel_set in images.kernels.values():
        release = kernel_set.kernel.release
        shutil.copytree(kernel_set.kernel.modules, tree / "usr" / "lib" / "modules" / release, symlinks=True)
        depmod(tree, release)
    raw = work / "box.ext4"
    run(
        ext4.mkfs_argv(tree, raw, images.rootfs.label, ext4.image_size_mib(debootstrap.tree_bytes(tree))),
        capture=True,
    )
    shutil.rmtree(tree)
    run(["qemu-img", "convert", "-O", "qcow2", raw, work / "box.img"], capture=True)
    virtual_gib = -(-raw.stat().st_size // 2**30)
    raw.unlink()
    (work / "metadata.json").write_text(
        json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": virtual_gib})
    )
    (work / "Vagrantfile").write_text(
        'Vagrant.configure("2") do |config|\n  config.vm.provider :libvirt do |lv|\n  end\nend\n'
    )
    with tarfile.open(work / "kcompat.box", "w") as box:
        for name in ("metadata.json", "Vagrantfile", "box.img"):
            box.add(work / name, name)
    for name in ("metadata.json", "Vagrantfile", "box.img"):
        (work / name).unlink()
    log.info("box built: %s", work / "kcompat.box")


def _add(name: str, path: Path) -> None:
    # Away from the repository: vagrant would read its Vagrantfile.
    listed = run(["vagrant", "box", "list"], capture=True, check=False, cwd=path.parent).stdout
    if any(line.split()[:1] == [name] for line in listed.splitlines()):
        return
    run(["vagrant", "box", "add", "--force", "--name", name, path], capture=True, cwd=path.parent)
