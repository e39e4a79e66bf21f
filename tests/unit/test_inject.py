"""--inject-fault KIND@TEST: refused before anything boots unless it names a fault and a test of the suite."""

from __future__ import annotations

import pytest

from compat.faults import FaultType
from compat.harness import inject


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("panic", "expected KIND@TEST_NAME"),
        ("panic@pids", "expected KIND@TEST_NAME"),
        ("nuke@test_pids_limit_stops_forks", "no fault 'nuke'"),
        ("panic@test_nope", "the compat suite has no test 'test_nope'"),
    ],
)
def test_a_bad_injection_is_refused_with_what_is_wrong(text: str, said: str) -> None:
    with pytest.raises(inject.InjectionError, match=said):
        inject.parse(text)


def test_an_injection_targets_every_parametrisation_of_its_test_and_nothing_else() -> None:
    injection = inject.parse("warn@test_whiteouts_in_both_storage_modes")
    assert injection is not None
    assert injection.kind.expected is FaultType.WARNING
    assert injection.targets("overlay::test_whiteouts_in_both_storage_modes[copy]")
    assert injection.targets("overlay::test_whiteouts_in_both_storage_modes[overlay]")
    assert not injection.targets("overlay::test_whiteouts_in_both_storage_modes_too")
    assert inject.parse("") is None
