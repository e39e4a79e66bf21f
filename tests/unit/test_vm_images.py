"""Flavours, the initramfs module sets and cpio, and the QEMU command line: no VM needed."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import stat
from pathlib import Path

import pytest

from compat import flavours
from compat.errors import CompatError
from compat.harness.qemu import TCG_CPU, Machine, kernel_command_line, qemu_argv
from compat.images import build, initramfs
from compat.images.cache import Cache, key

MODULES = Path(__file__).parents[1] / "data" / "modules"


def recorded(kernel_id: str, index: str) -> str:
    path = MODULES / f"debian-{kernel_id}.modules.{index}"
    return path.read_text() if path.exists() else ""


def table(kernel_id: str) -> initramfs.ModuleTable:
    return initramfs.ModuleTable.parse(
        *(recorded(kernel_id, i) for i in ("dep", "builtin", "softdep", "alias"))
    )


# --- module sets, from the real Debian modules.dep ------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel_id", "disk_modules"),
    [
        ("5.10", ["virtio_ring", "virtio", "virtio_pci", "virtio_blk"]),
        (
            "6.1",
            [
                "virtio_pci_legacy_dev",
                "virtio_pci_modern_dev",
                "virtio_ring",
                "virtio",
                "virtio_pci",
                "virtio_blk",
            ],
        ),
        ("6.12", ["virtio_blk"]),  # virtio is built in from 6.12
    ],
)
def test_the_modules_that_reach_the_root_disk(kernel_id: str, disk_modules: list[str]) -> None:
    assert table(kernel_id).load_order(("virtio_pci", "virtio_blk")) == disk_modules


@pytest.mark.parametrize("kernel_id", ["5.10", "6.1", "6.12", "6.1-generic"])
def test_dependencies_load_first_and_rng_and_net_come_along(kernel_id: str) -> None:
    modules = table(kernel_id)
    order = modules.load_order()
    assert {"virtio_blk", "virtio_rng", "virtio_net"} <= set(order)
    for position, name in enumerate(order):
        assert all(order.index(dep) < position for dep in modules.deps[name] if dep not in modules.builtin)


def test_the_generic_kernel_brings_ext4_and_its_dependencies_in_load_order() -> None:
    """Debian's generic 6.1 (linux-image-6.1.0-50-amd64) has ext4 as a module: without it, and
    without what it needs, /init cannot mount /dev/vda ("No such device")."""
    assert table("6.1-generic").load_order(("virtio_pci", "virtio_blk", initramfs.ROOT_FILESYSTEM)) == [
        "virtio_pci_legacy_dev",
        "virtio_pci_modern_dev",
        "virtio_ring",
        "virtio",
        "virtio_pci",
        "virtio_blk",
        "crc32c_intel",  # softdep ext4 pre: crypto-crc32c, both modules of that alias
        "crc32c_generic",
        "crc16",
        "mbcache",
        "jbd2",
        "ext4",
    ]


def test_the_generic_kernel_crc32c_is_optional_and_the_cloud_kernels_build_ext4_in() -> None:
    assert table("6.1-generic").soft_only() == {"crc32c_intel", "crc32c_generic"}
    assert "crc32c_generic" not in table("6.1-generic").load_order(soft=False)
    for kernel_id in ("5.10", "6.1", "6.12"):
        assert not {"ext4", "jbd2", "mbcache", "crc16"} & set(table(kernel_id).load_order()), kernel_id


def test_a_soft_dependency_that_is_missing_or_loops_is_skipped() -> None:
    modules = initramfs.ModuleTable.parse(
        "kernel/a.ko: kernel/b.ko\nkernel/b.ko:\nkernel/c.ko:\n",
        "",
        "softdep a pre: no-such-thing c post: b\nsoftdep c pre: a\n",
    )
    assert modules.load_order(("a",)) == ["c", "b", "a"]


def test_a_module_that_is_nowhere_is_an_error() -> None:
    with pytest.raises(initramfs.ModuleError, match="neither a module nor built in"):
        table("6.12").load_order(("no_such_module",))


def test_a_module_error_carries_its_fix_apart() -> None:
    with pytest.raises(CompatError) as info:
        table("6.12").load_order(("no_such_module",))
    assert isinstance(info.value, initramfs.ModuleError)
    assert "virtio" in info.value.hint
    assert "hint" not in info.value.message


def test_missing_build_tools_name_the_packages_in_the_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _tool: None)
    with pytest.raises(build.BuildError) as info:
        build.check_tools()
    assert isinstance(info.value, CompatError)
    assert info.value.message.startswith("missing tools: debootstrap")
    assert info.value.hint.startswith("apt-get install debootstrap")


def test_module_names() -> None:
    assert initramfs.module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz") == "virtio_rng"
    assert initramfs.module_name("kernel/fs/overlayfs/overlay.ko") == "overlay"


def parse_cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    entries: dict[str, tuple[int, bytes]] = {}
    offset = 0
    while True:
        assert data[offset : offset + 6] == b"070701"
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + name_size - 1].decode()
        body = name_start + name_size + (-(110 + name_size) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, data[body : body + size])
        offset = body + size + (-size % 4)


def test_initramfs_holds_busybox_init_modules_and_console(tmp_path: Path) -> None:
    release = tmp_path / "6.12.0-test"
    (release / "kernel").mkdir(parents=True)
    (release / "modules.dep").write_text(
        "kernel/virtio_blk.ko: \nkernel/virtio-rng.ko:\nkernel/virtio_net.ko: kernel/failover.ko\nkernel/failover.ko:\n"
    )
    (release / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\nkernel/fs/ext4/ext4.ko\n")
    for name in ("virtio_blk", "virtio-rng", "virtio_net", "failover"):
        (release / "kernel" / f"{name}.ko").write_bytes(f"module {name}".encode())
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    entries = parse_cpio(gzip.decompress(initramfs.build(release, busybox)))
    assert entries["init"][1] == initramfs.INIT.read_bytes()
    assert stat.S_ISCHR(entries["dev/console"][0])
    assert entries["bin/busybox"][1] == b"\x7fELF busybox"
    assert entries["modules.order"][1] == b"virtio_blk\nvirtio_rng\nfailover\nvirtio_net\n"
    assert entries["lib/modules/6.12.0-test/virtio_rng.ko"][1] == b"module virtio-rng"


def test_initramfs_marks_the_soft_dependencies_in_modules_order(tmp_path: Path) -> None:
    release = tmp_path / "6.1.0-test-amd64"
    (release / "kernel").mkdir(parents=True)
    dep = ["virtio_blk.ko:", "ext4.ko: kernel/jbd2.ko", "jbd2.ko:", "crc32c_generic.ko:", "virtio_rng.ko:"]
    dep += ["virtio_net.ko:"]
    (release / "modules.dep").write_text("".join(f"kernel/{line}\n" for line in dep))
    (release / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    (release / "modules.softdep").write_text("softdep ext4 pre: crypto-crc32c\n")
    (release / "modules.alias").write_text("alias crypto-crc32c crc32c_generic\n")
    for line in dep:
        (release / "kernel" / line.partition(":")[0]).write_bytes(b"module")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    entries = parse_cpio(gzip.decompress(initramfs.build(release, busybox)))
    order = entries["modules.order"][1].decode().splitlines()
    assert order == ["virtio_blk", "crc32c_generic soft", "jbd2", "ext4", "virtio_rng", "virtio_net"]
    assert "lib/modules/6.1.0-test-amd64/ext4.ko" in entries


# --- flavours --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("v2", ["kc_cgroups=v2", "kc_userns=on", "kc_overlay=load", "kc_root=disk"]),
        ("hybrid", ["kc_cgroups=hybrid", "kc_userns=on", "kc_overlay=load", "kc_root=disk"]),
        ("v2+userns-off", ["kc_cgroups=v2", "kc_userns=off", "kc_overlay=load", "kc_root=disk"]),
        (
            "v2+no-overlay",
            [
                "kc_cgroups=v2",
                "kc_userns=on",
                "kc_overlay=withhold",
                "kc_root=disk",
                "module_blacklist=overlay",
            ],
        ),
        ("initramfs-root", ["kc_cgroups=v2", "kc_userns=on", "kc_overlay=load", "kc_root=initramfs"]),
    ],
)
def test_flavour_command_lines(name: str, args: list[str]) -> None:
    flavour = flavours.parse(name)
    assert flavour.kernel_args() == args
    assert flavour.name == name  # and back


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("v3", "unknown flavour part 'v3'"),
        ("v1+v2", "two cgroup layouts"),
        ("v2+userns-off+userns-unpriv-off", "sets userns twice"),
        ("", "empty"),
    ],
)
def test_bad_flavours_are_refused(name: str, message: str) -> None:
    with pytest.raises(flavours.FlavourError, match=message):
        flavours.parse(name)


def test_a_bad_flavour_names_the_known_parts_in_its_hint() -> None:
    with pytest.raises(CompatError) as info:
        flavours.parse("v3")
    assert isinstance(info.value, flavours.FlavourError)
    assert info.value.message == "unknown flavour part 'v3' in 'v3'"
    assert "hybrid" in info.value.hint
    assert "userns-off" in info.value.hint
    assert str(info.value).endswith(f"\n  hint: {info.value.hint}")


def test_qemu_command_line(tmp_path: Path) -> None:
    machine = Machine(
        Path("/k/vmlinuz"),
        Path("/k/initrd"),
        Path("/r/root.img"),
        Path("/k/modules.img"),
        flavours.parse("hybrid"),
    )
    argv = qemu_argv(machine, 2222, tmp_path / "console.log", tmp_path / "pid")
    assert argv[:1] == ["qemu-system-x86_64"]
    assert argv[argv.index("-smp") : argv.index("-smp") + 2] == ["-smp", "2"]  # SMP under TCG too
    assert argv[argv.index("-cpu") + 1] == TCG_CPU
    assert argv[argv.index("-accel") + 1] == "tcg,thread=single"  # see the MTTCG consoles
    one = qemu_argv(dataclasses.replace(machine, smp=1), 2222, tmp_path / "console.log", tmp_path / "pid")
    assert one[one.index("-smp") + 1] == "1"
    assert "file=/r/root.img,if=virtio,format=raw,snapshot=on" in argv  # writes discarded
    assert "file=/k/modules.img,if=virtio,format=raw,readonly=on" in argv
    assert "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22" in argv
    assert "virtio-rng-pci" in argv
    assert "kc_cgroups=hybrid" in kernel_command_line(machine)
    assert argv[argv.index("-append") + 1] == kernel_command_line(machine)


# --- the cache -------------------------------------------------------------------------------------------


def test_a_failed_build_never_becomes_a_hit(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    build_key = key("kernel", "6.1", 1)

    def interrupted_build() -> None:
        with cache.build("thing", build_key) as slot:
            (slot.work / "half").write_text("half")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        interrupted_build()
    assert not cache.has("thing", build_key)
    assert list((tmp_path / "tmp").iterdir()) == []
    with cache.build("thing", build_key) as slot:
        assert not slot.hit
        (slot.work / "whole").write_text("whole")
    with cache.build("thing", build_key) as slot:
        assert slot.hit
        assert (slot.path / "whole").read_text() == "whole"


def test_keys_follow_the_inputs() -> None:
    assert key("a", {"x": 1, "y": 2}) == key("a", {"y": 2, "x": 1})
    assert key("a", 1) != key("a", 2)
