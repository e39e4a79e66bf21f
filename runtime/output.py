"""What `runtime run` says on stderr. Not logging: importing it costs about 10 ms on a start path
that aims at runc's 30 ms. The CLI sets `verbose`."""

from __future__ import annotations

import sys

verbose = False


def note(text: str) -> None:
    """A decision and its reason; shown under --verbose."""
    if verbose:
        sys.stderr.write(f"runtime: {text}\n")


def warn(text: str) -> None:
    sys.stderr.write(f"runtime: {text}\n")
