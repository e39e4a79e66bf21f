"""The image store: imports of docker-save and OCI images, layers in overlayfs' format and shared
between images, copy mode's flattening, refusals that leave the store as it was and write nothing
outside it, `runtime image ls/inspect/rm`, and overlay options for many layers.

Needs root: whiteouts are device nodes (mknod) and layers keep their owners (chown). The store's
names and modes and the storage decision, which need no root, are in tests/unit/test_storage.py."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime import cli
from runtime.errors import Failure
from runtime.linux import constants, libc
from runtime.storage import archive, importer, overlay
from runtime.storage import store as store_module
from runtime.storage.extract import OPAQUE_XATTR, Extractor, Refused
from runtime.storage.flatten import flatten
from runtime.storage.store import SHORT_LINK_LENGTH, Store, top_file
from tests import images
from tests.images import Image, directory, hardlink, regular, symlink

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: whiteouts are device nodes (mknod), layers keep owners (chown)"
)

FORMATS = ("docker", "docker-gzip", "oci-dir", "oci-dir-plain", "oci-tar")
STORE_PARTS = ("layers", "l", "images", "refs", "containers")
UNRELATED = Image(
    layers=[[directory("opt"), regular("opt/unrelated", b"unrelated\n")]],
    cmd=["/opt/unrelated"],
    ref="unrelated:1",
)


# --- helpers ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def busybox() -> Image:
    try:
        return images.busybox_image()
    except images.NoBusybox as missing:
        pytest.skip(str(missing))


def write(image: Image, fmt: str, directory_: Path, corrupt: str | None = None) -> Path:
    """image in one of FORMATS under directory_, named by the format."""
    if fmt in ("docker", "docker-gzip"):
        path = directory_ / f"{fmt}.tar"
        return images.write_docker_save(image, path, gzip_layers=fmt == "docker-gzip", corrupt=corrupt)
    if fmt in ("oci-dir", "oci-dir-plain"):
        return images.write_oci_layout(image, directory_ / fmt, gzip_layers=fmt == "oci-dir", corrupt=corrupt)
    assert fmt == "oci-tar"
    return images.write_oci_tar(image, directory_ / "oci.tar", corrupt=corrupt)


def diff_id(entries: list[images.Entry]) -> str:
    return hashlib.sha256(images.layer_tar(entries)).hexdigest()


def diff_ids(image: Image) -> list[str]:
    return [diff_id(entries) for entries in image.layers]


def import_(store: Store, path: Path, name: str | None = None) -> importer.Imported:
    return importer.import_image(store, str(path), name)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    made = Store(str(tmp_path / "store"))
    made.ensure()
    return made


@pytest.fixture
def filled(store: Store, tmp_path: Path) -> Store:
    """A store that already holds an image unrelated to the one under test: something to keep."""
    import_(store, images.write_docker_save(UNRELATED, tmp_path / "unrelated.tar"))
    return store


def snapshot(store: Store) -> dict[str, str]:
    """Every path under layers/, l/, images/, refs/ and containers/ with its type, a symlink's target
    and a file's size and mtime."""
    found = {}
    for part in STORE_PARTS:
        for directory_, dirs, files in os.walk(store.sub(part)):
            for name in dirs + files:
                path = os.path.join(directory_, name)
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    what = f"-> {os.readlink(path)}"
                elif stat.S_ISREG(info.st_mode):
                    what = f"file {info.st_size} {info.st_mtime_ns}"
                else:
                    what = stat.filemode(info.st_mode)
                found[os.path.relpath(path, store.path)] = what
    return found


def assert_unchanged(store: Store, before: dict[str, str]) -> None:
    after = snapshot(store)
    assert sorted(after.keys() - before.keys()) == [], "added to the store"
    assert sorted(before.keys() - after.keys()) == [], "removed from the store"
    assert after == before
    assert os.listdir(store.sub("tmp")) == []


def refused(store: Store, path: Path, name: str | None = None) -> Failure:
    """Imports path, which must fail; returns the failure."""
    with pytest.raises(Failure) as failure:
        import_(store, path, name)
    assert failure.value.code != 0
    return failure.value


# --- imports --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_import_records_what_the_config_says(fmt: str, busybox: Image, store: Store, tmp_path: Path) -> None:
    done = import_(store, write(busybox, fmt, tmp_path))
    assert done.new_layers == 3
    record = store.record(done.record.image_id)
    assert record.layers == diff_ids(busybox)  # bottom first, as the config's diff_ids
    assert record.env == ["PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hi"]
    assert record.cmd == ["/app/run.sh"]
    assert record.entrypoint is None
    assert record.workdir == "/app"
    assert record.user == ""
    assert record.size > 0
    config_bytes = Path(store.sub("images", record.image_id, "config.json")).read_bytes()
    assert record.image_id == hashlib.sha256(config_bytes).hexdigest()  # the id is the config's digest
    assert json.loads(config_bytes)["rootfs"]["diff_ids"] == [f"sha256:{d}" for d in record.layers]
    assert store.image_ids() == [record.image_id]
    assert os.listdir(store.sub("tmp")) == []


