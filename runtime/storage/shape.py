"""The JSON of manifests, indexes and configs, checked for the shape the import relies on.

Each accessor names what it reads ("manifest.json: [0].Layers[2]") and refuses the wrong type with
that name, so a malformed image is a one-line error and never a traceback deep in the import.
"""

from __future__ import annotations

import json
from typing import Any

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


class Doc:
    """A JSON value and where it is, for messages: Doc(value, "manifest.json") then .at(0).get("Config")."""

    __slots__ = ("name", "path", "value")

    def __init__(self, value: Any, name: str, path: str = "") -> None:
        self.value = value
        self.name = name
        self.path = path

    def _where(self) -> str:
        return f"{self.name}: {self.path}" if self.path else self.name

    def _wrong(self, expected: str) -> BadImage:
        return BadImage(f"{self._where()} is {describe(self.value)}, expected {expected}", MALFORMED)

    def _child(self, value: Any, step: str) -> Doc:
        joined = f"{self.path}{step}" if step.startswith("[") or not self.path else f"{self.path}.{step}"
        return Doc(value, self.name, joined)

    # --- containers ---

    def mapping(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self._wrong("an object")
        return self.value

    def an_object(self) -> Doc:
        self.mapping()
        return self

    def items(self) -> list[Doc]:
        if not isinstance(self.value, list):
            raise self._wrong("a list")
        return [self._child(item, f"[{index}]") for index, item in enumerate(self.value)]

    def get(self, key: str) -> Doc:
        """The member key (a Doc of None when absent or null)."""
        return self._child(self.mapping().get(key), key)

    def need(self, key: str) -> Doc:
        found = self.get(key)
        if found.value is None:
            raise BadImage(f"{found._where()} is missing", MALFORMED)
        return found

    # --- leaves ---

    def text(self, default: str | None = None) -> str:
        if self.value is None and default is not None:
            return default
        if not isinstance(self.value, str):
            raise self._wrong("a string")
        return self.value

    def count(self) -> int | None:
        """A size: a non-negative integer, or None when absent."""
        if self.value is None:
            return None
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 0:
            raise self._wrong("a non-negative integer")
        return self.value

    def texts(self) -> list[str] | None:
        """A list of strings, or None when absent or null."""
        if self.value is None:
            return None
        return [item.text() for item in self.items()]

    def table(self) -> dict[str, str]:
        """An object of strings (annotations), {} when absent."""
        if self.value is None:
            return {}
        return {key: self._child(value, key).text() for key, value in self.mapping().items()}
