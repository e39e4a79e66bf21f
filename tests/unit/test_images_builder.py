"""The test images (tests/images.py, on compat/images/testimage.py) are what they claim: consistent
docker save and OCI images, each corrupt variant broken in the one way it names, and malicious layers
that really are malicious."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import images
from tests.busybox import is_static_elf
from tests.images import Entry, Image

HAVE_BUSYBOX = is_static_elf("/bin/busybox")
needs_busybox = pytest.mark.skipif(not HAVE_BUSYBOX, reason="no static /bin/busybox: install busybox-static")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def small_image() -> Image:
    """Three layers of every kind of entry, no busybox needed."""
    return Image(
        layers=[
            [
                images.directory("etc"),
                images.regular("etc/doomed", b"delete me\n"),
                images.directory("opt", 0o750),
                images.regular("opt/a", b"a\n"),
                Entry("opt/fifo", "fifo"),
                Entry("opt/owned", "file", data=b"mine\n", uid=1000, gid=1000),
            ],
            [
                images.whiteout("etc/doomed"),
                images.opaque("opt"),
                images.regular("opt/b", b"b\n", 0o600),
                images.hardlink("opt/b-link", "opt/b"),
                images.symlink("opt/abs", "/etc"),
            ],
            [images.regular("top", b"top\n")],
        ],
        env=["PATH=/bin", "X=1"],
        cmd=["/bin/sh"],
        entrypoint=["/bin/tini", "--"],
        workdir="/opt",
        user="1000:1000",
        ref="small:2",
    )


def members(tar_bytes: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return tar.getmembers()


def tar_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def uncompressed(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


# Checkers: what an importer verifies, each problem named. A consistent image has none.


def docker_problems(path: Path) -> list[str]:
    files = tar_files(path)
    [entry] = json.loads(files["manifest.json"])
    problems = []
    config_bytes = files.get(entry["Config"])
    if config_bytes is None:
        return ["config-missing"]
    if sha(config_bytes) + ".json" != entry["Config"]:
        problems.append("config-digest")
    diff_ids = json.loads(config_bytes)["rootfs"]["diff_ids"]
    if len(diff_ids) != len(entry["Layers"]):
        problems.append("diff-id-count")
    for i, layer in enumerate(entry["Layers"]):
        if layer not in files:
            problems.append("layer-missing")
        elif i < len(diff_ids) and "sha256:" + sha(uncompressed(files[layer])) != diff_ids[i]:
            problems.append("layer-digest")
    return problems


def oci_files(location: Path) -> dict[str, bytes]:
    if location.is_dir():
        return {str(p.relative_to(location)): p.read_bytes() for p in location.rglob("*") if p.is_file()}
    return tar_files(location)


def oci_problems(location: Path) -> list[str]:
    files = oci_files(location)
    problems = []
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}

    def blob(descriptor: dict[str, object], what: str) -> bytes:
        digest = str(descriptor["digest"])
        data = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
        if len(data) != descriptor["size"]:
            problems.append(f"{what}-size")
        if "sha256:" + sha(data) != digest:
            problems.append(f"{what}-digest")
        return data

    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == images.MEDIA_INDEX
    [descriptor] = index["manifests"]
    assert descriptor["mediaType"] == images.MEDIA_MANIFEST
    manifest = json.loads(blob(descriptor, "manifest"))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == images.MEDIA_MANIFEST
    assert manifest["config"]["mediaType"] == images.MEDIA_CONFIG
    config = json.loads(blob(manifest["config"], "config"))
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(manifest["layers"]):
        problems.append("diff-id-count")
    for layer, diff_id in zip(manifest["layers"], diff_ids, strict=False):
        data = blob(layer, "layer")
        if layer["mediaType"] == images.MEDIA_LAYER_ZSTD:
            assert data[:4] == images.ZSTD_MAGIC
            problems.append("layer-zstd")
            continue
        if layer["mediaType"] == images.MEDIA_LAYER_GZIP:
            assert data[:2] == b"\x1f\x8b"
            data = gzip.decompress(data)
        else:
            assert layer["mediaType"] == images.MEDIA_LAYER
            members(data)  # a tar
        if "sha256:" + sha(data) != diff_id:
            problems.append("diff-id")
    return problems


def write_oci(kind: str, image: Image, tmp_path: Path, **options: object) -> Path:
    if kind == "dir":
        return images.write_oci_layout(image, tmp_path / "layout", **options)  # type: ignore[arg-type]
    return images.write_oci_tar(image, tmp_path / "image.oci.tar", **options)  # type: ignore[arg-type]


# Layer tars


def test_layer_tar_writes_each_kind_with_fixed_times_and_owners() -> None:
    entries = [
        images.directory("d", 0o1777),
        images.regular("d/f", b"data", 0o755),
        images.symlink("d/s", "f"),
        images.hardlink("d/h", "d/f"),
        Entry("d/c", "chardev", major=1, minor=3),
        Entry("d/b", "blockdev", major=8, minor=0),
        Entry("d/p", "fifo"),
        Entry("d/u", "file", uid=1000, gid=1001),
    ]
    read = members(images.layer_tar(entries))
    assert [m.name for m in read] == ["d", "d/f", "d/s", "d/h", "d/c", "d/b", "d/p", "d/u"]
    assert [m.type for m in read] == [
        tarfile.DIRTYPE,
        tarfile.REGTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
        tarfile.REGTYPE,
    ]
    assert read[0].mode == 0o1777
    assert read[1].mode == 0o755
    assert read[1].size == 4
    assert (read[2].linkname, read[3].linkname) == ("f", "d/f")
    assert (read[4].devmajor, read[4].devminor, read[5].devmajor, read[5].devminor) == (1, 3, 8, 0)
    assert {m.mtime for m in read} == {images.MTIME}
    assert [(m.uid, m.gid) for m in read[:-1]] == [(0, 0)] * 7
    assert (read[-1].uid, read[-1].gid) == (1000, 1001)
    assert {(m.uname, m.gname) for m in read} == {("", "")}


def test_builders_are_deterministic(tmp_path: Path) -> None:
    image = small_image()
    assert images.layer_tar(image.layers[0]) == images.layer_tar(image.layers[0])
    writers: list[tuple[str, Callable[[Path], Path]]] = [
        ("a.tar", lambda p: images.write_docker_save(image, p, gzip_layers=True)),
        ("b.tar", lambda p: images.write_oci_tar(image, p)),
    ]
    for name, write in writers:
        first = write(tmp_path / "1" / name).read_bytes()
        assert write(tmp_path / "2" / name).read_bytes() == first


def test_entry_refuses_an_unknown_kind_and_a_link_without_target() -> None:
    with pytest.raises(ValueError, match="unknown entry kind"):
        Entry("x", "socket")
    with pytest.raises(ValueError, match="needs a target"):
        Entry("x", "symlink")


# docker save


@pytest.mark.parametrize("gzip_layers", [False, True])
def test_docker_save_is_consistent(tmp_path: Path, gzip_layers: bool) -> None:
    image = small_image()
    path = images.write_docker_save(image, tmp_path / "save.tar", gzip_layers=gzip_layers)
    assert docker_problems(path) == []
    files = tar_files(path)
    [entry] = json.loads(files["manifest.json"])
    assert entry["RepoTags"] == ["small:2"]
    assert len(entry["Layers"]) == 3
    stored = [files[layer] for layer in entry["Layers"]]
    assert all((data[:2] == b"\x1f\x8b") == gzip_layers for data in stored)
    # Bottom to top, as built.
    assert [uncompressed(data) for data in stored] == [images.layer_tar(layer) for layer in image.layers]
    top_dir = entry["Layers"][-1].split("/")[0]
    assert json.loads(files["repositories"]) == {"small": {"2": top_dir}}
    for layer in entry["Layers"]:
        layer_dir = layer.split("/")[0]
        assert files[f"{layer_dir}/VERSION"] == b"1.0"
        assert json.loads(files[f"{layer_dir}/json"])["id"] == layer_dir
    config = json.loads(files[entry["Config"]])
    assert config["os"] == "linux"
    assert config["rootfs"]["type"] == "layers"
    assert config["config"] == {
        "Env": ["PATH=/bin", "X=1"],
        "Cmd": ["/bin/sh"],
        "Entrypoint": ["/bin/tini", "--"],
        "WorkingDir": "/opt",
        "User": "1000:1000",
    }
    assert len(config["history"]) == 3


def test_docker_save_gives_equal_layers_distinct_directories(tmp_path: Path) -> None:
    layer = [images.regular("same", b"same\n")]
    path = images.write_docker_save(Image(layers=[layer, layer]), tmp_path / "save.tar")
    assert docker_problems(path) == []
    [entry] = json.loads(tar_files(path)["manifest.json"])
    assert len(set(entry["Layers"])) == 2


@pytest.mark.parametrize(
    ("corrupt", "problem"),
    [
        ("layer", "layer-digest"),
        ("config", "config-digest"),
        ("manifest-missing-layer", "layer-missing"),
        ("diff-id-count", "diff-id-count"),
    ],
)
@pytest.mark.parametrize("gzip_layers", [False, True])
def test_docker_save_corruptions_break_one_check(
    tmp_path: Path, corrupt: str, problem: str, gzip_layers: bool
) -> None:
    path = images.write_docker_save(
        small_image(), tmp_path / "save.tar", gzip_layers=gzip_layers, corrupt=corrupt
    )
    assert docker_problems(path) == [problem]


def test_docker_save_tampered_config_is_still_valid_json_with_other_env(tmp_path: Path) -> None:
    files = tar_files(images.write_docker_save(small_image(), tmp_path / "save.tar", corrupt="config"))
    [entry] = json.loads(files["manifest.json"])
    assert json.loads(files[entry["Config"]])["config"]["Env"][-1] == "TAMPERED=1"


def test_unknown_corruption_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown corruption"):
        images.write_docker_save(small_image(), tmp_path / "x.tar", corrupt="blob")
    with pytest.raises(ValueError, match="unknown corruption"):
        images.write_oci_layout(small_image(), tmp_path / "x", corrupt="layer")


# OCI


@pytest.mark.parametrize("kind", ["dir", "tar"])
@pytest.mark.parametrize("gzip_layers", [True, False])
def test_oci_layout_is_consistent(tmp_path: Path, kind: str, gzip_layers: bool) -> None:
    image = small_image()
    location = write_oci(kind, image, tmp_path, gzip_layers=gzip_layers)
    assert oci_problems(location) == []
    files = oci_files(location)
    [descriptor] = json.loads(files["index.json"])["manifests"]
    assert descriptor["annotations"]["org.opencontainers.image.ref.name"] == "2"
    manifest = json.loads(files["blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")])
    media = images.MEDIA_LAYER_GZIP if gzip_layers else images.MEDIA_LAYER
    assert [layer["mediaType"] for layer in manifest["layers"]] == [media] * 3
    config = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].removeprefix("sha256:")])
    assert config["rootfs"]["diff_ids"] == [
        "sha256:" + sha(images.layer_tar(layer)) for layer in image.layers
    ]
    assert config["config"]["WorkingDir"] == "/opt"


def test_oci_tar_holds_the_layout_files(tmp_path: Path) -> None:
    image = small_image()
    directory = oci_files(images.write_oci_layout(image, tmp_path / "layout"))
    assert tar_files(images.write_oci_tar(image, tmp_path / "image.tar")) == directory


@pytest.mark.parametrize(
    ("corrupt", "problems"),
    [
        ("blob", ["layer-digest", "diff-id"]),
        ("manifest-size", ["manifest-size"]),
        ("layer-size", ["layer-size"]),
        ("zstd", ["layer-zstd"]),
    ],
)
@pytest.mark.parametrize("kind", ["dir", "tar"])
@pytest.mark.parametrize("gzip_layers", [True, False])
def test_oci_corruptions_break_one_check(
    tmp_path: Path, corrupt: str, problems: list[str], kind: str, gzip_layers: bool
) -> None:
    location = write_oci(kind, small_image(), tmp_path, gzip_layers=gzip_layers, corrupt=corrupt)
    assert oci_problems(location) == problems


def test_oci_zstd_variant_only_changes_the_top_layer(tmp_path: Path) -> None:
    files = oci_files(images.write_oci_layout(small_image(), tmp_path / "layout", corrupt="zstd"))
    [descriptor] = json.loads(files["index.json"])["manifests"]
    manifest = json.loads(files["blobs/sha256/" + descriptor["digest"].removeprefix("sha256:")])
    media = [layer["mediaType"] for layer in manifest["layers"]]
    assert media == [images.MEDIA_LAYER_GZIP, images.MEDIA_LAYER_GZIP, images.MEDIA_LAYER_ZSTD]
    top = files["blobs/sha256/" + manifest["layers"][-1]["digest"].removeprefix("sha256:")]
    assert top.startswith(b"\x28\xb5\x2f\xfd")


# Malicious layers


def malicious_members(case: str) -> list[tarfile.TarInfo]:
    return members(images.layer_tar(images.malicious_layers()[case]))


def test_malicious_corpus_has_every_case() -> None:
    assert set(images.malicious_layers()) == {
        "traversal",
        "absolute",
        "symlink-escape",
        "symlink-absolute-then-write",
        "symlink-relative-then-write",
        "hardlink-escape",
        "hardlink-traversal",
        "device-node",
    }


def test_traversal_names_climb_out() -> None:
    names = [m.name for m in malicious_members("traversal") if m.isfile()]
    assert names == ["../../escaped-traversal", "a/../../escaped-traversal-nested"]
    assert all(name.split("/").count("..") >= 2 for name in names)


def test_absolute_name_keeps_its_leading_slash() -> None:
    [member] = malicious_members("absolute")
    assert member.isfile()
    assert member.name == "/tmp/escaped-absolute"
    raw = images.layer_tar(images.malicious_layers()["absolute"])
    assert raw.startswith(b"/tmp/escaped-absolute\0")  # in the ustar name field itself


def test_symlink_escape_points_out() -> None:
    [member] = malicious_members("symlink-escape")
    assert member.issym()
    assert (member.name, member.linkname) == ("evil", "../../../../../../tmp")


@pytest.mark.parametrize(
    ("case", "link", "target", "through"),
    [
        ("symlink-absolute-then-write", "etcdir", "/etc", "etcdir/escaped-through-symlink"),
        ("symlink-relative-then-write", "up", "../..", "up/escaped-through-relative"),
    ],
)
def test_symlink_then_write_goes_through_the_link(case: str, link: str, target: str, through: str) -> None:
    first, second = malicious_members(case)
    assert first.issym()
    assert (first.name, first.linkname) == (link, target)
    assert second.isfile()
    assert second.name == through


@pytest.mark.parametrize(
    ("case", "name", "target"),
    [("hardlink-escape", "stolen", "/etc/passwd"), ("hardlink-traversal", "stolen2", "../../../etc/shadow")],
)
def test_hardlinks_target_outside(case: str, name: str, target: str) -> None:
    [member] = malicious_members(case)
    assert member.islnk()
    assert (member.name, member.linkname) == (name, target)


def test_device_nodes_are_devices() -> None:
    devices = {m.name: m for m in malicious_members("device-node") if m.isdev()}
    assert devices["dev/evil"].ischr()
    assert (devices["dev/evil"].devmajor, devices["dev/evil"].devminor) == (1, 3)
    assert devices["dev/disk"].isblk()
    assert (devices["dev/disk"].devmajor, devices["dev/disk"].devminor) == (8, 0)


@pytest.mark.parametrize("case", sorted(images.malicious_layers()))
def test_malicious_image_puts_the_case_on_top_of_a_base(tmp_path: Path, case: str) -> None:
    image = images.malicious_image(case)
    assert image.ref == f"evil-{case}:1"
    assert image.layers == [
        [images.directory("base"), images.regular("base/ok", b"ok\n")],
        images.malicious_layers()[case],
    ]
    # The dangerous names survive both formats.
    assert docker_problems(images.write_docker_save(image, tmp_path / "save.tar")) == []
    assert oci_problems(images.write_oci_layout(image, tmp_path / "layout")) == []


def test_unknown_malicious_case_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown malicious case"):
        images.malicious_image("nope")


# busybox


def test_no_busybox_is_named(tmp_path: Path) -> None:
    with pytest.raises(images.NoBusybox, match="missing"):
        images.busybox_image(str(tmp_path / "busybox"))
    script = tmp_path / "script"
    script.write_bytes(b"#!/bin/sh\n")
    with pytest.raises(images.NoBusybox, match="static"):
        images.busybox_image(str(script))


@needs_busybox
def test_busybox_image_layers() -> None:
    image = images.busybox_image()
    assert len(image.layers) == 3
    first, second, third = ({m.name: m for m in members(images.layer_tar(layer))} for layer in image.layers)
    assert first["bin/busybox"].mode == 0o755
    assert first["bin/busybox"].size == Path("/bin/busybox").stat().st_size
    for applet in ("sh", "ls", "cat", "id", "ps", "hostname", "mount", "true", "false"):
        assert first[f"bin/{applet}"].issym()
        assert first[f"bin/{applet}"].linkname == "busybox"
    assert first["tmp"].isdir()
    assert first["tmp"].mode == 0o1777
    assert {"etc/doomed", "var/cache/old/a", "var/cache/old/b", "usr/share/hello", "etc/passwd"} <= set(first)

    assert second["etc/.wh.doomed"].isfile()
    assert second["etc/.wh.doomed"].size == 0
    assert second["var/cache/old/.wh..wh..opq"].isfile()
    assert second["var/cache/old/new"].isfile()
    assert second["usr/bin/sh2"].issym()
    assert second["usr/bin/sh2"].linkname == "/bin/busybox"
    assert second["usr/share/layer2-link"].islnk()
    assert second["usr/share/layer2-link"].linkname == "usr/share/layer2.txt"
    names = list(second)
    assert names.index("usr/share/layer2.txt") < names.index("usr/share/layer2-link")
    assert not any(".wh." in name for name in [*first, *third])

    assert third["app/run.sh"].mode == 0o755
    assert "etc/motd" in third


@needs_busybox
def test_busybox_image_config(tmp_path: Path) -> None:
    image = images.busybox_image()
    assert image.ref == "busybox-test:1"
    files = tar_files(images.write_docker_save(image, tmp_path / "save.tar"))
    [entry] = json.loads(files["manifest.json"])
    config = json.loads(files[entry["Config"]])["config"]
    assert config == {
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hi"],
        "Cmd": ["/app/run.sh"],
        "Entrypoint": None,
        "WorkingDir": "/app",
        "User": "",
    }
    assert entry["RepoTags"] == ["busybox-test:1"]


@needs_busybox
def test_big_image_is_incompressible_data_of_the_size_asked() -> None:
    image = images.big_image(1)
    assert len(image.layers) == 2
    assert image.layers[0] == images.busybox_image().layers[0]
    data = [entry.data for entry in image.layers[1] if entry.kind == "file"]
    assert len(data) == 10
    assert sum(map(len, data)) == 1024 * 1024
    assert [entry.data for entry in images.big_image(1).layers[1]] == [
        entry.data for entry in image.layers[1]
    ]
    joined = b"".join(data)
    assert len(gzip.compress(joined)) > 0.99 * len(joined)
