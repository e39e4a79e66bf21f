"""The harness's one error base: a message saying what failed and why, and a hint naming the fix.

Every error compat raises for a user to read derives from CompatError; `compat/cli.py` catches it once
and prints both lines. Exceptions that mean a bug in the harness are not CompatErrors.
"""

from __future__ import annotations


class CompatError(Exception):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")
