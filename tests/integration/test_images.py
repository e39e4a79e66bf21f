"""`runtime run IMAGE` on this host: images imported with `runtime image import` run in overlay and copy
mode with their layers, Env, Cmd and WorkingDir; containers of one image do not share writes; nothing
is left mounted or in the store; an image in use cannot be removed. Needs root and busybox-static."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.storage.store import Store
from tests import images
from tests.integration.conftest import REPO, host_mounts, runtime

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="running containers needs root"),
    pytest.mark.usefixtures("no_leftovers"),
]

Result = subprocess.CompletedProcess[str]
IMAGE = "busybox-test:1"
DEADLINE = 10.0


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three-layer busybox image as a docker-save tarball (gzip layers) and an OCI layout. Only the
    importer (host root) reads them: pytest's 0700 directory is fine."""
    try:
        image = images.busybox_image()
    except images.NoBusybox as missing:
        pytest.skip(str(missing))
    base = tmp_path_factory.mktemp("images")
    return {
        "docker": images.write_docker_save(image, base / "busybox.tar", gzip_layers=True),
        "oci": images.write_oci_layout(image, base / "busybox-oci"),
    }


class StoreCli:
    """A store under /tmp that the container's root (host uid 100000) can traverse, and `runtime` with
    RUNTIME_STORE pointing at it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="runtime-images-", dir="/tmp"))
        self.base.chmod(0o755)
        self.store = Store(str(self.base / "store"))
        self.env = {**os.environ, "RUNTIME_STORE": self.store.path}
        self.started: list[subprocess.Popen[str]] = []

    def __call__(self, *args: str, timeout: float = 60) -> Result:
        return subprocess.run(
            [sys.executable, "-m", "runtime", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        self.started.append(
            subprocess.Popen(
                [sys.executable, "-m", "runtime", *args],
                cwd=REPO,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        return self.started[-1]

    def containers(self) -> list[str]:
        return sorted(os.listdir(self.store.sub("containers")))

    def import_(self, path: Path) -> Result:
        done = self("image", "import", str(path))
        assert done.returncode == 0, done.stderr
        return done

    def stop(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=DEADLINE)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            proc.communicate()
        self.started.clear()

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def shared(image_files: dict[str, Path]) -> Iterator[StoreCli]:
    cli = StoreCli()
    cli.import_(image_files["docker"])
    yield cli
    cli.remove()


def _checked(cli: StoreCli) -> Iterator[StoreCli]:
    yield cli
    cli.stop()
    left = cli.containers()
    for name in left:  # not to fail the next test of a shared store as well
        shutil.rmtree(cli.store.sub("containers", name), ignore_errors=True)
    assert left == [], "container roots left in the store"


@pytest.fixture
def store(shared: StoreCli) -> Iterator[StoreCli]:
    """The store with the busybox image; after the test, its containers/ must be empty."""
    yield from _checked(shared)


@pytest.fixture
def fresh() -> Iterator[StoreCli]:
    """An empty store of the test's own."""
    cli = StoreCli()
    try:
        yield from _checked(cli)
    finally:
        cli.remove()


def listed(name: str) -> bool:
    return any(line.split()[:1] == [name] for line in runtime("ps").stdout.splitlines()[1:])


def wait_listed(*names: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not all(listed(name) for name in names):
        assert time.monotonic() < deadline, f"{names} not all in `runtime ps` within {DEADLINE} s"
        time.sleep(0.05)


def new_name() -> str:
    return f"it-{uuid.uuid4().hex[:10]}"


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as file:
        return [line for line in file if path in line]


# --- import and run ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_an_imported_image_runs_its_cmd_with_its_env_and_workdir(
    fmt: str, image_files: dict[str, Path], fresh: StoreCli
) -> None:
    done = fresh.import_(image_files[fmt])
    assert "3 layers (3 new)" in done.stdout
    assert re.search(r"sha256:([0-9a-f]{12})", done.stdout), done.stdout
    ran = fresh("run", IMAGE)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "app: hi from /app\n"


