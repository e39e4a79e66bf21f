"""The JSON of manifests, indexes and configs, checked for the shape the import relies on.

Each accessor names what it reads ("manifest.json: [0].Layers[2]") and refuses the wrong type with
that name, so a malformed image is a one-line error and never a traceback deep in the import. The
checks and the paths are runtime/jsonfields.py's; the sentences are this module's.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.jsonfields import Field, Wording
from runtime.storage.archive import BadImage

MAX_DOCUMENT = 16 * 1024 * 1024  # a manifest or config; real ones are kilobytes
MALFORMED = "the image is damaged, or was written by a tool that does not follow the format"

JSON_KINDS = (
    (bool, "a boolean"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (list, "a list"),
)


def describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return next((what for kind, what in JSON_KINDS if isinstance(value, kind)), type(value).__name__)


def parse(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise BadImage(f"{name} is not JSON: {reason}", MALFORMED) from None


class _ImageWording(Wording):
    def wrong(self, field: Field, expected: str) -> BadImage:
        return BadImage(f"{_where(field)} is {describe(field.value)}, expected {expected}", MALFORMED)

    def missing(self, field: Field) -> BadImage:
        return BadImage(f"{_where(field)} is missing", MALFORMED)

    def empty(self, field: Field) -> BadImage:
        return self.wrong(field, "a non-empty string")


def _where(field: Field) -> str:
    return f"{field.label}: {field.path}" if field.path else field.label


_WORDING = _ImageWording()


class Doc(Field):
    """A JSON value and where it is, for messages: Doc(value, "manifest.json") then .items()[0].get("Config")."""

    __slots__ = ()

    def __init__(self, value: Any, name: str, path: str = "") -> None:
        super().__init__(value, _WORDING, name, path)

    @property
    def name(self) -> str:
        return self.label

    def an_object(self) -> Doc:
        self.mapping()
        return self

    def need(self, key: str) -> Doc:
        found = self.get(key)
        if found.value is None:
            raise _WORDING.missing(found)
        return found

    # --- leaves ---

    def text(self, default: str | None = None) -> str:
        if self.value is None and default is not None:
            return default
        return self.string()

    def texts(self) -> list[str] | None:
        """A list of strings, or None when absent or null."""
        if self.value is None:
            return None
        return [item.text() for item in self.items()]

    def table(self) -> dict[str, str]:
        """An object of strings (annotations), {} when absent."""
        if self.value is None:
            return {}
        return {key: self.child(value, key).string() for key, value in self.mapping().items()}