@pytest.mark.parametrize(
    "fmt",
    [
        "docker",
        "docker-gzip",
        "oci-dir",
        "oci-tar",
    ],
)
def test_import_names_the_image_by_its_reference(
    fmt: str, busybox: Image, store: Store, tmp_path: Path
) -> None:
    record = import_(store, write(busybox, fmt, tmp_path)).record
    assert record.refs == ["busybox-test:1"]
    assert store.record(record.image_id).refs == ["busybox-test:1"]
    assert store.refs() == {"busybox-test:1": record.image_id}


@pytest.mark.parametrize("fmt", ["docker-gzip", "oci-dir"])
def test_name_given_at_import_replaces_the_carried_one(
    fmt: str, busybox: Image, store: Store, tmp_path: Path
) -> None:
    record = import_(store, write(busybox, fmt, tmp_path), name="mine").record
    assert record.refs == ["mine:latest"]
    assert store.refs() == {"mine:latest": record.image_id}
    assert store.resolve("mine") == record.image_id
    assert store.resolve(record.image_id[:12]) == record.image_id


@pytest.mark.parametrize(("first", "second"), [("docker-gzip", "oci-dir"), ("oci-tar", "docker")])
def test_the_same_image_in_the_other_format_adds_no_layer(
    first: str, second: str, busybox: Image, store: Store, tmp_path: Path
) -> None:
    one = import_(store, write(busybox, first, tmp_path))
    two = import_(store, write(busybox, second, tmp_path))
    assert (one.new_layers, two.new_layers) == (3, 0)
    assert two.record.image_id == one.record.image_id
    assert sorted(os.listdir(store.sub("layers"))) == sorted(diff_ids(busybox))
    assert len(os.listdir(store.sub("l"))) == 3
    assert store.image_ids() == [one.record.image_id]
    assert "busybox-test:1" in store.record(one.record.image_id).refs  # kept by the second import


def test_each_layer_has_a_short_link_to_its_diff(busybox: Image, store: Store, tmp_path: Path) -> None:
    record = import_(store, write(busybox, "docker-gzip", tmp_path)).record
    links = os.listdir(store.sub("l"))
    assert len(links) == len(record.layers)
    for layer in record.layers:
        short = store.short_link(layer)
        assert len(short) == SHORT_LINK_LENGTH
        assert short in links
        link = store.sub("l", short)
        assert os.readlink(link) == f"../layers/{layer}/diff"
        assert os.path.samefile(link, store.layer_dir(layer))


def test_whiteout_and_opaque_directory_are_in_overlay_format(
    busybox: Image, store: Store, tmp_path: Path
) -> None:
    record = import_(store, write(busybox, "docker-gzip", tmp_path)).record
    layer1, layer2, _ = (Path(store.layer_dir(layer)) for layer in record.layers)
    doomed = os.lstat(layer2 / "etc/doomed")
    assert stat.S_ISCHR(doomed.st_mode)
    assert (os.major(doomed.st_rdev), os.minor(doomed.st_rdev)) == (0, 0)
    assert os.getxattr(layer2 / "var/cache/old", OPAQUE_XATTR, follow_symlinks=False) == b"y"
    assert os.listdir(layer2 / "var/cache/old") == ["new"]
    # the markers themselves are gone: overlayfs would show a .wh. file as a file
    names = [name for _, dirs, files in os.walk(store.sub("layers")) for name in dirs + files]
    assert [name for name in names if name.startswith(".wh.")] == []
    # the layer below is untouched
    assert (layer1 / "etc/doomed").read_bytes() == b"delete me\n"
    with pytest.raises(OSError, match=os.strerror(errno.ENODATA)):
        os.getxattr(layer1 / "var/cache/old", OPAQUE_XATTR, follow_symlinks=False)


# --- flatten (copy mode) --------------------------------------------------------------------------------


