"""Fixtures shared by the unit and the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import state


@pytest.fixture
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state directory standing in for /run/runtime, and a store that is never the host's."""
    monkeypatch.setattr(state, "STATE_ROOT", str(tmp_path))
    monkeypatch.setenv("RUNTIME_STORE", str(tmp_path / "no-store"))
    (tmp_path / "containers").mkdir()
    (tmp_path / "names").mkdir()
    return tmp_path
