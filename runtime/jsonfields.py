"""Typed fields out of decoded JSON, with the field's path in every refusal.

The one reader of the formats checked field by field: image manifests and configs
(runtime/storage/shape.py), the compat results (compat/results/schema.py) and the kernel catalogue
and lock (compat/images/kernel_catalogue.py). A Field is a value and where it is; the checks and the
paths are made here, and each format gives a Wording that turns "this field is not a string" into its
own error type and its own sentence, so that no format's messages change with the reader.

No typing or dataclasses at run time: cheap enough for any module of the runtime to import.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # not typing's: importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any, Self

# What a check expected, as a Wording receives it.
OBJECT = "an object"
LIST = "a list"
STRING = "a string"
INTEGER = "an integer"
BOOLEAN = "true or false"
COUNT = "a non-negative integer"
NUMBER = "a number >= 0"  # finite


class Wording:
    """How one format says what is wrong with a field: subclass it and return that format's error."""

    def wrong(self, field: Field, expected: str) -> Exception:
        """field's value is not what expected (one of OBJECT, LIST, ...) names."""
        raise NotImplementedError

    def missing(self, field: Field) -> Exception:
        """field's key is not in its object."""
        raise NotImplementedError

    def empty(self, field: Field) -> Exception:
        """field is an empty string where text is needed."""
        raise NotImplementedError


class Field:
    """A decoded JSON value, the label of the document it is in, and its path there ("cells[0].id").

    key is the last step of the path: a member name, an index, or None for the value labelled.
    """

    __slots__ = ("key", "label", "path", "value", "wording")

    def __init__(
        self, value: Any, wording: Wording, label: str = "", path: str = "", key: str | int | None = None
    ) -> None:
        self.value = value
        self.wording = wording
        self.label = label
        self.path = path
        self.key = key

    def child(self, value: Any, key: str | int) -> Self:
        """A value inside this one, of the same class, its path one step longer."""
        step = f"[{key}]" if isinstance(key, int) else key
        joined = f"{self.path}{step}" if step.startswith("[") or not self.path else f"{self.path}.{step}"
        found = type(self).__new__(type(self))
        Field.__init__(found, value, self.wording, self.label, joined, key)
        return found

    # --- containers ---

    def mapping(self) -> dict[str, Any]:
        """An object."""
        if not isinstance(self.value, dict):
            raise self.wording.wrong(self, OBJECT)
        return self.value

    def array(self) -> list[Any]:
        """A list."""
        if not isinstance(self.value, list):
            raise self.wording.wrong(self, LIST)
        return self.value

    def items(self) -> list[Self]:
        """A list's items, each a Field at [index]."""
        return [self.child(item, index) for index, item in enumerate(self.array())]

    def get(self, key: str) -> Self:
        """The member key of an object; its value None when absent or null."""
        return self.child(self.mapping().get(key), key)

    def member(self, key: str) -> Self:
        """The member key of an object, which must be there (null is a value)."""
        found = self.mapping()
        if key not in found:
            raise self.wording.missing(self.child(None, key))
        return self.child(found[key], key)

    # --- leaves ---

    def string(self, *, empty_ok: bool = True) -> str:
        if not isinstance(self.value, str):
            raise self.wording.wrong(self, STRING)
        if not self.value and not empty_ok:
            raise self.wording.empty(self)
        return self.value

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.wording.wrong(self, BOOLEAN)
        return self.value

    def integer(self) -> int:
        """An integer; true and false are not."""
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.wording.wrong(self, INTEGER)
        return self.value

    def count(self) -> int | None:
        """A size: a non-negative integer, or None when absent or null."""
        if self.value is None:
            return None
        if isinstance(self.value, bool) or not isinstance(self.value, int) or self.value < 0:
            raise self.wording.wrong(self, COUNT)
        return self.value

    def number(self) -> float:
        """A finite number >= 0 (a duration), integer or not."""
        value = self.value
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value) or value < 0:
            raise self.wording.wrong(self, NUMBER)
        return float(value)
