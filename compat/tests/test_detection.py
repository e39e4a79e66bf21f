"""What `runtime check` sees in the guest, feature by feature, against what the cell should show."""

from __future__ import annotations

from collections.abc import Callable

from compat.harness.guest import Guest
from compat.results.model import present


def test_feature_is_as_expected(guest: Guest, feature: str, absent: Callable[[], None]) -> None:
    want, got = guest.expected[feature], guest.features[feature]
    assert got == want, (
        f"{feature}: runtime check says {got!r}, {guest.cell.id} ({guest.release}) should show {want!r}"
    )
    if not present(want):
        absent()


def test_runtime_check_can_run_containers(guest: Guest) -> None:
    assert guest.check["can_run_containers"] is True, [
        c for c in guest.check["checks"] if c["status"] != "ok"
    ]