def test_flatten_applies_whiteouts_opaque_directories_and_links(
    busybox: Image, store: Store, tmp_path: Path
) -> None:
    record = import_(store, write(busybox, "docker-gzip", tmp_path)).record
    root = tmp_path / "root"
    flatten([store.layer_dir(layer) for layer in record.layers], str(root))
    assert not os.path.lexists(root / "etc/doomed")
    assert os.listdir(root / "var/cache/old") == ["new"]
    assert os.readlink(root / "usr/bin/sh2") == "/bin/busybox"
    link, target = os.lstat(root / "usr/share/layer2-link"), os.lstat(root / "usr/share/layer2.txt")
    assert (link.st_ino, link.st_nlink) == (target.st_ino, 2)
    assert (root / "etc/motd").read_bytes() == b"layer 3\n"
    assert (root / "usr/share/hello").read_bytes() == b"hello from layer 1\n"
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.stat(root / "root").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "bin/busybox").st_mode) == 0o755
    devices = [
        os.path.join(d, name)
        for d, dirs, files in os.walk(root)
        for name in files
        if stat.S_ISCHR(os.lstat(os.path.join(d, name)).st_mode)
    ]
    assert devices == []  # whiteouts are read, never copied
    # a copy, not a link into the store: the container may write its root
    layer_file = os.stat(os.path.join(store.layer_dir(record.layers[1]), "usr/share/layer2.txt"))
    assert layer_file.st_ino != target.st_ino


