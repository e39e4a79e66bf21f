"""The runtime's one error type: a message, a hint naming the fix, and an exit code."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs 8 ms on the start path
if TYPE_CHECKING:
    from typing import NoReturn

EXIT_USAGE = 2
EXIT_RUNTIME = 125  # `runtime run`: the runtime itself failed


class Failure(Exception):
    def __init__(self, message: str, hint: str = "", code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")


def die(message: str, hint: str = "", code: int = EXIT_USAGE) -> NoReturn:
    raise Failure(message, hint, code)
