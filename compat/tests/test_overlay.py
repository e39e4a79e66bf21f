"""overlayfs: mountable or absent as the cell expects; whiteouts; the copy fallback."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from compat.harness.guest import GUEST_DIR, Guest

IMAGE = "busybox-test:1"


def test_overlay_mounts_or_is_absent(guest: Guest, absent: Callable[[], None]) -> None:
    script = (
        "d=$(mktemp -d) && mkdir $d/l $d/u $d/w $d/m && "
        "unshare --mount --propagation private mount -t overlay o -o lowerdir=$d/l,upperdir=$d/u,workdir=$d/w $d/m "
        "&& echo mounted; rm -rf $d"
    )
    done = guest.run(script)
    if guest.expected["overlay.mountable"]:
        assert "mounted" in done.stdout, done.stderr
    else:
        assert "mounted" not in done.stdout
        assert "unknown filesystem type" in done.stderr or "No such device" in done.stderr, done.stderr
        absent()


@pytest.fixture
def imported(guest: Guest) -> Guest:
    """The test image, imported once per VM (a VM booted again to confirm a kernel fault has none)."""
    if "image" not in guest.prepared:
        done = guest.runtime(f"image import {GUEST_DIR}/images/busybox-test.tar")
        assert done.rc == 0, done.stderr
        guest.prepared.add("image")
    return guest


@pytest.mark.parametrize("storage", ["copy", "overlay"])
def test_whiteouts_in_both_storage_modes(imported: Guest, storage: str, absent: Callable[[], None]) -> None:
    script = "test -e /etc/doomed && echo doomed || echo gone; ls /var/cache/old"
    done = imported.runtime(f"run --storage {storage} --userns host {IMAGE} sh -c '{script}'")
    if storage == "overlay" and not imported.expected["overlay.mountable"]:
        assert done.rc == 125, done.stderr
        assert "--storage overlay: overlayfs cannot mount here" in done.stderr
        absent()
        return
    assert done.rc == 0, done.stderr
    assert done.stdout.split() == ["gone", "new"]


def test_auto_storage_falls_back_to_copy_and_says_so(imported: Guest) -> None:
    done = imported.runtime(f"-v run --userns host {IMAGE}")
    assert done.rc == 0, done.stderr
    assert done.stdout.strip() == "app: hi from /app"
    if imported.expected["overlay.mountable"]:
        assert "storage: overlay" in done.stderr
    else:
        assert "storage: copy, because overlayfs cannot mount here" in done.stderr
