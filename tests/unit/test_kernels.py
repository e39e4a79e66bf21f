"""Kernels for the VM matrix: catalogue, lock file, user kernels (.deb and directory), depmod.

No network: fetch() is exercised with a fake apt that hands out a .deb built here.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import re
import shutil
import struct
from pathlib import Path

import pytest

from compat.errors import CompatError
from compat.images import kernel_catalogue, kernel_download, kernel_tree, kernels
from compat.images.cache import Cache, file_digest
from compat.images.initramfs import ModuleTable, module_name
from compat.images.kernel_catalogue import (
    Catalogue,
    CatalogueEntry,
    KernelError,
    Lock,
    LockedPackage,
    LockEntry,
)
from compat.proc import run

RELEASE = "6.1.0-test"
NEEDS_DPKG_DEB = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is not installed")
NEEDS_DEPMOD = pytest.mark.skipif(shutil.which("depmod") is None, reason="kmod's depmod is not installed")
RECORDED = Path(__file__).parents[1] / "data" / "modules"


# --- helpers ---


def elf_module(exports: tuple[str, ...] = (), needs: tuple[str, ...] = (), **modinfo: str) -> bytes:
    """A minimal ELF64 relocatable that depmod reads: .modinfo (aliases), __ksymtab_strings (the
    symbols it exports) and a .symtab of undefined symbols (what it needs from other modules)."""
    info = b"".join(f"{key}={value}".encode() + b"\0" for key, value in modinfo.items())
    strtab = b"\0" + b"".join(name.encode() + b"\0" for name in needs)
    symtab, name_at = bytearray(24), 1  # entry 0 is the null symbol
    for name in needs:
        symtab += struct.pack("<IBBHQQ", name_at, 0x10, 0, 0, 0, 0)  # STB_GLOBAL, SHN_UNDEF
        name_at += len(name) + 1
    sections = [  # name, type (1 PROGBITS, 2 SYMTAB, 3 STRTAB), data, link, entsize
        (".modinfo", 1, info, 0, 0),
        ("__ksymtab_strings", 1, b"".join(name.encode() + b"\0" for name in exports), 0, 0),
        (".strtab", 3, strtab, 0, 0),
        (".symtab", 2, bytes(symtab), 3, 24),
    ]
    names = b"\0" + b"".join(name.encode() + b"\0" for name, *_ in sections) + b".shstrtab\0"
    body, headers, name_at = b"", bytes(64), 1
    for name, kind, data, link, entsize in sections:
        info_field = 1 if kind == 2 else 0  # a symtab's first non-local symbol
        headers += struct.pack(
            "<IIQQQQIIQQ", name_at, kind, 0, 0, 64 + len(body), len(data), link, info_field, 1, entsize
        )
        body, name_at = body + data, name_at + len(name) + 1
    headers += struct.pack("<IIQQQQIIQQ", name_at, 3, 0, 0, 64 + len(body), len(names), 0, 0, 1, 0)
    body += names
    count = len(sections) + 2
    header = b"\x7fELF\x02\x01\x01" + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, 64 + len(body), 0, 64, 0, 0, 64, count, count - 1)
    return header + body + headers


def write_files(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def build_deb(tmp_path: Path, files: dict[str, bytes], name: str = f"linux-image-{RELEASE}") -> Path:
    root = tmp_path / "pkg" / name
    control = (
        f"Package: {name}\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Maintainer: Test <test@example.org>\nDescription: a fake kernel\n"
    )
    write_files(root, {"DEBIAN/control": control.encode(), **files})
    deb = tmp_path / f"{name}_1.0-1_amd64.deb"
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb], capture=True)
    return deb


def image_files(release: str = RELEASE) -> dict[str, bytes]:
    return {
        f"boot/vmlinuz-{release}": b"kernel",
        f"boot/config-{release}": b"CONFIG_OVERLAY_FS=m\n",
        f"lib/modules/{release}/modules.dep": b"kernel/fs/overlayfs/overlay.ko:\n",
        f"usr/share/doc/linux-image-{release}/changelog.gz": b"docs",
    }


# --- catalogue ---


def test_catalogue_in_the_repository() -> None:
    catalogue = kernel_catalogue.load_catalogue()
    assert catalogue.ids == ("5.10", "6.1", "6.12", "7.x")
    suites = {e.id: e.suite for e in catalogue.entries}
    assert suites == {"5.10": "bullseye", "6.1": "bookworm", "6.12": "trixie", "7.x": "sid"}
    assert catalogue.fallback_suites == ["sid", "trixie", "bookworm", "bullseye"]
    assert catalogue.get("7.x").image_pattern == r"linux-image-7\.\d+\.\S*-cloud-amd64"


def test_unknown_id_lists_the_known_ones() -> None:
    with pytest.raises(KernelError) as error:
        kernel_catalogue.load_catalogue().get("4.19")
    assert "'4.19'" in str(error.value)
    assert "5.10, 6.1, 6.12, 7.x" in str(error.value)


def test_resolve_of_neither_id_nor_path_lists_the_ids(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match=r"known ids: 5\.10, 6\.1, 6\.12, 7\.x"):
        kernels.resolve("8.0", Cache(tmp_path))


@pytest.mark.parametrize(
    ("kernels_field", "message"),
    [
        ({}, "no kernels"),
        ({"1.0": {"release_re": "1\\."}}, "'suite' must be of type str"),
        ({"1.0": {"suite": "sid", "release_re": "("}}, "bad release_re"),
    ],
)
def test_bad_catalogue(kernels_field: dict[str, object], message: str) -> None:
    data = {"arch": "amd64", "flavour": "cloud-amd64", "kernels": kernels_field}
    with pytest.raises(KernelError, match=message):
        kernel_catalogue.parse_catalogue(data)


# --- lock file ---


def package(name: str = "linux-image-1.0-cloud-amd64", sha256: str = "a" * 64) -> LockedPackage:
    return LockedPackage(name, "1.0-1", f"{name}_1.0-1_amd64.deb", sha256, 1234)


def test_lock_in_the_repository_fits_the_catalogue() -> None:
    catalogue, lock = kernel_catalogue.load_catalogue(), kernel_catalogue.load_lock()
    assert lock.arch == catalogue.arch
    for entry in catalogue.entries:
        locked = lock.get(entry.id)
        assert locked is not None, entry.id
        assert locked.suite == entry.suite
        assert locked.release.startswith(entry.id.removesuffix("x"))
        assert locked.packages[0].name == f"linux-image-{locked.release}"
    sid = lock.get("7.x")
    assert sid is not None
    parts = {p.name.removesuffix(f"-{sid.release}") for p in sid.packages}
    assert parts == {"linux-image", "linux-binary", "linux-modules", "linux-base"}


def test_lock_round_trip() -> None:
    lock = Lock(
        "amd64", (LockEntry("1.0", "sid", "1.0-cloud-amd64", (package(), package("linux-base-1.0"))),)
    )
    assert kernel_catalogue.parse_lock(json.loads(kernel_catalogue.dump_lock(lock))) == lock


def test_lock_with_entry_replaces_and_orders() -> None:
    first = LockEntry("6.1", "bookworm", "6.1.0-1-cloud-amd64", (package(),))
    second = LockEntry("5.10", "bullseye", "5.10.0-1-cloud-amd64", (package(),))
    newer = LockEntry("6.1", "bookworm", "6.1.0-2-cloud-amd64", (package(),))
    lock = Lock("amd64", (first,)).with_entry(second, ["5.10", "6.1"]).with_entry(newer, ["5.10", "6.1"])
    assert lock.entries == (second, newer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sha256": "abc"}, "64 lower-case hex"),
        ({"deb": "../evil.deb"}, "not a file name"),
        ({"deb": "other_1.0_amd64.deb"}, "not a file name"),
        ({"name": "Bad Name"}, "not a Debian package name"),
        ({"size": "12"}, "'size' must be of type int"),
    ],
)
def test_lock_validation(change: dict[str, object], message: str) -> None:
    data = json.loads(
        kernel_catalogue.dump_lock(Lock("amd64", (LockEntry("1.0", "sid", "1.0", (package(),)),)))
    )
    data["kernels"]["1.0"]["packages"][0].update(change)
    with pytest.raises(KernelError, match=message):
        kernel_catalogue.parse_lock(data, "kernels.lock.json")


def test_lock_of_another_format_is_refused() -> None:
    with pytest.raises(KernelError, match="format 2"):
        kernel_catalogue.parse_lock({"format": 2, "arch": "amd64", "kernels": {}})


# --- from_dir ---


def test_from_dir_fake_tree(tmp_path: Path) -> None:
    write_files(tmp_path, {"vmlinuz": b"kernel", f"lib/modules/{RELEASE}/modules.dep": b""})
    tree = kernel_tree.from_dir(tmp_path)
    assert (tree.id, tree.release) == (RELEASE, RELEASE)
    assert tree.vmlinuz == tmp_path / "vmlinuz"
    assert tree.modules == tmp_path / "lib" / "modules" / RELEASE
    assert tree.modules_dep == tree.modules / "modules.dep"
    assert tree.config is None
    assert tree.modules_builtin is None
    assert str(tmp_path) in tree.source


@pytest.mark.parametrize(
    ("files", "vmlinuz", "config"),
    [
        (["bzImage", "config"], "bzImage", "config"),
        ([f"vmlinuz-{RELEASE}", f"boot/config-{RELEASE}"], f"vmlinuz-{RELEASE}", f"boot/config-{RELEASE}"),
        (
            ["boot/vmlinuz-6.1.0-other", f"lib/modules/{RELEASE}/config"],
            "boot/vmlinuz-6.1.0-other",
            f"lib/modules/{RELEASE}/config",
        ),
    ],
)
def test_from_dir_finds_image_and_config(tmp_path: Path, files: list[str], vmlinuz: str, config: str) -> None:
    write_files(tmp_path, {name: b"x" for name in files})
    write_files(
        tmp_path, {f"lib/modules/{RELEASE}/modules.dep": b"", f"lib/modules/{RELEASE}/modules.builtin": b""}
    )
    tree = kernel_tree.from_dir(tmp_path)
    assert tree.vmlinuz == tmp_path / vmlinuz
    assert tree.config == tmp_path / config
    assert tree.modules_builtin == tree.modules / "modules.builtin"


def test_from_dir_usr_lib_modules(tmp_path: Path) -> None:
    write_files(tmp_path, {"vmlinuz": b"k", f"usr/lib/modules/{RELEASE}/modules.dep": b""})
    assert kernel_tree.from_dir(tmp_path).modules == tmp_path / "usr" / "lib" / "modules" / RELEASE


def test_from_dir_with_merged_usr(tmp_path: Path) -> None:
    write_files(tmp_path, {"vmlinuz": b"k", f"usr/lib/modules/{RELEASE}/modules.dep": b""})
    (tmp_path / "lib").symlink_to("usr/lib")
    assert kernel_tree.from_dir(tmp_path).modules == tmp_path / "lib" / "modules" / RELEASE


def test_from_dir_without_modules_dep_names_depmod(tmp_path: Path) -> None:
    write_files(tmp_path, {"vmlinuz": b"k", f"lib/modules/{RELEASE}/modules.order": b""})
    with pytest.raises(KernelError, match=r"no modules\.dep") as error:
        kernel_tree.from_dir(tmp_path)
    assert f"depmod -b {tmp_path} {RELEASE}" in error.value.hint


def test_from_dir_with_two_releases(tmp_path: Path) -> None:
    write_files(
        tmp_path,
        {"vmlinuz": b"k", "lib/modules/6.1.0-a/modules.dep": b"", "lib/modules/6.1.0-b/modules.dep": b""},
    )
    with pytest.raises(KernelError, match="exactly one"):
        kernel_tree.from_dir(tmp_path)


def test_from_dir_without_image(tmp_path: Path) -> None:
    write_files(tmp_path, {f"lib/modules/{RELEASE}/modules.dep": b""})
    with pytest.raises(KernelError, match="no kernel image") as error:
        kernel_tree.from_dir(tmp_path)
    assert "bzImage" in error.value.hint


# --- module indexes (kmod's depmod) ---


def small_tree(root: Path) -> Path:
    moddir = root / "lib" / "modules" / RELEASE
    write_files(
        moddir,
        {
            "kernel/drivers/virtio/virtio.ko": elf_module(exports=("register_virtio_driver",)),
            "kernel/drivers/virtio/virtio_ring.ko": elf_module(
                exports=("vring_new",), needs=("register_virtio_driver",)
            ),
            "kernel/drivers/block/virtio_blk.ko": elf_module(
                needs=("vring_new", "register_virtio_driver"), alias="virtio:d00000002v*"
            ),
            "kernel/drivers/md/dm-mod.ko": elf_module(exports=("dm_get",)),
            "kernel/drivers/md/dm-crypt.ko.xz": lzma.compress(
                elf_module(needs=("dm_get",)), check=lzma.CHECK_CRC32
            ),
            "kernel/fs/overlayfs/overlay.ko.xz": lzma.compress(
                elf_module(alias="fs-overlay"), check=lzma.CHECK_CRC32
            ),
        },
    )
    return moddir


@NEEDS_DEPMOD
def test_depmod_indexes_a_small_tree(tmp_path: Path) -> None:
    moddir = small_tree(tmp_path)
    kernel_tree.depmod(tmp_path, RELEASE)
    lines = sorted((moddir / "modules.dep").read_text().splitlines())
    assert lines == [
        "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/md/dm-crypt.ko.xz: kernel/drivers/md/dm-mod.ko",
        "kernel/drivers/md/dm-mod.ko:",
        "kernel/drivers/virtio/virtio.ko:",
        "kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko",
        "kernel/fs/overlayfs/overlay.ko.xz:",
    ]
    aliases = (moddir / "modules.alias").read_text()
    assert "alias virtio:d00000002v* virtio_blk" in aliases
    assert "alias fs-overlay overlay" in aliases
    assert (moddir / "modules.dep.bin").is_file()  # what the guest's modprobe reads


@NEEDS_DEPMOD
@pytest.mark.parametrize("recorded", sorted(RECORDED.glob("debian-*.modules.dep")), ids=lambda p: p.name)
def test_depmod_agrees_with_a_recorded_modules_dep(tmp_path: Path, recorded: Path) -> None:
    """Modules named and linked as in a recorded Debian modules.dep: depmod finds the same
    dependencies, and the initramfs loads the same modules, each after what it needs."""
    recorded_lines = (line.partition(":") for line in recorded.read_text().splitlines())
    table = {path: deps.split() for path, _, deps in recorded_lines}
    symbol = {path: "sym_" + re.sub(r"\W", "_", path) for path in table}
    files = {}
    for path, needed in table.items():
        module = elf_module(exports=(symbol[path],), needs=tuple(symbol[d] for d in needed))
        files[path] = lzma.compress(module, check=lzma.CHECK_CRC32) if path.endswith(".xz") else module
    moddir = tmp_path / "lib" / "modules" / RELEASE
    write_files(moddir, files)
    kernel_tree.depmod(tmp_path, RELEASE)
    written = (moddir / "modules.dep").read_text()
    lines = (line.partition(":") for line in written.splitlines())
    assert {path: set(deps.split()) for path, _, deps in lines} == {p: set(d) for p, d in table.items()}
    builtin = recorded.with_name(recorded.name.replace(".dep", ".builtin")).read_text()
    order = ModuleTable.parse(written, builtin).load_order()
    assert sorted(order) == sorted(ModuleTable.parse(recorded.read_text(), builtin).load_order())
    position = {name: i for i, name in enumerate(order)}
    for path, needed in table.items():
        if module_name(path) in position:
            assert all(position[module_name(d)] < position[module_name(path)] for d in needed), path


@NEEDS_DEPMOD
def test_a_broken_module_is_named(tmp_path: Path) -> None:
    write_files(tmp_path / "lib" / "modules" / RELEASE, {"kernel/broken.ko": b"not an elf"})
    with pytest.raises(KernelError, match=r"broken\.ko") as error:
        kernel_tree.depmod(tmp_path, RELEASE)
    assert error.value.hint


def test_depmod_missing_says_which_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(KernelError) as error:
        kernel_tree.depmod(tmp_path, RELEASE)
    assert error.value.hint == "apt-get install kmod"


@NEEDS_DEPMOD
def test_index_modules_of_a_split_usr_lib_tree(tmp_path: Path) -> None:
    """kmod 30 reads BASE/lib/modules: sid's usr/lib/modules needs BASE=DIR/usr, not a symlink."""
    small_tree(tmp_path / "usr")
    dep = kernel_tree.index_modules(tmp_path)
    assert dep == tmp_path / "usr" / "lib" / "modules" / RELEASE / "modules.dep"
    assert "kernel/drivers/md/dm-crypt.ko.xz: kernel/drivers/md/dm-mod.ko" in dep.read_text()
    assert not (tmp_path / "lib").exists()