def test_flatten_never_writes_through_a_lower_symlink(tmp_path: Path) -> None:
    """A lower layer's symlink (absolute or relative, to a directory outside) under an upper directory,
    an upper opaque directory and an upper whiteout of the same name; and the other way round."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep\n")
    lower, upper, root = tmp_path / "lower", tmp_path / "upper", tmp_path / "root"
    lower.mkdir()
    os.symlink(outside, lower / "abs")
    os.symlink("../outside", lower / "rel")  # relative to root/: tmp_path/outside
    os.symlink(outside, lower / "opaque")
    (lower / "was-dir").mkdir()
    (lower / "was-dir/old").write_text("old\n")
    for name in ("abs", "rel", "opaque"):
        (upper / name).mkdir(parents=True)
        (upper / name / "f").write_text(f"upper {name}\n")
    os.setxattr(upper / "opaque", OPAQUE_XATTR, b"y")
    (upper / "abs/gone").mkdir()
    os.mknod(upper / "abs/precious", stat.S_IFCHR | 0o600, 0)  # a whiteout under the symlink's name
    os.symlink(outside, upper / "was-dir")

    flatten([str(lower), str(upper)], str(root))

    for name in ("abs", "rel", "opaque"):
        assert (root / name).is_dir()
        assert not (root / name).is_symlink()
        assert (root / name / "f").read_text() == f"upper {name}\n"
    assert os.readlink(root / "was-dir") == str(outside)
    assert sorted(os.listdir(outside)) == ["precious"]
    assert (outside / "precious").read_text() == "keep\n"


def test_imported_upper_directory_replaces_a_lower_symlink(store: Store, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    image = Image(
        layers=[
            [symlink("d", str(outside)), symlink("e", "/etc")],
            [directory("d"), regular("d/f", b"upper\n"), directory("e"), regular("e/passwd", b"mine\n")],
        ],
        cmd=["/d/f"],
        ref="symlink-then-dir:1",
    )
    record = import_(store, write(image, "docker", tmp_path)).record
    root = tmp_path / "root"
    flatten([store.layer_dir(layer) for layer in record.layers], str(root))
    assert (root / "d").is_dir()
    assert not (root / "d").is_symlink()
    assert (root / "d/f").read_bytes() == b"upper\n"
    assert (root / "e/passwd").read_bytes() == b"mine\n"
    assert os.listdir(outside) == []
    assert Path("/etc/passwd").read_bytes() != b"mine\n"


# --- refusals --------------------------------------------------------------------------------------------

MALICIOUS = {
    "traversal": "'../../escaped-traversal' climbs out with '..'",
    "absolute": "'/tmp/escaped-absolute' is an absolute path",
    "symlink-escape": "the symlink 'evil' -> '../../../../../../tmp' points outside the layer",
    "symlink-absolute-then-write": "would be written through the symlink 'etcdir'",
    "symlink-relative-then-write": "the symlink 'up' -> '../..' points outside the layer",
    "hardlink-escape": "the hard link 'stolen' -> '/etc/passwd' points outside the layer",
    "hardlink-traversal": "the hard link 'stolen2' -> '../../../etc/shadow' points outside the layer",
}
# where the malicious cases aim, seen from the layer directory or from the host's root
ESCAPES = (
    "/tmp/escaped-traversal",
    "/tmp/escaped-traversal-nested",
    "/tmp/escaped-absolute",
    "/tmp/escaped-through-relative",
    "/tmp/escaped-through-symlink",
    "/tmp/evil",
    "/etc/escaped-through-symlink",
    "/escaped-traversal",
    "/escaped-through-relative",
)
WATCHED = ("/etc/passwd", "/etc/shadow")


def test_every_malicious_case_is_covered() -> None:
    assert set(MALICIOUS) | {"device-node"} == set(images.malicious_layers())


def names_under(path: Path) -> set[str]:
    return {name for _, dirs, files in os.walk(path) for name in dirs + files}


def watched() -> dict[str, tuple[int, int, int]]:
    found = {}
    for path in WATCHED:
        if os.path.exists(path):
            info = os.stat(path)
            found[path] = (info.st_ino, info.st_nlink, info.st_mtime_ns)
    return found


@pytest.mark.parametrize("fmt", ["docker-gzip", "oci-dir"])
@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_layers_are_refused_and_leave_nothing(
    case: str, fmt: str, filled: Store, tmp_path: Path
) -> None:
    image = images.malicious_image(case)
    path = write(image, fmt, tmp_path / "image")
    before, host_before = snapshot(filled), watched()
    failure = refused(filled, path)
    assert MALICIOUS[case] in failure.message
    assert failure.message.startswith(f"layer {diff_id(image.layers[1])[:12]}: ")  # the layer named
    assert_unchanged(filled, before)
    assert [escape for escape in ESCAPES if os.path.lexists(escape)] == []
    assert watched() == host_before
    leaked = {n for n in names_under(tmp_path) if n.startswith(("escaped", "stolen", "evil", "etcdir"))}
    assert leaked == set()


def test_device_nodes_need_the_right_to_mknod(tmp_path: Path) -> None:
    dest = tmp_path / "diff"
    dest.mkdir()
    layer = images.layer_tar(images.malicious_layers()["device-node"])
    with pytest.raises(Refused) as refusal:
        Extractor(str(dest), "x", may_mknod=False).extract(io.BytesIO(layer))
    assert "layer x: 'dev/evil' is a device node, and only root may import those" in refusal.value.message
    assert "root" in refusal.value.hint
    assert os.listdir(dest / "dev") == []


def test_whiteouts_need_the_right_to_mknod_too(tmp_path: Path) -> None:
    dest = tmp_path / "diff"
    dest.mkdir()
    layer = images.layer_tar([directory("etc"), images.whiteout("etc/doomed")])
    with pytest.raises(Refused, match=re.escape("'etc/.wh.doomed' is a device node")):
        Extractor(str(dest), "x", may_mknod=False).extract(io.BytesIO(layer))
    assert os.listdir(dest / "etc") == []


DOCKER_CORRUPT = {
    "layer": "but the config says sha256:",
    "config": "content does not match its digest",
    "manifest-missing-layer": "layer.tar is missing from",
    "diff-id-count": "the manifest lists 3 layers but the config has 2 diff_ids",
}
OCI_CORRUPT = {
    "blob": "content does not match its digest",
    "manifest-size": "bytes, but the manifest says",
    "layer-size": "bytes, but the manifest says",
    "zstd": "is zstd-compressed",
}


def test_every_corruption_is_covered() -> None:
    assert set(DOCKER_CORRUPT) == set(images.DOCKER_CORRUPTIONS)
    assert set(OCI_CORRUPT) == set(images.OCI_CORRUPTIONS)


@pytest.mark.parametrize("fmt", ["docker", "docker-gzip"])
@pytest.mark.parametrize("corrupt", sorted(DOCKER_CORRUPT))
def test_corrupt_docker_save_is_refused(
    corrupt: str, fmt: str, busybox: Image, filled: Store, tmp_path: Path
) -> None:
    path = write(busybox, fmt, tmp_path, corrupt=corrupt)
    before = snapshot(filled)
    assert DOCKER_CORRUPT[corrupt] in refused(filled, path).message
    assert_unchanged(filled, before)


@pytest.mark.parametrize("fmt", ["oci-dir", "oci-tar"])
@pytest.mark.parametrize(
    "corrupt",
    sorted(OCI_CORRUPT),
)
def test_corrupt_oci_layout_is_refused(
    corrupt: str, fmt: str, busybox: Image, filled: Store, tmp_path: Path
) -> None:
    path = write(busybox, fmt, tmp_path, corrupt=corrupt)
    before = snapshot(filled)
    failure = refused(filled, path)
    assert OCI_CORRUPT[corrupt] in failure.message
    if corrupt == "zstd":
        assert "gzip" in failure.hint
    assert_unchanged(filled, before)


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.removeprefix("sha256:")).read_bytes()


def _put(layout: Path, media_type: str, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def edit_oci(layout: Path, config: Callable[[dict[str, Any]], None]) -> None:
    """Change an OCI layout's config and re-digest the config, manifest and index: a consistent image."""
    index = json.loads((layout / "index.json").read_bytes())
    descriptor = index["manifests"][0]
    manifest = json.loads(_blob(layout, descriptor["digest"]))
    edited = json.loads(_blob(layout, manifest["config"]["digest"]))
    config(edited)
    manifest["config"] = _put(layout, manifest["config"]["mediaType"], json.dumps(edited).encode())
    written = _put(layout, descriptor["mediaType"], json.dumps(manifest).encode())
    descriptor.update(digest=written["digest"], size=written["size"])
    (layout / "index.json").write_text(json.dumps(index))


