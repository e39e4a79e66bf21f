"""Small text helpers every renderer shares: safe text, short JSON, plurals, first-seen order, the run's
headline, a cell's boot time and its console link."""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from urllib.parse import quote

from compat.results.model import Cell, Results

# Characters XML 1.0 cannot carry (and that a terminal or a browser should not get raw): consoles
# hold escape sequences, and a log read with surrogateescape can hold lone surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """Text safe for XML 1.0, HTML and a terminal: control characters become `\\xNN` escapes."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNPRINTABLE.sub(
        lambda match: (
            f"\\x{ord(match.group()):02x}" if ord(match.group()) < 0x100 else f"\\u{ord(match.group()):04x}"
        ),
        text,
    )


def short_json(value: object) -> str:
    """A value as JSON, cut to 60 characters: for messages that quote what was found."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def plural(count: int, noun: str, nouns: str = "") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


def unique(items: Iterable[str]) -> list[str]:
    """The items in the order they first appear, each once."""
    return list(dict.fromkeys(items))


def run_line(results: Results) -> str:
    return (
        f"suite {results.suite_version}, started {results.started}, "
        f"{results.duration_seconds:.1f} s, accel {results.accel}"
    )


def console_href(cell: Cell, link_base: str) -> str:
    """The cell's console log as a URL path: link_base joined with console_log, quoted."""
    path = posixpath.join(link_base, cell.console_log) if link_base else cell.console_log
    return quote(path)


def boot_text(cell: Cell) -> str:
    return "-" if cell.boot_seconds is None else f"{cell.boot_seconds:.1f} s"
