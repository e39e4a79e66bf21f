"""The image store without root: the names it accepts (Docker's grammar) and refuses, the modes of its
directories, and the storage decision (overlay or copy) on recorded hosts. What imports images into a
store needs root and is in tests/integration/test_storage.py."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runtime import decide, output
from runtime.errors import EXIT_RUNTIME, Failure
from runtime.features.probes import Outcome
from runtime.linux.sysroot import Sysroot
from runtime.storage import importer
from runtime.storage import store as store_module
from runtime.storage.store import Store
from tests import hosts, images
from tests.images import Image, directory, regular

UNRELATED = Image(
    layers=[[directory("opt"), regular("opt/unrelated", b"unrelated\n")]],
    cmd=["/opt/unrelated"],
    ref="unrelated:1",
)  # no device node and no owner: a store takes it without root


@pytest.fixture
def store(tmp_path: Path) -> Store:
    made = Store(str(tmp_path / "store"))
    made.ensure()
    return made


@pytest.fixture
def filled(store: Store, tmp_path: Path) -> Store:
    """A store that already holds an image: names to resolve."""
    importer.import_image(store, str(images.write_docker_save(UNRELATED, tmp_path / "unrelated.tar")), None)
    return store


# --- the storage decision -------------------------------------------------------------------------------

ENODEV = Outcome(False, errno="ENODEV", step="mount-overlay")


def recorded(spec: hosts.HostSpec, tmp_path: Path) -> Sysroot:
    root, _, _ = hosts.build(spec, tmp_path / "host")
    return root


def no_trial() -> Outcome:
    raise AssertionError("a trial mount where none is needed")


def test_auto_storage_falls_back_to_copy_where_overlay_is_blacklisted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = recorded(hosts.overlay_blacklisted(), tmp_path)
    output.verbose = True
    try:
        assert decide.choose_storage("auto", root, trial=lambda: ENODEV) == "copy"
    finally:
        output.verbose = False
    err = capsys.readouterr().err
    assert "storage: copy, because overlayfs cannot mount here" in err
    assert "module_blacklist" in err


def test_overlay_storage_asked_for_where_it_cannot_mount_is_refused_before_anything_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNTIME_STORE", str(tmp_path / "store"))
    root = recorded(hosts.overlay_blacklisted(), tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(Failure) as refusal:
        decide.choose_storage("overlay", root, trial=lambda: ENODEV)
    assert refusal.value.code == EXIT_RUNTIME
    assert "--storage overlay: overlayfs cannot mount here" in refusal.value.message
    assert "module_blacklist=overlay" in refusal.value.message
    assert "module_blacklist=overlay" in refusal.value.hint
    assert sorted(tmp_path.rglob("*")) == before
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("mode", ["auto", "overlay"])
def test_registered_overlay_is_used_without_a_trial_mount(mode: str, tmp_path: Path) -> None:
    assert decide.choose_storage(mode, recorded(hosts.v2_only_6_12(), tmp_path), trial=no_trial) == "overlay"


@pytest.mark.parametrize("make", [hosts.v2_only_6_12, hosts.overlay_blacklisted])
def test_copy_storage_asked_for_is_copy(make: Callable[[], hosts.HostSpec], tmp_path: Path) -> None:
    assert decide.choose_storage("copy", recorded(make(), tmp_path), trial=no_trial) == "copy"


def test_a_trial_mount_that_loads_overlay_means_overlay(tmp_path: Path) -> None:
    root = recorded(hosts.overlay_not_loaded(), tmp_path)
    assert decide.choose_storage("auto", root, trial=lambda: Outcome(True)) == "overlay"


def test_overlay_not_built_falls_back_to_copy_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = recorded(hosts.overlay_not_built(), tmp_path)
    output.verbose = True
    try:
        assert decide.choose_storage("auto", root, trial=lambda: ENODEV) == "copy"
    finally:
        output.verbose = False
    assert "overlay is not registered and could not be loaded" in capsys.readouterr().err


# --- the store's modes ----------------------------------------------------------------------------------

MODES = {
    "": 0o711,
    "layers": 0o700,
    "l": 0o700,
    "images": 0o700,
    "refs": 0o700,
    "tmp": 0o700,
    "containers": 0o711,
}


def modes(store: Store) -> dict[str, int]:
    return {part: stat.S_IMODE(os.stat(store.sub(part) if part else store.path).st_mode) for part in MODES}


def test_a_new_store_gives_others_no_way_in(tmp_path: Path) -> None:
    old = os.umask(0o077)  # mkdir's mode goes through the umask: the modes must not
    try:
        made = Store(str(tmp_path / "new"))
        made.ensure()
    finally:
        os.umask(old)
    assert modes(made) == MODES


@pytest.mark.parametrize("exclusive", [True, False])
def test_a_loose_store_is_tightened_when_locked(exclusive: bool, tmp_path: Path) -> None:
    made = Store(str(tmp_path / "old"))
    for part in MODES:
        os.makedirs(made.sub(part), exist_ok=True)
        os.chmod(made.sub(part), 0o755)  # as an older runtime left it
    os.close(made.lock(exclusive))
    assert modes(made) == MODES


def test_a_run_s_lock_costs_two_stats_on_a_sound_store(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("stat", "lstat", "mkdir", "chmod", "makedirs"):
        real = getattr(os, name)

        def counted(*args: Any, _real: Callable[..., Any] = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, counted)
    os.close(store.lock(exclusive=False))
    monkeypatch.undo()
    assert calls == ["stat", "stat"]


# --- names ----------------------------------------------------------------------------------------------

VALID_NAMES = (
    "busybox", "busybox:1", "library/busybox:1.36", "a.b_c__d-e---f:tag", "localhost:5000/app:v1",
    "Box-1.lan:80/team/app:x", "x:" + "t" * 128, "0:0", "a/b/c/d", "app:_private", "app:V1.2-rc_3",
)  # fmt: skip
INVALID_NAMES = (
    "", "..", ".", "..:1", "a/../b", "a//b", "/a", "a/", "Busybox", "a%2Fb", "a b", "a\nb", "-a", "a-",
    "a..b", "a___b", "box:80/Team/app", "a:", "a:-1", "a:.x", "x:" + "t" * 129, "a:b:c", "a@sha256:00", "a/.b", "ä",
)  # fmt: skip


@pytest.mark.parametrize("name", VALID_NAMES)
def test_names_in_docker_s_grammar_are_accepted(name: str) -> None:
    assert store_module.reference_problem(store_module.with_tag(name)) is None


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_names_outside_docker_s_grammar_are_refused(name: str) -> None:
    assert store_module.reference_problem(name) == store_module.NOT_IN_GRAMMAR


def test_a_name_must_fit_in_one_file_name_as_the_store_writes_it() -> None:
    fits = "a/" * 61 + "b:1"  # 61 slashes take 183 bytes as %2F: 246 + ".tmp" = 250
    assert store_module.reference_problem(fits) is None
    too_long = "a/" * 63 + "b:1"
    problem = store_module.reference_problem(too_long)
    assert problem is not None
    assert "too long" in problem


def test_a_bad_name_is_refused_before_the_store_is_touched(tmp_path: Path) -> None:
    fresh = Store(str(tmp_path / "fresh"))
    with pytest.raises(Failure, match="cannot name an image"):
        importer.import_image(fresh, str(tmp_path / "no-such.tar"), "..")  # before the missing file, too
    assert not os.path.exists(fresh.path)


@pytest.mark.parametrize("name", ["..", ".", "a%2F..%2Fx", "refs/..", "../../etc"])
def test_a_name_outside_the_grammar_resolves_to_nothing(name: str, filled: Store) -> None:
    assert filled.resolve(name) is None