def test_oci_config_with_fewer_diff_ids_than_layers_is_refused(
    busybox: Image, filled: Store, tmp_path: Path
) -> None:
    layout = write(busybox, "oci-dir", tmp_path)
    edit_oci(layout, lambda config: config["rootfs"]["diff_ids"].pop())
    before = snapshot(filled)
    assert "the manifest lists 3 layers but the config has 2 diff_ids" in refused(filled, layout).message
    assert_unchanged(filled, before)


def test_oci_layer_missing_from_the_layout_is_refused(busybox: Image, filled: Store, tmp_path: Path) -> None:
    layout = write(busybox, "oci-dir", tmp_path)
    index = json.loads((layout / "index.json").read_bytes())
    manifest = json.loads(_blob(layout, index["manifests"][0]["digest"]))
    top = manifest["layers"][-1]["digest"].removeprefix("sha256:")
    (layout / "blobs/sha256" / top).unlink()
    before = snapshot(filled)
    assert f"blobs/sha256/{top} is missing from" in refused(filled, layout).message
    assert_unchanged(filled, before)


def test_a_directory_that_is_no_image_is_refused(filled: Store, tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/readme.txt").write_text("not an image\n")
    before = snapshot(filled)
    failure = refused(filled, tmp_path / "notes")
    assert "neither a docker-save tarball (manifest.json) nor an OCI image layout" in failure.message
    assert "docker save" in failure.hint
    assert_unchanged(filled, before)


def test_a_file_that_is_no_tar_is_refused(filled: Store, tmp_path: Path) -> None:
    (tmp_path / "image.tar").write_text("not a tar\n")
    before = snapshot(filled)
    assert "is neither a directory nor a readable tar" in refused(filled, tmp_path / "image.tar").message
    assert_unchanged(filled, before)


def test_a_path_that_does_not_exist_is_refused(filled: Store, tmp_path: Path) -> None:
    before = snapshot(filled)
    missing = tmp_path / "no-such-image.tar"
    assert f"{missing}: no such file or directory" in refused(filled, missing).message
    assert_unchanged(filled, before)


def test_a_path_that_does_not_exist_does_not_create_the_store(tmp_path: Path) -> None:
    fresh = Store(str(tmp_path / "fresh"))
    refused(fresh, tmp_path / "no-such-image.tar")
    assert not os.path.exists(fresh.path)


@pytest.mark.parametrize(("fmt", "corrupt"), [("docker", None), ("docker", "layer"), ("oci-tar", "blob")])
def test_a_bad_later_layer_leaves_no_orphan_of_the_good_ones(
    fmt: str, corrupt: str | None, filled: Store, tmp_path: Path
) -> None:
    """Layers 1 and 2 unpack fine; layer 3 is malicious (no corruption) or damaged."""
    good = [
        [directory("one"), regular("one/a", b"1\n")],
        [directory("two"), regular("two/b", b"2\n")],
    ]
    top = images.malicious_layers()["traversal"] if corrupt is None else [regular("three", b"3\n")]
    image = Image(layers=[*good, top], cmd=["/one/a"], ref="partial:1")
    path = write(image, fmt, tmp_path, corrupt=corrupt)
    before = snapshot(filled)
    seen: list[str] = []
    with pytest.raises(Failure):
        importer.import_image(filled, str(path), None, seen.append)
    assert any(line.startswith("layer 3/3") for line in seen)  # the good layers were unpacked first
    assert_unchanged(filled, before)
    for entries in good:
        assert not os.path.lexists(filled.sub("layers", diff_id(entries)))
    assert len(os.listdir(filled.sub("l"))) == len(UNRELATED.layers)


# --- runtime image ls / inspect / rm --------------------------------------------------------------------


@pytest.fixture
def cli_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Store:
    path = tmp_path / "cli-store"
    monkeypatch.setenv("RUNTIME_STORE", str(path))
    return Store(str(path))


def runtime(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def second_image(busybox: Image) -> Image:
    """Shares layer 1 with busybox; its own top layer."""
    top = [directory("second"), regular("second/file", b"second\n")]
    return dataclasses.replace(busybox, layers=[busybox.layers[0], top], ref="second:1")


def test_image_import_ls_and_inspect(
    busybox: Image, cli_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = runtime(capsys, "image", "import", str(write(busybox, "docker-gzip", tmp_path)))
    assert code == 0, err
    image_id = cli_store.resolve("busybox-test:1")
    assert image_id is not None
    assert f"imported busybox-test:1 sha256:{image_id[:12]}: 3 layers (3 new)" in out
    assert "layer 3/3" in err

    code, out, _ = runtime(capsys, "image", "ls")
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[:3] for row in rows] == [["busybox-test:1", image_id[:12], "3"]]

    code, out, _ = runtime(capsys, "image", "inspect", "busybox-test:1")
    assert code == 0
    shown = json.loads(out)
    assert shown["id"] == f"sha256:{image_id}"
    assert shown["refs"] == ["busybox-test:1"]
    assert shown["layers"] == [f"sha256:{layer}" for layer in diff_ids(busybox)]
    assert shown["config"]["config"]["Cmd"] == ["/app/run.sh"]

    code, _, err = runtime(capsys, "image", "inspect", "nope:1")
    assert code != 0
    assert "no image 'nope:1'" in err


def test_rm_of_one_of_two_names_only_untags(
    busybox: Image, cli_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write(busybox, "docker-gzip", tmp_path))
    assert runtime(capsys, "image", "import", path)[0] == 0
    assert runtime(capsys, "image", "import", "--name", "alias:2", path)[0] == 0
    image_id = cli_store.resolve("busybox-test:1")
    assert image_id is not None
    assert sorted(cli_store.record(image_id).refs) == ["alias:2", "busybox-test:1"]
    layers = snapshot(cli_store)

    code, out, err = runtime(capsys, "image", "rm", "alias:2")
    assert code == 0, err
    assert "untagged alias:2" in out
    assert cli_store.refs() == {"busybox-test:1": image_id}
    assert cli_store.record(image_id).refs == ["busybox-test:1"]
    assert {p: w for p, w in snapshot(cli_store).items() if not p.startswith(("refs", "images"))} == {
        p: w for p, w in layers.items() if not p.startswith(("refs", "images"))
    }


def test_rm_of_the_last_name_deletes_the_image_but_keeps_shared_layers(
    busybox: Image, cli_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = second_image(busybox)
    assert runtime(capsys, "image", "import", str(write(busybox, "docker-gzip", tmp_path / "a")))[0] == 0
    assert (
        runtime(
            capsys, "image", "import", str(write(second, "oci-dir", tmp_path / "b")), "--name", "second:1"
        )[0]
        == 0
    )
    first_id, second_id = cli_store.resolve("busybox-test:1"), cli_store.resolve("second:1")
    assert first_id
    assert second_id
    assert first_id != second_id
    assert len(os.listdir(cli_store.sub("layers"))) == 4  # layer 1 once

    code, out, err = runtime(capsys, "image", "rm", "busybox-test:1")
    assert code == 0, err
    assert f"deleted sha256:{first_id[:12]} and 2 layer(s)" in out
    assert cli_store.image_ids() == [second_id]
    assert cli_store.refs() == {"second:1": second_id}
    kept = diff_ids(second)
    assert sorted(os.listdir(cli_store.sub("layers"))) == sorted(kept)
    links = os.listdir(cli_store.sub("l"))
    assert sorted(links) == sorted(cli_store.short_link(layer) for layer in kept)  # none dangling
    for layer in kept:
        assert os.path.samefile(cli_store.sub("l", cli_store.short_link(layer)), cli_store.layer_dir(layer))
    assert (Path(cli_store.layer_dir(kept[1])) / "second/file").read_bytes() == b"second\n"

    code, out, _ = runtime(capsys, "image", "rm", "second:1")
    assert code == 0
    assert "and 2 layer(s)" in out
    for part in ("layers", "l", "images", "refs"):
        assert os.listdir(cli_store.sub(part)) == []


def test_rm_of_an_unknown_name_fails_with_a_message(
    busybox: Image, cli_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runtime(capsys, "image", "import", str(write(busybox, "docker", tmp_path)))[0] == 0
    before = snapshot(cli_store)
    code, _, err = runtime(capsys, "image", "rm", "nope:1")
    assert code != 0
    assert "no image 'nope:1'" in err
    assert "runtime image ls" in err  # the hint
    assert snapshot(cli_store) == before


# --- overlay options ------------------------------------------------------------------------------------


def test_overlay_options_for_100_layers_fit_in_a_page(store: Store, tmp_path: Path) -> None:
    layers = [[regular(f"file-{index:03d}", f"{index}\n".encode())] for index in range(100)]
    image = Image(layers=layers, cmd=["/file-000"], ref="many:100")
    done = import_(store, write(image, "docker", tmp_path))
    assert done.new_layers == 100
    assert done.seconds < 10
    directory_ = store.sub("containers", "0123456789ab")  # as container._image_root names it
    upper, work = os.path.join(directory_, "upper"), os.path.join(directory_, "work")
    options = overlay.mount_options(store, done.record.layers, upper, work)
    assert len(options) < overlay.PAGE
    lower, rest = options.split(",", 1)
    assert rest == f"upperdir={upper},workdir={work}"
    names = lower.removeprefix("lowerdir=").split(":")
    assert names == [f"l/{store.short_link(layer)}" for layer in reversed(done.record.layers)]  # top first
    for name, layer in zip(names, reversed(done.record.layers), strict=True):
        assert os.path.samefile(store.sub(name), store.layer_dir(layer))  # relative to the store


# --- known bugs in runtime/ (see the reasons) -----------------------------------------------------------


def test_a_hard_link_to_a_directory_is_refused_with_a_message(filled: Store, tmp_path: Path) -> None:
    image = Image(layers=[[directory("d"), hardlink("h", "d")]], cmd=["/d"], ref="dir-link:1")
    before = snapshot(filled)
    assert "hard link" in refused(filled, write(image, "docker", tmp_path)).message
    assert_unchanged(filled, before)


def docker_save_with_repo_tags(image: Image, path: Path, tags: list[str]) -> Path:
    """A docker-save tarball of image whose manifest.json carries these RepoTags."""
    plain = images.write_docker_save(image, path.with_suffix(".orig.tar"))
    with tarfile.open(plain) as source, tarfile.open(path, "w") as out:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name == "manifest.json":
                manifest = json.loads(data or b"")
                manifest[0]["RepoTags"] = tags
                data = json.dumps(manifest).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data) if data is not None else None)
    return path


def test_a_repo_tag_that_is_no_name_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    path = docker_save_with_repo_tags(UNRELATED, tmp_path / "dots.tar", [".."])
    fresh = Store(str(tmp_path / "fresh"))
    fresh.ensure()
    before = snapshot(fresh)
    assert "'..'" in refused(fresh, path).message
    assert_unchanged(fresh, before)


def test_user_names_are_never_read_through_a_symlink_out_of_the_layer(store: Store, tmp_path: Path) -> None:
    image = Image(layers=[[symlink("etc", "/etc")]], cmd=["/bin/sh"], ref="etc-link:1")
    record = import_(store, write(image, "docker", tmp_path)).record
    assert os.readlink(os.path.join(store.layer_dir(record.layers[0]), "etc")) == "/etc"
    assert top_file(store, record, "etc/passwd") is None


# --- size ----------------------------------------------------------------------------------------------


def test_max_size_refuses_a_gzip_bomb_and_leaves_nothing(filled: Store, tmp_path: Path) -> None:
    path = images.write_docker_save(images.zero_bomb(50), tmp_path / "bomb.tar", gzip_layers=True)
    before = snapshot(filled)
    failure = refused_with(filled, path, max_size=10 << 20)
    assert "the image unpacks to more than --max-size 10.0 MiB" in failure.message
    assert "--max-size" in failure.hint
    assert_unchanged(filled, before)


def test_max_size_counts_across_layers(filled: Store, tmp_path: Path) -> None:
    layers = [[regular(f"part-{index}", bytes(3 << 20))] for index in range(3)]
    path = images.write_docker_save(
        Image(layers=layers, cmd=["/part-0"], ref="parts:1"), tmp_path / "parts.tar"
    )
    before = snapshot(filled)
    assert "more than --max-size 8.0 MiB" in refused_with(filled, path, max_size=8 << 20).message
    assert_unchanged(filled, before)
    assert importer.import_image(filled, str(path), max_size=10 << 20).new_layers == 3


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Store]:
    """A store on a 64 MiB tmpfs of its own: its reserve is 5% of it, 3.2 MiB."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    libc.mount("tmpfs", str(mount_point), "tmpfs", 0, "size=64m")
    try:
        made = Store(str(mount_point / "store"))
        made.ensure()
        yield made
    finally:
        libc.umount(str(mount_point), constants.MNT_DETACH)


def test_an_import_stops_before_the_disk_fills_and_leaves_nothing(small_fs: Store, tmp_path: Path) -> None:
    path = images.write_docker_save(images.zero_bomb(100), tmp_path / "bomb.tar", gzip_layers=True)
    before = snapshot(small_fs)
    failure = refused_with(small_fs, path)
    assert "is down to" in failure.message
    assert (
        "an import keeps 3.2 MiB free (5% of the file system or 1 GiB, whichever is smaller)"
        in failure.message
    )
    assert "RUNTIME_STORE" in failure.hint
    assert_unchanged(small_fs, before)
    fs = os.statvfs(small_fs.path)
    assert fs.f_bavail * fs.f_frsize > 60 << 20  # all given back


def test_an_image_that_fits_imports_on_a_small_disk(small_fs: Store, tmp_path: Path) -> None:
    path = images.write_docker_save(images.zero_bomb(20), tmp_path / "fits.tar", gzip_layers=True)
    assert importer.import_image(small_fs, str(path)).new_layers == 1


def refused_with(store: Store, path: Path, max_size: int | None = None) -> Failure:
    with pytest.raises(Failure) as failure:
        importer.import_image(store, str(path), max_size=max_size)
    assert failure.value.code == 1
    return failure.value


# --- links in a docker-save tarball ---------------------------------------------------------------------


def test_a_layer_docker_save_links_to_its_first_copy_imports(filled: Store, tmp_path: Path) -> None:
    repeated = [directory("same"), regular("same/file", b"twice\n")]
    image = Image(layers=[repeated, [regular("between", b"b\n")], repeated], cmd=["/between"], ref="twice:1")
    path = images.docker_save_edited(image, tmp_path / "twice.tar", layer_links={2: 0})
    with tarfile.open(path) as tar:
        assert sum(member.issym() for member in tar) == 1
    done = import_(filled, path)
    assert done.new_layers == 2
    assert done.record.layers == diff_ids(image)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("layer.tar", "in a loop"),
        ("../nothing/layer.tar", "which is missing"),
        ("../../../etc/passwd", "outside the image"),
        ("/etc/passwd", "outside the image"),
    ],
)
def test_a_layer_link_that_leads_nowhere_is_refused(
    target: str, message: str, filled: Store, tmp_path: Path
) -> None:
    image = Image(layers=[[regular("a", b"a\n")], [regular("b", b"b\n")]], cmd=["/a"], ref="linked:1")
    path = images.docker_save_edited(image, tmp_path / "linked.tar", layer_links={1: target})
    before = snapshot(filled)
    assert message in refused(filled, path).message
    assert_unchanged(filled, before)


def test_a_directory_layout_blob_swapped_for_a_fifo_after_lstat_is_caught(tmp_path: Path) -> None:
    """The lstat says regular; the file opened is a FIFO (swapped in between): fstat refuses it, and the
    O_NONBLOCK open did not wait for a writer."""
    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "blob").write_bytes(b"x")
    source = archive.DirSource(str(layout))
    real_lstat = os.lstat

    def swapped(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        found = real_lstat(path, *args, **kwargs)
        if str(path).endswith("blob") and stat.S_ISREG(found.st_mode):
            os.unlink(path)
            os.mkfifo(path)
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "lstat", swapped)
        with pytest.raises(archive.BadImage, match="is a FIFO, not a regular file"):
            source.open("blob")


# --- a store a killed command left damaged ----------------------------------------------------------------


def test_a_name_pointing_at_no_image_is_reported_not_a_traceback(
    filled: Store, caplog: pytest.LogCaptureFixture
) -> None:
    from runtime.storage import images as image_commands

    Path(filled.ref_path("ghost:1")).write_text("f" * 64)
    names = [row[0] for row in image_commands.listing(filled)]
    assert names, names
    assert "ghost:1" not in names, names
    assert "ghost:1" in caplog.text
    assert "unreadable" in caplog.text
    with pytest.raises(store_module.DamagedStore, match="unreadable"):
        image_commands.find(filled, "ghost:1")
    assert image_commands.remove(filled, "ghost:1") == "removed the name ghost:1, which pointed at no image"
    assert not os.path.exists(filled.ref_path("ghost:1"))


def test_an_id_that_is_not_one_never_becomes_a_path(filled: Store) -> None:
    with pytest.raises(store_module.DamagedStore, match="not an image id"):
        filled.record("../../etc")


def test_no_layer_is_collected_while_an_image_record_is_unreadable(filled: Store) -> None:
    from runtime.storage import images as image_commands

    (image_id,) = filled.image_ids()
    record = Path(filled.sub("images", image_id, "image"))
    text = record.read_text()
    record.unlink()
    try:
        assert image_commands.collect_layers(filled) == 0
        assert os.listdir(filled.sub("layers"))
    finally:
        record.write_text(text)