@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_layers_env_and_command_in_each_storage_mode(storage: str, store: StoreCli) -> None:
    script = (
        "test -e /etc/doomed && echo doomed-present || echo doomed-absent; ls /var/cache/old; cat /etc/motd; "
        "echo greeting=$GREETING; pwd; ls -l /usr/bin/sh2; test -x /usr/bin/sh2 && echo sh2-resolves; "
        "ls -i /usr/share/layer2.txt /usr/share/layer2-link"
    )
    done = store("run", "-v", "--storage", storage, "-e", "GREETING=yo", IMAGE, "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert f"runtime: storage: {storage}" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == ["doomed-absent", "new", "layer 3", "greeting=yo", "/app"]
    assert lines[5].endswith("/usr/bin/sh2 -> /bin/busybox")
    assert lines[6] == "sh2-resolves"  # an absolute symlink, in the container's root
    inodes = {line.split()[0] for line in lines[7:9]}
    assert len(inodes) == 1, lines[7:9]  # the hard link survived both modes

    done = store("run", "--storage", storage, "-e", "GREETING=yo", IMAGE)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "app: yo from /app\n"

    done = store("run", "--storage", storage, IMAGE, "echo", "replaced")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "replaced\n"


def test_two_containers_of_one_image_do_not_see_each_others_writes(store: StoreCli) -> None:
    names = {tag: new_name() for tag in ("a", "b")}
    script = "echo {tag} > /tmp/from-{tag} && sleep 2 && ls -a /tmp"
    procs = {
        tag: store.popen(
            "run", "--name", name, "--storage", "overlay", IMAGE, "sh", "-c", script.format(tag=tag)
        )
        for tag, name in names.items()
    }
    wait_listed(*names.values())  # both run at once
    for tag, proc in procs.items():
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert out.split() == [".", "..", f"from-{tag}"]

    later = store("run", "--storage", "overlay", IMAGE, "ls", "-a", "/tmp")
    assert later.returncode == 0, later.stderr
    assert later.stdout.split() == [".", ".."]
    written = [
        os.path.join(directory, name)
        for directory, dirs, files in os.walk(store.store.sub("layers"))
        for name in dirs + files
        if name.startswith("from-")
    ]
    assert written == []


@pytest.mark.parametrize(
    ("storage", "root"), [("overlay", ["merged", "upper", "work"]), ("copy", ["rootfs"])]
)
def test_no_mount_on_the_host_and_nothing_left_in_the_store(
    storage: str, root: list[str], store: StoreCli
) -> None:
    mounts = host_mounts()
    proc = store.popen("run", "--storage", storage, IMAGE, "sh", "-c", "echo up && sleep 1")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "up\n", proc.communicate(timeout=30)
    # while it runs: its root is in the store, and the host sees no mount of it
    [container] = store.containers()
    assert sorted(os.listdir(store.store.sub("containers", container))) == root
    assert mounts_under(store.store.path) == []
    assert host_mounts() == mounts
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert host_mounts() == mounts
    assert store.containers() == []


def test_rm_of_an_image_in_use_is_refused_until_it_ends(
    image_files: dict[str, Path], fresh: StoreCli
) -> None:
    fresh.import_(image_files["docker"])
    name = new_name()
    proc = fresh.popen("run", "--name", name, IMAGE, "sleep", "3")
    wait_listed(name)

    refused = fresh("image", "rm", IMAGE)
    assert refused.returncode != 0
    assert "in use" in refused.stderr
    assert name in refused.stderr
    assert IMAGE in fresh("image", "ls").stdout
    assert len(os.listdir(fresh.store.sub("layers"))) == 3

    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    removed = fresh("image", "rm", IMAGE)
    assert removed.returncode == 0, removed.stderr
    assert "deleted sha256:" in removed.stdout
    for part in ("layers", "l", "images", "refs"):
        assert os.listdir(fresh.store.sub(part)) == []


# --- the store is no way in ----------------------------------------------------------------------------

NOBODY = 65534


def as_nobody(action: Callable[[], int]) -> int:
    """action's result in a child that is uid and gid 65534, without supplementary groups."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = action()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def refused_open(path: str, flags: int = os.O_RDONLY) -> Callable[[], int]:
    """0 when opening path is refused (EACCES), 1 when it opens."""

    def attempt() -> int:
        try:
            os.close(os.open(path, flags))
        except PermissionError:
            return 0
        return 1

    return attempt


def refused_exec(path: str) -> Callable[[], int]:
    """0 when exec of path is refused, else the exit code of `path sh -c 'exit 42'` (a busybox)."""

    def attempt() -> int:
        try:
            os.execv(path, [path, "sh", "-c", "exit 42"])
        except PermissionError:
            return 0
        return 1

    return attempt


@pytest.fixture(scope="module")
def setuid_store() -> Iterator[StoreCli]:
    """A store (made by the CLI, as a user makes one) holding an image with a setuid-root busybox and
    a 0666 null device."""
    try:
        image = images.setuid_image()
    except images.NoBusybox as missing:
        pytest.skip(str(missing))
    cli = StoreCli()
    cli.import_(images.write_docker_save(image, cli.base / "setuid.tar"))
    yield cli
    cli.remove()


def layer_path(cli: StoreCli, relative: str) -> str:
    [found] = [
        os.path.join(cli.store.sub("layers", diff), "diff", relative)
        for diff in os.listdir(cli.store.sub("layers"))
        if os.path.lexists(os.path.join(cli.store.sub("layers", diff), "diff", relative))
    ]
    return found


def test_another_user_cannot_read_run_or_open_what_a_layer_holds(setuid_store: StoreCli) -> None:
    suid, null = layer_path(setuid_store, "evil/suid-busybox"), layer_path(setuid_store, "evil/null")
    assert os.stat(suid).st_mode & 0o4777 == 0o4755  # imported as the image says: the store must guard it
    assert as_nobody(refused_open(layer_path(setuid_store, "evil/readable"))) == 0, "a layer's file was read"
    assert as_nobody(refused_exec(suid)) == 0, "a layer's setuid-root binary ran"
    assert as_nobody(refused_open(null, os.O_RDWR)) == 0, "a layer's device node opened"
    assert as_nobody(refused_open(setuid_store.store.sub("images"), os.O_RDONLY | os.O_DIRECTORY)) == 0
    assert as_nobody(refused_open(setuid_store.store.path, os.O_RDONLY | os.O_DIRECTORY)) == 0  # not listable


def test_the_store_s_modes(setuid_store: StoreCli) -> None:
    modes = {
        part: stat.S_IMODE(os.stat(setuid_store.store.sub(part)).st_mode)
        for part in ("", "layers", "l", "images", "refs", "tmp", "containers")
    }
    assert modes == {
        "": 0o711,
        "layers": 0o700,
        "l": 0o700,
        "images": 0o700,
        "refs": 0o700,
        "tmp": 0o700,
        "containers": 0o711,
    }


@pytest.mark.parametrize("storage", ["overlay", "copy"])
def test_an_image_runs_as_an_unprivileged_host_uid_in_each_storage_mode(
    storage: str, store: StoreCli
) -> None:
    done = store(
        "run", "-v", "--userns", "private", "--storage", storage, IMAGE, "sh", "-c", "id -u; cat /etc/motd"
    )
    assert done.returncode == 0, done.stderr
    assert "userns: private: container root is host uid" in done.stderr
    assert done.stdout == "0\nlayer 3\n"


def test_a_loose_store_is_tightened_by_the_next_run(image_files: dict[str, Path], fresh: StoreCli) -> None:
    fresh.import_(image_files["docker"])
    for part in ("", "layers", "images", "tmp", "l", "refs", "containers"):
        os.chmod(fresh.store.sub(part), 0o755)  # as an older runtime left it
    done = fresh("run", "--userns", "private", IMAGE, "true")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(os.stat(fresh.store.path).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(fresh.store.sub("layers")).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(fresh.store.sub("images")).st_mode) == 0o700


# --- bad input: a clear error, exit 1, the store as it was ---------------------------------------------

SMALL = images.Image(
    layers=[[images.directory("opt"), images.regular("opt/x", b"x\n")], [images.regular("top", b"top\n")]],
    cmd=["/opt/x"],
    ref="small:1",
)
Build = Callable[[Path], list[str]]


def _docker(**edits: Any) -> Build:
    return lambda base: [str(images.docker_save_edited(SMALL, base / "image.tar", **edits))]


def _oci(**edits: Any) -> Build:
    return lambda base: [str(images.oci_layout_edited(SMALL, base / "layout", **edits))]


def _config(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], object]:
    def edit(config: Any) -> object:
        change(config)
        return config

    return edit


def _set(key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda config: config["config"].__setitem__(key, value)


def _entry(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], object]:
    def edit(manifest: Any) -> object:
        change(manifest[0])
        return manifest

    return edit


def _special(which: str, kind: str) -> Build:
    """An OCI layout whose manifest, config or top layer blob (or index.json) is a FIFO or a directory."""

    def build(base: Path) -> list[str]:
        layout = images.write_oci_layout(SMALL, base / "layout")
        path = layout / "index.json" if which == "index" else images.oci_blob(layout, which)
        path.unlink()
        if kind == "fifo":
            os.mkfifo(path)
        else:
            path.mkdir()
            (path / "inside").write_bytes(b"x")
        return [str(layout)]

    return build


def _oci_tar_symlink(which: str) -> Build:
    def build(base: Path) -> list[str]:
        layout = images.write_oci_layout(SMALL, base / "layout")
        return [
            str(images.tar_of_layout(layout, base / "oci.tar", symlinks=[images.oci_blob(layout, which)]))
        ]

    return build


def _oci_dir_symlink(base: Path) -> list[str]:
    layout = images.write_oci_layout(SMALL, base / "layout")
    blob = images.oci_blob(layout, "layer")
    (base / "elsewhere").write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(base / "elsewhere")
    return [str(layout)]


def _docker_dir_fifo(base: Path) -> list[str]:
    directory_ = images.docker_save_directory(SMALL, base / "saved")
    [entry] = json.loads((directory_ / "manifest.json").read_bytes())
    layer = directory_ / entry["Layers"][-1]
    layer.unlink()
    os.mkfifo(layer)
    return [str(directory_)]


def _annotated(name: str) -> Build:
    def edit(index: Any) -> object:
        index["manifests"][0]["annotations"]["io.containerd.image.name"] = name
        return index

    return _oci(index=edit)


def _bomb(base: Path) -> list[str]:
    path = images.write_docker_save(images.zero_bomb(50), base / "bomb.tar", gzip_layers=True)
    assert path.stat().st_size < 1024 * 1024  # 50 MiB of zeros, in well under 1 MiB
    return [str(path), "--max-size", "10m"]


def _named(name: str) -> Build:
    return lambda base: [str(images.write_docker_save(SMALL, base / "image.tar")), "--name", name]


BAD_INPUTS: dict[str, tuple[Build, str]] = {
    # docker save: manifest.json
    "manifest-not-json": (_docker(manifest=lambda _: b"{not json"), "manifest.json is not JSON"),
    "manifest-nested-too-deep": (_docker(manifest=lambda _: b"[" * 100_000), "manifest.json is not JSON"),
    "manifest-an-object": (_docker(manifest=lambda m: m[0]), "manifest.json is an object, expected a list"),
    "manifest-entry-a-string": (_docker(manifest=lambda _: ["x"]), "manifest.json: [0] is a string"),
    "manifest-no-config": (_docker(manifest=_entry(lambda e: e.pop("Config"))), "[0].Config is missing"),
    "manifest-config-a-number": (
        _docker(manifest=_entry(lambda e: e.__setitem__("Config", 5))),
        "[0].Config is a number, expected a string",
    ),
    "manifest-layers-a-string": (
        _docker(manifest=_entry(lambda e: e.__setitem__("Layers", "a/layer.tar"))),
        "[0].Layers is a string, expected a list",
    ),
    "manifest-layer-a-number": (
        _docker(manifest=_entry(lambda e: e.__setitem__("Layers", [1, 2]))),
        "[0].Layers[0] is a number, expected a string",
    ),
    "manifest-repotags-a-string": (
        _docker(manifest=_entry(lambda e: e.__setitem__("RepoTags", "small:1"))),
        "[0].RepoTags is a string, expected a list",
    ),
    "manifest-a-symlink-member": (_docker(manifest_symlink=True), "manifest.json in"),
    "layer-a-symlink-loop": (_docker(layer_links={1: "layer.tar"}), "symlink"),
    "layer-a-symlink-to-nothing": (_docker(layer_links={1: "../nothing/layer.tar"}), "symlink"),
    "layer-a-symlink-out": (_docker(layer_links={1: "../../../etc/passwd"}), "outside the image"),
    # docker save: the config
    "config-not-json": (_docker(config=lambda _: b"\x00\xff not json"), "is not JSON"),
    "config-a-list": (_docker(config=lambda _: []), "is a list, expected an object"),
    "config-config-a-string": (
        _docker(config=_config(lambda c: c.__setitem__("config", "x"))),
        "config is a string, expected an object",
    ),
    "config-cmd-a-string": (_docker(config=_config(_set("Cmd", "/opt/x"))), "config.Cmd is a string"),
    "config-env-numbers": (_docker(config=_config(_set("Env", [1, 2]))), "config.Env[0] is a number"),
    "config-entrypoint-a-number": (
        _docker(config=_config(_set("Entrypoint", 7))),
        "config.Entrypoint is a number",
    ),
    "config-entrypoint-a-string": (
        _docker(config=_config(_set("Entrypoint", "/bin/sh"))),
        "config.Entrypoint is a string",
    ),
    "config-workdir-a-number": (
        _docker(config=_config(_set("WorkingDir", 3))),
        "config.WorkingDir is a number",
    ),
    "config-user-a-list": (_docker(config=_config(_set("User", ["root"]))), "config.User is a list"),
    "config-rootfs-a-list": (
        _docker(config=_config(lambda c: c.__setitem__("rootfs", []))),
        "rootfs is a list, expected an object",
    ),
    "config-diff-ids-a-string": (
        _docker(config=_config(lambda c: c["rootfs"].__setitem__("diff_ids", "sha256:00"))),
        "rootfs.diff_ids is a string",
    ),
    "config-diff-id-a-number": (
        _docker(config=_config(lambda c: c["rootfs"].__setitem__("diff_ids", [1, 2]))),
        "rootfs.diff_ids[0] is a number",
    ),
    # OCI: oci-layout, index.json, the manifest, the config
    "oci-layout-a-list": (_oci(layout=lambda _: []), "oci-layout is a list, expected an object"),
    "index-not-json": (_oci(index=lambda _: b"nope"), "index.json is not JSON"),
    "index-manifests-an-object": (
        _oci(index=lambda i: {**i, "manifests": {}}),
        "manifests is an object, expected a list",
    ),
    "index-descriptor-a-string": (
        _oci(index=lambda i: {**i, "manifests": ["x"]}),
        "manifests[0] is a string",
    ),
    "index-descriptor-no-digest": (
        _oci(
            index=lambda i: {
                **i,
                "manifests": [{k: v for k, v in i["manifests"][0].items() if k != "digest"}],
            }
        ),
        "manifests[0].digest is missing",
    ),
    "index-digest-a-number": (
        _oci(index=lambda i: {**i, "manifests": [{**i["manifests"][0], "digest": 5}]}),
        "manifests[0].digest is a number",
    ),
    "index-size-a-string": (
        _oci(index=lambda i: {**i, "manifests": [{**i["manifests"][0], "size": "12"}]}),
        "manifests[0].size is a string",
    ),
    "index-annotations-a-list": (
        _oci(index=lambda i: {**i, "manifests": [{**i["manifests"][0], "annotations": []}]}),
        "manifests[0].annotations is a list",
    ),
    "manifest-blob-not-json": (_oci(manifest=lambda _: b"<xml/>"), "is not JSON"),
    "manifest-blob-no-config": (
        _oci(manifest=lambda m: {k: v for k, v in m.items() if k != "config"}),
        "config is missing",
    ),
    "manifest-blob-layers-an-object": (_oci(manifest=lambda m: {**m, "layers": {}}), "layers is an object"),
    "manifest-blob-layer-a-string": (
        _oci(manifest=lambda m: {**m, "layers": ["x", "y"]}),
        "layers[0] is a string",
    ),
    "oci-config-cmd-a-string": (_oci(config=_config(_set("Cmd", "sh"))), "config.Cmd is a string"),
    # not regular files
    "oci-layer-a-fifo": (_special("layer", "fifo"), "is a FIFO, not a regular file"),
    "oci-config-a-fifo": (_special("config", "fifo"), "is a FIFO, not a regular file"),
    "oci-manifest-a-fifo": (_special("manifest", "fifo"), "is a FIFO, not a regular file"),
    "oci-index-a-fifo": (_special("index", "fifo"), "is a FIFO, not a regular file"),
    "oci-layer-a-directory": (_special("layer", "directory"), "is a directory, not a regular file"),
    "oci-tar-layer-a-symlink": (_oci_tar_symlink("layer"), "is a symlink"),
    "oci-tar-config-a-symlink": (_oci_tar_symlink("config"), "is a symlink"),
    "oci-dir-layer-a-symlink": (_oci_dir_symlink, "is a symlink"),
    "docker-dir-layer-a-fifo": (_docker_dir_fifo, "is a FIFO, not a regular file"),
    # names
    "name-dot-dot": (_named(".."), "'..' cannot name an image"),
    "name-escaped-slash": (_named("a%2F..%2Fx:1"), "'a%2F..%2Fx:1' cannot name an image"),
    "name-upper-case": (_named("Small:1"), "cannot name an image"),
    "name-empty-component": (_named("a//b:1"), "cannot name an image"),
    "name-bad-tag": (_named("small:-1"), "cannot name an image"),
    "name-too-long": (_named("a/" * 80 + "x:1"), "too long"),
    "repo-tag-dot-dot": (
        _docker(manifest=_entry(lambda e: e.__setitem__("RepoTags", ["../x:1"]))),
        "'../x:1' cannot name an image",
    ),
    "oci-annotation-escaped": (_annotated("a%2Fb:1"), "'a%2Fb:1' cannot name an image"),
    # size
    "gzip-bomb-over-max-size": (_bomb, "more than --max-size 10.0 MiB"),
}


def store_contents(store: Store) -> dict[str, str]:
    """Every path in the store (tmp/ and the lock too) with its type, mode, size and mtime; tmp/'s own
    mtime left out (every import makes and removes a directory there)."""
    found = {}
    for directory_, dirs, files in os.walk(store.path):
        for name in dirs + files:
            path = os.path.join(directory_, name)
            relative = os.path.relpath(path, store.path)
            info = os.lstat(path)
            mtime = "" if relative == "tmp" else f" {info.st_mtime_ns}"
            found[relative] = f"{stat.filemode(info.st_mode)} {info.st_size}{mtime}" + (
                f" -> {os.readlink(path)}" if stat.S_ISLNK(info.st_mode) else ""
            )
    return found


@pytest.fixture(scope="module")
def bad_input_store() -> Iterator[StoreCli]:
    """A store that already holds an image (none of SMALL's layers): something a failed import must
    leave as it was."""
    kept = images.Image(layers=[[images.regular("kept", b"kept\n")]], cmd=["/kept"], ref="kept:1")
    cli = StoreCli()
    cli.import_(images.write_docker_save(kept, cli.base / "kept.tar"))
    yield cli
    cli.remove()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_changes_nothing(
    case: str, bad_input_store: StoreCli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    build, message = BAD_INPUTS[case]
    args = build(tmp_path_factory.mktemp(case))
    listing, before = bad_input_store("image", "ls").stdout, store_contents(bad_input_store.store)
    try:
        done = bad_input_store("image", "import", *args, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the import hung")
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert "runtime: error: " in done.stderr
    assert message in done.stderr
    assert store_contents(bad_input_store.store) == before
    assert os.listdir(bad_input_store.store.sub("tmp")) == []
    assert bad_input_store("image", "ls").stdout == listing


@pytest.mark.parametrize("verb", [("image", "inspect"), ("image", "rm"), ("run",)])
@pytest.mark.parametrize("name", ["..", ".", "a%2F..%2Fx", "refs/../.."])
def test_a_name_that_names_nothing_is_a_clear_error(
    verb: tuple[str, ...], name: str, bad_input_store: StoreCli
) -> None:
    before = store_contents(bad_input_store.store)
    done = bad_input_store(*verb, name)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode != 0
    assert f"no image {name!r}" in done.stderr
    assert store_contents(bad_input_store.store) == before


def test_a_bad_max_size_is_a_clear_error(bad_input_store: StoreCli) -> None:
    done = bad_input_store("image", "import", "/nonexistent.tar", "--max-size", "lots")
    assert done.returncode == 1, done.stderr
    assert "runtime: error: --max-size 'lots'" in done.stderr


def test_an_image_within_max_size_imports(fresh: StoreCli, tmp_path: Path) -> None:
    path = images.write_docker_save(images.zero_bomb(5), tmp_path / "five.tar", gzip_layers=True)
    done = fresh("image", "import", str(path), "--max-size", "6m")
    assert done.returncode == 0, done.stderr
    assert "bomb:1" in fresh("image", "ls").stdout


# --- gc: the store's leftovers -------------------------------------------------------------------------


def import_dirs(cli: StoreCli) -> list[str]:
    return sorted(name for name in os.listdir(cli.store.sub("tmp")) if name.startswith("import-"))


def stopped_mid_import(cli: StoreCli, path: Path) -> subprocess.Popen[str]:
    """An import, stopped (SIGSTOP) while a layer unpacks in its tmp/import-* directory."""
    proc = cli.popen("image", "import", str(path))
    deadline = time.monotonic() + DEADLINE
    while not _unpacking(cli):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the import never started unpacking"
        time.sleep(0.001)
    proc.send_signal(signal.SIGSTOP)
    return proc


def _unpacking(cli: StoreCli) -> bool:
    for work in import_dirs(cli) if os.path.isdir(cli.store.sub("tmp")) else []:
        try:
            if set(os.listdir(cli.store.sub("tmp", work))) - {"owner"}:
                return True
        except FileNotFoundError:
            continue
    return False


@pytest.fixture(scope="module")
def big_image_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        image = images.big_image(100, files=4)
    except images.NoBusybox as missing:
        pytest.skip(str(missing))
    return images.write_docker_save(image, tmp_path_factory.mktemp("big") / "big.tar")


def test_gc_leaves_a_running_import_alone_and_removes_a_killed_one(
    big_image_file: Path, fresh: StoreCli
) -> None:
    fresh("image", "ls")  # makes the store
    live = stopped_mid_import(fresh, big_image_file)
    [work] = import_dirs(fresh)
    collected = fresh("gc")
    assert collected.returncode == 0, collected.stderr
    assert import_dirs(fresh) == [work], collected.stdout
    live.send_signal(signal.SIGCONT)
    _, err = live.communicate(timeout=60)
    assert live.returncode == 0, err
    assert import_dirs(fresh) == []

    fresh("image", "rm", "big-test:100m")
    killed = stopped_mid_import(fresh, big_image_file)
    [work] = import_dirs(fresh)
    killed.kill()
    killed.communicate()
    collected = fresh("gc")
    assert collected.returncode == 0, collected.stderr
    assert import_dirs(fresh) == []
    assert f"tmp/{work}: an import that is no longer running" in collected.stdout
    assert "big-test" not in fresh("image", "ls").stdout


def test_gc_removes_the_root_of_a_killed_run(store: StoreCli) -> None:
    proc = store.popen("run", "--storage", "copy", IMAGE, "sh", "-c", "echo up && sleep 30")
    assert proc.stdout is not None
    assert proc.stdout.readline() == "up\n", proc.communicate(timeout=30)
    [container] = store.containers()
    proc.kill()  # the runtime, not its container
    proc.communicate()
    collected = store("gc")
    assert collected.returncode == 0, collected.stderr
    assert store.containers() == []
    assert f"containers/{container}: a container root no live container owns" in collected.stdout