def test_kernel_errors_are_compat_errors_with_the_hint_apart() -> None:
    with pytest.raises(CompatError) as error:
        kernel_catalogue.load_catalogue().get("4.19")
    assert isinstance(error.value, KernelError)
    assert (
        error.value.hint
        == "add it to vm-images/kernels.json, or give a linux-image .deb or a kernel directory"
    )
    assert "vm-images" not in error.value.message


# --- from_deb ---


@NEEDS_DPKG_DEB
def test_from_deb(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    deb = build_deb(tmp_path, image_files())
    tree = kernel_tree.from_deb(deb, cache)
    assert tree.release == RELEASE
    assert tree.vmlinuz.read_bytes() == b"kernel"
    assert tree.config is not None
    assert tree.config.read_bytes() == b"CONFIG_OVERLAY_FS=m\n"
    assert tree.modules_dep.read_text() == "kernel/fs/overlayfs/overlay.ko:\n"  # shipped, so kept
    assert tree.root.is_relative_to(cache.root / "artifacts")
    assert sorted(p.name for p in tree.root.iterdir()) == ["config", "lib", "vmlinuz"]  # no docs
    assert kernel_tree.from_deb(deb, cache) == tree


@NEEDS_DPKG_DEB
@NEEDS_DEPMOD
def test_from_deb_split_layout_gets_module_indexes(tmp_path: Path) -> None:
    moddir = f"usr/lib/modules/{RELEASE}"
    files = {
        f"{moddir}/vmlinuz": b"kernel",
        f"{moddir}/config": b"CONFIG_X=y\n",
        f"{moddir}/System.map": b"ffffffffffffffff B placeholder\n",
        f"{moddir}/modules.builtin": b"kernel/fs/ext4/ext4.ko\n",
        f"{moddir}/kernel/fs/overlayfs/overlay.ko.xz": lzma.compress(elf_module(alias="fs-overlay")),
    }
    tree = kernel_tree.from_deb(build_deb(tmp_path, files), Cache(tmp_path / "cache"))
    assert tree.modules == tree.root / "lib" / "modules" / RELEASE
    assert tree.vmlinuz == tree.root / "vmlinuz"
    assert tree.config == tree.root / "config"
    assert (tree.root / "System.map").is_file()
    assert tree.modules_builtin is not None
    assert tree.modules_dep.read_text() == "kernel/fs/overlayfs/overlay.ko.xz:\n"
    assert "alias fs-overlay overlay" in (tree.modules / "modules.alias").read_text()
    assert (tree.modules / "modules.dep.bin").is_file()  # kmod's depmod wrote the indexes


@NEEDS_DPKG_DEB
def test_from_deb_without_config_names_linux_base(tmp_path: Path) -> None:
    files = image_files()
    del files[f"boot/config-{RELEASE}"]
    cache = Cache(tmp_path / "cache")
    with pytest.raises(KernelError, match="no kernel config") as error:
        kernel_tree.from_deb(build_deb(tmp_path, files), cache)
    assert "linux-base" in error.value.hint
    assert not any((cache.root / "artifacts").iterdir())
    assert not any((cache.root / "tmp").iterdir())


@NEEDS_DPKG_DEB
def test_resolve_dispatches(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    deb = build_deb(tmp_path, image_files())
    assert kernels.resolve(str(deb), cache).source.startswith(str(deb))
    tree_dir = tmp_path / "tree"
    write_files(tree_dir, {"vmlinuz": b"k", f"lib/modules/{RELEASE}/modules.dep": b""})
    assert kernels.resolve(str(tree_dir), cache).root == tree_dir
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(KernelError, match=r"is not a \.deb"):
        kernels.resolve(str(tmp_path / "notes.txt"), cache)


# --- fetch, with a fake apt ---

CATALOGUE = Catalogue("amd64", (CatalogueEntry("6.1", "bookworm", r"6\.1\."),))


class FakeApt:
    suite = "bookworm"

    def __init__(self, debs: dict[str, Path], version: str = "1.0-1") -> None:
        self.debs, self.version = debs, version
        self.downloads: list[str] = []

    def candidate_version(self, package: str) -> str:  # noqa: ARG002 - Apt.candidate_version's signature
        return self.version

    def download(self, name: str, dest: Path) -> Path:
        self.downloads.append(name)
        return Path(shutil.copy(self.debs[name], dest))


@pytest.fixture
def locked_deb(tmp_path: Path) -> tuple[Path, Lock]:
    deb = build_deb(tmp_path, image_files())
    pkg = LockedPackage(f"linux-image-{RELEASE}", "1.0-1", deb.name, file_digest(deb), deb.stat().st_size)
    return deb, Lock("amd64", (LockEntry("6.1", "bookworm", RELEASE, (pkg,)),))


def use_apt(monkeypatch: pytest.MonkeyPatch, apt: FakeApt | None) -> None:
    def open_apt(*_args: object) -> FakeApt:
        if apt is None:
            raise AssertionError("apt was started although every deb is cached")
        return apt

    monkeypatch.setattr(kernel_download, "host_mirror", lambda: None)
    monkeypatch.setattr(kernel_download, "open_apt", open_apt)


@NEEDS_DPKG_DEB
def test_fetch_downloads_once_then_needs_no_apt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locked_deb: tuple[Path, Lock]
) -> None:
    deb, lock = locked_deb
    cache = Cache(tmp_path / "cache")
    apt = FakeApt({f"linux-image-{RELEASE}": deb})
    use_apt(monkeypatch, apt)
    tree = kernels.fetch("6.1", cache, catalogue=CATALOGUE, lock=lock)
    assert (tree.id, tree.release) == ("6.1", RELEASE)
    assert tree.source == f"Debian bookworm: linux-image-{RELEASE} 1.0-1"
    assert apt.downloads == [f"linux-image-{RELEASE}"]

    use_apt(monkeypatch, None)
    assert kernels.fetch("6.1", cache, catalogue=CATALOGUE, lock=lock) == tree  # the artefact is reused
    assert kernels.fetch("6.1", cache, rebuild=True, catalogue=CATALOGUE, lock=lock) == tree  # the deb is


@NEEDS_DPKG_DEB
def test_fetch_sha256_mismatch_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locked_deb: tuple[Path, Lock]
) -> None:
    deb, lock = locked_deb
    wrong = dataclasses.replace(lock.entries[0].packages[0], sha256="0" * 64)
    bad_lock = Lock("amd64", (dataclasses.replace(lock.entries[0], packages=(wrong,)),))
    use_apt(monkeypatch, FakeApt({wrong.name: deb}))
    cache = Cache(tmp_path / "cache")
    with pytest.raises(
        KernelError, match=re.escape(f"sha256 mismatch for linux-image-{RELEASE} 1.0-1")
    ) as error:
        kernels.fetch("6.1", cache, catalogue=CATALOGUE, lock=bad_lock)
    assert "--update-lock 6.1" in error.value.hint
    assert not any((cache.root / "artifacts").iterdir())


@NEEDS_DPKG_DEB
def test_fetch_when_the_mirror_moved_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, locked_deb: tuple[Path, Lock]
) -> None:
    deb, lock = locked_deb
    use_apt(monkeypatch, FakeApt({f"linux-image-{RELEASE}": deb}, version="1.1-1"))
    with pytest.raises(KernelError, match=r"bookworm now has .* 1\.1-1, the lock wants 1\.0-1"):
        kernels.fetch("6.1", Cache(tmp_path / "cache"), catalogue=CATALOGUE, lock=lock)


def test_fetch_of_an_id_missing_from_the_lock(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="not in the lock file") as error:
        kernels.fetch("6.1", Cache(tmp_path), catalogue=CATALOGUE, lock=Lock("amd64", ()))
    assert error.value.hint == "python3 -m compat.images.kernels --update-lock 6.1"


def test_fetch_of_a_stale_lock_entry(tmp_path: Path) -> None:
    stale = Lock("amd64", (LockEntry("6.1", "bullseye", "5.10.0-1-cloud-amd64", (package(),)),))
    with pytest.raises(KernelError, match="does not fit the catalogue"):
        kernels.fetch("6.1", Cache(tmp_path), catalogue=CATALOGUE, lock=stale)
