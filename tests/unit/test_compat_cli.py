"""`compat`'s command line: errors with their hints, and exit codes that keep 2 for "could not decide"."""

from __future__ import annotations

import pytest

from compat import cli, qualify
from compat.results.status import EXIT_UNDECIDED, EXIT_UNUSABLE


def test_a_usage_error_does_not_read_as_could_not_decide(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["qualify", "--no-such-option"])
    assert stopped.value.code == EXIT_UNUSABLE != EXIT_UNDECIDED
    assert "unrecognized arguments" in capsys.readouterr().err


def test_qualify_without_a_kernel_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["qualify"]) == EXIT_UNUSABLE
    assert "--kernel is required" in capsys.readouterr().err


def test_an_unknown_kernel_is_refused_with_its_hint_before_anything_boots(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_boot(*_args: object) -> None:
        raise AssertionError("a suite ran before the kernel was resolved")

    monkeypatch.setattr(qualify, "baseline_run", no_boot)
    monkeypatch.setattr(qualify, "run_suite", no_boot)
    assert cli.main(["qualify", "--kernel", "9.9", "--report", "/nonexistent/q"]) == EXIT_UNUSABLE
    err = capsys.readouterr().err
    assert "kernel '9.9' is neither a catalogue id" in err
    assert "hint: add it to vm-images/kernels.json" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("compat ")
